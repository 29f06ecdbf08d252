"""The kernels behind :class:`~depthaware.optim.LARS` and :class:`~depthaware.optim.FeedbackSGD`.

As in ``torch.optim``, the optimizer classes keep the bookkeeping (groups, state, the finiteness
check) and the math lives here, in plain functions over lists of tensors:

* :func:`scaled_sgd`: momentum SGD whose update of each tensor is scaled by its own ratio ``q``,
  dispatching, as ``torch.optim.sgd.sgd``, to ``_single_tensor_…`` (one tensor at a time),
  ``_multi_tensor_…`` (``torch._foreach_*`` ops) or ``_fused_…`` (torch's fused CPU SGD kernel)
  by its ``foreach=``/``fused=`` flags, whose defaults :func:`choose_path` gives;
* :func:`norms`: the L2 norm of every tensor, in as few and as large reductions as the path allows;
* :func:`trust_ratios`: LARS's ratio of every tensor of a group;
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
    "choose_path",
    "fusable",
    "norms",
    "real_view",
    "scaled_sgd",
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


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t`` covers its memory without gaps or overlaps (any dimension order)."""
    if t.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted((s, n) for s, n in zip(t.stride(), t.shape) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def fusable(p: torch.Tensor, g: torch.Tensor, buf: torch.Tensor | None) -> bool:
    """Whether torch's fused CPU SGD kernel updates ``p`` correctly.

    The kernel walks the memory of weight, gradient and buffer as flat arrays and ignores
    strides: it is correct only when the three are dense and laid out alike. A non-contiguous
    view (``base[..., 0]``) would be read and written past its own elements.
    """
    return (
        p.device.type == "cpu"
        and not p.is_complex()
        and g.stride() == p.stride()
        and (buf is None or buf.stride() == p.stride())
        and _dense(p)
    )


def scaled_sgd(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    bufs: list[torch.Tensor] | None,
    scales: torch.Tensor,
    *,
    lr: float | torch.Tensor,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    foreach: bool = False,
    fused: bool = False,
) -> None:
    """SGD with a per-tensor scale ``q`` on the decayed gradient.

    .. math::

        b \\leftarrow \\mu b + q\\,(g + \\lambda w), \\qquad w \\leftarrow w - \\gamma b
        \\quad (\\text{Nesterov: } w \\leftarrow w - \\gamma\\,(q(g + \\lambda w) + \\mu b)).

    ``bufs`` is None when ``momentum == 0``. ``.grad`` is only read, on every path. Weight decay is
    folded into in-place products (``addcmul_``, ``mul_``), so no temporary of the parameters'
    size is allocated. As ``torch.optim.sgd.sgd``, this dispatches to one implementation:
    :func:`_fused_scaled_sgd` (``fused``), :func:`_multi_tensor_scaled_sgd` (``foreach``) or
    :func:`_single_tensor_scaled_sgd`; :func:`choose_path` gives the defaults.
    """
    if fused and foreach:
        raise ValueError("fused and foreach cannot both be True")
    if not params:
        return
    if fused:
        func = _fused_scaled_sgd
    elif foreach:
        func = _multi_tensor_scaled_sgd
    else:
        func = _single_tensor_scaled_sgd
    func(params, grads, bufs, scales, lr=lr, momentum=momentum, weight_decay=weight_decay,
         nesterov=nesterov)  # fmt: skip


def _single_tensor_scaled_sgd(params, grads, bufs, scales, *, lr, momentum, weight_decay,
                              nesterov) -> None:  # fmt: skip
    """One tensor at a time (the reference path; strided views, complex views, anything)."""
    q = scales.unbind()
    step = (-lr * scales).unbind()  # -lr q
    shrink = (1 - lr * weight_decay * scales).unbind()  # 1 - lr q wd
    for i, (p, g) in enumerate(zip(params, grads)):
        if bufs is not None:
            bufs[i].mul_(momentum).addcmul_(g, q[i])
            if weight_decay:
                bufs[i].addcmul_(p, q[i] * weight_decay)
            if not nesterov:
                p.add_(bufs[i], alpha=-lr)
                continue
        if weight_decay:
            p.mul_(shrink[i])
        p.addcmul_(g, step[i])
        if bufs is not None:
            p.add_(bufs[i], alpha=-lr * momentum)


def _multi_tensor_scaled_sgd(params, grads, bufs, scales, *, lr, momentum, weight_decay,
                             nesterov) -> None:  # fmt: skip
    """Three or four ``torch._foreach_*`` calls over all the tensors (no host synchronization:
    the scales stay on the device)."""
    if bufs is not None:
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_addcmul_(bufs, grads, scales.unbind())
        if weight_decay:
            torch._foreach_addcmul_(bufs, params, (weight_decay * scales).unbind())
        if not nesterov:
            torch._foreach_add_(params, bufs, alpha=-lr)
            return
    if weight_decay:
        torch._foreach_mul_(params, (1 - lr * weight_decay * scales).unbind())
    torch._foreach_addcmul_(params, grads, (-lr * scales).unbind())
    if bufs is not None:  # Nesterov
        torch._foreach_add_(params, bufs, alpha=-lr * momentum)


def _fused_scaled_sgd(params, grads, bufs, scales, *, lr, momentum, weight_decay,
                      nesterov) -> None:  # fmt: skip
    """torch's fused CPU SGD kernel, one call per distinct ``q``, one pass over weight, gradient
    and buffer.

    The kernel computes ``b <- momentum b + (1 - d)(g + wd w)``, so ``q`` enters as its dampening
    ``d = 1 - q`` (as its learning rate ``lr q`` without momentum). Tensors the kernel cannot
    update correctly (:func:`fusable`: strided views, complex) and, under Nesterov, all tensors
    (the kernel cannot scale the gradient term alone without writing ``q g`` into ``.grad``)
    take :func:`_single_tensor_scaled_sgd` instead.
    """
    fused = [
        i
        for i, (p, g) in enumerate(zip(params, grads))
        if not nesterov and fusable(p, g, None if bufs is None else bufs[i])
    ]
    qs = scales.tolist()  # one host read for the group
    by_q: dict[float, list[int]] = {}
    for i in fused:
        by_q.setdefault(qs[i], []).append(i)
    for q, index in by_q.items():
        ps, gs = [params[i] for i in index], [grads[i] for i in index]
        bs = [] if bufs is None else [bufs[i] for i in index]
        kw = dict(weight_decay=weight_decay, momentum=momentum, lr=lr, dampening=0.0)
        if not bs:
            kw["lr"] = lr * q
        else:
            kw["dampening"] = 1.0 - q
        torch._fused_sgd_(ps, gs, bs, nesterov=False, maximize=False, is_first_step=False, **kw)
    rest = sorted(set(range(len(params))) - set(fused))
    if rest:
        _single_tensor_scaled_sgd(
            [params[i] for i in rest],
            [grads[i] for i in rest],
            None if bufs is None else [bufs[i] for i in rest],
            scales[rest],
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )


def choose_path(fused: bool | None, foreach: bool | None, params: list[torch.Tensor]) -> str:
    """``"fused"``, ``"foreach"`` or ``"loop"``.

    Defaults: on a CPU the fused kernel (a host value per tensor costs nothing there, and torch's
    fused SGD kernel is about twice as fast as its foreach ops), except under ``torch.compile``,
    which cannot trace it, or with a torch that lacks the (private) kernel; elsewhere torch's
    choice between the multi-tensor path (CUDA) and the loop. Under ``torch.compile`` a
    ``fused=True`` request takes the multi-tensor path (the same update, traceable); anywhere
    else, ``fused=True`` where the kernel cannot run is an error.
    """
    if fused and foreach:
        raise ValueError("fused and foreach cannot both be True")
    on_cpu = all(p.device.type == "cpu" for p in params)
    compiling = torch.compiler.is_compiling()
    kernel = hasattr(torch, "_fused_sgd_")  # torch's private kernel: guard against its absence
    if fused and not kernel:
        raise ValueError("fused=True needs torch._fused_sgd_, which this torch does not have")
    if fused and not on_cpu:
        raise ValueError("fused=True runs the CPU kernel; use foreach on CUDA")
    if fused and compiling:  # the kernel has no fake (meta) implementation to trace
        return "foreach"
    if fused or (fused is None and not foreach and on_cpu and not compiling and kernel):
        return "fused"
    if foreach is None:
        try:  # torch's own choice, private: guarded, with the rule it implements as the fallback
            from torch.optim.optimizer import _default_to_fused_or_foreach
        except ImportError:
            foreach = all(p.device.type == "cuda" for p in params)
        else:
            foreach = _default_to_fused_or_foreach(params, differentiable=False)[1]
    return "foreach" if foreach else "loop"
