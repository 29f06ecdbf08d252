"""Layer-aware optimization on plain ``torch.optim`` mechanisms.

Importing this package registers ``depthsgd``, ``depthlars`` and ``depthfeedback`` with timm's
optimizer factory.
"""

from . import functional, kernels
from .feedback import DepthFeedbackSGD, FeedbackSGD
from .lars import LARS, DepthLARS
from .param_groups import depth_param_groups, depth_scales, split_by_layer
from .registry import register
from .scaled_sgd import ScaledSGD
from .schedules import CosineDecay, DepthStaggered, LayerLR, StepDecay
from .sgd import DepthSGD

register()

__all__ = [
    "LARS",
    "CosineDecay",
    "StepDecay",
    "DepthFeedbackSGD",
    "DepthLARS",
    "DepthSGD",
    "DepthStaggered",
    "FeedbackSGD",
    "LayerLR",
    "ScaledSGD",
    "depth_param_groups",
    "depth_scales",
    "functional",
    "kernels",
    "register",
    "split_by_layer",
]
