"""Per-layer LR schedules as ``torch.optim.lr_scheduler.LambdaLR`` subclasses.

:class:`LayerLR` is the general one: every group's LR is its initial LR times ``f(step, depth)``.
:class:`DepthStaggered` wraps a base schedule :math:`b(t)` (step decay, cosine with warm-up, or any
function of the step) and gives deeper layers a smaller early LR that catches up:

.. math::

    \\mathrm{lr}_l(t) = \\mathrm{lr}_l(0)\\; b(t)\\; \\big(s_l + (1 - s_l)\\, r(t)\\big),
    \\qquad s_l = \\mathrm{start}^{\\, d_l / (L-1)}, \\quad r(t) = \\min(1, t / T_c),

so layer :math:`l` (depth :math:`d_l` of :math:`L`) starts at the fraction :math:`s_l` of the base
schedule (1 for the shallowest, ``start`` for the deepest) and reaches the base schedule at the
catch-up step :math:`T_c` (``catch_up``; e.g. the first LR decay, after which the paper sees the
deeper layers learn fastest). With ``catch_up=0`` this is the base schedule itself.

Groups need a ``depth`` key (as :func:`~depthaware.optim.depth_param_groups` gives); the LR in
each group (with any per-layer factor already in it) is the schedule's starting point, so the two
compose. ``state_dict`` drops the callables; load it into a scheduler built with the same ones.

>>> import torch, depthaware as da
>>> net = da.models.FCNN((1, 8, 8, 1))
>>> opt = torch.optim.SGD(da.optim.depth_param_groups(net, lr=0.1), momentum=0.9)
>>> sched = da.optim.DepthStaggered(opt, da.optim.StepDecay([50], 0.1), start=0.1, catch_up=50)
>>> [round(g["lr"], 4) for g in opt.param_groups if g["weight_decay"] == 0][::2]
[0.1, 0.0316, 0.01]
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["CosineDecay", "DepthStaggered", "LayerLR", "StepDecay"]


@dataclass(frozen=True)
class StepDecay:
    """``b(t) = gamma ** (number of milestones <= t)`` (MultiStepLR's factor)."""

    milestones: Sequence[int]
    gamma: float = 0.1

    def __call__(self, t: int) -> float:
        return self.gamma ** bisect.bisect_right(sorted(self.milestones), t)


@dataclass(frozen=True)
class CosineDecay:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 to ``floor`` at ``total``."""

    total: int
    warmup: int = 0
    floor: float = 0.0

    def __post_init__(self):
        total, warmup = _whole(self.total, "total"), _whole(self.warmup, "warmup")
        if total < 1:
            raise ValueError(f"CosineDecay: total must be a positive number of steps; got {total}")
        if warmup < 0 or warmup > total:
            raise ValueError(
                f"CosineDecay: warmup must lie in 0..total ({total}); got {warmup} (a longer one "
                "would drop to the floor right after it, a negative one start part-way)"
            )
        if not 0 <= self.floor <= 1:
            raise ValueError(
                f"CosineDecay: floor is a fraction of the peak in [0, 1]; got {self.floor}"
            )

    def __call__(self, t: int) -> float:
        if t < self.warmup:
            return (t + 1) / self.warmup
        progress = min(1.0, (t - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _whole(value, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"CosineDecay: {name} must be a whole number of steps; got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(
            f"CosineDecay: {name} must be a whole number of steps; got {value!r}"
        ) from None


def _depths(optimizer: Optimizer) -> list[int]:
    missing = [i for i, g in enumerate(optimizer.param_groups) if "depth" not in g]
    if missing:
        raise ValueError(
            f"param groups {missing} have no 'depth': build the optimizer from "
            "depthaware.optim.depth_param_groups(...)"
        )
    return [g["depth"] for g in optimizer.param_groups]


class LayerLR(LambdaLR):
    """``lr = initial_lr * fn(step, depth)`` for every param group: torch's ``LambdaLR`` with each
    group's lambda bound to the group's depth.

    Args:
        optimizer: its groups carry ``depth``.
        fn: ``f(step, depth) -> float``, finite and >= 0.
        last_epoch: as torch's schedulers (``-1`` to start).
    """

    def __init__(self, optimizer: Optimizer, fn: Callable[[int, int], float], last_epoch: int = -1):
        self.fn = fn
        lambdas: list[Callable[[int], float]] = [
            partial(self.factor, depth=d) for d in _depths(optimizer)
        ]
        super().__init__(optimizer, lambdas, last_epoch)

    def factor(self, step: int, depth: int) -> float:
        f = float(self.fn(step, depth))
        if not (math.isfinite(f) and f >= 0):
            raise ValueError(f"LR factor at step {step}, depth {depth} is {f}; need finite >= 0")
        return f

    def state_dict(self) -> dict:
        """``LambdaLR``'s state without the callables (rebuild with the same ones to load)."""
        return {k: v for k, v in super().state_dict().items() if not callable(v)}


class DepthStaggered(LayerLR):
    """A base schedule, with deeper layers starting lower and catching up (module docstring).

    Args:
        optimizer: groups with ``depth``.
        base: ``b(step) -> float``, e.g. :class:`StepDecay` or :class:`CosineDecay`.
        start: the deepest layer's starting fraction :math:`s_{L-1}` (0 < start <= 1).
        catch_up: the step :math:`T_c` at which every layer reaches the base schedule.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        base: Callable[[int], float],
        *,
        start: float = 0.1,
        catch_up: int = 0,
        last_epoch: int = -1,
    ):
        if not 0 < start <= 1:
            raise ValueError(f"start must be in (0, 1]; got {start}")
        if catch_up < 0:
            raise ValueError(f"catch_up must be >= 0; got {catch_up}")
        self.base, self.start, self.catch_up = base, start, catch_up
        self.max_depth = max(max(_depths(optimizer)), 1)
        super().__init__(optimizer, self._factor, last_epoch)

    def _factor(self, t: int, depth: int) -> float:
        s = self.start ** (depth / self.max_depth)
        ramp = 1.0 if self.catch_up == 0 else min(1.0, t / self.catch_up)
        return self.base(t) * (s + (1 - s) * ramp)
