"""LayerGroups: a network as an ordered list of named layers, each with a depth.

A *layer* is a named group of parameters with a depth (0 = closest to the input). Every other part
of the package (measurements, optimizers, freezing) takes a :class:`LayerGroups`.

Discovery (``layer_groups(model)``) knows, in this order:

1. explicit ``groups=`` (module-name prefixes or glob patterns), for any model;
2. models that describe themselves with a ``layer_map()`` method (the package's FCNNs);
3. ResNets, torchvision's and timm's (``stem, stage1..stage4, fc``; ``granularity="fine"``: one
   layer per residual block, ``layer1.0``, ...), and torchvision's ``VGG`` (each conv and linear,
   ``layer1..layerN`` as the paper numbers VGG-19's 19 layers);
4. timm's ``VisionTransformer`` (the package's width-graded ViTs included): ``Patch Embedding``,
   ``Encoder Block 1..N``, ``Head``, as the paper's Appendix A.7 names them;
5. any other timm model through its ``group_matcher()``: ``stem``, then each group named by the
   common module prefix of its parameters (``stages.1``, ``blocks.2``);
6. ``nn.Sequential``: each child with parameters is a layer; a normalization child joins the layer
   before it.

The naming rule: where the paper names a network's layers (FCNNs, ResNet stages, VGG layers, ViT
encoders), every source of that network gets the paper's names; elsewhere a layer is named after
its modules.

Every trainable parameter must land in exactly one layer; otherwise a ``ValueError`` lists the
parameters that are unassigned or claimed twice.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .discovery import discover

__all__ = [
    "Layer",
    "LayerGroups",
    "as_layer_groups",
    "flatten_into",
    "layer_groups",
    "layer_params",
    "model_of",
]

GRANULARITIES = ("coarse", "fine")


@dataclass(frozen=True)
class Layer:
    """One layer: a name, a depth and its parameters (in ``model.named_parameters()`` order)."""

    name: str
    depth: int
    param_names: tuple[str, ...]
    params: tuple[nn.Parameter, ...]

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(p.shape) for p in self.params)

    def flat(self) -> torch.Tensor:
        """A detached copy of the layer's weights as one flat vector (all params concatenated)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])


class LayerGroups(Sequence[Layer]):
    """The ordered layers of a model, shallowest first.

    Index by position or by layer name: ``layers[0]``, ``layers["stage1"]``.

    >>> import torch.nn as nn, depthaware as da
    >>> layers = da.layer_groups(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)))
    >>> layers.names, layers.depth("2"), layers.numel("0")
    (['0', '2'], 1, 12)
    """

    def __init__(self, layers: Sequence[Layer], model: nn.Module | None = None):
        if not layers:
            raise ValueError("LayerGroups needs at least one layer; got none")
        names = [layer.name for layer in layers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"layer names must be unique; repeated: {dupes}")
        empty = [layer.name for layer in layers if not layer.params]
        if empty:
            raise ValueError(f"layers without parameters: {empty}")
        self._layers = tuple(layers)
        self._index = {layer.name: i for i, layer in enumerate(self._layers)}
        self.model = model

    # Sequence protocol ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._layers)

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return self._layers[self.index(key)]
        return self._layers[key]

    def __repr__(self) -> str:
        rows = ", ".join(f"{layer.name}({layer.numel})" for layer in self._layers)
        return f"LayerGroups([{rows}])"

    # helpers --------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self._layers]

    @property
    def depths(self) -> list[int]:
        return [layer.depth for layer in self._layers]

    def index(self, name: str) -> int:  # type: ignore[override]
        """The position of layer ``name`` (its depth order); ``ValueError`` naming the layers."""
        try:
            return self._index[name]
        except KeyError:
            raise ValueError(f"unknown layer {name!r}; layers are {self.names}") from None

    def depth(self, name: str) -> int:
        return self[name].depth

    def numel(self, name: str | None = None) -> int:
        """Parameter count of one layer, or of all layers when ``name`` is None."""
        if name is None:
            return sum(layer.numel for layer in self._layers)
        return self[name].numel

    def flat(self, name: str) -> torch.Tensor:
        """A detached copy of layer ``name``'s weights as one flat vector."""
        return self[name].flat()

    def parameters(self) -> Iterator[nn.Parameter]:
        for layer in self._layers:
            yield from layer.params

    def layer_of(self) -> dict[str, str]:
        """Parameter name -> layer name."""
        return {pn: layer.name for layer in self._layers for pn in layer.param_names}


# ---------------------------------------------------------------------------------------------
# discovery
# ---------------------------------------------------------------------------------------------
GroupSpec = Mapping[str, "str | Sequence[str]"] | Sequence[str]


def layer_groups(
    model: nn.Module, groups: GroupSpec | None = None, *, granularity: str = "coarse"
) -> LayerGroups:
    """Discover (or build from ``groups``) the ordered layers of ``model``.

    Args:
        model: any ``nn.Module``.
        groups: explicit layers, shallowest first. Either a mapping ``{layer name: pattern(s)}`` or
            a sequence of patterns (each its own layer, named by the pattern). A pattern is a
            module-name prefix (``"layer1"`` takes ``layer1.0.conv1.weight``) or a glob
            (``"blocks.[0-3].*"``) matched against full parameter names.
        granularity: ``"coarse"`` (ResNet stages, timm's coarse groups) or ``"fine"`` (one layer
            per residual block, timm's fine groups). Ignored where a model has one natural split.

    Returns:
        LayerGroups, depth ``0`` for the first layer.

    Raises:
        ValueError: the model has no parameters, a trainable parameter lands in no layer or in two,
            a pattern matches nothing, or nothing is known about this kind of model.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}; got {granularity!r}")
    named = list(model.named_parameters())
    if not named:
        raise ValueError(f"{type(model).__name__} has no parameters: nothing to group")
    if groups is not None:
        spec = _normalize_groups(groups)
    elif callable(layer_map := getattr(model, "layer_map", None)):
        spec = _normalize_groups(layer_map())
    else:
        spec = discover(model, granularity)
    return _build(model, named, spec)


def as_layer_groups(model_or_layers: nn.Module | LayerGroups) -> LayerGroups:
    """The one boundary rule of the package: every public function and class that works on layers
    takes a model or its ``LayerGroups`` first and resolves it here, once. A ``LayerGroups`` is used
    as it is (with its ``.model``, see :func:`model_of`), a model is grouped with
    :func:`layer_groups`; anything else is a ``TypeError`` that says what to pass."""
    if isinstance(model_or_layers, LayerGroups):
        return model_or_layers
    return layer_groups(_module(model_or_layers))


def model_of(model_or_layers: nn.Module | LayerGroups) -> nn.Module:
    """The model itself, or the one a ``LayerGroups`` was built from (an error if it has none)."""
    if isinstance(model_or_layers, LayerGroups):
        if model_or_layers.model is None:
            raise ValueError(
                "this LayerGroups carries no model (built with model=None): pass the model, or "
                "LayerGroups(layers, model=model)"
            )
        return model_or_layers.model
    return _module(model_or_layers)


def _module(model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"expected a model (nn.Module) or its LayerGroups, got {type(model).__name__}: pass "
            "the model itself, not model.parameters()"
        )
    return model


def layer_params(model_or_layers: nn.Module | LayerGroups, layer) -> Layer:
    """Resolve ``layer`` (a :class:`Layer`, a layer name, or a module name of the model) to a
    :class:`Layer` of the model's parameters. Layer names come from the given ``LayerGroups``,
    else from :func:`layer_groups` where the model can be grouped."""
    if isinstance(layer, Layer):
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a Layer or a name; got {type(layer).__name__}")
    model = model_of(model_or_layers)
    layers = model_or_layers if isinstance(model_or_layers, LayerGroups) else _groups_or_none(model)
    if layers is not None and layer in layers.names:
        return layers[layer]
    modules = dict(model.named_modules())
    if layer in modules and layer:
        named = [(f"{layer}.{n}", p) for n, p in modules[layer].named_parameters()]
        if named:
            return Layer(layer, 0, tuple(n for n, _ in named), tuple(p for _, p in named))
    known = layers.names if layers is not None else []
    raise ValueError(
        f"{layer!r} is neither a layer ({known}) nor a module with parameters of "
        f"{type(model).__name__}"
    )


def _groups_or_none(model: nn.Module) -> LayerGroups | None:
    try:
        return layer_groups(model)
    except ValueError:
        return None


def _normalize_groups(groups: GroupSpec) -> list[tuple[str, tuple[str, ...]]]:
    if isinstance(groups, Mapping):
        items = list(groups.items())
    elif isinstance(groups, str):
        raise ValueError("groups must be a mapping or a sequence of patterns, not one string")
    else:
        items = [(g, g) for g in groups]
    spec = []
    for name, patterns in items:
        pats = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        if not pats:
            raise ValueError(f"layer {name!r} has no patterns")
        spec.append((str(name), pats))
    return spec


def _matches(pattern: str, param_name: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(param_name, pattern)
    return param_name == pattern or param_name.startswith(pattern + ".")


def _build(model, named, spec) -> LayerGroups:
    owners: dict[str, list[str]] = {n: [] for n, _ in named}
    unused = []
    for layer_name, patterns in spec:
        for pat in patterns:
            hits = [n for n, _ in named if _matches(pat, n)]
            if not hits:
                unused.append(f"{layer_name}: {pat!r}")
            for n in hits:
                if layer_name not in owners[n]:
                    owners[n].append(layer_name)
    if unused:
        raise ValueError(f"patterns that match no parameter: {unused}")
    twice = {n: o for n, o in owners.items() if len(o) > 1}
    missing = [n for n, p in named if not owners[n] and p.requires_grad]
    if twice or missing:
        parts = []
        if missing:
            parts.append(f"parameters in no layer: {missing}")
        if twice:
            parts.append(f"parameters in more than one layer: {twice}")
        raise ValueError("; ".join(parts))
    layers = []
    for depth, (layer_name, _) in enumerate(spec):
        members = [(n, p) for n, p in named if owners[n] == [layer_name]]
        layers.append(
            Layer(layer_name, depth, tuple(n for n, _ in members), tuple(p for _, p in members))
        )
    return LayerGroups(layers, model)


def flatten_into(params, out: torch.Tensor) -> torch.Tensor:
    """``out`` holding ``params`` one after the other, each copied (and cast) straight into its
    slice: no concatenated copy between, so a reused ``out`` allocates nothing. A sharded
    (``DTensor``) parameter is gathered (``full_tensor``, a collective) one at a time."""
    from .distributed import full

    offset = 0
    for p in params:
        n = p.numel()
        out[offset : offset + n].copy_(full(p).detach().reshape(-1))
        offset += n
    return out
