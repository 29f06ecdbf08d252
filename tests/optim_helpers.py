"""What the optimizer tests share: a small net and its data, the kernel paths, and LARS's formula
read plainly."""

import math

import torch
from torch import nn


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))


def data(seed=1, n=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, x.sum(1, keepdim=True).sin()


def loss_of(model, x, y):
    return nn.functional.mse_loss(model(x), y)


def reference_lars(params, grads, bufs, *, lr, momentum, wd, eta, clip, nesterov, by_group, adapt):
    """One step, tensor by tensor, in float64, straight from the docstring's formula."""
    wn = [p.double().norm().item() for p in params]
    gn = [g.double().norm().item() for g in grads]
    if by_group:
        W = math.sqrt(sum(w * w for w, a in zip(wn, adapt) if a))
        G = math.sqrt(sum(g * g for g, a in zip(gn, adapt) if a))
        wn, gn = [W] * len(params), [G] * len(params)
    ratios = [eta * w / (g + wd * w) if w > 0 and g > 0 else None for w, g in zip(wn, gn)]
    valid = [r for r, a in zip(ratios, adapt) if r is not None and a]
    fallback = sum(valid) / len(valid) if valid else 1.0
    out = []
    for i, p in enumerate(params):
        q = ratios[i] if ratios[i] is not None else (fallback if wn[i] == 0 and gn[i] > 0 else 1.0)
        if clip:
            q = min(q / lr, 1.0)
        q = q if adapt[i] else 1.0
        d = grads[i].double() + wd * p.double()
        bufs[i] = momentum * bufs[i] + q * d
        step = q * d + momentum * bufs[i] if nesterov else bufs[i]
        out.append(p.double() - lr * step)
    return out


PATHS = ["loop", "foreach", "fused"]


def make(cls, params, path, **kw):
    """``cls`` on the kernel ``path`` (one of :data:`PATHS`)."""
    return cls(params, foreach=path == "foreach", fused=path == "fused", **kw)


def grads_for(params, step):
    """Gradients of ``params``' shapes, the same for every call at ``step``."""
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=g) for p in params]
