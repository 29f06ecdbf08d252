"""Layer-aware optimization on plain ``torch.optim`` mechanisms.

Importing this package registers ``depthsgd``, ``depthlars`` and ``depthfeedback`` with timm's
optimizer factory.
"""

from . import functional
from .feedback import FeedbackSGD
from .lars import LARS
from .param_groups import depth_param_groups, depth_scales, split_by_layer
from .registry import DepthFeedbackSGD, DepthLARS, DepthSGD, register
from .scaled_sgd import ScaledSGD
from .schedules import DepthStaggered, LayerLR, cosine, step_decay

register()

__all__ = [
    "LARS",
    "DepthFeedbackSGD",
    "DepthLARS",
    "DepthSGD",
    "DepthStaggered",
    "FeedbackSGD",
    "LayerLR",
    "ScaledSGD",
    "cosine",
    "depth_param_groups",
    "depth_scales",
    "functional",
    "register",
    "split_by_layer",
    "step_decay",
]
