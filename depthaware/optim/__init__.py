"""Layer-aware optimization on plain ``torch.optim`` mechanisms.

Importing this package registers ``depthsgd``, ``depthlars`` and ``depthfeedback`` with timm's
optimizer factory.
"""

from .feedback import FeedbackSGD
from .lars import LARS
from .param_groups import depth_param_groups, depth_scales
from .registry import DepthSGD, register
from .schedules import DepthStaggered, LayerLR, cosine, step_decay

register()

__all__ = [
    "LARS",
    "DepthSGD",
    "DepthStaggered",
    "FeedbackSGD",
    "LayerLR",
    "cosine",
    "depth_param_groups",
    "depth_scales",
    "register",
    "step_decay",
]
