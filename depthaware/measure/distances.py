"""Distance curves :math:`d_l(t) = \\|\\theta_l^{(t)} - \\theta_l^*\\|_2` of every layer, from a
trajectory (:func:`convergence`) or any stream of snapshots (:func:`streamed`, used for a folder of
checkpoints), into a :class:`~depthaware.measure.rates.ConvergenceReport`.

Norms are accumulated in float64 over chunks of :data:`CHUNK` values, each upcast on its own: a
snapshot is never copied whole, and two snapshots and :math:`\\theta^*` are held at a time, in the
dtype they are stored in. A layer's snapshot is its flat vector, the list of its parameters (a
checkpoint read as it is), or a sketch (shape ``(ROWS, m)``, :mod:`~depthaware.measure.sketch`),
which gives one distance estimate per row; the distance is their root mean square and the rows are
kept for the rates' errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeGuard, cast

import numpy as np
import torch

from ..layers import LayerGroups
from .rates import ConvergenceReport
from .sketch import sketch, sketched
from .trajectory import Trajectory

#: a layer's weights in a snapshot: a flat vector, its parameters, or a (ROWS, m) sketch
Snapshot = torch.Tensor | list[torch.Tensor]

__all__ = ["CHUNK", "convergence", "resketched", "streamed"]

#: values upcast to float64 at a time (512 KiB)
CHUNK = 1 << 16


def convergence(
    trajectory: Trajectory,
    final: int | Mapping[str, torch.Tensor] | LayerGroups | None = None,
) -> ConvergenceReport:
    """Measure the convergence of every layer of a trajectory.

    Args:
        trajectory: at least two snapshots; the first is :math:`t_0`.
        final: the convergence point :math:`\\theta^*`: ``None`` (the last snapshot), a snapshot
            step, a ``{layer: flat weights}`` mapping, or a LayerGroups (its current weights).

    Returns:
        ConvergenceReport.
    """
    steps = trajectory.steps
    if len(steps) < 2:
        raise ValueError(f"convergence needs at least two snapshots; the trajectory has {steps}")
    target = _final_weights(trajectory, final)
    snapshots = ((step, trajectory[step]) for step in steps)
    return streamed(trajectory.layer_names, trajectory.depths, snapshots, target, trajectory.unit)


def resketched(trajectory: Trajectory, k: int, seed: int) -> ConvergenceReport:
    """The report an exact trajectory would have given sketched at ``k`` with hash seed
    ``seed`` (each snapshot's layers larger than ``k`` sketched as a sketched trajectory would
    have taken them, the others kept): a fresh draw of the sketch on the same run, to check the
    error bands over many sketch seeds. One snapshot in memory at a time."""
    if trajectory.sketch_size is not None:
        raise ValueError("resketched needs an exact trajectory; this one is sketched already")
    numels = trajectory.numels

    def encode(snap):
        return {
            n: sketch(v, k, seed=seed, layer=n) if sketched(numels[n], k) else v
            for n, v in snap.items()
        }

    snapshots = ((step, encode(trajectory[step])) for step in trajectory.steps)
    target = encode(trajectory[trajectory.steps[-1]])
    return streamed(trajectory.layer_names, trajectory.depths, snapshots, target, trajectory.unit)


def streamed(
    names: list[str],
    depths: list[int],
    snapshots: Iterable[tuple[int, Mapping[str, Snapshot]]],
    target: Mapping[str, Snapshot],
    unit: str | None = None,
) -> ConvergenceReport:
    """The report from ``(step, {layer: weights})`` pairs in step order and :math:`\\theta^*`
    (``target``), holding two snapshots at a time (the current one and the one before),
    whatever the number of steps: the engine of :func:`convergence` and of a folder of
    checkpoints read one file at a time. A layer's weights are a flat vector, a list of tensors
    (its parameters) or a ``(ROWS, m)`` sketch, alike in every snapshot and in ``target``.
    ``unit``: what a step counts (``"epoch"``, ``"step"``)."""
    steps, dist, norms, moved, rows = [], [], [], [], []
    prev, sketched = None, False
    # two float64 buffers for every chunk: a temporary per chunk would grow the heap of a long
    # folder (glibc's mmap threshold rises to the size freed, and the heap keeps the rest)
    scratch = torch.empty(2, CHUNK, dtype=torch.float64)

    def norm(x, y=None):
        return _estimate(_row_norms(x, y, scratch))

    for step, snapshot in snapshots:
        snap = {n: snapshot[n] for n in names}
        sketched = sketched or any(_is_sketch(v) for v in snap.values())
        steps.append(step)
        row_norms = [_row_norms(snap[n], target[n], scratch) for n in names]
        rows.append(row_norms)
        dist.append([_estimate(r) for r in row_norms])
        norms.append([norm(snap[n]) for n in names])
        if prev is not None:
            moved.append([norm(snap[n], prev[n]) for n in names])
        prev = snap
    L = len(names)
    per_row = None
    if sketched:  # each row's distances; an exact layer's one distance stands for every row
        width = max(len(r) for t in rows for r in t)
        per_row = np.asarray([[r.expand(width).tolist() for r in t] for t in rows]).transpose(
            1, 0, 2
        )
    return ConvergenceReport(
        list(names),
        list(depths),
        np.asarray(steps),
        np.asarray(dist, dtype=float).reshape(-1, L).T,
        np.asarray(norms, dtype=float).reshape(-1, L).T,
        np.asarray(moved, dtype=float).reshape(-1, L).T,
        per_row,
        unit=unit,
    )


def _estimate(row_norms: torch.Tensor) -> float:
    """The norm itself (exact), or the root mean square of the sketch rows' estimates."""
    if len(row_norms) == 1:
        return row_norms[0].item()
    return row_norms.square().mean().sqrt().item()


def _is_sketch(x: object) -> TypeGuard[torch.Tensor]:
    return isinstance(x, torch.Tensor) and x.ndim == 2


def _row_norms(x: Snapshot, y: Snapshot | None, scratch: torch.Tensor) -> torch.Tensor:
    """The L2 norm of ``x - y`` (or of ``x``), float64: of a layer's exact weights (a flat vector
    or its parameters) as shape ``(1,)``, or of each row of a sketch ``(ROWS, m)``: each row's
    squared norm estimates the squared distance, their mean is the estimate."""
    if _is_sketch(x):
        d = x.to("cpu", torch.float64)
        if y is not None:  # a sketch's reference is a sketch of the same shape
            d = d - cast(torch.Tensor, y).to("cpu", torch.float64)
        return torch.linalg.vector_norm(d, dim=1)
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    ys: list[torch.Tensor | None] = (
        [None] * len(xs) if y is None else list(y) if isinstance(y, (list, tuple)) else [y]
    )
    total = sum(_squared(a, b, scratch) for a, b in zip(xs, ys, strict=True))
    return torch.tensor([total], dtype=torch.float64).sqrt()


def _squared(a: torch.Tensor, b: torch.Tensor | None, scratch: torch.Tensor) -> float:
    """:math:`\\|a - b\\|^2` (or :math:`\\|a\\|^2`) in float64, :data:`CHUNK` values at a time
    upcast into ``scratch`` (shape ``(2, CHUNK)``)."""
    a = a.detach().reshape(-1)
    b = None if b is None else b.detach().reshape(-1)
    total = 0.0
    for start in range(0, a.numel(), CHUNK):
        n = min(CHUNK, a.numel() - start)
        d = scratch[0, :n].copy_(a[start : start + n])
        if b is not None:  # upcast into the scratch too: a mixed-dtype sub_ would allocate
            d.sub_(scratch[1, :n].copy_(b[start : start + n]))
        total += float(torch.dot(d, d))
    return total


def _final_weights(trajectory, final) -> dict[str, torch.Tensor]:
    if final is None:
        final = trajectory.steps[-1]
    if isinstance(final, int):
        if final not in trajectory:
            raise ValueError(f"final step {final} is not a snapshot; steps are {trajectory.steps}")
        final = trajectory[final]
    else:  # weights from outside: checked as flat vectors, then in the stored form
        if isinstance(final, LayerGroups):
            final = {layer.name: layer.flat() for layer in final}
        final = {n: trajectory.encode(n, v) for n, v in _flat_final(trajectory, final).items()}
    return {n: torch.as_tensor(v).detach().to("cpu") for n, v in final.items()}


def _flat_final(trajectory, final) -> dict[str, torch.Tensor]:
    numels = trajectory.numels
    unknown = sorted(set(final) - set(numels))
    missing = sorted(set(numels) - set(final))
    if unknown or missing:
        raise ValueError(
            f"final weights do not match the trajectory's layers: "
            f"unknown {unknown}, missing {missing}"
        )
    out = {}
    for n, v in final.items():
        v = torch.as_tensor(v).detach().reshape(-1).to("cpu", torch.float64)
        if v.numel() != numels[n]:
            raise ValueError(
                f"final weights of layer {n!r} have {v.numel()} values, the trajectory {numels[n]}"
            )
        out[n] = v
    return out
