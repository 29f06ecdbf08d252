"""Convergence-triggered freezing: the shallowest training layer freezes once its weight
variation (Appendix A.2) has stayed low (the package docstring has the rule)."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim import Optimizer

from ..layers import LayerGroups
from ..measure.rates import weight_variation
from .frozen import FrozenLayers, check_layers, log

__all__ = ["ConvergenceFreezer"]


class ConvergenceFreezer(FrozenLayers):
    """Freeze the shallowest training layer once its weights stop moving (:mod:`depthaware.freeze`).

    Threshold reasoning. Appendix A.2 shows the normalized weight variation does not fall to
    zero while the LR stays constant: it settles at the level SGD's noise sustains. Its *drop*
    relative to the layer's own largest variation says the layer has left its fast phase, and the
    shallow layers leave it first. The reference is the largest variation measured so far, not the
    first one: under an LR warm-up the first checks come at a fraction of the peak LR, and a
    layer measured against them never freezes (a ViT under AdamW with a 3-epoch warm-up froze its
    patch embedding at epoch 25 of 30, saving 0.1% of the backward FLOPs, with the first as the
    reference). Without a warm-up the first variation is the largest, as it was when the default
    (variation below 0.5x the reference for 2 consecutive checks, one check per epoch) was chosen
    from a one-seed sweep of
    ``threshold`` in {0.1, 0.3, 0.5} on the residual FCNN (sine) and a small ResNet (digits): at
    0.1 almost nothing froze under a cosine schedule (2-9% of backward FLOPs saved), at 0.5 the
    layers froze in depth order through the run (28-36% saved) at the unfrozen run's accuracy.
    Never before ``min_step``; the last ``keep`` layers (the head) never freeze.

    Args:
        optimizer: the optimizer training the layers: its state for frozen parameters is
            released (``None``: no optimizer). First, as for every torch scheduler.
        layers: the model or its LayerGroups.
        check_every: steps between checks (e.g. the steps of one epoch).
        threshold: relative drop of the variation that counts as converged.
        patience: consecutive checks below threshold before freezing.
        min_step: no layer freezes before this step.
        max_step: at the first check from this step on, the current candidate (one layer)
            freezes whatever its signal; later layers freeze by the rule (``None``: never).
        keep: number of deepest layers that never freeze.
        bn_eval, ddp: see :mod:`depthaware.freeze`.
    """

    def __init__(
        self,
        optimizer: Optimizer | None,
        layers: nn.Module | LayerGroups,
        *,
        check_every: int = 100,
        threshold: float = 0.5,
        patience: int = 2,
        min_step: int = 0,
        max_step: int | None = None,
        keep: int = 1,
        bn_eval: bool = True,
        ddp: nn.Module | None = None,
    ):
        if check_every < 1 or patience < 1 or not 0 < threshold < 1:
            raise ValueError(
                f"need check_every >= 1, patience >= 1, 0 < threshold < 1; got "
                f"{check_every}, {patience}, {threshold}"
            )
        super().__init__(optimizer, layers, bn_eval, ddp)
        layers = self.layers
        if not 0 <= keep < len(layers):
            raise ValueError(f"keep must be in [0, {len(layers) - 1}]; got {keep}")
        self.check_every, self.threshold, self.patience = check_every, threshold, patience
        self.min_step, self.max_step, self.keep = min_step, max_step, keep
        self.peak: dict[str, float] = {}  # the largest variation measured per layer
        self.history: dict[str, list[float]] = {n: [] for n in layers.names}
        self._below = 0
        self._reference: torch.Tensor | None = None  # candidate's weights at the last check
        self._forced = False  # whether max_step has frozen its one layer

    @property
    def candidate(self) -> str | None:
        """The shallowest layer still training, if it may freeze."""
        trainable = self.trainable
        if len(trainable) <= self.keep:
            return None
        return trainable[0]

    def step(self) -> None:
        """Count one training step; every ``check_every`` steps, measure the candidate."""
        self.t += 1
        self._skip_user_frozen()
        name = self.candidate
        if name is None or self.t % self.check_every:
            return
        now = self.layers.flat(name)
        if self._reference is not None:
            v = float(
                weight_variation(
                    torch.linalg.vector_norm(now - self._reference).item(),
                    torch.linalg.vector_norm(self._reference).item(),
                )
            )
            self.history[name].append(v)
            if v > 0:  # a layer that did not move (LR 0 in a warm-up) sets no reference level
                self.peak[name] = max(self.peak.get(name, 0.0), v)
            if name in self.peak:
                self._below = self._below + 1 if v < self.threshold * self.peak[name] else 0
            due = self.max_step is not None and self.t >= self.max_step and not self._forced
            if self.t >= self.min_step and (self._below >= self.patience or due):
                self._forced = self._forced or due
                self.freeze(name)
                self._below, self._reference = 0, None
                return
        self._reference = now

    def _skip_user_frozen(self) -> None:
        """Layers frozen before the freezer saw them (fine-tuning) count as frozen: no weight of
        theirs moves, so they have no variation to measure and would block the deeper layers."""
        while (name := self.candidate) is not None and not any(
            p.requires_grad for p in self.layers[name].params
        ):
            self.frozen[name] = self.t
            self._below, self._reference = 0, None
            log.info("layer %s was frozen already at step %d", name, self.t)

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "peak": dict(self.peak),
            "history": self.history,
            "below": self._below,
            "reference": self._reference,
            "forced": self._forced,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume; a state saved for another model (other layers, a reference of another size)
        is refused before anything changes, naming the layer."""
        names = self.layers.names
        check_layers(names, list(state["history"]))
        reference = state["reference"]
        if reference is not None:
            trainable = [n for n in names if n not in state["frozen"]]
            layer = trainable[0] if len(trainable) > self.keep else None
            if layer is None or reference.numel() != self.layers.numel(layer):
                size = "no layer" if layer is None else f"{self.layers.numel(layer)} weights"
                raise ValueError(
                    f"the state's reference weights ({reference.numel()} values) are for layer "
                    f"{layer!r}, which has {size} in this model: a state saved for another model?"
                )
        super().load_state_dict(state)
        self.peak = dict(state["peak"])
        self.history = {n: list(v) for n, v in state["history"].items()}
        self._below, self._reference = state["below"], state["reference"]
        self._forced = state["forced"]
