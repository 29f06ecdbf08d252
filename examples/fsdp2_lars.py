"""Depth-aware LARS under FSDP2 (``fully_shard``), checked against one process:

    torchrun --nproc_per_node 2 examples/fsdp2_lars.py

Every block and the root are sharded; the optimizer is built after ``fully_shard``, so it holds
the sharded parameters. LARS's per-layer norms are the whole tensors' (each rank's shard sums,
reduced in one collective per group and step), so the run equals one process on the global
batches. Rank 0 prints the largest difference and the script exits non-zero above the tolerance.
gloo on CPU, NCCL where CUDA is present.
"""

import sys

from ddp_lars import compare, lars, residual_fcnn, setup, train
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from depthaware.distributed import shutdown


def main() -> int:
    rank, world, device = setup()
    mesh = init_device_mesh(device.type, (world,))
    model = residual_fcnn().to(device)
    for module in (model.fc_in, *model.blocks, model.fc_out, model):
        fully_shard(module, mesh=mesh)
    train(model, lars(model), rank, world, device)  # shard first, then build the optimizer
    full = [p.full_tensor() for p in model.parameters()]  # a collective: every rank calls it
    code = compare(full, "fully_shard", rank, world, device)
    del model, full
    shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
