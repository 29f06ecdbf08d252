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

The registered entries are optimizer classes (:class:`~depthaware.optim.DepthSGD`,
:class:`~depthaware.optim.DepthLARS`, :class:`~depthaware.optim.DepthFeedbackSGD`, each beside its
base), so timm's own registry-wide tests (``tests/test_optim.py``) run on them.
"""

from __future__ import annotations

import timm.optim
from timm.optim import OptimInfo
from timm.optim._optim_factory import default_registry  # timm has no public register function

from .feedback import DepthFeedbackSGD
from .lars import DepthLARS
from .sgd import DepthSGD

__all__ = ["register"]


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
