"""Registration in timm's optimizer factory: ``depthsgd``, ``depthlars``, ``depthfeedback``.

After ``import depthaware``, pass the model once more as ``model=`` and the layers are discovered
for it: timm's weight-decay groups are split by layer, each with its depth-scaled ``lr``::

    timm.optim.create_optimizer_v2(model, "depthsgd", lr=0.1, weight_decay=1e-4,
                                   model=model, lr_scale="geometric", end=0.1)
    timm.optim.create_optimizer_v2(model, "depthlars", lr=0.1, model=model, trust_by="group")

(timm's factory hands an optimizer only the parameter groups it built, never the model, hence
the keyword.) ``param_group_fn=`` with :func:`~depthaware.optim.depth_param_groups` works too.

**The depth scale is neutral unless you choose one**: without ``lr_scale=`` every layer keeps
the factory's ``lr`` (the groups still carry their layer and depth, which LARS's per-layer trust
ratio and FeedbackSGD's per-layer signal use). No default scale is chosen for you: in the
package's own comparison (``depthaware reproduce acting``, ``docs/acting.md``) a geometric
scale to 0.1 hurt the residual FCNN on the sine task and the small ViT on digits and left a small
ResNet on digits unchanged.
Without either, ``depthlars`` and ``depthfeedback`` run on timm's groups (a trust ratio / signal
per tensor) and ``depthsgd`` is plain SGD with a ``UserWarning`` saying that no layer has a depth.

The registered entries are optimizer classes (:class:`DepthSGD`, :class:`DepthLARS`,
:class:`DepthFeedbackSGD`), so timm's own registry-wide tests (``tests/test_optim.py``) run on them.
"""

from __future__ import annotations

import math
import warnings

import timm.optim
import torch
from timm.optim import OptimInfo
from timm.optim._optim_factory import default_registry  # timm has no public register function

from ..distributed import local, reduce_sums, shard_groups
from .feedback import FeedbackSGD
from .functional import check_finite, fusable
from .lars import LARS
from .param_groups import split_by_layer
from .scaled_sgd import check_loaded_state

__all__ = ["DepthFeedbackSGD", "DepthLARS", "DepthSGD", "register"]


def _by_layer(params, model, lr, lr_scale, end):
    if model is not None:
        return split_by_layer(params, model, lr, lr_scale, end=end)
    if lr_scale is not None:
        raise ValueError("lr_scale needs model= (the layers come from the model)")
    return params


def _sgd_step(optimizer: torch.optim.SGD):
    """``torch.optim.SGD.step`` without the hook wrapper that torch puts around a class's step:
    ``DepthSGD.step`` is wrapped already, and a second wrapper would run every hook twice."""
    step = torch.optim.SGD.step
    if getattr(step, "hooked", False):
        step = step.__wrapped__
    return step(optimizer)


class DepthSGD(torch.optim.SGD):
    """``torch.optim.SGD`` over depth parameter groups, with a NaN/inf check.

    The per-layer LR lives in each group's ``lr`` (:func:`~depthaware.optim.depth_param_groups`,
    or ``model=`` to split the given groups by the model's layers). A group without ``depth``, at
    construction or through ``add_param_group``, trains as plain SGD at its own ``lr``, with a
    ``UserWarning``.

    Args:
        params, lr, momentum, dampening, weight_decay, nesterov: as ``torch.optim.SGD``.
        model, lr_scale, end: split ``params`` by ``model``'s layers with this depth scale
            (:func:`~depthaware.optim.param_groups.split_by_layer`).
        check_finite: raise ``FloatingPointError`` naming the parameter on a NaN/inf gradient,
            before anything is updated (one host sync per step). Skipped on a step that
            ``torch.amp.GradScaler`` drives with ``fused=True``: the kernel skips that step itself.
        **kwargs: ``maximize``, ``foreach``, ``differentiable``, ``fused``, as ``torch.optim.SGD``.
    """

    def __init__(
        self,
        params,
        lr: float = 0.1,
        momentum: float = 0.9,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        model=None,
        lr_scale=None,
        end: float = 0.1,
        check_finite: bool = True,
        **kwargs,
    ):
        super().__init__(
            _by_layer(params, model, lr, lr_scale, end),
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            **kwargs,
        )
        self.defaults["check_finite"] = check_finite
        for group in self.param_groups:
            group.setdefault("check_finite", check_finite)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("check_finite", True)

    def load_state_dict(self, state_dict: dict) -> None:
        """``torch.optim.SGD.load_state_dict``; a momentum buffer whose shape is not its
        parameter's is refused before anything loads (:func:`check_loaded_state`)."""
        check_loaded_state(self, state_dict)
        super().load_state_dict(state_dict)

    def add_param_group(self, param_group: dict) -> None:
        if "depth" not in param_group:
            warnings.warn(
                "DepthSGD got a parameter group without 'depth': it trains as plain SGD at the "
                "group's own lr. Pass model= (with lr_scale=) or groups from "
                "depthaware.optim.depth_param_groups for per-layer LRs.",
                stacklevel=3,
            )
        super().add_param_group(param_group)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        scale, found_inf = getattr(self, "grad_scale", None), getattr(self, "found_inf", None)
        if scale is None:
            self._check_gradients()
        routed = [g for g in self.param_groups if g["fused"] and not self._fusable(g)]
        if not routed:
            _sgd_step(self)
            return loss
        # torch's fused kernel reads a strided view's memory as flat (a wrong result) and takes
        # no sparse gradient: those groups take the multi-tensor path (sparse ones the loop).
        # A GradScaler step of a fused optimizer hands over scaled gradients, which the other
        # paths cannot take: skip it on an overflow as the kernel would, else unscale as
        # GradScaler.unscale_ does.
        if scale is not None:
            if bool(found_inf):
                return loss
            grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
            torch._foreach_mul_(grads, scale.double().reciprocal().float())
            self.grad_scale = self.found_inf = None
        saved = [group["foreach"] for group in routed]
        for group in routed:
            sparse = any(p.grad is not None and p.grad.is_sparse for p in group["params"])
            group.update(fused=False, foreach=not sparse)
        try:
            _sgd_step(self)
        finally:
            for group, foreach in zip(routed, saved):
                group.update(fused=True, foreach=foreach)
            if scale is not None:
                self.grad_scale, self.found_inf = scale, found_inf
        return loss

    def _fusable(self, group: dict) -> bool:
        """Whether torch's fused kernel updates every CPU tensor of ``group`` correctly."""
        return all(
            p.device.type != "cpu"
            or (
                not p.grad.is_sparse
                and fusable(p, p.grad, self.state.get(p, {}).get("momentum_buffer"))
            )
            for p in group["params"]
            if p.grad is not None
        )

    @torch.no_grad()
    def _check_gradients(self) -> None:
        groups = [
            (g, [p for p in g["params"] if p.grad is not None])
            for g in self.param_groups
            if g["check_finite"]
        ]
        grads = [p.grad for _, ps in groups for p in ps]
        if not grads:
            return
        # max |g| of this rank's values: finite exactly when every entry is, and never overflows;
        # a sharded gradient's shards' maxima are summed in float64 (one collective for the
        # step), so that every rank takes the same decision
        values = [_dense_values(local(g)) for g in grads]
        top = torch.zeros(len(values), dtype=torch.float64, device=values[0].device)
        full = [i for i, v in enumerate(values) if v.numel()]  # an FSDP2 shard may be empty
        if full:
            found = torch._foreach_norm([values[i] for i in full], math.inf)
            top[full] = torch.stack(found).to(torch.float64)
        top = reduce_sums(top[None], shard_groups(grads))[0]
        check_finite(torch.isfinite(top), groups, "gradient")


def _dense_values(g: torch.Tensor) -> torch.Tensor:
    if g.is_sparse:
        g = g.coalesce().values()
    return torch.view_as_real(g) if g.is_complex() else g


class _FromModel:
    """``model=`` (with ``lr_scale``, ``end``) splits the given groups by the model's layers
    before the optimizer's own constructor sees them (see :class:`DepthSGD`)."""

    def __init__(
        self,
        params,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        *,
        model=None,
        lr_scale=None,
        end: float = 0.1,
        **kwargs,
    ):
        params = _by_layer(params, model, lr, lr_scale, end)
        super().__init__(params, lr, momentum, weight_decay, **kwargs)


class DepthLARS(_FromModel, LARS):
    """:class:`~depthaware.optim.LARS` for timm's factory (``"depthlars"``), with ``model=``."""


class DepthFeedbackSGD(_FromModel, FeedbackSGD):
    """:class:`~depthaware.optim.FeedbackSGD` for timm's factory (``"depthfeedback"``), with
    ``model=``."""


def register() -> None:
    """Add depthaware's optimizers to timm's registry (idempotent)."""
    infos = [
        OptimInfo("depthsgd", DepthSGD, "SGD over depth parameter groups", has_eps=False,
                  has_momentum=True),
        OptimInfo("depthlars", DepthLARS, "LARS/LARC with per-tensor or per-layer trust ratio",
                  has_eps=False, has_momentum=True),
        OptimInfo("depthfeedback", DepthFeedbackSGD, "SGD with a live per-layer LR multiplier",
                  has_eps=False, has_momentum=True),
    ]  # fmt: skip
    known = set(timm.optim.list_optimizers())
    for info in infos:
        if info.name not in known:
            default_registry.register(info)
