"""Freezing schedules that give real training time back (Section 8; FreezeOut, Brock et al. 2017).

Shallower layers reach their convergence point first (layer convergence bias), so they can stop
training early. Two freezers, each an object with its own state (``step``, ``state_dict``,
``load_state_dict``) that the user's loop calls once per step:

* :class:`FreezeOut`: layer :math:`i` of :math:`L` anneals its LR to zero by its freezing time
  :math:`T_i = \\tau_i T` (cosine, :math:`\\mathrm{lr}_i(t) = \\mathrm{lr}_i(0)\\, b(t)\\,
  \\tfrac12(1 + \\cos(\\pi t / T_i))`), then stops training, with
  :math:`\\tau_i = t_0 + (1 - t_0)\\, i / (L-1)` (``"linear"``) or its cube (``"cubic"``,
  FreezeOut's default, which freezes the first layer at :math:`t_0^3 T`). The last layer trains
  to the end.
* :class:`ConvergenceFreezer`: the shallowest still-training layer freezes when its normalized
  weight variation between checks (Appendix A.2),
  :math:`v = \\|\\theta^{(t)} - \\theta^{(t-k)}\\| / \\|\\theta^{(t-k)}\\|`, has stayed below
  ``threshold`` times its first non-zero value for ``patience`` consecutive checks. Layers that
  were frozen already (``requires_grad=False`` on all their parameters) are passed over.

What freezing does, so that the savings are real:

* the layer's parameters get ``requires_grad=False`` and ``.grad = None``: no gradient is
  computed for them and every torch optimizer skips them; their optimizer state is released.
  They stay in the optimizer's param groups, so ``optimizer.state_dict()`` keeps its layout and a
  resumed optimizer loads (the frozen parameters simply have no state);
* when the frozen layers form a prefix (as both freezers keep them), nothing before the first
  trainable layer requires grad, so autograd records no graph there and the backward pass stops
  at the first trainable layer;
* BatchNorm modules of a frozen layer stop updating their running statistics: a forward pre-hook
  puts them in eval mode even when the loop calls ``model.train()`` (``bn_eval=True``, default;
  ``requires_grad=False`` alone does not stop the statistics).

DistributedDataParallel: freezing mid-run changes which parameters get gradients, which DDP's
reducer accepts only with ``find_unused_parameters=True``; the freezers check this on the first
``step`` and raise a ``ValueError`` naming the fix otherwise.

>>> import torch, depthaware as da
>>> net = da.models.FCNN((1, 8, 8, 1))
>>> opt = torch.optim.SGD(da.optim.depth_param_groups(net, lr=0.1), momentum=0.9)
>>> freezer = da.freeze.FreezeOut(opt, da.layer_groups(net), total_steps=100, t0=0.5)
>>> [round(t) for t in freezer.freeze_steps.values()]
[12, 42, 100]
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .layers import LayerGroups, as_layer_groups
from .measure.bias import weight_variation

__all__ = ["ConvergenceFreezer", "FreezeOut", "FrozenLayers", "freeze_layer"]

log = logging.getLogger(__name__)


def _force_eval(module: nn.Module, args) -> None:
    module.training = False


def _old_order(who: str) -> None:
    warnings.warn(
        f"{who}(layers, ..., optimizer) is the order before 0.2; pass the optimizer first, as "
        "to every torch scheduler",
        DeprecationWarning,
        stacklevel=3,
    )


def freeze_layer(
    optimizer: Optimizer | None,
    layers: nn.Module | LayerGroups,
    name: str | None = None,
    bn_eval: bool = True,
) -> list:
    """Freeze one layer (of a model or its LayerGroups) now; returns the removable hook handles
    that keep its BatchNorms in eval.

    Sets ``requires_grad=False`` and ``.grad=None`` on its parameters and drops their state in
    ``optimizer`` (``None``: no optimizer; the parameters stay in its param groups). The order
    before 0.2, ``(layers, name, optimizer=None)``, is recognised (a layer name second) and warns.
    """
    if isinstance(layers, str):  # the order before 0.2: (layers, name, optimizer)
        _old_order("freeze_layer")
        optimizer, layers, name = name, optimizer, layers
    if name is None:
        raise TypeError("freeze_layer(optimizer, layers, name): the layer's name is missing")
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

    :meth:`freeze` freezes a layer (:func:`freeze_layer`) and records the step :attr:`t`;
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
        """Freeze layer ``name`` now, at step :attr:`t`."""
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


def _check_layers(names: list[str], saved: list[str]) -> None:
    if saved != names:
        missing = [n for n in names if n not in saved]
        extra = [n for n in saved if n not in names]
        raise ValueError(
            f"this state is of layers {saved}, the model has {names} (missing from the state: "
            f"{missing}, not in the model: {extra}): a state saved for another model?"
        )


class FreezeOut(LambdaLR):
    """FreezeOut: per-layer cosine annealing to zero, then freezing (module docstring).

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
        bn_eval, ddp: see the module docstring.
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
        lambdas = [partial(self.factor, layer=g["layer"]) for g in optimizer.param_groups]
        LambdaLR.__init__(self, optimizer, lambdas, last_epoch)

    def factor(self, t: int, layer: str) -> float:
        """The factor on ``layer``'s initial LR at step ``t`` (zero from its freezing step on)."""
        t_i = self.freeze_steps[layer]
        anneal = 0.5 * (1 + math.cos(math.pi * t / t_i)) if t < t_i else 0.0
        scale = 1 / self.fractions[layer] if self.scale_lr else 1.0
        return (self.base(t) if self.base else 1.0) * anneal * scale

    # the frozen layers' bookkeeping, held: ``layers``, ``frozen``, ``trainable``
    layers = property(lambda self: self.frozen_layers.layers)
    frozen = property(lambda self: self.frozen_layers.frozen)
    trainable = property(lambda self: self.frozen_layers.trainable)

    def frozen_fraction(self) -> float:
        """Share of the parameters that are frozen now."""
        return self.frozen_layers.frozen_fraction()

    def step(self, epoch=None) -> None:
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
        _check_layers(self.layers.names, list(state.get("freeze_steps", self.layers.names)))
        self.frozen_layers.load_state_dict(state.pop("freezer"))
        super().load_state_dict(state)


class ConvergenceFreezer(FrozenLayers):
    """Freeze the shallowest training layer once its weights stop moving (module docstring).

    Threshold reasoning. Appendix A.2 shows the normalized weight variation does not fall to
    zero while the LR stays constant: it settles at the level SGD's noise sustains. Its *drop*
    relative to the layer's own early variation says the layer has left its fast phase, and the
    shallow layers leave it first. The default (variation below 0.5x its first measured value for
    2 consecutive checks, one check per epoch) was chosen from a one-seed sweep of
    ``threshold`` in {0.1, 0.3, 0.5} on the residual FCNN (sine) and a small ResNet (digits): at
    0.1 almost nothing froze under a cosine schedule (2-9% of backward FLOPs saved), at 0.5 the
    layers froze in depth order through the run (28-36% saved) at the unfrozen run's accuracy.
    Never before ``min_step``; the last ``keep`` layers (the head) never freeze.

    Args:
        optimizer: the optimizer training the layers: its state for frozen parameters is
            released (``None``: no optimizer). First, as for every torch scheduler; the order
            before 0.2, ``(layers, optimizer=None, ...)``, is recognised and warns.
        layers: the model or its LayerGroups.
        check_every: steps between checks (e.g. the steps of one epoch).
        threshold: relative drop of the variation that counts as converged.
        patience: consecutive checks below threshold before freezing.
        min_step: no layer freezes before this step.
        max_step: at this step the current candidate freezes whatever its signal (``None``: never).
        keep: number of deepest layers that never freeze.
        bn_eval, ddp: see the module docstring.
    """

    def __init__(
        self,
        optimizer: Optimizer | None,
        layers: nn.Module | LayerGroups | None = None,
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
        if isinstance(optimizer, (nn.Module, LayerGroups)):  # the order before 0.2
            _old_order("ConvergenceFreezer")
            optimizer, layers = layers, optimizer
        if layers is None:
            raise TypeError("ConvergenceFreezer(optimizer, layers, ...): the layers are missing")
        super().__init__(optimizer, layers, bn_eval, ddp)
        layers = self.layers
        if not 0 <= keep < len(layers):
            raise ValueError(f"keep must be in [0, {len(layers) - 1}]; got {keep}")
        self.check_every, self.threshold, self.patience = check_every, threshold, patience
        self.min_step, self.max_step, self.keep = min_step, max_step, keep
        self.first: dict[str, float] = {}  # the first variation measured per layer
        self.history: dict[str, list[float]] = {n: [] for n in layers.names}
        self._below = 0
        self._reference: torch.Tensor | None = None  # candidate's weights at the last check

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
                self.first.setdefault(name, v)
            if name in self.first:
                self._below = self._below + 1 if v < self.threshold * self.first[name] else 0
            due = self.max_step is not None and self.t >= self.max_step
            if self.t >= self.min_step and (self._below >= self.patience or due):
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
            "first": dict(self.first),
            "history": self.history,
            "below": self._below,
            "reference": self._reference,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume; a state saved for another model (other layers, a reference of another size)
        is refused before anything changes, naming the layer."""
        names = self.layers.names
        _check_layers(names, list(state["history"]))
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
        self.first = dict(state["first"])
        self.history = {n: list(v) for n, v in state["history"].items()}
        self._below, self._reference = state["below"], state["reference"]
