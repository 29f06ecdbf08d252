"""Depth-aware LARS under FSDP2 (``fully_shard``), checked against one process:

    torchrun --nproc_per_node 2 examples/fsdp2_lars.py

Every block and the root are sharded; the optimizer is built after ``fully_shard``, so it holds
the sharded parameters. LARS's per-layer norms are the whole tensors' (each rank's shard sums,
reduced in one collective per group and step), so the run equals one process on the global
batches. Rank 0 prints the largest difference and the script exits non-zero above the tolerance.
gloo on CPU, NCCL where CUDA is present.
"""

import sys

import torch
import torch.distributed as dist
from ddp_lars import TOLERANCE, lars, residual_fcnn, train
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard


def main() -> int:
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", rank % torch.cuda.device_count()) if cuda else "cpu"
    mesh = init_device_mesh(device.type if cuda else "cpu", (world,))
    model = residual_fcnn().to(device)
    for module in (model.fc_in, *model.blocks, model.fc_out, model):
        fully_shard(module, mesh=mesh)
    train(model, lars(model), rank, world, device)  # shard first, then build the optimizer
    full = [p.full_tensor() for p in model.parameters()]  # a collective: every rank calls it
    code = 0
    if rank == 0:
        ref = residual_fcnn().to(device)
        train(ref, lars(ref), device=device)
        diff = max((a - b).abs().max().item() for a, b in zip(full, ref.parameters()))
        print(f"fully_shard on {world} ranks vs one process: largest difference {diff:.3g}")
        code = int(not diff <= TOLERANCE)
    dist.destroy_process_group()
    return code


if __name__ == "__main__":
    sys.exit(main())
