"""depthaware: layer-aware training tools from "Which Layer is Learning Faster?" (ICLR 2023)."""

from . import freeze, measure, models, optim, plots, recipes
from .layers import Layer, LayerGroups, layer_groups

__version__ = "0.1.0"

__all__ = [
    "Layer",
    "LayerGroups",
    "freeze",
    "layer_groups",
    "measure",
    "models",
    "optim",
    "plots",
    "recipes",
]
