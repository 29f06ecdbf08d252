"""Freezing one layer, and the bookkeeping of which layers a freezer froze when (the base of
both freezers; the package docstring says what freezing does)."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from ..layers import LayerGroups, as_layer_groups

__all__ = ["Freezer", "FrozenLayers", "check_layers", "freeze_layer"]

log = logging.getLogger("depthaware.freeze")


class Freezer(Protocol):
    """What the training-loop callbacks drive: :class:`~depthaware.freeze.FreezeOut`,
    :class:`~depthaware.freeze.ConvergenceFreezer` or a user's own freezer."""

    def step(self) -> None:
        """Called once after each optimizer step; may freeze layers."""

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state."""


def _force_eval(module: nn.Module, args) -> None:
    module.training = False


def freeze_layer(
    optimizer: Optimizer | None,
    layers: nn.Module | LayerGroups,
    name: str,
    bn_eval: bool = True,
) -> list:
    """Freeze one layer (of a model or its LayerGroups) now; returns the removable hook handles
    that keep its BatchNorms in eval.

    Sets ``requires_grad=False`` and ``.grad=None`` on its parameters and drops their state in
    ``optimizer`` (``None``: no optimizer; the parameters stay in its param groups).
    """
    layers = as_layer_groups(layers)
    layer = layers[name]
    for p in layer.params:
        p.requires_grad_(False)
        p.grad = None
        if optimizer is not None:
            optimizer.state.pop(p, None)
    handles = []
    if bn_eval and layers.model is not None:
        owners = {n.rsplit(".", 1)[0] for n in layer.param_names if "." in n}
        for module_name in sorted(owners):
            module = layers.model.get_submodule(module_name)
            if isinstance(module, _BatchNorm):
                module.eval()
                handles.append(module.register_forward_pre_hook(_force_eval))
    return handles


class FrozenLayers:
    """Which layers of a model are frozen, since which step: the bookkeeping of a freezer.

    :meth:`freeze` freezes a layer (:func:`freeze_layer`) and records the step ``t``;
    ``state_dict``/``load_state_dict`` save and restore the step and the frozen layers (loading
    freezes them again). :class:`ConvergenceFreezer` is one; :class:`FreezeOut`, an LR scheduler,
    holds one.
    """

    def __init__(
        self,
        optimizer: Optimizer | None,
        layers: nn.Module | LayerGroups,
        bn_eval: bool = True,
        ddp: nn.Module | None = None,
    ):
        if ddp is not None and not getattr(ddp, "find_unused_parameters", True):
            raise ValueError(
                "freezing under DistributedDataParallel needs DDP(..., find_unused_parameters="
                "True): frozen parameters stop receiving gradients mid-run"
            )
        self.layers = as_layer_groups(layers)
        self.optimizer, self.bn_eval, self.ddp = optimizer, bn_eval, ddp
        self.frozen: dict[str, int] = {}
        self.t = 0

    def freeze(self, name: str) -> None:
        """Freeze layer ``name`` now, at step ``t``."""
        freeze_layer(self.optimizer, self.layers, name, self.bn_eval)
        self.frozen[name] = self.t
        log.info("froze layer %s at step %d", name, self.t)

    @property
    def trainable(self) -> list[str]:
        return [n for n in self.layers.names if n not in self.frozen]

    def frozen_fraction(self) -> float:
        """Share of the parameters that are frozen now."""
        return sum(self.layers.numel(n) for n in self.frozen) / self.layers.numel()

    def state_dict(self) -> dict:
        return {"t": self.t, "frozen": dict(self.frozen)}

    def load_state_dict(self, state: dict) -> None:
        unknown = [n for n in state["frozen"] if n not in self.layers.names]
        if unknown:
            raise ValueError(f"state names layers this model does not have: {unknown}")
        self.t = state["t"]
        for name, t in state["frozen"].items():
            if name not in self.frozen:
                freeze_layer(self.optimizer, self.layers, name, self.bn_eval)
            self.frozen[name] = t


def check_layers(names: list[str], saved: list[str]) -> None:
    if saved != names:
        missing = [n for n in names if n not in saved]
        extra = [n for n in saved if n not in names]
        raise ValueError(
            f"this state is of layers {saved}, the model has {names} (missing from the state: "
            f"{missing}, not in the model: {extra}): a state saved for another model?"
        )
