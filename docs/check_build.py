"""Check a built HTML documentation tree: API pages and gallery figures.

Run after ``sphinx-build -b html docs docs/_build/html``::

    python docs/check_build.py docs/_build/html

It fails (exit status 1) when a public name has no API page, when the API
index does not link to it, or when a gallery example has no page or no
figure. Checks that need no build live in ``tests/test_docs.py``.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "sphinxext"))

from api_reference import api_sections  # noqa: E402


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


def main(argv):
    """Check the tree given on the command line and report."""
    html_dir = Path(argv[1]) if len(argv) > 1 else DOCS / "_build" / "html"
    missing = problems(html_dir)
    for line in missing:
        print(f"docs check: {line}", file=sys.stderr)
    n_names = sum(len(names) for _, _, names in api_sections("flatgen"))
    print(f"docs check: {n_names} API pages, gallery figures: ", end="")
    print("FAILED" if missing else "ok")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
