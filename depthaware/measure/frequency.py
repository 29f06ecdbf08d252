r"""What each residual block contributes to the output, and at which frequency (Section 5).

For a residual network with a linear head, states :math:`z_0 = \mathrm{embed}(x)`,
:math:`z_k = \mathrm{block}_k(z_{k-1})` and :math:`y = W z_K + b`, the output splits exactly into

.. math::

    y = \underbrace{W z_0 + b}_{\text{input layer}}
        + \sum_{k=1}^{K} \underbrace{W (z_k - z_{k-1})}_{\text{Res-Block } k},

whatever the block (identity skip :math:`z + F(z)`, where :math:`z_k - z_{k-1} = F(z_{k-1})` is
Section 5's :math:`T_5(T_k(z_{k-1}))`, or post-activation :math:`\sigma(z + F(z))`): the sum
telescopes. :func:`block_contributions` gives the parts, :func:`amplitudes` the least-squares
amplitude of a sampled function at given angular frequencies (for the sine task, those of its
target: 1, 3, 10, 30), :func:`spectrum` both with each part's range, and :func:`block_spectrum`
the spectrum of every part over a 1-D domain.

The model needs ``embed(x)``, ``blocks`` and a linear ``fc_out``, as
:class:`~depthaware.models.ResidualFCNN` has.

For any network, :func:`response_frequency` measures the paper's Figure 7 (after Xu et al. 2019):
how strongly each layer's output responds to a small perturbation of its input. With
:math:`x \sim \mathcal{N}(0, I)` shaped like the layer's real input and
:math:`\Delta x \sim \epsilon\,\mathcal{N}(0, I)`,

.. math::

    R_l = \mathbb{E}\,\frac{\|f_l(x + \Delta x) - f_l(x)\|}{\|\Delta x\|},

larger for a layer that represents higher frequencies.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import NoModuleError
from ..layers import Layer, LayerGroups, as_layer_groups, model_of
from ..mode import in_mode

log = logging.getLogger(__name__)

__all__ = [
    "NoModuleError",
    "amplitudes",
    "block_contributions",
    "block_spectrum",
    "layer_module",
    "response_frequency",
    "spectrum",
]


@torch.no_grad()
def block_contributions(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"Input layer": W z_0 + b, "Res-Block k": W (z_k - z_{k-1})}``; they sum to
    ``model(x)`` (module docstring), in eval mode (the mode is restored)."""
    for attr in ("embed", "blocks", "fc_out"):
        if not hasattr(model, attr):
            raise ValueError(
                f"{type(model).__name__} has no `{attr}`: block contributions need "
                "embed(x), blocks, and a linear fc_out"
            )
    embed, blocks, fc_out = (getattr(model, a) for a in ("embed", "blocks", "fc_out"))
    if not isinstance(fc_out, torch.nn.Linear):
        raise ValueError(f"fc_out must be nn.Linear; got {type(fc_out).__name__}")
    with in_mode(model, train=False):
        z = embed(x)
        out = {"Input layer": fc_out(z)}
        for k, block in enumerate(blocks, start=1):
            new = block(z)
            out[f"Res-Block {k}"] = (new - z) @ fc_out.weight.T
            z = new
    return out


def amplitudes(values: torch.Tensor, x: torch.Tensor, frequencies: Sequence[float]) -> list[float]:
    r"""Least-squares amplitude :math:`\sqrt{a_k^2 + b_k^2}` of each angular frequency
    :math:`\omega_k` in :math:`v(x) \approx c + \sum_k a_k \sin \omega_k x + b_k \cos \omega_k x`.

    Args:
        values, x: shape ``(N,)``, samples of one function and where they were taken.
        frequencies: the :math:`\omega_k` (radians per unit).

    >>> x = torch.linspace(-2, 2, 801)
    >>> [round(a, 6) for a in amplitudes(0.5 * torch.sin(3 * x) + 1, x, [1, 3])]
    [0.0, 0.5]
    """
    if values.ndim != 1 or values.shape != x.shape:
        raise ValueError(f"values and x must be 1-D of one shape; got {values.shape}, {x.shape}")
    x, v = x.double(), values.double()
    columns = [torch.ones_like(x)]
    for w in frequencies:
        columns += [torch.sin(w * x), torch.cos(w * x)]
    coef = torch.linalg.lstsq(torch.stack(columns, 1), v.unsqueeze(1)).solution[1:, 0]
    return [float(torch.hypot(a, b)) for a, b in coef.view(-1, 2)]


def block_spectrum(
    model: nn.Module,
    frequencies: Sequence[float],
    domain: tuple[float, float] = (-2.0, 2.0),
    points: int = 2001,
) -> dict[str, dict]:
    """:func:`spectrum` of each contribution (:func:`block_contributions`) over ``points``
    inputs evenly spaced over a 1-D ``domain``, in float64."""
    x = torch.linspace(*domain, points)
    param = next(model.parameters())
    parts = block_contributions(model, x.unsqueeze(1).to(param.device, param.dtype))
    return spectrum({k: v[:, 0].double().cpu() for k, v in parts.items()}, x, frequencies)


def spectrum(
    parts: Mapping[str, torch.Tensor], x: torch.Tensor, frequencies: Sequence[float]
) -> dict[str, dict]:
    """Per function sampled at ``x`` (``parts``, e.g. the blocks' contributions or sums of
    them): its ``range`` (max - min) and its ``amplitudes`` at ``frequencies``
    (:func:`amplitudes`); the key ``"output"`` holds the same for the sum of the parts.

    >>> x = torch.linspace(-2, 2, 401, dtype=torch.float64)
    >>> s = spectrum({"a": torch.sin(x), "b": torch.sin(3 * x) / 3}, x, [1, 3])  # sin peaks at pi/2
    >>> [round(v, 4) for v in s["output"]["amplitudes"]], round(s["a"]["range"], 4)
    ([1.0, 0.3333], 2.0)
    """
    zero = torch.zeros_like(next(iter(parts.values())))
    parts = {**parts, "output": sum(parts.values(), zero)}
    return {
        name: {"range": float(v.max() - v.min()), "amplitudes": amplitudes(v, x, frequencies)}
        for name, v in parts.items()
    }


def layer_module(model: nn.Module, layer: Layer) -> nn.Module:
    """The module that computes ``layer``: the one module holding exactly its parameters, or else
    the largest modules inside the layer, in registration order, applied one after the other (a
    ResNet stem's conv and BatchNorm, a VGG conv and its BatchNorm, a ViT's last block and final
    norm), as an ``nn.Sequential``.

    Raises:
        NoModuleError: a parameter of the layer sits directly on a module that holds others too
            (a ViT's ``cls_token``), or the layer's parameters are not one run of the model's
            (then no chain of its modules computes it).
    """
    wanted = set(layer.param_names)
    position = {n: k for k, (n, _) in enumerate(model.named_parameters())}
    where = sorted(position[n] for n in wanted)
    if where[-1] - where[0] + 1 != len(where):
        raise NoModuleError(
            f"layer {layer.name!r}: its parameters are not one run of the model's "
            f"({sorted(wanted)[:3]}...), so no chain of modules computes it; pass modules="
        )
    picked: list[str] = []
    for name, module in model.named_modules():  # parents before their children
        if any(name.startswith(p + ".") or p == "" for p in picked):
            continue
        held = {f"{name}.{n}".lstrip(".") for n, _ in module.named_parameters()}
        if held and held <= wanted:
            picked.append(name)
    modules = dict(model.named_modules())
    covered = {f"{p}.{n}".lstrip(".") for p in picked for n, _ in modules[p].named_parameters()}
    if covered != wanted:
        bare = ", ".join(sorted(wanted - covered))
        raise NoModuleError(
            f"layer {layer.name!r} holds parameters outside any submodule ({bare}): no module "
            "computes it alone; pass modules= explicitly"
        )
    if len(picked) == 1:
        return modules[picked[0]]
    return nn.Sequential(*(modules[p] for p in picked))


@torch.no_grad()
def response_frequency(
    model: nn.Module | LayerGroups,
    sample: torch.Tensor,
    *,
    modules: dict[str, nn.Module] | None = None,
    eps: float = 1e-2,
    draws: int = 4,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """:math:`R_l` (see the module docstring) for every layer, in eval mode (mode restored).

    Args:
        model: the network or its LayerGroups; ``model(sample)`` is run once to learn each
            layer's input shape. Each layer's module is found by ``layer_module``; a layer
            no module computes alone gets NaN (and a warning).
        sample: a real input batch.
        modules: ``{name: module}`` to measure instead of the layers (any callables inside the
            model).
        eps: perturbation scale; draws: Monte-Carlo draws of ``x``.

    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 1))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(2 * torch.eye(3))
    >>> round(response_frequency(net, torch.randn(5, 3))["0"], 4)   # a linear map x -> 2x
    2.0
    """
    if not eps > 0 or draws < 1:
        raise ValueError(f"need eps > 0 and draws >= 1; got eps={eps}, draws={draws}")
    given, model = model, model_of(model)
    skipped = []
    if modules is None:
        layers = as_layer_groups(given)
        modules = {}
        for layer in layers:
            try:
                modules[layer.name] = layer_module(model, layer)
            except NoModuleError as err:
                log.warning("response frequency of %s: NaN (%s)", layer.name, err)
                skipped.append(layer.name)
    shapes: dict[str, torch.Size] = {}

    def seen(name):
        def hook(module, args) -> None:
            shapes.setdefault(name, args[0].shape)

        return hook

    hooks = [
        (m[0] if isinstance(m, nn.Sequential) and len(m) else m).register_forward_pre_hook(
            seen(name)
        )
        for name, m in modules.items()
    ]
    with in_mode(model, train=False):
        try:
            model(sample)
        finally:
            for h in hooks:
                h.remove()
        out = {}
        for name, module in modules.items():
            if name not in shapes:
                raise ValueError(f"layer {name!r} was not called by model(sample)")
            ratios = []
            for _ in range(draws):
                x = torch.randn(shapes[name], generator=generator).to(sample.device, sample.dtype)
                dx = eps * torch.randn(shapes[name], generator=generator).to(x.device, x.dtype)
                dy = module(x + dx) - module(x)
                ratios.append(float(dy.norm() / dx.norm()))
            out[name] = sum(ratios) / draws
    out.update(dict.fromkeys(skipped, math.nan))
    return out
