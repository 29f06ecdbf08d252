"""Sphinx configuration of the API reference: the README and docs/*.md as narrative pages
(MyST), each public module's docstrings through autodoc (Google-style sections: napoleon).

Built offline: math is converted to MathML at build time (latex2mathml), which browsers draw
natively, so the pages load no script from elsewhere. Warnings are errors in CI
(``sphinx-build -W -n``): a broken cross-reference to our own API or a broken link between
pages fails the build. References to other projects (torch, numpy, timm ...) are not
resolved: there is no network for intersphinx at build time."""

import re

from docutils import nodes
from latex2mathml.converter import convert

import depthaware

project = "depthaware"
release = version = depthaware.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"depthaware {release}"
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_inherit_docstrings = False  # torch's docstrings name torch's own private members
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = True
# other projects' names in signatures: no intersphinx offline, so they stay plain text
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|torchvision|numpy|np|nn|timm|lightning|pl|transformers|matplotlib|os)\b.*"),
    (r"py:.*", r"(collections\.abc|typing|pathlib|_typeshed)\..*"),
    (r"py:class", r"(Tensor|Module|Optimizer|Figure|Axes|Path|ArrayLike|ParamsT|LRScheduler)"),
    # internal types in signatures: the optimizers' mixin, the comparison's task and result
    (r"py:class", r"depthaware\.optim\.param_groups\.FromModel"),
    (r"py:class", r"depthaware\.recipes\.\w+\.(Task|ActingResult)"),
    # the integrations' shared core (private), a base of their recording callbacks
    (r"py:class", r"depthaware\.integrations\._recording\.Recording"),
    # layer_groups' ``groups`` type alias, as another module's signature names it
    (r"py:class", r"GroupSpec"),
]


def _mathml(latex: str, display: bool) -> str:
    return convert(latex, display="block" if display else "inline")


def _visit_math(self, node):
    self.body.append(_mathml(node.astext(), display=False))
    raise nodes.SkipNode


def _visit_displaymath(self, node):
    for part in re.split(r"\n\s*\n", node.astext().strip()):
        self.body.append(f'<div class="math-block">{_mathml(part, display=True)}</div>')
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer("mathml", (_visit_math, None), (_visit_displaymath, None))
    app.config.html_math_renderer = "mathml"
