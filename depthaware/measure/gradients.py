"""Per-layer gradient statistics.

The mean absolute gradient of layer :math:`l` (Figure 1, left) is
:math:`\\overline{|g_l|} = \\frac{1}{n_l} \\sum_{i=1}^{n_l} |\\partial L / \\partial \\theta_{l,i}|`
over the layer's :math:`n_l` parameters that hold a gradient.

>>> import torch, depthaware as da
>>> net = da.models.FCNN((1, 4, 1))
>>> layers = da.layer_groups(net)
>>> net(torch.ones(2, 1)).sum().backward()
>>> sorted(da.measure.grad_magnitude(layers))
['Layer 1', 'Output layer']
"""

from __future__ import annotations

import torch

from ..layers import LayerGroups

__all__ = ["GradMagnitude", "grad_magnitude"]


def _layer_means(layers: LayerGroups) -> torch.Tensor:
    """Mean |grad| per layer as one tensor of shape ``(L,)``, without a host sync.

    One ``torch._foreach_norm(grads, 1)`` call gives every gradient's L1 norm; an ``index_add_``
    sums them per layer. Layers without any gradient get NaN.
    """
    grads, owner = [], []
    counts = torch.zeros(len(layers), dtype=torch.float64)
    for k, layer in enumerate(layers):
        for p in layer.params:
            if p.grad is not None:
                grads.append(p.grad.detach())
                owner.append(k)
                counts[k] += p.grad.numel()
    if not grads:
        return torch.full((len(layers),), float("nan"), dtype=torch.float64)
    device = grads[0].device
    l1 = torch.stack(torch._foreach_norm(grads, 1)).to(torch.float64)
    sums = torch.zeros(len(layers), dtype=torch.float64, device=device)
    sums.index_add_(0, torch.tensor(owner, device=device), l1)
    return sums / counts.to(device)  # 0/0 -> NaN for layers without gradients


def grad_magnitude(layers: LayerGroups) -> dict[str, float]:
    """Mean absolute gradient per layer, from the ``.grad`` of its parameters.

    A layer none of whose parameters has a gradient gets NaN.
    """
    return dict(zip(layers.names, _layer_means(layers).tolist(), strict=True))


class GradMagnitude:
    """Running mean of :func:`grad_magnitude` over the steps of an epoch.

    Call :meth:`update` after ``backward()``, :meth:`compute` at the end of the epoch and
    :meth:`reset` to start the next; ``update`` never synchronizes with the device.
    """

    def __init__(self, layers: LayerGroups):
        self.layers = layers
        self.reset()

    def reset(self) -> None:
        self._sum = None
        self._n = 0

    def update(self) -> None:
        means = _layer_means(self.layers)
        self._sum = means if self._sum is None else self._sum + means
        self._n += 1

    def compute(self) -> dict[str, float]:
        if not self._n:
            raise ValueError("GradMagnitude.compute() before any update()")
        return dict(zip(self.layers.names, (self._sum / self._n).tolist(), strict=True))
