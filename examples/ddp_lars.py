"""Depth-aware LARS under DistributedDataParallel, checked against one process:

    torchrun --nproc_per_node 2 examples/ddp_lars.py

Each process trains on its half of every batch; DDP averages the gradients, so LARS's trust
ratios (from the full weights and the averaged gradients) are those of one process on the whole
batch. Rank 0 then trains the same model in one process on the global batches and prints the
largest difference between the two; the script exits non-zero above the tolerance. gloo on CPU,
NCCL where CUDA is present.
"""

import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import depthaware as da
from depthaware.distributed import shutdown
from depthaware.recipes.sine import sine_data

TOLERANCE = 1e-5


def residual_fcnn():
    torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    return da.models.ResidualFCNN()


def lars(model):
    groups = da.optim.depth_param_groups(model, lr=0.5, weight_decay=1e-4)
    return da.optim.LARS(groups, momentum=0.9, trust_coefficient=0.02, trust_by="group")


def train(model, opt, rank=0, world=1, device="cpu"):
    x, y = (t.to(device) for t in sine_data(1024, seed=0))
    for epoch in range(2):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(x), 256):
            idx = perm[i : i + 256][rank::world].to(device)
            opt.zero_grad()
            nn.functional.mse_loss(model(x[idx]), y[idx]).backward()
            opt.step()


def setup():
    """The process group (NCCL on GPUs, gloo on CPU), this rank, the world size, the device."""
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", rank % torch.cuda.device_count()) if cuda else torch.device("cpu")
    return rank, world, device


def compare(params, engine: str, rank: int, world: int, device) -> int:
    """On rank 0: train one process on the global batches, print the largest difference to
    ``params`` (the distributed run's full weights) and return 1 above the tolerance."""
    code = 0
    if rank == 0:
        ref = residual_fcnn().to(device)
        train(ref, lars(ref), device=device)
        diff = max((a - b).abs().max().item() for a, b in zip(params, ref.parameters()))
        print(f"{engine} on {world} ranks vs one process: largest difference {diff:.3g}")
        code = int(not diff <= TOLERANCE)
    return code


def main() -> int:
    rank, world, device = setup()
    model = residual_fcnn().to(device)
    train(DDP(model), lars(model), rank, world, device)
    code = compare(list(model.parameters()), "DDP", rank, world, device)
    del model
    shutdown()  # collect, wait for every rank, destroy the process group
    return code


if __name__ == "__main__":
    sys.exit(main())
