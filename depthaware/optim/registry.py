"""Registration in timm's optimizer factory: ``depthsgd``, ``depthlars``, ``depthfeedback``.

After ``import depthaware``, pass the model once more as ``model=`` and the layers are discovered
for it: timm's weight-decay groups are split by layer, each with its depth-scaled ``lr``::

    timm.optim.create_optimizer_v2(model, "depthsgd", lr=0.1, weight_decay=1e-4,
                                   model=model, lr_scale="geometric", end=0.1)
    timm.optim.create_optimizer_v2(model, "depthlars", lr=0.1, model=model, trust_by="group")

(timm's factory hands an optimizer only the parameter groups it built, never the model, hence
the keyword.) Without ``model=``, ``depthlars`` and ``depthfeedback`` run on timm's groups (a trust
ratio / signal per tensor); ``depthsgd`` refuses groups without a ``depth`` rather than silently
running as plain SGD. ``param_group_fn=`` with :func:`~depthaware.optim.depth_param_groups`
works too.
"""

from __future__ import annotations

import torch
from timm.optim._optim_factory import OptimInfo, default_registry

from .feedback import FeedbackSGD
from .lars import LARS, _norms, check_finite
from .param_groups import split_by_layer

__all__ = ["DepthSGD", "register"]


class DepthSGD(torch.optim.SGD):
    """``torch.optim.SGD`` over depth parameter groups, with a NaN/inf check.

    Every group must carry ``depth`` (from :func:`~depthaware.optim.depth_param_groups`): the
    per-layer LR lives in each group's ``lr``, and a group without it means the grouping was
    lost. ``check_finite`` raises ``FloatingPointError`` on a NaN/inf gradient before updating.
    """

    def __init__(
        self,
        params,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        *,
        check_finite: bool = True,
        **kwargs,
    ):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kwargs)
        missing = [i for i, g in enumerate(self.param_groups) if "depth" not in g]
        if missing:
            raise ValueError(
                f"DepthSGD param groups {missing} have no 'depth'; pass groups from "
                "depthaware.optim.depth_param_groups (with timm: model=model or param_group_fn=)"
            )
        self.check_finite = check_finite

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
            closure = None
        else:
            loss = None
        if self.check_finite:
            groups = [
                (g, [p for p in g["params"] if p.grad is not None]) for g in self.param_groups
            ]
            grads = [p.grad for _, ps in groups for p in ps]
            if grads:
                check_finite(_norms(grads, grads[0].device.type == "cuda"), groups)
        super().step()
        return loss


def _with_layers(cls):
    """``cls(params, ...)`` that first splits ``params`` by the layers of ``model=``, if given."""

    def build(params, lr: float = 0.1, *, model=None, lr_scale=None, end: float = 0.1, **kwargs):
        if model is not None:
            params = split_by_layer(params, model, lr, lr_scale, end=end)
        elif lr_scale is not None:
            raise ValueError("lr_scale needs model= (the layers come from the model)")
        return cls(params, lr=lr, **kwargs)

    build.__name__ = build.__qualname__ = f"{cls.__name__}WithLayers"
    build.__doc__ = f"{cls.__name__} for timm's factory (see the registry module docstring)."
    return build


def register() -> None:
    """Add depthaware's optimizers to timm's registry (idempotent)."""
    infos = [
        OptimInfo(
            "depthsgd",
            _with_layers(DepthSGD),
            "SGD over depth parameter groups",
            has_eps=False,
            has_momentum=True,
        ),
        OptimInfo(
            "depthlars",
            _with_layers(LARS),
            "LARS/LARC with per-tensor or per-layer trust ratio",
            has_eps=False,
            has_momentum=True,
        ),
        OptimInfo(
            "depthfeedback",
            _with_layers(FeedbackSGD),
            "SGD with a live per-layer LR multiplier",
            has_eps=False,
            has_momentum=True,
        ),
    ]
    for info in infos:
        if info.name not in default_registry._optimizers:
            default_registry.register(info)
