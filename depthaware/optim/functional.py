"""The math behind :class:`~depthaware.optim.LARS` and :class:`~depthaware.optim.FeedbackSGD`.

As in ``torch.optim``, the optimizer classes keep the bookkeeping (groups, state, the finiteness
check) and the math lives in plain functions over a group's tensors (the update kernels in
:mod:`depthaware.optim.kernels`):

* :func:`trust_ratios`: LARS's ratio of every tensor of a group;
* :func:`gradient_cosines` and :func:`feedback_multiplier`: FeedbackSGD's signal and multiplier
  (:func:`dot` the inner products they start from);
* :func:`norms`: the L2 norm of every tensor, in as few and as large reductions as the path allows;
* :func:`check_finite`: a ``FloatingPointError`` naming the parameter whose norm is NaN or inf;
  :func:`check_lr`: one naming the group whose learning rate is.

Complex parameters enter these kernels as their real views (``torch.view_as_real``): the update is
elementwise and the norm of the real view is the complex norm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "check_finite",
    "check_lr",
    "dot",
    "feedback_multiplier",
    "gradient_cosines",
    "norms",
    "real_view",
    "trust_ratios",
]

BLAS_MIN = 1 << 16  # elements from which one BLAS dot per tensor beats a multi-tensor launch


def real_view(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, or its real view ``(..., 2)`` if complex: the form the kernels update."""
    return torch.view_as_real(t) if t.is_complex() else t


def trust_ratios(
    w_norm: torch.Tensor,
    g_norm: torch.Tensor,
    adapt: torch.Tensor,
    *,
    eta: float,
    weight_decay: float,
    lr: float | torch.Tensor,
    clip: bool,
    by_group: bool,
) -> torch.Tensor:
    """The trust ratio of every tensor of one group, shape ``(P,)``.

    .. math::

        q = \\eta\\, \\frac{\\|w\\|}{\\|g\\| + \\lambda \\|w\\|}, \\qquad
        q \\leftarrow \\min(q / \\gamma, 1) \\text{ with } \\texttt{clip} \\text{ (LARC)}.

    ``q = 1`` where ``adapt`` is False or ``g = 0``; a zero weight with a non-zero gradient takes
    the mean ratio of the group's adapted tensors whose norms are both non-zero (1 if none).
    ``by_group`` computes one ratio from the norms of all adapted tensors of the group.
    """
    if by_group:
        w_norm = torch.where(adapt, w_norm, 0).square().sum().sqrt().expand_as(w_norm)
        g_norm = torch.where(adapt, g_norm, 0).square().sum().sqrt().expand_as(g_norm)
    denom = g_norm + weight_decay * w_norm
    valid = (w_norm > 0) & (g_norm > 0)
    q = torch.where(valid, eta * w_norm / torch.where(valid, denom, 1), 0)
    counted = valid & adapt
    mean = torch.where(counted, q, 0).sum(dtype=torch.float32) / counted.sum().clamp_min(1)
    fallback = torch.where(counted.any(), mean, 1).to(q.dtype)
    q = torch.where(valid, q, torch.where((w_norm == 0) & (g_norm > 0), fallback, 1))
    if clip:
        q = torch.clamp(q / lr, max=1.0)
    return torch.where(adapt, q, 1)


def feedback_multiplier(ema, min_scale: float, max_scale: float):
    """FeedbackSGD's LR multiplier from the smoothed gradient cosine :math:`e` (a float or a
    tensor): :math:`m = m_{\\min} + (m_{\\max} - m_{\\min})(1 + e) / 2`."""
    return min_scale + (max_scale - min_scale) * (1 + ema) / 2


def gradient_cosines(
    dot: torch.Tensor, g_norm: torch.Tensor, b_norm: torch.Tensor, *, by_group: bool
) -> torch.Tensor:
    """FeedbackSGD's signal, :math:`\\cos(g, g_{\\text{prev}})` of every tensor of a group from
    the whole tensors' dot products and norms, shape ``(P,)``; with ``by_group`` one cosine of
    the group's concatenated gradients. NaN where either norm is zero."""
    if by_group:
        dot = dot.sum().expand_as(dot)
        g_norm = g_norm.square().sum().sqrt().expand_as(dot)
        b_norm = b_norm.square().sum().sqrt().expand_as(dot)
    denom = g_norm * b_norm
    return torch.where(denom > 0, dot / torch.where(denom > 0, denom, 1), float("nan")).clamp(-1, 1)


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:math:`\\langle a, b\\rangle` over all elements, in at least float32 (a half-precision
    dot could overflow)."""
    if a.dtype not in (torch.float32, torch.float64):
        a, b = a.float(), b.float()
    return torch.dot(a.reshape(-1), b.reshape(-1))


def norms(
    tensors: Sequence[torch.Tensor], *, foreach: bool, skip: Sequence[bool] | None = None
) -> torch.Tensor:
    """L2 norm of every tensor, stacked into shape ``(P,)`` (float32, or float64 for float64).

    ``foreach``: one ``torch._foreach_norm`` launch per dtype class, accumulated in float32 (in
    float64 for float64 tensors): a float16 norm would overflow above 65504. Otherwise
    ``sqrt(dot(t, t))`` (BLAS, about twice as fast as ``vector_norm`` on a CPU) for float64
    tensors and float32 tensors of at least ``BLAS_MIN`` elements, and one
    ``torch._foreach_norm`` in float32 for the rest (a dot call per bias costs more than the
    bias; a half-precision dot could overflow). ``skip`` marks
    tensors whose norm is not needed: the per-tensor path does not read them and gives 0.
    """
    if foreach:
        wide = [i for i, t in enumerate(tensors) if t.dtype == torch.float64]
        narrow = [i for i, t in enumerate(tensors) if t.dtype != torch.float64]
        out: list[torch.Tensor] = [None] * len(tensors)  # type: ignore[list-item]
        for index, dtype in ((wide, None), (narrow, torch.float32)):
            if index:
                found = torch._foreach_norm([tensors[i] for i in index], 2, dtype=dtype)
                for i, n in zip(index, found):
                    out[i] = n
        return torch.stack(out)
    zero = tensors[0].new_zeros((), dtype=torch.float32)
    out = [zero] * len(tensors)  # squared norms, then norms
    squared = [False] * len(tensors)
    rest = []
    for i, t in enumerate(tensors):
        if skip is not None and skip[i]:
            continue
        if t.dtype == torch.float64 or (t.dtype == torch.float32 and t.numel() >= BLAS_MIN):
            flat = t.reshape(-1)
            out[i], squared[i] = torch.dot(flat, flat), True
        else:
            rest.append(i)
    if rest:
        small = torch._foreach_norm([tensors[i] for i in rest], 2, dtype=torch.float32)
        for i, n in zip(rest, small):
            out[i] = n
    result = torch.stack(out)
    if any(squared):
        result = torch.where(torch.tensor(squared, device=result.device), result.sqrt(), result)
    return result


def check_finite(
    finite: torch.Tensor, groups_params: list[tuple[dict, list[torch.Tensor]]], what: str
) -> None:
    """Raise ``FloatingPointError`` naming the first parameter whose entry of ``finite`` is False.

    ``finite`` (bool) holds one entry per parameter of ``groups_params`` (in order), e.g.
    ``torch.isfinite`` of every gradient's norm: one host synchronization for the whole step.
    ``what`` names the quantity in the message (``"gradient"``, ``"trust ratio"``).
    """
    if bool(finite.all()):
        return
    offset = 0
    for group, params in groups_params:
        bad = (~finite[offset : offset + len(params)]).nonzero()
        if len(bad):
            p = params[int(bad[0])]
            names = group.get("names")
            index = next(k for k, q in enumerate(group["params"]) if q is p)
            where = f"'{names[index]}'" if names else f"#{index} of shape {tuple(p.shape)}"
            layer = f" of layer '{group['layer']}'" if "layer" in group else ""
            raise FloatingPointError(
                f"non-finite {what} in parameter {where}{layer}; no parameter was updated "
                "(pass check_finite=False to skip this check)"
            )
        offset += len(params)


def check_lr(groups: list[dict]) -> None:
    """Raise ``FloatingPointError`` naming the first group with a gradient whose ``lr`` is NaN or
    inf (a scheduler can set one), before it writes NaN into every weight of the group."""
    for i, group in enumerate(groups):
        lr = group["lr"]
        value = lr.item() if isinstance(lr, torch.Tensor) else float(lr)
        if math.isfinite(value) or all(p.grad is None for p in group["params"]):
            continue
        layer = f" (layer '{group['layer']}')" if "layer" in group else ""
        raise FloatingPointError(
            f"param group {i}{layer} has lr {value} (set by an LR scheduler?); no parameter was "
            "updated"
        )
