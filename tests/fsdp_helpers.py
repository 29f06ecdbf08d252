"""What the FSDP2 tests share: a small MLP (one weight zero-initialised) and a small CNN, their
data, and ``fully_shard`` applied layer by layer."""

import torch
from torch import nn


def net(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
    ).to(dtype)
    with torch.no_grad():
        model[2].weight.zero_()  # a zero-initialised weight: LARS's group-mean fallback
    return model


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Conv2d(4, 8, 3), nn.Tanh(), nn.Flatten(),
        nn.Linear(8 * 4 * 4, 1),
    )  # fmt: skip


def images():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, 1, 8, 8, generator=g)
    return x, x.mean((1, 2, 3))[:, None].sin()


def shard(model, mesh):
    from torch.distributed.fsdp import fully_shard

    for layer in model:
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def batch(dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 4, generator=g, dtype=dtype)
    return x, x.sum(1, keepdim=True).sin()
