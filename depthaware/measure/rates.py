"""Layer-wise convergence (Definition 2.1), weight variation (Appendix A.2) and bias statistics.

For layer :math:`l` with snapshots :math:`\\theta_l^{(t)}` and convergence point :math:`\\theta_l^*`
(the last snapshot unless given), the distance curve is :math:`d_l(t) = \\|\\theta_l^{(t)} -
\\theta_l^*\\|_2` and the convergence rate over the window :math:`[t_1, t_2]` is

.. math::

    C_l^{(t_1, t_2)} = \\frac{1}{t_2 - t_1} \\cdot \\frac{d_l(t_1) - d_l(t_2)}{d_l(t_0)},

with :math:`t_0` the first snapshot (the start of training). The normalized weight variation of
Appendix A.2 between consecutive snapshots :math:`t_k, t_{k+1}` is
:math:`\\|\\theta_l^{(t_k)} - \\theta_l^{(t_{k+1})}\\|_2 / \\|\\theta_l^{(t_k)}\\|_2`.

Observation 2.1 (layer convergence bias) says that early in training :math:`C_{l_1} > C_{l_2}`
whenever :math:`l_1 < l_2`. :meth:`ConvergenceReport.bias` puts a number on it for a window: the
Spearman rank correlation between depth and rate (``-1``: perfectly ordered shallow-fast) and the
fraction of layer pairs (shallower, deeper) whose shallower layer has the larger rate.

All norms are computed in float64 from the stored snapshots, one snapshot in memory at a time.

>>> import torch, depthaware as da
>>> net = da.models.FCNN((1, 4, 1))
>>> traj = da.measure.Trajectory(da.layer_groups(net))
>>> for step in range(3):
...     traj.snapshot(step)
...     with torch.no_grad():
...         for p in net.parameters():
...             _ = p.mul_(0.5)
>>> report = da.measure.convergence(traj)
>>> round(report.rates(0, 1)["Layer 1"], 6)
0.666667
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .._io import write_csv
from ..errors import InputError
from ..layers import LayerGroups
from .bias import BiasStats, bias_stats, spearman, weight_variation
from .sketch import half_width
from .trajectory import Trajectory

__all__ = ["BiasStats", "ConvergenceReport", "convergence", "spearman", "weight_variation"]

Window = tuple[int, int]


@dataclass
class ConvergenceReport:
    """Distance curves and norms per layer over the snapshots of a trajectory.

    Attributes:
        layers, depths: the layers, shallowest first.
        steps: snapshot steps, shape ``(T,)``.
        distances: :math:`d_l(t)`, shape ``(L, T)``.
        norms: :math:`\\|\\theta_l^{(t)}\\|`, shape ``(L, T)``.
        steps_moved: :math:`\\|\\theta_l^{(t_{k+1})} - \\theta_l^{(t_k)}\\|`, shape ``(L, T-1)``.
        distance_rows: for a sketched trajectory, each independent sketch row's distance
            estimate, shape ``(L, T, ROWS)`` (``distances`` is their root mean square): the
            source of every rate's error (:meth:`errors`); None for exact snapshots.
    """

    layers: list[str]
    depths: list[int]
    steps: np.ndarray
    distances: np.ndarray
    norms: np.ndarray
    steps_moved: np.ndarray
    distance_rows: np.ndarray | None = None

    def arrays(self) -> dict:
        """The report's data as JSON-ready lists (the inverse of :meth:`from_arrays`)."""
        out = {
            "layers": list(self.layers),
            "depths": list(self.depths),
            "steps": self.steps.tolist(),
            "distances": self.distances.tolist(),
            "norms": self.norms.tolist(),
            "steps_moved": self.steps_moved.tolist(),
        }
        if self.distance_rows is not None:
            out["distance_rows"] = self.distance_rows.tolist()
        return out

    @classmethod
    def from_arrays(cls, data: Mapping) -> ConvergenceReport:
        """A report from :meth:`arrays`' dict (extra keys are ignored)."""
        return cls(
            list(data["layers"]),
            list(data["depths"]),
            np.asarray(data["steps"]),
            np.asarray(data["distances"], dtype=float),
            np.asarray(data["norms"], dtype=float),
            np.asarray(data["steps_moved"], dtype=float),
            distance_rows=(
                np.asarray(data["distance_rows"], dtype=float) if "distance_rows" in data else None
            ),
        )

    def _row(self, name: str) -> int:
        try:
            return self.layers.index(name)
        except ValueError:
            raise ValueError(f"unknown layer {name!r}; layers are {self.layers}") from None

    def _col(self, step: int) -> int:
        hits = np.flatnonzero(self.steps == step)
        if not len(hits):
            raise ValueError(f"step {step} is not a snapshot step; steps are {self.steps.tolist()}")
        return int(hits[0])

    def distance(self, name: str) -> np.ndarray:
        """:math:`d_l(t)` for every snapshot step."""
        return self.distances[self._row(name)]

    def normalized(self) -> dict[str, np.ndarray]:
        """:math:`d_l(t) / d_l(t_0)` per layer (Figures 1-2); NaN where ``d_l(t_0) = 0``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            curves = self.distances / self.distances[:, :1]
        return dict(zip(self.layers, curves, strict=True))

    def rates(self, t1: int, t2: int) -> dict[str, float]:
        """Definition 2.1 over ``[t1, t2]`` (snapshot steps), per layer.

        A layer that never moves (``d_l(t_0) = 0``) has no defined rate: NaN.
        """
        c = _window_rates(self.distances, *self._window(t1, t2))
        return {name: float(v) for name, v in zip(self.layers, c, strict=True)}

    def _window(self, t1: int, t2: int) -> tuple[int, int, int]:
        """The columns of ``t1`` and ``t2`` and the window's length, checked."""
        check_window(t1, t2, self.steps.tolist())
        return self._col(t1), self._col(t2), t2 - t1

    def errors(self, t1: int, t2: int) -> dict[str, float]:
        """Half-width of the 95% band of each layer's rate over ``[t1, t2]``: 0 for exact
        snapshots; for sketched ones, from the rates the independent sketch rows give
        (:func:`~depthaware.measure.sketch.half_width`)."""
        window = self._window(t1, t2)
        if self.distance_rows is None:
            return dict.fromkeys(self.layers, 0.0)
        per_row = _window_rates(self.distance_rows, *window)  # (L, ROWS)
        return {n: half_width(per_row[k]) for k, n in enumerate(self.layers)}

    def uncertain(self, t1: int, t2: int) -> list[str]:
        """Layers whose rate over ``[t1, t2]`` is within its error of zero (the window moved
        their weights by less than a sketch can tell): flagged, not to be read as a rate."""
        rates, errors = self.rates(t1, t2), self.errors(t1, t2)
        return [n for n in self.layers if errors[n] > 0 and abs(rates[n]) <= errors[n]]

    def weight_variation(self) -> dict[str, np.ndarray]:
        """Appendix A.2 between consecutive snapshots, shape ``(T-1,)`` per layer (see
        :func:`weight_variation`)."""
        wv = weight_variation(self.steps_moved, self.norms[:, :-1])
        return dict(zip(self.layers, wv, strict=True))

    def diverged(self) -> dict[str, int]:
        """``{layer: the first step at which its weights are NaN or inf}``, for those layers."""
        bad = ~np.isfinite(self.norms)
        return {
            n: int(self.steps[bad[k].argmax()]) for k, n in enumerate(self.layers) if bad[k].any()
        }

    def bias(self, t1: int, t2: int) -> BiasStats:
        """Bias statistics of the window ``[t1, t2]`` (see :class:`BiasStats`); layers without a
        finite rate (never moved, e.g. frozen in fine-tuning, or diverged) are left out and
        listed."""
        return bias_stats((t1, t2), self.rates(t1, t2), self.depths, self.diverged())

    # tables ---------------------------------------------------------------------------------
    def _windows(self, windows: Iterable[Window] | None) -> list[Window]:
        """The windows given, else the whole run (the report keeps none: they are an argument
        of each method, as of torchmetrics' functional metrics)."""
        return list(windows or [(int(self.steps[0]), int(self.steps[-1]))])

    def table(self, windows: Iterable[Window] | None = None) -> list[dict]:
        """One row per layer: name, depth, initial and final distance, ``C`` for each window."""
        windows = self._windows(windows)
        rates = {w: self.rates(*w) for w in windows}
        errors = {w: self.errors(*w) for w in windows}
        rows = []
        for k, (name, depth) in enumerate(zip(self.layers, self.depths, strict=True)):
            row = {
                "layer": name,
                "depth": depth,
                "distance_t0": float(self.distances[k, 0]),
                "distance_end": float(self.distances[k, -1]),
            }
            for a, b in windows:
                row[f"C[{a},{b}]"] = rates[(a, b)][name]
                if self.distance_rows is not None:
                    row[f"±C[{a},{b}]"] = errors[(a, b)][name]
            rows.append(row)
        return rows

    def to_dict(self, windows: Iterable[Window] | None = None) -> dict:
        """JSON-ready: the table, the bias statistics per window, and the curves."""
        windows = self._windows(windows)
        return {
            "rows": self.table(windows),
            "bias": [self.bias(*w).to_dict() for w in windows],
            "uncertain": {f"C[{a},{b}]": self.uncertain(a, b) for a, b in windows},
            "steps": self.steps.tolist(),
            "normalized_distance": {k: v.tolist() for k, v in self.normalized().items()},
            "weight_variation": {k: v.tolist() for k, v in self.weight_variation().items()},
        }

    def log_to(
        self,
        logger,
        step: int,
        windows: Iterable[Window] | None = None,
        *,
        prefix: str = "convergence",
        figure: bool = True,
    ) -> dict[str, float]:
        """Send each layer's rate and the bias statistics of each window to a logger.

        The numbers are ``{prefix}/C[t1,t2]/{layer}`` (Definition 2.1), ``{prefix}/±C[t1,t2]/
        {layer}`` for a sketched report, and ``{prefix}/spearman[t1,t2]`` and
        ``{prefix}/pairs_obeying[t1,t2]`` (:meth:`bias`); non-finite ones (a layer that never
        moved) are left out. ``logger`` is a ``torch.utils.tensorboard.SummaryWriter`` (or
        anything with its ``add_scalar``: each number is added at ``step``, and with ``figure``
        the distance curves as ``{prefix}/distances``), or a callable ``log(numbers, step)``
        such as ``wandb.log`` or ``mlflow.log_metrics``. Returns the numbers sent.
        """
        numbers = {}
        for a, b in self._windows(windows):
            rates, errors, bias = self.rates(a, b), self.errors(a, b), self.bias(a, b)
            for name in self.layers:
                numbers[f"{prefix}/C[{a},{b}]/{name}"] = rates[name]
                if self.distance_rows is not None:
                    numbers[f"{prefix}/±C[{a},{b}]/{name}"] = errors[name]
            numbers[f"{prefix}/spearman[{a},{b}]"] = bias.spearman
            numbers[f"{prefix}/pairs_obeying[{a},{b}]"] = bias.pairs_obeying
        numbers = {k: float(v) for k, v in numbers.items() if math.isfinite(v)}
        if hasattr(logger, "add_scalar"):
            for tag, value in numbers.items():
                logger.add_scalar(tag, value, step)
            if figure:
                from .. import plots

                logger.add_figure(f"{prefix}/distances", plots.convergence(self), step)
        elif callable(logger):
            logger(numbers, step)
        else:
            raise TypeError(
                f"logger must have add_scalar (a SummaryWriter) or be a callable log(numbers, "
                f"step); got {type(logger).__name__}"
            )
        return numbers

    def to_csv(self, path: str | os.PathLike, windows: Iterable[Window] | None = None) -> None:
        """Write :meth:`table` as CSV (atomically)."""
        write_csv(path, self.table(windows))


def check_window(t1: int, t2: int, steps: list[int]) -> None:
    """The one check of a window: ``t1 < t2``, both snapshot (checkpoint) steps; an
    :class:`~depthaware.errors.InputError` naming the window and the steps otherwise."""
    if not t1 < t2 or t1 not in steps or t2 not in steps:
        raise InputError(
            f"window {t1}:{t2} needs two snapshot steps t1 < t2; the steps are {steps}"
        )


def _window_rates(d: np.ndarray, i: int, j: int, length: int) -> np.ndarray:
    """Definition 2.1 from distances ``d`` (layers first, steps second, then any rows)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (d[:, i] - d[:, j]) / (length * d[:, 0])


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
    :math:`\theta^*` (``target``), holding two snapshots at a time (the current one and the one
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
