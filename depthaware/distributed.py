"""What the package needs of ``torch.distributed``: sharded parameters' whole-tensor statistics,
the one writer of a run, and the engines it refuses.

Under FSDP2 (``torch.distributed.fsdp.fully_shard``) a parameter is a ``DTensor``: each rank holds
a shard. A per-tensor statistic that LARS or FeedbackSGD reads (a squared norm, a dot product) is
a sum over the tensor's elements, so the whole tensor's value is the sum of the shards' values
over the mesh dimensions the tensor is sharded on -- never over a replicate dimension (HSDP), whose
ranks hold the same values. :func:`reduce_sums` takes the local values of every tensor of a step
and reduces them with one ``all_reduce`` per distinct process group (one per step on an FSDP2 or
HSDP mesh), so that every rank holds the same numbers and takes the same decisions.

Legacy FSDP1 (``FullyShardedDataParallel``) hands the optimizer flat 1-d shards that mix layers:
no per-layer statistic can be read from them, and :func:`refuse_flat` says so.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "agree",
    "full",
    "is_dtensor",
    "is_writer",
    "local",
    "refuse_flat",
    "reduce_sums",
    "shard_groups",
    "shard_offset",
    "shutdown",
    "sum_shards",
]


def _dtensor():
    from torch.distributed.tensor import DTensor

    return DTensor


def is_dtensor(t) -> bool:
    """Whether ``t`` is a ``DTensor`` (a sharded or replicated parameter, or its state)."""
    return isinstance(t, _dtensor())


def local(t: torch.Tensor) -> torch.Tensor:
    """The local shard of a ``DTensor`` (a view: updating it updates the parameter), else ``t``."""
    return t.to_local() if isinstance(t, _dtensor()) else t


def shard_offset(p: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(this rank's values, their first coordinate in the flat whole tensor)``: the tensor
    itself at 0, or a ``Shard(0)`` DTensor's local rows at their global offset (torch.chunk's
    split, as FSDP2's)."""
    if not isinstance(p, _dtensor()):
        return p, 0
    dims = [(d, pl) for d, pl in enumerate(p.placements) if pl.is_shard()]
    if len(dims) != 1 or getattr(dims[0][1], "dim", None) != 0:
        raise ValueError(
            f"a sketch takes parameters sharded on their first dimension (FSDP2); got "
            f"{p.placements} for shape {tuple(p.shape)}"
        )
    mesh_dim = dims[0][0]
    chunk = -(-p.shape[0] // p.device_mesh.size(mesh_dim))
    coordinate = p.device_mesh.get_coordinate()
    assert coordinate is not None, "this rank holds no shard of the parameter"
    row = min(coordinate[mesh_dim] * chunk, p.shape[0])
    return p.to_local(), row * (p.numel() // max(p.shape[0], 1))


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: a ``DTensor``'s gathered (``full_tensor``, a collective every rank of
    its mesh takes part in), else ``t``."""
    return t.full_tensor() if isinstance(t, _dtensor()) else t


def sum_shards(t: torch.Tensor, group: Any) -> torch.Tensor:
    """``t`` summed over the ranks of ``group`` in place (one ``all_reduce``), as the shards'
    partial results of one whole tensor."""
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def is_writer() -> bool:
    """Whether this process writes a run's files: rank 0 of an initialized process group, or the
    only process."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def agree(ok: bool) -> bool:
    """Whether ``ok`` holds on every rank (one ``all_reduce``; ``ok`` itself without a process
    group). The writer's outcome reaches the readers this way, so that a failed write raises on
    every rank instead of leaving the others waiting or reading a file that is not there."""
    if not (dist.is_available() and dist.is_initialized()):
        return ok
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
        device = torch.device("cuda", torch.cuda.current_device())
    flag = torch.tensor([int(ok)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def refuse_flat(params, what: str) -> None:
    """``ValueError`` if ``params`` hold FSDP1 flat parameters (whose per-layer meaning is lost)."""
    if any(getattr(p, "_fsdp_flattened", False) for p in params):
        raise ValueError(
            f"{what} got a flat parameter of FullyShardedDataParallel (FSDP1): its shards are "
            "1-d slices that mix layers, so no per-layer statistic can be read from them. Shard "
            "with torch.distributed.fsdp.fully_shard (FSDP2) or use DistributedDataParallel."
        )


def shard_groups(tensors: Sequence[torch.Tensor]) -> list[tuple[list[int], Any]]:
    """``[(indices, process group)]``: which of ``tensors`` are sharded ``DTensor``\\ s, grouped by
    the process group of the mesh dimension they are sharded on. Empty for plain tensors and
    replicated ``DTensor``\\ s.

    Raises:
        ValueError: a tensor sharded on more than one mesh dimension, or with a pending
            (``Partial``) reduction: its statistics could not be reduced in one sum.
    """
    DTensor = _dtensor()
    groups: dict[Any, list[int]] = {}
    for i, t in enumerate(tensors):
        if not isinstance(t, DTensor):
            continue
        if any(p.is_partial() for p in t.placements):
            raise ValueError(f"tensor {i} of shape {tuple(t.shape)} has a pending (Partial) sum")
        dims = [d for d, p in enumerate(t.placements) if p.is_shard()]
        if len(dims) > 1:
            raise ValueError(
                f"tensor {i} of shape {tuple(t.shape)} is sharded on mesh dimensions {dims}; "
                "one shard dimension is supported (FSDP2, HSDP)"
            )
        if dims:
            groups.setdefault(t.device_mesh.get_group(dims[0]), []).append(i)
    return [(index, group) for group, index in groups.items()]


def reduce_sums(values: torch.Tensor, sharded: list[tuple[list[int], Any]]) -> torch.Tensor:
    """``values`` (shape ``(K, P)``: K local sums for each of P tensors) with the columns of
    sharded tensors summed over their shards: one ``all_reduce`` per process group in
    ``sharded`` (see :func:`shard_groups`). Plain tensors' columns are returned as they are."""
    if not sharded:
        return values
    values = values.clone()
    for index, group in sharded:
        cols = torch.tensor(index, device=values.device)
        block = values.index_select(1, cols).contiguous()
        dist.all_reduce(block, op=dist.ReduceOp.SUM, group=group)
        values.index_copy_(1, cols, block)
    return values


def shutdown() -> None:
    """End this rank's part in a run: collect garbage while the interpreter is whole, wait for
    every rank, then destroy every process group.

    DDP's and FSDP's hooks keep modules in reference cycles whose tensors gloo's threads may still
    hold; left to the interpreter's exit, freeing them can abort a rank after all its work is done
    ("terminate called without an active exception"). Drop your own references to the models
    first."""
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
