"""Sphinx configuration of the flatgen documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html``; the
gallery runs every ``examples/plot_*.py``. ``FLATGEN_DOCS_PLOT_GALLERY=0``
skips running them (pages without figures, for quick text edits),
``FLATGEN_DOCS_GALLERY_JOBS`` sets how many examples run at once (default 2).
Formulas are typeset by the copy of MathJax that sphinx-mathjax-offline ships
and copies into ``_static/mathjax``, so the pages need no network;
``FLATGEN_DOCS_MATHJAX`` replaces that copy with another MathJax (a path
relative to ``_static``, or a URL, which docs/check_build.py then reports as
an outside script).
"""

import os
import sys
from pathlib import Path

import flatgen

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "sphinxext"))

from api_reference import is_record, write_api_page  # noqa: E402

# The API page is generated from the package's __all__ before Sphinx reads
# the sources, so new public names appear without editing the docs.
API_SECTIONS = write_api_page(DOCS / "api" / "index.rst")

project = "flatgen"
author = "the flatgen developers"
copyright = "2026, the flatgen developers"
release = flatgen.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "public_names",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# sg_execution_times.rst: timing pages of older builds (see
# write_computation_times below).
exclude_patterns = [
    "_build",
    "sphinxext",
    "Thumbs.db",
    ".DS_Store",
    "sg_execution_times.rst",
    "auto_examples/sg_execution_times.rst",
]
templates_path = ["_templates"]
root_doc = "index"

# Every cross-reference must resolve; names of the libraries flatgen builds on
# are plain text here (no intersphinx: the build must work offline).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|torch|sklearn|skorch|matplotlib|joblib|dask|scipy)\..*"),
]

autosummary_generate = True
autodoc_typehints = "none"
autodoc_member_order = "groupwise"
add_module_names = False

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# Checks run on every documented object; a failure is a build warning, which
# -W turns into an error.
numpydoc_validation_checks = {"PR01", "PR02", "PR03", "PR06", "PR07", "RT03", "GL02"}
# Result records (dataclasses, named tuples) document their fields under
# Attributes, not Parameters; their methods are still checked.
numpydoc_validation_exclude = {
    rf"\.{name}$"
    for _, module, names in API_SECTIONS
    for name in names
    if is_record(getattr(sys.modules[module], name))
}

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# sphinx-mathjax-offline copies MathJax 3 into _static/mathjax and points
# mathjax_path at it (Sphinx's default is a CDN, so without a network every
# formula would show as raw \(...\)). It sets mathjax_path when it loads, so
# it is left out when another copy is asked for.
if os.environ.get("FLATGEN_DOCS_MATHJAX"):
    mathjax_path = os.environ["FLATGEN_DOCS_MATHJAX"]
else:
    extensions.append("sphinx-mathjax-offline")

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Only plot_*.py scripts belong to the gallery; the others are command-line
    # scripts with their own arguments and outputs.
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(^|/)(?!plot_)[^/]*\.py$",
    "plot_gallery": os.environ.get("FLATGEN_DOCS_PLOT_GALLERY", "True"),
    "within_subsection_order": "FileNameSortKey",
    "backreferences_dir": "api/backreferences",
    "doc_module": ("flatgen",),
    "remove_config_comments": True,
    "download_all_examples": False,
    "thumbnail_size": (400, 280),
    "min_reported_time": 1,
    # The timing summary pages load jQuery and DataTables from CDNs, which
    # docs/check_build.py rejects (the pages must work offline); each example
    # page still shows its own running time.
    "write_computation_times": False,
    # The examples train networks with one torch thread each, so two at a
    # time use both cores of a small CI machine; FLATGEN_DOCS_GALLERY_JOBS
    # sets another number (1 runs them one after the other).
    "parallel": int(os.environ.get("FLATGEN_DOCS_GALLERY_JOBS", "2")),
}

html_theme = "pydata_sphinx_theme"
html_title = f"flatgen {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 5,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "auto_examples/index": []}
html_show_sourcelink = False
