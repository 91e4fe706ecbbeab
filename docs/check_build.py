"""Check a built HTML documentation tree: API pages, gallery figures, offline use.

Run after ``sphinx-build -b html docs docs/_build/html``::

    python docs/check_build.py docs/_build/html

It fails (exit status 1) when a public name has no API page, when the API
index does not link to it, when a gallery example has no page or no figure,
or when the pages cannot be read without a network: a page loads a script or
stylesheet from outside the tree, a script or stylesheet it loads is missing,
or a page with formulas loads no MathJax or KaTeX copied into the tree (with
its fonts). Checks that need no build live in ``tests/test_docs.py``.
"""

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "sphinxext"))

from api_reference import api_sections  # noqa: E402

# <link rel=...> values that make the browser fetch the linked file; other
# links (next, prev, search, canonical) are only hyperlinks.
FETCHING_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon"}
# Sphinx marks formulas with these classes (sphinx.ext.mathjax, myst-parser).
MATH_CLASS = 'class="math notranslate'
FONT_SUFFIXES = {".woff", ".woff2", ".ttf", ".otf"}
# Folders of copied files, not pages (the theme's _static/webpack-macros.html
# is a Jinja template); _modules holds viewcode's pages and is checked.
NOT_PAGES = {"_static", "_sources", "_images", "_downloads"}


def problems(html_dir):
    """Return a list of what is missing from the built tree ``html_dir``.

    Parameters
    ----------
    html_dir : pathlib.Path
        Output directory of the HTML build.

    Returns
    -------
    problems : list of str
        One line per missing page, link or figure; empty when all is well.
    """
    found = []
    api_index = (html_dir / "api" / "index.html").read_text()
    for _, module, names in api_sections("flatgen"):
        for name in names:
            page = f"{module}.{name}.html"
            if not (html_dir / "api" / "generated" / page).is_file():
                found.append(f"no API page for {module}.{name}")
            elif f'href="generated/{page}' not in api_index:
                found.append(f"the API index does not link to {page}")
    examples = sorted((DOCS.parent / "examples").glob("plot_*.py"))
    if not examples:
        found.append("no examples/plot_*.py in the gallery")
    for example in examples:
        page = html_dir / "auto_examples" / f"{example.stem}.html"
        figure = f"sphx_glr_{example.stem}_001"
        if not page.is_file():
            found.append(f"no gallery page for {example.name}")
        elif figure not in page.read_text():
            found.append(f"the gallery page of {example.name} shows no figure")
        elif not list((html_dir / "_images").glob(f"{figure}.*")):
            found.append(f"the figure of {example.name} was not copied")
    return found


class _LoadedFiles(HTMLParser):
    """Collect the scripts and stylesheets that an HTML page makes a browser load.

    Attributes
    ----------
    loaded : list of tuple of (str, str)
        ``(tag, url)`` for every ``<script src>`` and for every ``<link href>``
        whose ``rel`` fetches the file (see ``FETCHING_RELS``), in page order.
    """

    def __init__(self):
        super().__init__()
        self.loaded = []

    def handle_starttag(self, tag, attrs):
        """Record the file that a ``<script>`` or ``<link>`` start tag loads.

        Parameters
        ----------
        tag : str
            Lower-case tag name.
        attrs : list of tuple of (str, str or None)
            The tag's attributes, as ``html.parser`` passes them.
        """
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.loaded.append((tag, attrs["src"]))
        elif tag == "link" and attrs.get("href"):
            rels = set((attrs.get("rel") or "").lower().split())
            if rels & FETCHING_RELS:
                self.loaded.append((tag, attrs["href"]))


def is_outside(url):
    """Tell whether ``url`` needs a network, rather than a file of the tree.

    Parameters
    ----------
    url : str
        A ``src`` or ``href`` value as written in a page.

    Returns
    -------
    outside : bool
        True for absolute and protocol-relative URLs (``https://...``,
        ``//cdn...``); False for relative paths and ``data:`` URLs.
    """
    parts = urlsplit(url.strip())
    return bool(parts.netloc) or parts.scheme not in ("", "data", "file")


def offline_problems(html_dir):
    """Return what would keep the built pages from working without a network.

    Parameters
    ----------
    html_dir : pathlib.Path
        Output directory of the HTML build.

    Returns
    -------
    problems : list of str
        One line per script or stylesheet loaded from outside the tree or
        missing from it, and per page whose formulas no local MathJax or
        KaTeX (with its fonts) would typeset; empty when all is well.
    """
    found = []
    pages = sorted(
        page
        for page in html_dir.rglob("*.html")
        if page.relative_to(html_dir).parts[0] not in NOT_PAGES
    )
    if not pages:
        return [f"no HTML pages in {html_dir}"]
    for page in pages:
        name = page.relative_to(html_dir).as_posix()
        text = page.read_text(encoding="utf-8")
        parser = _LoadedFiles()
        parser.feed(text)
        renderers = []
        for tag, url in parser.loaded:
            if is_outside(url):
                found.append(f"{name} loads <{tag}> {url} from outside")
                continue
            path = unquote(urlsplit(url).path)
            if not path:
                continue
            target = (page.parent / path).resolve()
            if not target.is_file():
                found.append(f"{name} loads <{tag}> {url}, which is not in the tree")
            elif tag == "script" and any(
                key in path.lower() for key in ("mathjax", "katex")
            ):
                renderers.append(target)
        if MATH_CLASS not in text:
            continue
        if not renderers:
            found.append(f"{name} has formulas but loads no local MathJax or KaTeX")
        elif not any(
            font.suffix in FONT_SUFFIXES
            for renderer in renderers
            for font in renderer.parent.rglob("*")
        ):
            found.append(f"{name}: no fonts beside {renderers[0].name}")
    return found


def main(argv):
    """Check the tree given on the command line and report."""
    html_dir = Path(argv[1]) if len(argv) > 1 else DOCS / "_build" / "html"
    missing = problems(html_dir)
    offline = offline_problems(html_dir)
    for line in missing + offline:
        print(f"docs check: {line}", file=sys.stderr)
    n_names = sum(len(names) for _, _, names in api_sections("flatgen"))
    print(f"docs check: {n_names} API pages, gallery figures: ", end="")
    print("FAILED" if missing else "ok", end="")
    print(", offline reading: ", "FAILED" if offline else "ok", sep="")
    return 1 if missing or offline else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
