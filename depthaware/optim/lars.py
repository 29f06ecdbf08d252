"""LARS: SGD with momentum and a layer-wise trust ratio (You, Gitman & Ginsburg, 2017).

For a parameter tensor (or a whole layer) :math:`w` with gradient :math:`g`, weight decay
:math:`\\lambda`, trust coefficient :math:`\\eta`, momentum :math:`\\mu` and learning rate
:math:`\\gamma`:

.. math::

    q &= \\eta \\, \\frac{\\|w\\|}{\\|g\\| + \\lambda \\|w\\|}, \\qquad
    q \\leftarrow \\min(q / \\gamma, 1) \\;\\text{(trust clipping, LARC)} \\\\
    b &\\leftarrow \\mu\\, b + q\\,(g + \\lambda w), \\qquad
    w \\leftarrow w - \\gamma\\, b
    \\quad (\\text{Nesterov: } w \\leftarrow w - \\gamma\\,(q(g+\\lambda w) + \\mu b)).

The ratio adapts whether or not :math:`\\lambda` is set. Tensors with ``ndim <= 1`` (biases,
normalization weights) are not adapted by default (:math:`q = 1`); a group may set ``adapt``.

Where a norm is zero the ratio is defined, never NaN:

* :math:`\\|g\\| = 0` (and so nothing to adapt): :math:`q = 1`;
* :math:`\\|w\\| = 0` with :math:`\\|g\\| > 0` (a zero-initialised weight): :math:`q` is the mean
  ratio of the adapted tensors of its group with both norms non-zero (1 if there are none). A
  fallback of 1 (timm's) gives such a tensor a step :math:`1/q` times -- often hundreds of times --
  larger than its neighbours'; the group mean keeps it on their scale.

``trust_by="group"`` computes one ratio per parameter group (with
:func:`~depthaware.optim.depth_param_groups`, per layer) from the norms of all its adapted tensors.

Multi-tensor path: two ``torch._foreach_norm`` calls read every weight and gradient once, the
ratios are computed on the device for all tensors at once (no host synchronization), and the
update is three or four in-place ``torch._foreach_*`` calls. The CPU path (the default there)
takes the norms of the gradients and of the adapted weights (one BLAS dot per large tensor, one
multi-tensor call for the small ones) and steps with torch's fused SGD kernel, the trust ratio as
its dampening (see :func:`scaled_sgd`): each weight and gradient is read once more than by SGD.
The paper discusses LARS in Appendix A.8.

>>> import torch, depthaware as da
>>> net = da.models.FCNN((1, 8, 1))
>>> opt = da.optim.LARS(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
>>> net(torch.randn(4, 1)).sum().backward()
>>> opt.step()
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import Optimizer

__all__ = ["LARS", "ScaledSGD", "check_finite", "choose_path", "scaled_sgd", "trust_ratios"]


def trust_ratios(
    w_norm: torch.Tensor,
    g_norm: torch.Tensor,
    adapt: torch.Tensor,
    *,
    eta: float,
    weight_decay: float,
    lr: float,
    clip: bool,
    by_group: bool,
) -> torch.Tensor:
    """The trust ratio of every tensor of one group, shape ``(P,)`` (see the module docstring)."""
    if by_group:  # one ratio from the norms of all adapted tensors
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


def scaled_sgd(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    bufs: list[torch.Tensor] | None,
    scales: torch.Tensor,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    foreach: bool,
    fused: bool = False,
) -> None:
    """SGD with a per-tensor scale ``q`` on the decayed gradient (the shared LARS kernel).

    ``b <- momentum * b + q * (g + weight_decay * w)``; ``w <- w - lr * b`` (Nesterov:
    ``w <- w - lr * (q * (g + weight_decay * w) + momentum * b)``). ``bufs`` is None when
    ``momentum == 0``. Weight decay is folded into in-place products (``addcmul_``, ``mul_``),
    so no temporary the size of the parameters is allocated.

    ``fused`` (CPU tensors): torch's fused SGD kernel, one call per distinct ``q`` (all tensors of
    a group share it under :class:`~depthaware.optim.FeedbackSGD`, and the non-adapted tensors of
    :class:`LARS` share ``q = 1``), one pass over weight, gradient and buffer. The kernel computes
    ``b <- momentum * b + (1 - d) (g + weight_decay * w)``, so ``q`` enters as its dampening
    ``d = 1 - q`` (as its learning rate ``lr * q`` without momentum), and ``.grad`` is only read.
    Nesterov needs ``q`` on the gradient term alone: there it enters as ``grad_scale = 1/q`` with
    ``weight_decay = q * weight_decay``, and the kernel leaves ``q * g`` in ``.grad`` (as fused
    optimizers do under AMP grad scaling); the kernel takes that scale in float32 only, so there
    ``q`` is rounded to float32 even for float64 parameters.
    """
    if not params:
        return
    if fused:
        _fused_scaled_sgd(
            params,
            grads,
            bufs,
            scales.tolist(),
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        return
    q = scales.unbind()
    step = (-lr * scales).unbind()  # -lr q
    shrink = (1 - lr * weight_decay * scales).unbind()  # 1 - lr q wd
    if foreach:
        if bufs is not None:
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_addcmul_(bufs, grads, q)
            if weight_decay:
                torch._foreach_addcmul_(bufs, params, (weight_decay * scales).unbind())
            if not nesterov:
                torch._foreach_add_(params, bufs, alpha=-lr)
                return
        if weight_decay:
            torch._foreach_mul_(params, shrink)
        torch._foreach_addcmul_(params, grads, step)
        if bufs is not None:  # Nesterov
            torch._foreach_add_(params, bufs, alpha=-lr * momentum)
        return
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


def _fused_scaled_sgd(params, grads, bufs, qs, *, lr, momentum, weight_decay, nesterov) -> None:
    """One call of torch's fused CPU SGD kernel per distinct ratio ``q`` (see ``scaled_sgd``)."""
    by_q: dict[float, list[int]] = {}
    for i, q in enumerate(qs):
        by_q.setdefault(q, []).append(i)
    for q, index in by_q.items():
        ps, gs = [params[i] for i in index], [grads[i] for i in index]
        bs = [] if bufs is None else [bufs[i] for i in index]
        kw = dict(weight_decay=weight_decay, momentum=momentum, lr=lr, dampening=0.0)
        if not bs:
            kw["lr"] = lr * q
        elif not nesterov:
            kw["dampening"] = 1.0 - q
        elif q == 0:  # Nesterov with nothing to add: b <- momentum b; w <- w - lr momentum b
            torch._foreach_mul_(bs, momentum)
            torch._foreach_add_(ps, bs, alpha=-lr * momentum)
            continue
        elif q != 1:
            kw.update(weight_decay=q * weight_decay, grad_scale=torch.tensor(1 / q))
        torch._fused_sgd_(ps, gs, bs, nesterov=nesterov, maximize=False, is_first_step=False, **kw)


def check_finite(norms: torch.Tensor, groups_params: list[tuple[dict, list[torch.Tensor]]]) -> None:
    """Raise ``FloatingPointError`` naming the first parameter whose gradient is NaN or inf.

    One host synchronization for the whole step (``norms`` holds every gradient norm).
    """
    if bool(torch.isfinite(norms).all()):
        return
    offset = 0
    for group, params in groups_params:
        for i in range(len(params)):
            if not torch.isfinite(norms[offset + i]):
                names = group.get("param_names")
                where = f"'{names[_index_in_group(group, params[i])]}'" if names else f"#{i}"
                layer = f" of layer '{group['layer']}'" if "layer" in group else ""
                raise FloatingPointError(
                    f"non-finite gradient in parameter {where}{layer}; no parameter was updated "
                    "(pass check_finite=False to skip this check)"
                )
        offset += len(params)


def _index_in_group(group: dict, p: torch.Tensor) -> int:
    return next(i for i, q in enumerate(group["params"]) if q is p)


def _refuse_sharded(params: list[torch.Tensor], name: str) -> None:
    from torch.distributed.tensor import DTensor

    if any(isinstance(p, DTensor) for p in params):
        raise ValueError(
            f"{name} got sharded parameters (DTensor, e.g. FSDP's fully_shard): per-layer norms "
            "would be shard-local. Use DistributedDataParallel, or unshard before the step."
        )


class ScaledSGD(Optimizer):
    """Momentum SGD whose update of every tensor is scaled by a ratio ``q`` (the shared base).

    ``b <- momentum * b + q * (g + weight_decay * w)``; ``w <- w - lr * b``. Subclasses give
    ``q`` in :meth:`_scales`; this class does the bookkeeping: the momentum buffers, the NaN/inf
    check (one host sync for the whole step, before anything is updated), the kernel path
    (:func:`choose_path`) and the update (:func:`scaled_sgd`).
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float,
        weight_decay: float,
        nesterov: bool,
        check_finite: bool,
        foreach: bool | None,
        fused: bool | None,
        **extra,
    ):
        if not lr >= 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"Invalid momentum: {momentum}")
        if not weight_decay >= 0:
            raise ValueError(f"Invalid weight_decay: {weight_decay}")
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum requires momentum > 0")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            check_finite=check_finite,
            foreach=foreach,
            fused=fused,
            **extra,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("check_finite", True)
            group.setdefault("foreach", None)
            group.setdefault("fused", None)

    def _scales(self, group: dict, params, grads, g_norm: torch.Tensor, path: str) -> torch.Tensor:
        raise NotImplementedError

    def _init_group(self, group, params, grads, bufs) -> None:
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            params.append(p)
            grads.append(p.grad)
            if group["momentum"]:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                bufs.append(state["momentum_buffer"])

    @torch.no_grad()
    def step(self, closure=None):
        """Performs a single optimization step (``closure`` re-evaluates the loss)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []
        for group in self.param_groups:
            params, grads, bufs = [], [], []
            self._init_group(group, params, grads, bufs)
            if params:
                _refuse_sharded(params, type(self).__name__)
                path = choose_path(group["fused"], group["foreach"], params)
                work.append((group, params, grads, bufs, path, _norms(grads, path == "foreach")))
        if any(w[0]["check_finite"] for w in work):
            check_finite(torch.cat([w[5] for w in work]), [(w[0], w[1]) for w in work])
        for group, params, grads, bufs, path, g_norm in work:
            scaled_sgd(
                params,
                grads,
                bufs if group["momentum"] else None,
                self._scales(group, params, grads, g_norm, path),
                lr=group["lr"],
                momentum=group["momentum"],
                weight_decay=group["weight_decay"],
                nesterov=group["nesterov"],
                foreach=path == "foreach",
                fused=path == "fused",
            )
        return loss


class LARS(ScaledSGD):
    """LARS / LARC: momentum SGD with a per-tensor or per-layer trust ratio.

    Args:
        params: parameters or parameter groups (e.g. from
            :func:`~depthaware.optim.depth_param_groups`).
        lr: learning rate :math:`\\gamma`.
        momentum: :math:`\\mu` (0 disables the buffer).
        weight_decay: :math:`\\lambda`, applied inside the trust-ratio update.
        trust_coefficient: :math:`\\eta`.
        trust_clip: LARC clipping, :math:`q \\leftarrow \\min(q/\\gamma, 1)`.
        nesterov: Nesterov momentum.
        trust_by: ``"param"`` (a ratio per tensor) or ``"group"`` (per param group / layer).
        adapt_1d: also adapt tensors with ``ndim <= 1`` (biases, norms); a group's ``adapt``
            key (True/False) overrides this for all its tensors.
        check_finite: raise ``FloatingPointError`` on a NaN/inf gradient before updating anything
            (one host sync per step); ``False`` lets non-finite values through, as torch's SGD.
        foreach: multi-tensor path (``None``: on for CUDA tensors).
        fused: per-tensor fused CPU kernel (``None``: on for CPU tensors unless ``foreach``);
            it leaves ``q * g`` in ``.grad`` (see :func:`scaled_sgd`).
    """

    def __init__(
        self,
        params,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        *,
        trust_coefficient: float = 0.001,
        trust_clip: bool = False,
        nesterov: bool = False,
        trust_by: str = "param",
        adapt_1d: bool = False,
        check_finite: bool = True,
        foreach: bool | None = None,
        fused: bool | None = None,
    ):
        if not trust_coefficient > 0:
            raise ValueError(f"Invalid trust_coefficient: {trust_coefficient}")
        if trust_by not in ("param", "group"):
            raise ValueError(f"trust_by must be 'param' or 'group'; got {trust_by!r}")
        super().__init__(
            params,
            lr,
            momentum,
            weight_decay,
            nesterov,
            check_finite,
            foreach,
            fused,
            trust_coefficient=trust_coefficient,
            trust_clip=trust_clip,
            trust_by=trust_by,
            adapt_1d=adapt_1d,
        )

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("trust_by", "param")
            group.setdefault("adapt_1d", False)

    def _scales(self, group, params, grads, g_norm, path) -> torch.Tensor:
        adapt = [group.get("adapt", group["adapt_1d"] or p.ndim > 1) for p in params]
        return trust_ratios(
            _norms(params, path == "foreach", skip=[not a for a in adapt]),
            g_norm,
            torch.tensor(adapt, dtype=torch.bool, device=params[0].device),
            eta=group["trust_coefficient"],
            weight_decay=group["weight_decay"],
            lr=group["lr"],
            clip=group["trust_clip"],
            by_group=group["trust_by"] == "group",
        )


_BLAS_MIN = 1 << 16  # elements from which one BLAS dot per tensor beats a multi-tensor launch


def _norms(
    tensors: list[torch.Tensor], foreach: bool, skip: list[bool] | None = None
) -> torch.Tensor:
    """L2 norm of every tensor, stacked into shape ``(P,)``.

    ``skip`` marks tensors whose norm is not needed: the per-tensor path does not read them and
    gives 0 (the multi-tensor path computes all norms in its one launch).

    Per tensor (``foreach=False``): ``sqrt(dot(t, t))`` (BLAS, about twice as fast as
    ``vector_norm`` on a CPU) for float64 tensors and float32 tensors of at least ``2**16``
    elements, and one ``torch._foreach_norm`` in float32 for the rest (a dot call per bias costs
    more than the bias; a half-precision dot could overflow).
    """
    if foreach:
        return torch.stack(torch._foreach_norm(tensors))
    zero = tensors[0].new_zeros((), dtype=torch.float32)
    out: list[torch.Tensor] = [zero] * len(tensors)  # squared norms, then norms
    squared = [False] * len(tensors)
    rest = []
    for i, t in enumerate(tensors):
        if skip is not None and skip[i]:
            continue
        if t.dtype == torch.float64 or (t.dtype == torch.float32 and t.numel() >= _BLAS_MIN):
            flat = t.reshape(-1)
            out[i], squared[i] = torch.dot(flat, flat), True
        else:
            rest.append(i)
    if rest:
        for i, n in zip(
            rest, torch._foreach_norm([tensors[i] for i in rest], 2, dtype=torch.float32)
        ):
            out[i] = n
    norms = torch.stack(out)
    if any(squared):
        norms = torch.where(torch.tensor(squared), norms.sqrt(), norms)
    return norms


def choose_path(fused: bool | None, foreach: bool | None, params: list[torch.Tensor]) -> str:
    """``"fused"``, ``"foreach"`` or ``"loop"``.

    Defaults: on a CPU the fused per-tensor kernel (a host value per tensor costs nothing there,
    and torch's fused SGD kernel is about twice as fast as its foreach ops); elsewhere torch's
    choice between the multi-tensor path (CUDA) and the loop.
    """
    if fused and foreach:
        raise ValueError("fused and foreach cannot both be True")
    on_cpu = all(p.device.type == "cpu" for p in params)
    if fused or (fused is None and not foreach and on_cpu):
        if not on_cpu:
            raise ValueError("fused=True runs the per-tensor CPU kernel; use foreach on CUDA")
        return "fused"
    if foreach is None:
        from torch.optim.optimizer import _default_to_fused_or_foreach

        foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)[1]
    return "foreach" if foreach else "loop"
