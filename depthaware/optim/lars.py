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
its dampening (see :func:`~depthaware.optim.kernels.scaled_sgd`): each weight and gradient is
read once more than by SGD. ``.grad`` is never written.

Before any parameter moves, ``check_finite`` (default on) refuses a NaN/inf gradient and a
non-finite weight norm (NaN/inf weights, or weights so large that :math:`\\|w\\|^2` overflows),
naming the parameter: a trust ratio computed from such a norm would write NaN into every weight.
The paper discusses LARS in Appendix A.8.

>>> import torch, depthaware as da
>>> net = da.models.FCNN((1, 8, 1))
>>> opt = da.optim.LARS(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
>>> net(torch.randn(4, 1)).sum().backward()
>>> opt.step()
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import ParamsT

from .functional import norms, trust_ratios
from .param_groups import FromModel
from .scaled_sgd import GroupStep, ScaledSGD

__all__ = ["LARS", "DepthLARS"]


class LARS(ScaledSGD):
    """LARS / LARC: momentum SGD with a per-tensor or per-layer trust ratio.

    Everything after ``lr`` is keyword-only: torch's and timm's SGD-family optimizers take
    ``(params, lr, momentum, dampening, weight_decay, nesterov)`` by position, and such a call
    is refused (``TypeError``) rather than read with another meaning.

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
        fused: torch's fused CPU kernel (``None``: on for CPU tensors unless ``foreach`` or under
            ``torch.compile``); strided views and Nesterov take the per-tensor loop instead.
    """

    scale_name = (
        "trust ratio (its weight norm is NaN or inf: non-finite weights, or weights whose "
        "squared norm overflows)"
    )

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.1,
        *,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
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
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            check_finite=check_finite,
            foreach=foreach,
            fused=fused,
            trust_coefficient=trust_coefficient,
            trust_clip=trust_clip,
            trust_by=trust_by,
            adapt_1d=adapt_1d,
        )

    @staticmethod
    def _adapt(group, owners) -> list[bool]:
        return [group.get("adapt", group["adapt_1d"] or p.ndim > 1) for p in owners]

    def _local_stats(self, work: GroupStep) -> dict[str, torch.Tensor]:
        skip = [not a for a in self._adapt(work.group, work.owners)]
        return {"w_norm": norms(work.params, foreach=work.foreach, skip=skip)}

    def _scales(self, work: GroupStep) -> torch.Tensor:
        group, stats = work.group, work.stats
        adapt = self._adapt(group, work.owners)
        return trust_ratios(
            stats["w_norm"],
            stats["g_norm"],
            torch.tensor(adapt, dtype=torch.bool, device=work.params[0].device),
            eta=group["trust_coefficient"],
            weight_decay=group["weight_decay"],
            lr=group["lr"],
            clip=group["trust_clip"],
            by_group=group["trust_by"] == "group",
        )


class DepthLARS(FromModel, LARS):
    """:class:`~depthaware.optim.LARS` for timm's factory (``"depthlars"``), with ``model=``."""
