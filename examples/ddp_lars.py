"""Depth-aware LARS under DistributedDataParallel, on CPU:

    torchrun --nproc_per_node 2 examples/ddp_lars.py

Each process trains on its half of every batch; DDP averages the gradients, so LARS's trust
ratios (computed from the full weights and the averaged gradients) are the same on every rank.
"""

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import depthaware as da


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = da.models.ResidualFCNN()
    layers = da.layer_groups(model)
    opt = da.optim.LARS(
        da.optim.depth_param_groups(layers, lr=0.5, weight_decay=1e-4),
        momentum=0.9,
        trust_coefficient=0.02,
        trust_by="group",
    )
    ddp = DDP(model)
    x, y = da.recipes.sine.sine_data(4096, seed=0)
    for epoch in range(3):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(x), 256):
            idx = perm[i : i + 256][rank::world]
            opt.zero_grad()
            loss = nn.functional.mse_loss(ddp(x[idx]), y[idx])
            loss.backward()
            opt.step()
        if rank == 0:
            print(f"epoch {epoch}: loss {loss.item():.4f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
