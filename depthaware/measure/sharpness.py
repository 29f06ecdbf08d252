"""Per-layer sharpness: the top eigenvalue of the Hessian of the loss w.r.t. one layer
(Section 4; larger is sharper)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..layers import Layer, LayerGroups, layer_params, model_of
from ..mode import preserved
from .landscapes import Landscape, landscape

__all__ = ["layer_sharpness", "top_eigenvalue"]


def top_eigenvalue(
    model: nn.Module | LayerGroups,
    layer: Layer | str,
    loss_fn: Callable,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    iters: int = 20,
    tol: float = 0.0,
    method: str = "lanczos",
    generator: torch.Generator | None = None,
    train: bool = False,
) -> float:
    """The largest-magnitude eigenvalue of the Hessian of the loss w.r.t. one layer's parameters.

    Each step is one Hessian-vector product with :math:`H = \\nabla^2_{\\theta_l}\\mathcal{L}`, a
    double-backward through a graph built once. Larger means sharper. Two methods:

    * ``"lanczos"`` (default): the Lanczos recurrence :math:`\\beta_{k+1} q_{k+1} = H q_k -
      \\alpha_k q_k - \\beta_k q_{k-1}`, :math:`\\alpha_k = q_k^\\top H q_k`; the estimate is the
      largest-magnitude eigenvalue (Ritz value) of the tridiagonal :math:`T_k` of the
      :math:`\\alpha, \\beta`. It converges much faster than the power iteration where the top
      of the spectrum is crowded (its error falls with a Chebyshev polynomial of the gap, not
      :math:`(\\lambda_2/\\lambda_1)^{2k}`). Without reorthogonalization, three vectors of the
      layer's size are kept; a lost orthogonality repeats converged Ritz values, it does not
      move the extreme one past :math:`\\lambda_{\\max}`.
    * ``"power"``: :math:`v_{k+1} = H v_k / \\|H v_k\\|`, :math:`\\lambda_k = v_k^\\top H v_k`.

    With ``tol > 0`` the steps stop once the estimate changes by at most ``tol`` relatively.

    Why not a library HVP: torch has no ``torch.func.hvp``; its forward-over-reverse
    ``jvp(grad(f))`` and ``torch.autograd.functional.hvp`` rebuild the graph for every product.
    Measured on a CIFAR ResNet-18 (width 16, 64 images, layer ``stage2``, 10 iterations, 2 CPU
    cores): 1.3 s here, 2.2 s with ``torch.func``, 3.5 s with ``torch.autograd.functional.hvp``.

    Args:
        model: the network (``model(inputs)``) or its LayerGroups.
        layer: a :class:`~depthaware.layers.Layer`, a layer name or a module name.
        loss_fn: ``loss_fn(output, targets) -> scalar``.
        iters: Hessian-vector products at most; tol: relative change of the estimate at which
            they stop (0: all ``iters``); method: ``"lanczos"`` or ``"power"``; generator: draws
            the start vector.
        train: evaluate in train mode (the mode, weights and buffers are restored after).

    >>> import torch, torch.nn as nn
    >>> net = nn.Linear(3, 1, bias=False)
    >>> x = torch.eye(3) * torch.tensor([[1.0], [2.0], [3.0]])
    >>> loss = lambda out, y: (out ** 2).sum() / 2        # H = x^T x = diag(1, 4, 9)
    >>> round(top_eigenvalue(nn.Sequential(net), "0", loss, x, None, iters=3), 4)
    9.0
    >>> round(top_eigenvalue(nn.Sequential(net), "0", loss, x, None, iters=100, method="power"), 4)
    9.0
    """
    if iters < 1 or not tol >= 0 or method not in ("lanczos", "power"):
        raise ValueError(
            f"need iters >= 1, tol >= 0 and method 'lanczos' or 'power'; got {iters}, {tol}, "
            f"{method!r}"
        )
    layer, model = layer_params(model, layer), model_of(model)
    # double backward: attention through the math kernel (the fused ones have no second derivative)
    with preserved(model, train), sdpa_kernel(SDPBackend.MATH):
        leaves = {
            n: p.detach().clone().requires_grad_(True)
            for n, p in zip(layer.param_names, layer.params)
        }
        loss = loss_fn(functional_call(model, leaves, (inputs,)), targets)
        grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
        v = [torch.randn(g.shape, generator=generator, dtype=g.dtype).to(g.device) for g in grads]

        def hvp(u: list[torch.Tensor]) -> list[torch.Tensor]:
            hu = torch.autograd.grad(grads, list(leaves.values()), u, retain_graph=True)
            return [h.detach() for h in hu]

        steps = _lanczos(hvp, v) if method == "lanczos" else _power(hvp, v)
        eig = float("nan")
        for _, estimate in zip(range(iters), steps):
            eig, last = estimate, eig
            if abs(eig - last) <= tol * abs(eig):  # False while last is NaN
                break
    return eig


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b)))


def _power(hvp, v):
    """The power iteration's estimates, one per Hessian-vector product."""
    while True:
        norm = torch.sqrt(sum((u * u).sum() for u in v))  # a tensor, as the findings' runs had
        v = [u / norm for u in v]
        hv = hvp(v)
        yield _dot(v, hv)
        v = hv


def _lanczos(hvp, v):
    """The Lanczos estimates (the largest-magnitude Ritz value), one per Hessian-vector product;
    they stop early where the Krylov space is invariant (the estimate is then exact)."""
    norm = math.sqrt(_dot(v, v))
    q, q_prev, beta = [u / norm for u in v], None, 0.0
    alphas, betas = [], []
    while True:
        w = hvp(q)
        alpha = _dot(q, w)
        w = [a - alpha * b for a, b in zip(w, q)]
        if q_prev is not None:
            w = [a - beta * b for a, b in zip(w, q_prev)]
        alphas.append(alpha)
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            t += torch.diag(off, 1) + torch.diag(off, -1)
        ritz = torch.linalg.eigvalsh(t)
        yield float(ritz[ritz.abs().argmax()])
        beta = math.sqrt(_dot(w, w))
        if not beta > 1e-10 * max(abs(float(r)) for r in ritz):
            return  # an invariant subspace: the Ritz values are eigenvalues
        betas.append(beta)
        q_prev, q = q, [a / beta for a in w]


def layer_sharpness(
    model: nn.Module | LayerGroups,
    layer: Layer | str,
    loss_fn: Callable,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    seed: int = 0,
    steps: int = 21,
    radius: float = 1.0,
    **eigen: Any,
) -> tuple[Landscape, float]:
    """One layer's two sharpness measures at the current weights, both drawn from ``seed``: its
    :func:`~depthaware.measure.landscape` (``steps × steps`` over
    :math:`[-r, r]^2`, whose :meth:`~depthaware.measure.Landscape.rise` is the mean
    loss rise) and its Hessian's :func:`top_eigenvalue` (``eigen``: its ``iters``, ``tol``,
    ``method``). One generator seeded once draws the landscape's two directions, then the
    eigenvalue's start vector, so a layer's numbers do not depend on the layers measured before.

    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(3, 1, bias=False))
    >>> x = torch.eye(3) * torch.tensor([[1.0], [2.0], [3.0]])
    >>> loss = lambda out, y: (out ** 2).sum() / 2        # H = x^T x = diag(1, 4, 9)
    >>> ls, eig = layer_sharpness(net, "0", loss, x, None, steps=3, iters=3)
    >>> round(eig, 4), tuple(ls.loss.shape)
    (9.0, (3, 3))
    """
    g = torch.Generator().manual_seed(seed)
    ls = landscape(model, layer, loss_fn, inputs, targets, steps=steps, radius=radius, generator=g)
    return ls, top_eigenvalue(model, layer, loss_fn, inputs, targets, generator=g, **eigen)
