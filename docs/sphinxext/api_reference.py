"""Write the API reference page from the package's ``__all__`` lists.

``conf.py`` calls :func:`write_api_page` before Sphinx reads the sources, so a
name added to ``flatgen.__all__`` (or to a public submodule's ``__all__``)
gets its page and its place in the reference without editing the docs.
``tests/test_docs.py`` uses :func:`api_sections` to check that every public
name is listed.
"""

import dataclasses
import importlib
import inspect
import pkgutil
from pathlib import Path

# Top-level names are grouped by the subpackage that defines them; a
# subpackage missing here gets a section titled after its docstring.
SECTION_TITLES = {
    "estimators": "Classifiers",
    "analyzers": "Analyzers",
    "plotting": "Displays",
    "datasets": "Data sets and poison sources",
    "poison": "Data sets and poison sources",
    "experiments": "Experiments",
    "io": "Saving and loading",
    "exceptions": "Exceptions",
}

INTRO = """\
API reference
=============

Every public name of :mod:`flatgen`, grouped by what it does, followed by the
lower-level tools of its submodules. This page is generated from the
packages' ``__all__`` lists when the documentation is built.
"""


def is_record(obj):
    """Return True for a result record: a dataclass or a named tuple.

    Records describe their fields under Attributes, not Parameters.

    Parameters
    ----------
    obj : object
        A documented object.

    Returns
    -------
    record : bool
        Whether ``obj`` is a record class.
    """
    if not inspect.isclass(obj):
        return False
    return dataclasses.is_dataclass(obj) or (
        issubclass(obj, tuple) and hasattr(obj, "_fields")
    )


def _summary(module):
    doc = inspect.getdoc(module) or module.__name__
    return doc.strip().split("\n\n")[0].replace("\n", " ").rstrip(".")


def _part(obj, package):
    """Return the subpackage (second dotted component) that defines ``obj``."""
    module = getattr(obj, "__module__", None) or package
    parts = module.split(".")
    return parts[1].lstrip("_") if len(parts) > 1 else ""


def _public_submodules(package):
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{package}.{info.name}")


def api_sections(package="flatgen"):
    """Return the sections of the API reference.

    Parameters
    ----------
    package : str, default='flatgen'
        Package to document.

    Returns
    -------
    sections : list of tuple
        ``(title, module_name, names)`` per section, in page order: first the
        package's own ``__all__`` grouped by defining subpackage, then, per
        public submodule, the classes and functions of its ``__all__`` not
        already listed. Each name is documented as ``module_name.name``.
    """
    pkg = importlib.import_module(package)
    grouped = {}
    documented = set()
    for name in sorted(pkg.__all__, key=str.lower):
        obj = getattr(pkg, name)
        part = _part(obj, package)
        if part in SECTION_TITLES:
            title = SECTION_TITLES[part]
        else:
            module = importlib.import_module(f"{package}.{part}") if part else pkg
            title = _summary(module)
        grouped.setdefault(title, []).append(name)
        documented.add(id(obj))
    order = list(dict.fromkeys(SECTION_TITLES.values()))
    top = sorted(
        grouped.items(),
        key=lambda item: (
            order.index(item[0]) if item[0] in order else len(order),
            item[0],
        ),
    )
    sections = [(title, package, names) for title, names in top]
    for module in _public_submodules(package):
        names = []
        for name in sorted(getattr(module, "__all__", ()), key=str.lower):
            obj = getattr(module, name)
            # Constants and re-exported modules have no page of their own.
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue
            if id(obj) not in documented:
                names.append(name)
                documented.add(id(obj))
        if names:
            sections.append((f"``{module.__name__}``", module.__name__, names))
    return sections


def render(sections):
    """Return the reStructuredText of the API page for ``sections``.

    Parameters
    ----------
    sections : list of tuple
        As returned by :func:`api_sections`.

    Returns
    -------
    text : str
        The page.
    """
    lines = [INTRO]
    declared = set()
    for title, module, names in sections:
        # The first section of a module declares it, so :mod: links resolve.
        directive = "currentmodule" if module in declared else "module"
        declared.add(module)
        lines += [title, "-" * len(title), "", f".. {directive}:: {module}", ""]
        if "." in module:
            lines += [_summary(importlib.import_module(module)) + ".", ""]
        lines += [
            ".. autosummary::",
            "   :toctree: generated/",
            "   :nosignatures:",
            "",
        ]
        lines += [f"   {name}" for name in names] + [""]
    return "\n".join(lines)


def write_api_page(path, package="flatgen"):
    """Write the API page to ``path`` if its content changed.

    Parameters
    ----------
    path : path-like
        Where the page goes, e.g. ``docs/api/index.rst``.
    package : str, default='flatgen'
        Package to document.

    Returns
    -------
    sections : list of tuple
        The sections written, as returned by :func:`api_sections`.
    """
    path = Path(path)
    sections = api_sections(package)
    text = render(sections)
    # Rewriting an unchanged page would make Sphinx re-read it on every build.
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sections
