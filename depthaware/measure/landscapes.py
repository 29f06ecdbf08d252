"""Per-layer loss landscapes (Section 4, Figures 4-5; Li et al. 2018).

The landscape of one layer with weights :math:`\\theta^*` (all other layers fixed) is

.. math::

    L(\\beta_1, \\beta_2) = \\mathcal{L}(\\theta^* + \\beta_1 d_1 + \\beta_2 d_2),
    \\qquad (\\beta_1, \\beta_2) \\in [-r, r]^2,

with Gaussian directions :math:`d_i` normalized to the weights (``direction``): a
fully-connected weight (2-D) as a whole, :math:`d \\leftarrow d\\,\\|\\theta\\| / \\|d\\|`;
a convolution weight filter by filter (Li et al. 2018), :math:`d_k \\leftarrow
d_k\\,\\|\\theta_k\\| / \\|d_k\\|` for every output filter :math:`k`. Biases and normalization
parameters (1-D) get a zero direction, so they stay at :math:`\\theta^*`, as in Li et al.

Evaluation does no work that does not depend on the layer. The model is traced with
``torch.fx``; every node that does not depend on the layer's parameters (everything before the
layer, and skip connections around it) is computed once and cached; a *suffix* graph computes the
rest from the cache. Grid points are evaluated in chunks with ``torch.vmap`` over
``torch.func.functional_call`` of the suffix (only the layer's parameters are batched, so
downstream layers fold the grid into their batch). Where that is impossible the evaluation falls
back, and :attr:`Landscape.method` says which path ran:

* ``"batched"``: prefix cache + vmap over chunks of grid points;
* ``"prefix"``: prefix cache, one grid point at a time (e.g. BatchNorm in train mode, a loss
  that cannot be vmapped);
* ``"loop"``: copy-perturb-forward on the whole model (a model ``torch.fx`` cannot trace).

The model is evaluated in eval mode unless ``train=True``; weights, buffers, ``requires_grad``
and the train/eval mode are restored afterwards. A grid point whose loss is NaN or inf is kept
as such and listed in :attr:`Landscape.nonfinite`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..layers import Layer, LayerGroups, layer_params, model_of
from ..mode import preserved
from ._fx import EVALUATORS, Grid

__all__ = ["Landscape", "direction", "landscape"]

logger = logging.getLogger(__name__)
METHODS = ("auto", "batched", "prefix", "loop")


@dataclass
class Landscape:
    """A layer's loss over a 2-D grid.

    Attributes:
        layer: the layer's name.
        betas: grid coordinates, shape ``(n,)``, the same on both axes.
        loss: float64, shape ``(n, n)``; ``loss[i, j]`` at ``β1 = betas[i]``, ``β2 = betas[j]``.
        center: the loss at :math:`\\theta^*`.
        method: the evaluation path that ran (``"batched"``, ``"prefix"`` or ``"loop"``).
    """

    layer: str
    betas: torch.Tensor
    loss: torch.Tensor
    center: float
    method: str

    @property
    def nonfinite(self) -> list[tuple[float, float]]:
        """``(β1, β2)`` of every grid point whose loss is NaN or inf."""
        i, j = torch.nonzero(~torch.isfinite(self.loss), as_tuple=True)
        return [(float(self.betas[a]), float(self.betas[b])) for a, b in zip(i, j)]

    def rise(self, radius: float) -> float:
        """Mean loss rise :math:`L(\\beta) - L(0)` over finite grid points with
        :math:`\\|\\beta\\|_2 \\le` ``radius``: one number for "flatter" (smaller is flatter)."""
        b1, b2 = torch.meshgrid(self.betas, self.betas, indexing="ij")
        keep = (b1**2 + b2**2 <= radius**2 + 1e-12) & torch.isfinite(self.loss)
        if not keep.any():
            raise ValueError(f"no finite grid point within radius {radius}")
        return float((self.loss[keep] - self.center).mean())

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "betas": self.betas.tolist(),
            "loss": [
                [v if math.isfinite(v) else str(v) for v in row] for row in self.loss.tolist()
            ],
            "center": self.center,
            "method": self.method,
            "nonfinite": self.nonfinite,
        }


def direction(
    params: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """A random direction normalized to ``params`` (see the module docstring).

    >>> import torch
    >>> w = torch.randn(4, 3, 3, 3)
    >>> d = direction({"w": w}, torch.Generator().manual_seed(0))["w"]
    >>> torch.allclose(d.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1))
    True
    """
    out = {}
    for name, w in params.items():
        w = w.detach()
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        if w.ndim <= 1:
            d.zero_()
        elif w.ndim == 2:
            d.mul_(w.norm() / d.norm())
        else:
            dims = tuple(range(1, w.ndim))
            scale = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
            d.mul_(scale / torch.linalg.vector_norm(d, dim=dims, keepdim=True))
        out[name] = d
    return out


def landscape(
    model: nn.Module | LayerGroups,
    layer: Layer | str,
    loss_fn: Callable,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int = 21,
    radius: float = 1.0,
    directions: tuple[Mapping, Mapping] | None = None,
    generator: torch.Generator | None = None,
    method: str = "auto",
    chunk_size: int | None = None,
    train: bool = False,
) -> Landscape:
    """The 2-D loss landscape of one layer (see the module docstring for the math and paths).

    Args:
        model: the network (``model(inputs)``) or its LayerGroups.
        layer: a :class:`~depthaware.Layer`, a layer name (of the LayerGroups or discovered)
            or a module name (``"layer4.1.conv2"``).
        loss_fn: ``loss_fn(output, targets) -> scalar`` (a mean over the batch).
        inputs, targets: the data sample.
        steps: grid points per axis (``steps × steps`` in all).
        radius: the grid spans ``[-radius, radius]²``.
        directions: ``(d1, d2)``, each ``{param name: tensor}``; default two ``direction``
            draws from ``generator``.
        method: ``"auto"`` (batched, else prefix, else loop), or one path forced.
        chunk_size: grid points per vmap call (memory grows with it); default: about 16 MB
            of the layer's output per call for a single Linear/Conv layer, else 4.
        train: evaluate in train mode (BatchNorm batch statistics; not batchable).

    Returns:
        a :class:`Landscape`.

    >>> import torch, torch.nn as nn, torch.nn.functional as F
    >>> net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    >>> x, y = torch.randn(16, 2), torch.randn(16, 1)
    >>> g = torch.Generator().manual_seed(0)
    >>> ls = landscape(net, "0", F.mse_loss, x, y, steps=5, generator=g)
    >>> ls.loss.shape, ls.method, ls.loss[2, 2].item() == ls.center
    (torch.Size([5, 5]), 'batched', True)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if steps < 2 or (chunk_size is not None and chunk_size < 1) or not radius > 0:
        raise ValueError(
            f"need steps >= 2, chunk_size >= 1, radius > 0; got {steps}, {chunk_size}, {radius}"
        )
    layer, model = layer_params(model, layer), model_of(model)
    theta = {n: p.detach().clone() for n, p in zip(layer.param_names, layer.params)}
    if directions is None:
        directions = (direction(theta, generator), direction(theta, generator))
    for d in directions:
        for n, w in theta.items():
            if n not in d or d[n].shape != w.shape:
                got = tuple(d[n].shape) if n in d else "missing"
                raise ValueError(f"direction for {n}: need shape {tuple(w.shape)}, got {got}")
    betas = torch.linspace(-radius, radius, steps, dtype=torch.float64)
    b1, b2 = (b.reshape(-1) for b in torch.meshgrid(betas, betas, indexing="ij"))
    grid = Grid(theta, directions[0], directions[1], b1, b2)

    with preserved(model, train, layer.param_names), torch.no_grad(), warnings.catch_warnings():
        # vmap's notice about ops without a batching rule (adaptive pooling): results are exact
        warnings.filterwarnings("ignore", message="There is a performance drop")
        paths = [method] if method != "auto" else ["batched", "prefix", "loop"]
        for i, path in enumerate(paths):
            try:
                losses, center = EVALUATORS[path](
                    model, layer, loss_fn, inputs, targets, grid, chunk_size
                )
                break
            except Exception as err:  # noqa: BLE001 - fall back, and say why
                if i == len(paths) - 1:
                    raise
                logger.info(
                    "landscape of %s: %s path failed (%s); falling back", layer.name, path, err
                )
    loss = torch.stack(losses).double().cpu().reshape(steps, steps)
    return Landscape(layer.name, betas, loss, center, path)
