"""Sphinx configuration for the spead2py documentation.

Build with ``sphinx-build -b html docs docs/_build/html`` after installing
the package (``pip install '.[docs]'``): the API reference is generated
from the docstrings of the installed modules, compiled ones included.
"""

import importlib.util

import spead2

project = "spead2py"
author = "the spead2py authors"
copyright = "the spead2py authors"
version = release = spead2.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
# headings of the Markdown pages get anchors, so "#one-packet..." links work
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"spead2py {release}"
html_static_path = []

# The API reference: signatures come from the docstrings (Cython embeds
# them), type hints go into the description rather than the signature line.
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "description"
autoclass_content = "class"

# spead2.numba and spead2.recv.numba import numba; without it (it is an
# optional extra) they are documented from a stand-in.
if importlib.util.find_spec("numba") is None:
    autodoc_mock_imports = ["numba"]
