"""depthaware: layer-aware training tools from "Which Layer is Learning Faster?" (ICLR 2023)."""

import importlib

from . import freeze, measure, models, optim
from .layers import Layer, LayerGroups, as_layer_groups, layer_groups, model_of
from .version import __version__ as __version__

__all__ = [
    "Layer",
    "LayerGroups",
    "as_layer_groups",
    "freeze",
    "layer_groups",
    "measure",
    "model_of",
    "models",
    "optim",
    "plots",
    "recipes",
]


def __getattr__(name: str):
    """``depthaware.plots`` and ``depthaware.recipes`` load on first use (matplotlib, the recipes'
    data sets): importing the package stays light."""
    if name in ("plots", "recipes"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
