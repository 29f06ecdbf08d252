"""Distance curves :math:`d_l(t) = \\|\\theta_l^{(t)} - \\theta_l^*\\|_2` of every layer, from a
trajectory (:func:`convergence`) or any stream of snapshots (:func:`streamed`, used for a folder of
checkpoints), into a :class:`~depthaware.measure.rates.ConvergenceReport`.

Norms are computed in float64, two snapshots in memory at a time. A sketched snapshot (shape
``(ROWS, m)``, :mod:`~depthaware.measure.sketch`) gives one distance estimate per row; the distance
is their root mean square and the rows are kept for the rates' errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from ..layers import LayerGroups
from .rates import ConvergenceReport
from .trajectory import Trajectory

__all__ = ["convergence", "streamed"]


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
    return streamed(trajectory.layer_names, trajectory.depths, snapshots, target)


def streamed(
    names: list[str],
    depths: list[int],
    snapshots: Iterable[tuple[int, Mapping[str, torch.Tensor]]],
    target: Mapping[str, torch.Tensor],
) -> ConvergenceReport:
    """The report from ``(step, {layer: flat weights})`` pairs in step order and
    :math:`\\theta^*` (``target``), holding two snapshots at a time (the current one and the one
    before), whatever the number of steps: the engine of :func:`convergence` and of a folder of
    checkpoints read one file at a time. ``snapshots`` may reuse the buffers of the snapshot before
    the previous one (nothing older is read)."""
    steps, dist, norms, moved, rows = [], [], [], [], []
    prev, sketched = None, False
    scratch: dict[str, torch.Tensor] = {}  # one buffer per layer for the differences: a large
    # temporary per layer and step would grow the heap of a long folder (glibc's mmap threshold)

    def minus(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        buf = scratch.get(name)
        if buf is None or buf.shape != a.shape:
            buf = scratch[name] = torch.empty_like(a)
        return torch.sub(a, b, out=buf)

    for step, snapshot in snapshots:
        snap = {n: snapshot[n].to("cpu", torch.float64) for n in names}
        sketched = sketched or any(v.ndim == 2 for v in snap.values())  # (ROWS, m) sketches
        steps.append(step)
        per_row = [_row_norms(minus(n, snap[n], target[n])) for n in names]
        rows.append(per_row)
        dist.append([_estimate(r) for r in per_row])
        norms.append([_estimate(_row_norms(snap[n])) for n in names])
        if prev is not None:
            moved.append([_estimate(_row_norms(minus(n, snap[n], prev[n]))) for n in names])
        prev = snap
    L = len(names)
    per_row = None
    if sketched:  # each row's distances; an exact layer's one distance stands for every row
        width = max(len(r) for t in rows for r in t)
        per_row = np.asarray([[r.expand(width).tolist() for r in t] for t in rows])
        per_row = per_row.transpose(1, 0, 2)
    return ConvergenceReport(
        list(names),
        list(depths),
        np.asarray(steps),
        np.asarray(dist, dtype=float).reshape(-1, L).T,
        np.asarray(norms, dtype=float).reshape(-1, L).T,
        np.asarray(moved, dtype=float).reshape(-1, L).T,
        per_row,
    )


def _estimate(row_norms: torch.Tensor) -> float:
    """The norm itself (exact), or the root mean square of the sketch rows' estimates."""
    if len(row_norms) == 1:
        return row_norms[0].item()
    return row_norms.square().mean().sqrt().item()


def _row_norms(x: torch.Tensor) -> torch.Tensor:
    """The L2 norm of a flat vector as shape ``(1,)``, or of each row of a sketch ``(ROWS, m)``:
    each row's squared norm estimates the squared distance, their mean is the estimate."""
    return torch.linalg.vector_norm(x.reshape(-1, x.shape[-1]) if x.ndim == 2 else x[None], dim=1)


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
    return {n: torch.as_tensor(v).detach().to("cpu", torch.float64) for n, v in final.items()}


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
