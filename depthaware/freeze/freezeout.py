"""FreezeOut (Brock et al. 2017) as an LR scheduler: per-layer cosine annealing to zero by the
layer's freezing time, then freezing (the package docstring has the schedule's math)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..layers import LayerGroups
from .frozen import FrozenLayers, check_layers

__all__ = ["FreezeOut"]


class FreezeOut(LambdaLR):
    """FreezeOut: per-layer cosine annealing to zero, then freezing (:mod:`depthaware.freeze`).

    A ``LRScheduler``: call ``step()`` once per training step (after ``optimizer.step()``), and
    use no other scheduler on the same optimizer (pass ``base`` for a global schedule instead).

    Args:
        optimizer: built from :func:`~depthaware.optim.depth_param_groups` (groups carry
            ``layer`` and ``depth``).
        layers: the model or its LayerGroups (the layers that built the groups).
        total_steps: the run's length :math:`T` in steps.
        t0: the first layer's fraction before cubing (``"cubic"``) or as is (``"linear"``).
        spacing: ``"cubic"`` or ``"linear"``.
        scale_lr: multiply layer :math:`i`'s LR by :math:`1/\\tau_i` (FreezeOut's option that keeps
            each layer's LR budget).
        base: an optional global factor ``b(step)``.
        bn_eval, ddp: see :mod:`depthaware.freeze`.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        layers: nn.Module | LayerGroups,
        total_steps: int,
        *,
        t0: float = 0.5,
        spacing: str = "cubic",
        scale_lr: bool = False,
        base: Callable[[int], float] | None = None,
        bn_eval: bool = True,
        ddp: nn.Module | None = None,
        last_epoch: int = -1,
    ):
        if not 0 < t0 <= 1:
            raise ValueError(f"t0 must be in (0, 1]; got {t0}")
        if spacing not in ("cubic", "linear"):
            raise ValueError(f"spacing must be 'cubic' or 'linear'; got {spacing!r}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be positive; got {total_steps}")
        self.frozen_layers = FrozenLayers(optimizer, layers, bn_eval, ddp)
        layers = self.layers
        missing = [
            i for i, g in enumerate(optimizer.param_groups) if g.get("layer") not in layers.names
        ]
        if missing:
            raise ValueError(
                f"param groups {missing} name no layer of `layers`; build the "
                "optimizer from depthaware.optim.depth_param_groups(layers, ...)"
            )
        n = len(layers)
        fractions = [t0 + (1 - t0) * i / max(n - 1, 1) for i in range(n)]
        if spacing == "cubic":
            fractions = [f**3 for f in fractions]
        self.fractions = dict(zip(layers.names, fractions))
        self.freeze_steps = {name: f * total_steps for name, f in self.fractions.items()}
        self.total_steps, self.scale_lr, self.base = total_steps, scale_lr, base
        lambdas: list[Callable[[int], float]] = [
            partial(self.factor, layer=g["layer"]) for g in optimizer.param_groups
        ]
        LambdaLR.__init__(self, optimizer, lambdas, last_epoch)

    def factor(self, t: int, layer: str) -> float:
        """The factor on ``layer``'s initial LR at step ``t`` (zero from its freezing step on)."""
        t_i = self.freeze_steps[layer]
        anneal = 0.5 * (1 + math.cos(math.pi * t / t_i)) if t < t_i else 0.0
        scale = 1 / self.fractions[layer] if self.scale_lr else 1.0
        return (self.base(t) if self.base else 1.0) * anneal * scale

    # the frozen layers' bookkeeping, held: ``layers``, ``frozen``, ``trainable``
    @property
    def layers(self) -> LayerGroups:
        return self.frozen_layers.layers

    @property
    def frozen(self) -> dict[str, int]:
        """Each frozen layer's name and the step it was frozen at."""
        return self.frozen_layers.frozen

    @property
    def trainable(self) -> list[str]:
        return self.frozen_layers.trainable

    def frozen_fraction(self) -> float:
        """Share of the parameters that are frozen now."""
        return self.frozen_layers.frozen_fraction()

    def step(self, epoch: int | None = None) -> None:
        super().step(epoch)
        self.frozen_layers.t = t = self.last_epoch
        for name in self.trainable:
            if t >= self.freeze_steps[name] and name != self.layers.names[-1]:
                self.frozen_layers.freeze(name)

    def state_dict(self) -> dict:
        """``LambdaLR``'s state (without its callables: ``base``, the factors) and the frozen
        layers' under ``"freezer"``."""
        state = {
            k: v
            for k, v in super().state_dict().items()
            if k != "frozen_layers" and not callable(v)
        }
        return {**state, "freezer": self.frozen_layers.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume; a state saved for another model (other layers or param groups) is refused
        before anything changes, naming what differs."""
        state = dict(state_dict)
        groups, saved = len(self.optimizer.param_groups), len(state.get("base_lrs", []))
        if saved != groups:
            raise ValueError(
                f"this FreezeOut state covers {saved} param groups, the optimizer has {groups}: "
                "a state saved for another model?"
            )
        check_layers(self.layers.names, list(state.get("freeze_steps", self.layers.names)))
        self.frozen_layers.load_state_dict(state.pop("freezer"))
        super().load_state_dict(state)
