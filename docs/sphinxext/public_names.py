"""Sphinx extension: document flatgen's own members under their public names.

- Class pages list only members implemented in flatgen: the methods classes
  inherit from scikit-learn (metadata routing, ``get_params``) or torch
  (``nn.Sequential``) are documented by those libraries.
- A cross-reference to a private or submodule path of a public object, such
  as ``flatgen.plotting.BasinDisplay.plot``, resolves to the page of its
  public name (``flatgen.BasinDisplay.plot``), so docstrings may use either.
"""

import importlib
import inspect

from api_reference import api_sections


def _is_foreign_member(obj):
    """Return True for a class member implemented outside flatgen."""
    target = obj.fget if isinstance(obj, property) else obj
    target = getattr(target, "__func__", target)
    if not (callable(target) or isinstance(obj, property)):
        # Plain data; named-tuple fields are described in the class docstring.
        return type(obj).__name__ == "_tuplegetter"
    return not (getattr(target, "__module__", None) or "").startswith("flatgen")


def skip_foreign_member(app, what, name, obj, skip, options):
    """Skip class members that flatgen does not implement (autodoc hook)."""
    if what == "class" and _is_foreign_member(obj):
        return True
    return None


def _lookup(dotted):
    """Import the object at a dotted path, or return None."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


def _public_names(app):
    env = app.builder.env
    if not hasattr(env, "_flatgen_public_names"):
        names = {}
        for _, module, members in api_sections("flatgen"):
            for member in members:
                obj = getattr(importlib.import_module(module), member)
                names.setdefault(id(obj), f"{module}.{member}")
        env._flatgen_public_names = names
    return env._flatgen_public_names


def resolve_public_alias(app, env, node, contnode):
    """Retry a failed ``flatgen.*`` reference under the object's public name."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("flatgen."):
        return None
    names = _public_names(app)
    parts = target.split(".")
    for i in range(len(parts), 1, -1):
        obj = _lookup(".".join(parts[:i]))
        if obj is None or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        public = names.get(id(obj))
        if public is None:
            continue  # e.g. a method: its class, one step up, has the page
        new_target = ".".join([public, *parts[i:]])
        if new_target == target:
            return None
        return env.get_domain("py").resolve_xref(
            env,
            node["refdoc"],
            app.builder,
            node["reftype"],
            new_target,
            node,
            contnode,
        )
    return None


def setup(app):
    """Register the hooks."""
    app.connect("autodoc-skip-member", skip_foreign_member)
    app.connect("missing-reference", resolve_public_alias)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
