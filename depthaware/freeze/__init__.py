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
  ``threshold`` times its largest value so far for ``patience`` consecutive checks. Layers that
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

from .converged import ConvergenceFreezer
from .freezeout import FreezeOut
from .frozen import Freezer, FrozenLayers, freeze_layer

__all__ = ["ConvergenceFreezer", "FreezeOut", "Freezer", "FrozenLayers", "freeze_layer"]
