"""Documentation checks that need no Sphinx build.

The API reference is generated from ``__all__`` (docs/sphinxext); these tests
check that every public name gets an entry and a numpydoc docstring, that the
gallery scripts have the titles sphinx-gallery needs, and that the user
guide's code and cross-references name only things that exist. Checks of
the built HTML are in docs/check_build.py, which .ci/run runs after the build.
"""

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
from pathlib import Path

import pytest

import flatgen

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "sphinxext"))

from api_reference import api_sections, is_record, render  # noqa: E402

numpydoc = pytest.importorskip("numpydoc")
from numpydoc.docscrape import ClassDoc, FunctionDoc  # noqa: E402
from numpydoc.validate import validate  # noqa: E402

SECTIONS = api_sections("flatgen")
LISTED = [f"{module}.{name}" for _, module, names in SECTIONS for name in names]
# Same checks as numpydoc_validation_checks in docs/conf.py.
VALIDATION_CHECKS = {"PR01", "PR02", "PR03", "PR06", "PR07", "RT03", "GL02"}
GUIDE = sorted(
    path
    for path in DOCS.rglob("*.rst")
    if not {"_build", "api", "auto_examples", "_templates"} & set(path.parts)
    and path.name != "sg_execution_times.rst"  # written by sphinx-gallery
)


def _resolve(dotted):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _own_methods(cls):
    for name, member in vars(cls).items():
        function = getattr(member, "__func__", member)
        public = not name.startswith("_") or name == "__call__"
        if public and inspect.isfunction(function):
            if function.__module__.startswith("flatgen"):
                yield name


def test_every_public_name_has_an_api_entry():
    assert LISTED, "the API reference lists nothing"
    assert len(LISTED) == len(set(LISTED)), "a name is listed twice"
    for name in flatgen.__all__:
        assert f"flatgen.{name}" in LISTED, f"flatgen.{name} is not in the API page"
    text = render(SECTIONS)
    for _, module, names in SECTIONS:
        for name in names:
            assert re.search(rf"^   {re.escape(name)}$", text, re.M), name


def test_submodule_names_are_documented_once():
    listed_objects = {id(_resolve(name)) for name in LISTED}
    for info in pkgutil.iter_modules(flatgen.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"flatgen.{info.name}")
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isroutine(obj):
                assert id(obj) in listed_objects, f"{module.__name__}.{name}"


def test_the_page_follows_all(monkeypatch):
    # A name added to flatgen.__all__ appears without editing the docs.
    def probe():
        """Probe."""

    probe.__module__ = "flatgen.datasets"
    monkeypatch.setattr(flatgen, "probe", probe, raising=False)
    monkeypatch.setattr(flatgen, "__all__", [*flatgen.__all__, "probe"])
    sections = {title: names for title, _, names in api_sections()}
    assert "probe" in sections["Data sets and poison sources"]
    assert "   probe" in render(api_sections()).splitlines()


def _returns_a_value(function):
    """Return True if ``function``'s own body has ``return <value>``."""
    try:
        tree = ast.parse(inspect.getsource(function).strip())
    except (OSError, TypeError, SyntaxError):
        return True
    body = tree.body[0]
    nodes = list(ast.iter_child_nodes(body))
    while nodes:
        node = nodes.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue  # a nested function's returns are its own
        if isinstance(node, ast.Return) and node.value is not None:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                return True
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return True
        nodes.extend(ast.iter_child_nodes(node))
    return False


@pytest.mark.parametrize("name", LISTED)
def test_docstring_sections(name):
    obj = _resolve(name)
    doc = (
        ClassDoc(obj, config={"show_class_members": False})
        if inspect.isclass(obj)
        else FunctionDoc(obj)
    )
    assert doc["Summary"], f"{name} has no summary line"
    if issubclass(obj, BaseException) if inspect.isclass(obj) else False:
        return  # exceptions are raised, not called: no parameters or examples
    signature = inspect.signature(obj)
    takes_arguments = any(p.name != "self" for p in signature.parameters.values())
    if is_record(obj):
        # Records describe their fields under Attributes instead.
        described = {
            part.strip() for item in doc["Attributes"] for part in item.name.split(",")
        }
        fields = (
            {f.name for f in dataclasses.fields(obj)}
            if not hasattr(obj, "_fields")
            else set(obj._fields)
        )
        assert fields <= described, f"{name}: fields {fields - described} undescribed"
    elif takes_arguments:
        assert doc["Parameters"], f"{name} has no Parameters section"
    if not inspect.isclass(obj) and _returns_a_value(obj):
        assert doc["Returns"] or doc["Yields"], f"{name} has no Returns section"
    if name.startswith("flatgen.") and name.count(".") == 1:
        assert "".join(doc["Examples"]).strip(), f"{name} has no Examples section"


@pytest.mark.parametrize("name", LISTED)
def test_numpydoc_validation(name):
    obj = _resolve(name)
    targets = [name]
    if inspect.isclass(obj):
        targets += [f"{name}.{method}" for method in _own_methods(obj)]
    errors = []
    for target in targets:
        if target == name and is_record(obj):
            continue
        for code, message in validate(target)["errors"]:
            if code in VALIDATION_CHECKS:
                errors.append(f"{target}: {code} {message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    "path", sorted((ROOT / "examples").glob("plot_*.py")), ids=lambda p: p.name
)
def test_gallery_example_has_a_title(path):
    docstring = ast.get_docstring(ast.parse(path.read_text()), clean=False)
    assert docstring, f"{path.name} needs a module docstring"
    lines = docstring.strip("\n").splitlines()
    assert len(lines) >= 2 and lines[0].strip(), f"{path.name}: no title line"
    underline = lines[1].strip()
    assert underline and set(underline) == {"="}, f"{path.name}: title not underlined"
    assert len(underline) >= len(lines[0].strip()), f"{path.name}: underline too short"


def _code_blocks(text):
    """Yield the Python code blocks of a reStructuredText page."""
    for match in re.finditer(
        r"^\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text, re.M
    ):
        lines = [line[3:] if line.strip() else "" for line in match[1].splitlines()]
        yield "\n".join(lines)


@pytest.mark.parametrize("path", GUIDE, ids=lambda p: str(p.relative_to(DOCS)))
def test_guide_code_names_existing_api(path):
    text = path.read_text()
    for block in _code_blocks(text):
        tree = ast.parse(block)  # a syntax error fails here
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "flatgen"
            ):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module}.{alias.name}"
    for role, target in re.findall(
        r":(class|func|meth|mod|attr):`~?(flatgen[\w.]*)`", text
    ):
        if role == "mod":
            importlib.import_module(target)
            continue
        parts = target.split(".")
        obj = importlib.import_module(parts[0])
        for part in parts[1:]:
            try:
                obj = getattr(obj, part)
            except AttributeError:
                obj = importlib.import_module(f"{obj.__name__}.{part}")
        assert obj is not None, target


@pytest.mark.parametrize("path", GUIDE, ids=lambda p: str(p.relative_to(DOCS)))
def test_guide_code_fits_the_page(path):
    # Wider lines scroll sideways in the theme's text column at 1280 px.
    pattern = r"^\.\. code-block:: \w+\n\n((?:   .*\n|\n)+)"
    for match in re.finditer(pattern, path.read_text(), re.M):
        for line in match[1].splitlines():
            assert len(line) - 3 <= 72, f"code line too wide: {line.strip()!r}"


def _toctree_entries(text):
    for match in re.finditer(r"^\.\. toctree::\n((?:   .*\n|\n)+)", text, re.M):
        for line in match[1].splitlines():
            entry = line.strip()
            if entry and not entry.startswith(":"):
                yield entry


def test_every_page_is_in_a_toctree():
    pages = {
        path.relative_to(DOCS).with_suffix("").as_posix()
        for path in [*GUIDE, *DOCS.glob("*.md"), *DOCS.glob("*/*.md")]
    }
    reached = {"index", "api/index", "auto_examples/index"}
    for path in GUIDE:
        folder = path.relative_to(DOCS).parent
        for entry in _toctree_entries(path.read_text()):
            target = entry[1:] if entry.startswith("/") else (folder / entry).as_posix()
            reached |= {page for page in pages if Path(page).match(target)}
            reached.add(target)
    assert pages <= reached, f"pages in no toctree: {sorted(pages - reached)}"


def _check_build():
    path = DOCS / "check_build.py"
    spec = importlib.util.spec_from_file_location("check_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_check_rejects_outside_scripts_and_stylesheets(tmp_path):
    # docs/check_build.py's offline check, on a small hand-made tree.
    static = tmp_path / "_static"
    (static / "mathjax" / "fonts").mkdir(parents=True)
    (static / "mathjax" / "tex-chtml.js").write_text("")
    (static / "mathjax" / "fonts" / "Main.woff").write_text("")
    (static / "theme.css").write_text("")
    (static / "macros.html").write_text('<script src="https://cdn.x/a.js"></script>')
    head = (
        '<link rel="stylesheet" href="_static/theme.css?v=1">'
        '<link rel="next" href="https://example.org/next.html">'
        '<script defer src="_static/mathjax/tex-chtml.js"></script>'
    )
    math = '<span class="math notranslate nohighlight">\\(x\\)</span>'
    link = '<a href="https://example.org">outside, but only a hyperlink</a>'
    (tmp_path / "good.html").write_text(head + math + link)
    (tmp_path / "cdn.html").write_text(
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@4/tex-mml-chtml.js">'
        '</script><link rel="stylesheet" href="//cdn.example.org/s.css">'
        '<link rel="preload" as="script" href="HTTP://cdn.example.org/p.js">'
        "<style><link href='https://inside.a.style/is.text' rel=stylesheet></style>"
        + math
    )
    (tmp_path / "missing.html").write_text('<script src="_static/gone.js"></script>')
    found = _check_build().offline_problems(tmp_path)
    assert not [line for line in found if line.startswith(("good", "_static"))]
    cdn = [line for line in found if line.startswith("cdn.html")]
    assert len(cdn) == 4, found
    assert "has formulas but loads no local MathJax" in cdn[-1]
    assert all("from outside" in line for line in cdn[:3])
    assert found[-1] == (
        "missing.html loads <script> _static/gone.js, which is not in the tree"
    )
