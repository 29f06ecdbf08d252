"""The update kernels of :class:`~depthaware.optim.LARS` and :class:`~depthaware.optim.FeedbackSGD`
(their ratios come from :mod:`depthaware.optim.functional`):

* :func:`scaled_sgd`: momentum SGD whose update of each tensor is scaled by its own ratio ``q``,
  dispatching, as ``torch.optim.sgd.sgd``, to ``_single_tensor_…`` (one tensor at a time),
  ``_multi_tensor_…`` (``torch._foreach_*`` ops) or ``_fused_…`` (torch's fused CPU SGD kernel)
  by its ``foreach=``/``fused=`` flags, whose defaults :func:`choose_path` gives;
* :func:`fusable`: whether the fused kernel updates a tensor correctly.
"""

from __future__ import annotations

import torch

__all__ = ["choose_path", "fusable", "scaled_sgd"]


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
