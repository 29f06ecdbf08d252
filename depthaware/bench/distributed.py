"""Section (6) of `depthaware bench`: an optimizer step under FSDP2 (``fully_shard``), 2 ranks.

Two processes (gloo on CPU, NCCL on GPUs) shard an MLP of four 1024-wide linear layers (4.2M
parameters) with ``fully_shard`` and time, in turn round after round, a ``torch.optim.SGD`` step
and a :class:`~depthaware.optim.LARS` step over the same sharded parameters, and the one
``all_reduce`` that LARS adds per parameter group (its weight and gradient norms). Rank 0's
medians become the rows.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from .. import optim
from ..distributed import reduce_sums, shard_groups, shutdown
from .timing import Row, median_times

__all__ = ["distributed_rows"]

WORLD = 2


def _worker(rank: int, init_file: str, rounds: int, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    cuda = torch.cuda.is_available() and torch.cuda.device_count() >= WORLD
    dist.init_process_group(
        "nccl" if cuda else "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD
    )
    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    mesh = init_device_mesh(device.type, (WORLD,))
    torch.manual_seed(0)
    model = nn.Sequential(*(nn.Linear(1024, 1024) for _ in range(4))).to(device)
    for layer in model:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    sgd = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    lars = optim.LARS(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    sums = torch.ones(2, len(params), device=device)
    sharded = shard_groups(params)
    times = median_times(
        {
            "sgd": sgd.step,
            "lars": lars.step,
            "collective": lambda: reduce_sums(sums, sharded),
        },
        rounds,
    )
    if rank == 0:
        torch.save(times, out)
    shutdown()


def distributed_rows(dev: torch.device, quick: bool) -> Iterator[Row]:
    """SGD and LARS steps under ``fully_shard`` on 2 ranks, and LARS's one collective."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.pt")
        args = (os.path.join(tmp, "init"), 5 if quick else 30, out)
        mp.spawn(_worker, args=args, nprocs=WORLD, join=True)
        t = torch.load(out)
    yield from [
        Row("fully_shard step (2 ranks): torch SGD", t["sgd"]),
        Row(
            "fully_shard step (2 ranks): depthaware LARS",
            t["lars"],
            "torch SGD, fully_shard",
            t["lars"] / t["sgd"],
        ),
        Row(
            "fully_shard: LARS's all_reduce (one per group and step)",
            t["collective"],
            "depthaware LARS, fully_shard",
            t["collective"] / t["lars"],
        ),
    ]
