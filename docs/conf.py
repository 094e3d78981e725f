"""Sphinx configuration of the stn_numba documentation site.

Built with ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors).
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("."))  # gallery_order

import stn_numba  # noqa: E402

project = "stn_numba"
author = "the stn_numba developers"
copyright = "2026, the stn_numba developers"
release = version = stn_numba.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "matplotlib.sphinxext.plot_directive",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "table1", "**/*.json"]
autosummary_generate = True
# a class's page documents its own methods; inherited ones are on its base's page (show-inheritance links it)
templates_path = ["_templates"]
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

intersphinx_mapping = {}  # the build reads nothing from the network
# Cross-references must resolve (sphinx-build -n); these name what the build cannot link without a network
# (NumPy's docs) and a private base class that show-inheritance names.
nitpicky = True
nitpick_ignore = [("py:class", "numpy.ndarray"), ("py:class", "stn_numba.tensor._GradMode")]

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "gallery_order.GalleryOrder",
    "download_all_examples": False,
}

# Pictures drawn at build time by ``.. plot::`` (MyST: ```{plot}```): PNG only, no source links.
plot_formats = [("png", 110)]
plot_html_show_formats = False
plot_html_show_source_link = False
plot_include_source = False
plot_rcparams = {"figure.autolayout": True}

html_theme = "pydata_sphinx_theme"
html_title = "stn_numba"
html_static_path = ["_static"]
html_css_files = ["stn_numba.css"]
# top-level pages have no subpages: no section navigation on their left
html_sidebars = {"*": []}
html_theme_options = {
    "header_links_before_dropdown": 4,
    # the gallery's pages are code, and two pages are wide tables: give them the right-hand column's width
    "secondary_sidebar_items": {"*": ["page-toc", "sourcelink"], "api/**": ["page-toc", "sourcelink"],
                                "auto_examples/*": [], "coming_from": [], "nonfinite": []},
}
