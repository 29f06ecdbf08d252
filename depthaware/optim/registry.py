"""Registration in timm's optimizer factory: ``depthsgd``, ``depthlars``, ``depthfeedback``.

After ``import depthaware``::

    timm.optim.create_optimizer_v2(model, "depthlars", lr=0.1, weight_decay=1e-4)

builds :class:`~depthaware.optim.LARS` on timm's weight-decay groups (a trust ratio per tensor).
To get one group per layer with depth-scaled LRs, hand timm the grouping::

    groups = functools.partial(da.optim.depth_param_groups, lr=0.1, lr_scale="geometric")
    timm.optim.create_optimizer_v2(model, "depthsgd", lr=0.1, param_group_fn=groups)

timm's factory passes an optimizer class only the parameters it grouped, never the model, so
the layers cannot be discovered there; ``depthsgd`` therefore refuses groups without a ``depth``
rather than silently running as plain SGD.
"""

from __future__ import annotations

import torch
from timm.optim._optim_factory import OptimInfo, default_registry

from .feedback import FeedbackSGD
from .lars import LARS, _norms, check_finite

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
                "depthaware.optim.depth_param_groups (with timm: param_group_fn=...)"
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


def register() -> None:
    """Add depthaware's optimizers to timm's registry (idempotent)."""
    infos = [
        OptimInfo(
            "depthsgd",
            DepthSGD,
            "SGD over depth parameter groups",
            has_eps=False,
            has_momentum=True,
        ),
        OptimInfo(
            "depthlars",
            LARS,
            "LARS/LARC with per-tensor or per-layer trust ratio",
            has_eps=False,
            has_momentum=True,
        ),
        OptimInfo(
            "depthfeedback",
            FeedbackSGD,
            "SGD with a live per-layer LR multiplier",
            has_eps=False,
            has_momentum=True,
        ),
    ]
    for info in infos:
        if info.name not in default_registry._optimizers:
            default_registry.register(info)
