"""Per-layer learning rates and weight decay as plain ``torch.optim`` parameter groups.

``depth_param_groups`` returns one group per layer (two where a layer has parameters exempt from
weight decay), each with its real ``lr`` already multiplied by the layer's scale

.. math::

    \\mathrm{lr}_l = \\mathrm{lr} \\cdot s(d_l),

where :math:`d_l` is the layer's depth. Because the factor sits in ``lr`` itself (not in a side key
that only one scheduler reads), every ``torch.optim`` optimizer, every ``torch.optim.lr_scheduler``
and timm's schedulers keep the per-layer ratio: they all scale each group's own initial LR.

Scales (``L`` layers, depth ``d`` in ``0..L-1``, ``end`` = scale of the deepest layer):

* ``"linear"``:    :math:`s(d) = 1 + (\\mathrm{end} - 1)\\, d / (L - 1)`
* ``"geometric"``: :math:`s(d) = \\mathrm{end}^{\\, d / (L - 1)}`
* a callable ``f(depth, num_layers) -> float``, or a sequence with one scale per layer.

The scale is also kept in the group as ``depth_scale``, for reference only. (Not ``lr_scale``:
timm's schedulers multiply a group's ``lr_scale`` into its LR, which would apply it twice.) The
parameters' names are in ``names``, not ``param_names``: torch reserves that key for optimizers
built from named parameters and then refuses ``add_param_group`` of a group without it.

A tensor ``lr`` (a schedule that updates it in place) stays the caller's tensor in every group
whose scale is 1; a group with another scale gets its own tensor ``lr * scale``, which an in-place
update of the caller's tensor does not reach (schedulers that set each group's ``lr`` reach all).

The paper's finding (Section 3.2, A.3): deeper layers learn poorly under a large initial LR, so
``end < 1`` gives them smaller steps.

>>> import torch, depthaware as da
>>> net = da.models.FCNN((1, 8, 8, 1))
>>> groups = da.optim.depth_param_groups(net, lr=0.1, lr_scale="geometric", end=0.25)
>>> [(g["layer"], round(g["lr"], 4), g["weight_decay"]) for g in groups][:3]
[('Layer 1', 0.1, 0.0), ('Layer 1', 0.1, 0.0), ('Hidden layer 1', 0.05, 0.0)]
>>> opt = torch.optim.SGD(groups, momentum=0.9)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from timm.optim import param_groups_weight_decay
from torch import nn
from torch.optim.optimizer import ParamsT

from ..layers import LayerGroups, as_layer_groups

__all__ = ["FromModel", "by_model", "depth_param_groups", "depth_scales", "split_by_layer"]

Scale = str | Callable[[int, int], float] | Sequence[float] | None


def depth_scales(num_layers: int, lr_scale: Scale = None, end: float = 0.1) -> list[float]:
    """The LR multiplier of each depth ``0..num_layers-1`` (see the module docstring)."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be positive; got {num_layers}")
    span = max(num_layers - 1, 1)
    if lr_scale is None:
        scales = [1.0] * num_layers
    elif lr_scale == "linear":
        scales = [1 + (end - 1) * d / span for d in range(num_layers)]
    elif lr_scale == "geometric":
        if end <= 0:
            raise ValueError(f"a geometric scale needs end > 0; got {end}")
        scales = [end ** (d / span) for d in range(num_layers)]
    elif isinstance(lr_scale, str):
        raise ValueError(
            f"lr_scale must be 'linear', 'geometric', a callable or a sequence; got {lr_scale!r}"
        )
    elif callable(lr_scale):
        scales = [float(lr_scale(d, num_layers)) for d in range(num_layers)]
    else:
        scales = [float(s) for s in lr_scale]
        if len(scales) != num_layers:
            raise ValueError(f"lr_scale has {len(scales)} entries for {num_layers} layers")
    bad = [(d, s) for d, s in enumerate(scales) if not (math.isfinite(s) and s >= 0)]
    if bad:
        raise ValueError(f"LR scales must be finite and >= 0; (depth, scale) {bad}")
    return scales


def _scaled(lr, scale: float):
    """``lr * scale``, and the caller's own ``lr`` (a tensor stays the same tensor) at scale 1."""
    return lr if scale == 1 else lr * scale


def _timm_no_decay(model: nn.Module | None) -> Callable[[str, nn.Parameter], bool]:
    """timm's weight-decay rule (``param_groups_weight_decay``): 1-d parameters, ``.bias`` names
    and the names or glob patterns of the model's ``no_weight_decay()`` are exempt."""
    if model is None:
        return lambda name, p: p.ndim <= 1 or name.endswith(".bias")
    fn = getattr(model, "no_weight_decay", None)
    patterns = set(fn()) if callable(fn) else ()
    groups = param_groups_weight_decay(model, 1.0, no_weight_decay_list=patterns)
    exempt = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    return lambda name, p: id(p) in exempt


def depth_param_groups(
    layers_or_model: LayerGroups | nn.Module,
    lr: float,
    lr_scale: Scale = None,
    *,
    end: float = 0.1,
    weight_decay: float = 0.0,
    no_decay: Callable[[str, nn.Parameter], bool] | None = None,
) -> list[dict]:
    """One parameter group per layer, its ``lr`` scaled by depth.

    Args:
        layers_or_model: a LayerGroups, or a model (grouped with :func:`depthaware.layer_groups`).
        lr: the base learning rate (the shallowest layer's, for a decreasing scale).
        lr_scale: ``None`` (all 1), ``"linear"``, ``"geometric"``, ``f(depth, num_layers)``, or
            one scale per layer.
        end: the deepest layer's scale for ``"linear"``/``"geometric"``.
        weight_decay: for parameters that decay.
        no_decay: ``f(name, param) -> bool`` for parameters exempt from weight decay; default:
            timm's rule (its ``param_groups_weight_decay``): biases and normalization weights
            (1-d, or named ``.bias``) and the model's ``no_weight_decay()`` names or patterns.

    Returns:
        ``list[dict]``: ``params``, ``lr``, ``weight_decay``, ``layer``, ``depth``, ``depth_scale``,
        ``names``. Frozen parameters (``requires_grad=False``) are left out.
    """
    layers = as_layer_groups(layers_or_model)
    if not (math.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr must be finite and >= 0; got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
    scales = depth_scales(len(layers), lr_scale, end)
    no_decay = no_decay or _timm_no_decay(layers.model)
    groups = []
    for layer, scale in zip(layers, scales):
        split: dict[bool, tuple[list[str], list[nn.Parameter]]] = {False: ([], []), True: ([], [])}
        for name, p in zip(layer.param_names, layer.params):
            if p.requires_grad:
                names, params = split[bool(no_decay(name, p))]
                names.append(name)
                params.append(p)
        for exempt, (names, params) in split.items():
            if params:
                groups.append(
                    {
                        "params": params,
                        "lr": _scaled(lr, scale),
                        "weight_decay": 0.0 if exempt else weight_decay,
                        "layer": layer.name,
                        "depth": layer.depth,
                        "depth_scale": scale,
                        "names": names,
                    }
                )
    if not groups:
        raise ValueError("no trainable parameters: every parameter has requires_grad=False")
    return groups


def split_by_layer(
    params: ParamsT,
    layers_or_model: LayerGroups | nn.Module,
    lr: float,
    lr_scale: Scale = None,
    *,
    end: float = 0.1,
) -> list[dict]:
    """Split existing parameter groups (e.g. timm's weight-decay groups) by layer.

    Each input group becomes one group per layer it touches, keeping the group's options (its
    ``weight_decay`` ...), with ``lr`` = (the group's ``lr``, else ``lr``) × the layer's depth
    scale, and ``layer``, ``depth``, ``depth_scale``, ``names`` added. ``params`` is what a torch
    optimizer takes: tensors, or groups whose ``params`` is a tensor or an iterable of them. A
    parameter that is in no layer of the model is a ``ValueError``.

    >>> import torch, depthaware as da
    >>> net = da.models.FCNN((1, 8, 1))
    >>> groups = [{"params": [net.fcs[0].weight, net.fcs[1].weight], "weight_decay": 1e-4}]
    >>> split = split_by_layer(groups, net, 0.1, [1, 0.5])
    >>> [(g["layer"], g["lr"], g["weight_decay"]) for g in split]
    [('Layer 1', 0.1, 0.0001), ('Output layer', 0.05, 0.0001)]
    """
    layers = as_layer_groups(layers_or_model)
    groups: list[Any] = [params] if isinstance(params, torch.Tensor) else list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    scales = depth_scales(len(layers), lr_scale, end)
    where = {
        id(p): (k, name)
        for k, layer in enumerate(layers)
        for name, p in zip(layer.param_names, layer.params)
    }
    out = []
    for group in groups:
        by_layer: dict[int, list] = {}
        members = group["params"]
        for p in [members] if isinstance(members, torch.Tensor) else members:
            if id(p) not in where:
                raise ValueError(
                    f"a parameter of shape {tuple(p.shape)} is in no layer of the model"
                )
            by_layer.setdefault(where[id(p)][0], []).append(p)
        options = {k: v for k, v in group.items() if k != "params"}
        for k in sorted(by_layer):
            layer, ps = layers[k], by_layer[k]
            out.append(
                {
                    **options,
                    "params": ps,
                    "lr": _scaled(options.get("lr", lr), scales[k]),
                    "layer": layer.name,
                    "depth": layer.depth,
                    "depth_scale": scales[k],
                    "names": [where[id(p)][1] for p in ps],
                }
            )
    return out


def by_model(
    params: ParamsT, model: nn.Module | LayerGroups | None, lr: float, lr_scale: Scale, end: float
) -> ParamsT:
    """``params`` split by ``model``'s layers (:func:`split_by_layer`), or as they are without a
    model; an ``lr_scale`` without a model is an error."""
    if model is not None:
        return split_by_layer(params, model, lr, lr_scale, end=end)
    if lr_scale is not None:
        raise ValueError("lr_scale needs model= (the layers come from the model)")
    return params


class FromModel:
    """The mixin of the timm factory's LARS and FeedbackSGD: ``model=`` (with ``lr_scale``,
    ``end``) splits the given groups by the model's layers (:func:`by_model`) before the
    optimizer's own constructor sees them, as :class:`~depthaware.optim.DepthSGD` does."""

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.1,
        *,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        model: nn.Module | LayerGroups | None = None,
        lr_scale: Scale = None,
        end: float = 0.1,
        **kwargs: Any,
    ):
        params = by_model(params, model, lr, lr_scale, end)
        optimizer_init: Callable[..., None] = super().__init__  # the optimizer it is mixed into
        optimizer_init(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kwargs)
