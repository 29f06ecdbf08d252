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
from numpy.typing import ArrayLike

from .._io import write_csv
from ..errors import InputError
from .bias import BiasStats, bias_stats
from .loggers import Logger, send
from .sketch import half_width

__all__ = [
    "BiasStats",
    "ConvergenceReport",
    "WindowRates",
    "check_window",
    "weight_variation",
]

Window = tuple[int, int]


@dataclass(frozen=True)
class WindowRates:
    """One window's numbers (:meth:`ConvergenceReport.window`).

    Attributes:
        window: ``(t1, t2)``.
        rates: :math:`C_l^{(t_1, t_2)}` per layer (NaN for a layer that never moved).
        errors: each rate's 95% half-width (0 for exact snapshots).
        bias: the window's :class:`BiasStats`.
    """

    window: Window
    rates: dict[str, float]
    errors: dict[str, float]
    bias: BiasStats

    @property
    def t1(self) -> int:
        return self.window[0]

    @property
    def t2(self) -> int:
        return self.window[1]

    @property
    def uncertain(self) -> list[str]:
        """Layers whose rate is within its error of zero (flagged, not to be read as a rate)."""
        return [n for n, e in self.errors.items() if e > 0 and abs(self.rates[n]) <= e]


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
        unit: what a step counts, ``"epoch"`` or ``"step"`` (None where the source did not say).
    """

    layers: list[str]
    depths: list[int]
    steps: np.ndarray
    distances: np.ndarray
    norms: np.ndarray
    steps_moved: np.ndarray
    distance_rows: np.ndarray | None = None
    unit: str | None = None

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
        if self.unit is not None:
            out["unit"] = self.unit
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
            unit=data.get("unit"),
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

    def normalized_errors(self) -> dict[str, np.ndarray]:
        """Half-width of the 95% band of each point of :meth:`normalized`, per layer: 0 for
        exact snapshots; for sketched ones, from each independent sketch row's own curve
        :math:`d_{l,r}(t) / d_{l,r}(t_0)` (:func:`~depthaware.measure.sketch.half_width`), as
        :meth:`errors` does for rates."""
        if self.distance_rows is None:
            return {name: np.zeros(len(self.steps)) for name in self.layers}
        with np.errstate(divide="ignore", invalid="ignore"):
            per_row = self.distance_rows / self.distance_rows[:, :1]  # (L, T, ROWS)
        return dict(zip(self.layers, half_width(per_row), strict=True))

    def rates(self, t1: int, t2: int) -> dict[str, float]:
        """Definition 2.1 over ``[t1, t2]`` (snapshot steps), per layer.

        A layer that never moves (``d_l(t_0) = 0``) has no defined rate: NaN.
        """
        return self._rates(self._window(t1, t2))

    def _rates(self, window: tuple[int, int, int]) -> dict[str, float]:
        c = _window_rates(self.distances, *window)
        return {name: float(v) for name, v in zip(self.layers, c, strict=True)}

    def _window(self, t1: int, t2: int) -> tuple[int, int, int]:
        """The columns of ``t1`` and ``t2`` and the window's length, checked."""
        check_window(t1, t2, self.steps.tolist())
        return self._col(t1), self._col(t2), t2 - t1

    def errors(self, t1: int, t2: int) -> dict[str, float]:
        """Half-width of the 95% band of each layer's rate over ``[t1, t2]``: 0 for exact
        snapshots; for sketched ones, from the rates the independent sketch rows give
        (:func:`~depthaware.measure.sketch.half_width`)."""
        return self._errors(self._window(t1, t2))

    def _errors(self, window: tuple[int, int, int]) -> dict[str, float]:
        if self.distance_rows is None:
            return dict.fromkeys(self.layers, 0.0)
        per_row = _window_rates(self.distance_rows, *window)  # (L, ROWS)
        return dict(zip(self.layers, half_width(per_row).tolist(), strict=True))

    def uncertain(self, t1: int, t2: int) -> list[str]:
        """Layers whose rate over ``[t1, t2]`` is within its error of zero (the window moved
        their weights by less than a sketch can tell): flagged, not to be read as a rate."""
        return self.window(t1, t2).uncertain

    def weight_variation(self) -> dict[str, np.ndarray]:
        """Appendix A.2 between snapshots, ``(T-1,)`` per layer (:func:`weight_variation`)."""
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
        return self.window(t1, t2).bias

    def window(self, t1: int, t2: int) -> WindowRates:
        """Everything about the window ``[t1, t2]``, each computed once: its :meth:`rates`,
        :meth:`errors`, :meth:`bias` and :meth:`uncertain` layers."""
        window = self._window(t1, t2)  # checked once
        rates, errors = self._rates(window), self._errors(window)
        bias = bias_stats((t1, t2), rates, self.depths, self.diverged())
        return WindowRates((t1, t2), rates, errors, bias)

    # tables ---------------------------------------------------------------------------------
    def _windows(self, windows: Iterable[Window] | None) -> list[Window]:
        """The windows given, else the whole run (the report keeps none: they are an argument
        of each method, as of torchmetrics' functional metrics)."""
        return list(windows or [(int(self.steps[0]), int(self.steps[-1]))])

    def table(self, windows: Iterable[Window] | None = None) -> list[dict]:
        """One row per layer: name, depth, initial and final distance, ``C`` for each window
        (and its error ``±C`` for a sketched report)."""
        return self._rows([self.window(*w) for w in self._windows(windows)])

    def _rows(self, results: list[WindowRates]) -> list[dict]:
        rows = []
        for k, (name, depth) in enumerate(zip(self.layers, self.depths, strict=True)):
            row = {
                "layer": name,
                "depth": depth,
                "distance_t0": float(self.distances[k, 0]),
                "distance_end": float(self.distances[k, -1]),
            }
            for r in results:
                row[f"C[{r.t1},{r.t2}]"] = r.rates[name]
                if self.distance_rows is not None:
                    row[f"±C[{r.t1},{r.t2}]"] = r.errors[name]
            rows.append(row)
        return rows

    def to_dict(self, windows: Iterable[Window] | None = None) -> dict:
        """JSON-ready: the table, the bias statistics and the uncertain layers per window (each
        window's rates computed once), and the curves."""
        results = [self.window(*w) for w in self._windows(windows)]
        return {
            "rows": self._rows(results),
            "bias": [r.bias.to_dict() for r in results],
            "uncertain": {f"C[{r.t1},{r.t2}]": r.uncertain for r in results},
            "steps": self.steps.tolist(),
            "normalized_distance": {k: v.tolist() for k, v in self.normalized().items()},
            "weight_variation": {k: v.tolist() for k, v in self.weight_variation().items()},
        }

    def log_to(
        self,
        logger: Logger,
        step: int,
        windows: Iterable[Window] | None = None,
        *,
        prefix: str = "convergence",
    ) -> dict[str, float]:
        """Send each layer's rate and the bias statistics of each window to a logger.

        The numbers are ``{prefix}/C[t1,t2]/{layer}`` (Definition 2.1), ``{prefix}/±C[t1,t2]/
        {layer}`` for a sketched report, and ``{prefix}/spearman[t1,t2]`` and
        ``{prefix}/pairs_obeying[t1,t2]`` (:meth:`bias`); non-finite ones (a layer that never
        moved) are left out. ``logger`` is a ``torch.utils.tensorboard.SummaryWriter`` (or
        anything with its ``add_scalar``: each number is added at ``step``), or a callable
        ``log(numbers, step)`` such as ``wandb.log`` or ``mlflow.log_metrics``. Returns the
        numbers sent. Numbers only: a figure is the caller's to draw and send, e.g.
        ``writer.add_figure("convergence/distances", depthaware.plots.convergence(report), step)``.
        """
        numbers: dict[str, float] = {}
        for a, b in self._windows(windows):
            r = self.window(a, b)
            for name in self.layers:
                numbers[f"{prefix}/C[{a},{b}]/{name}"] = r.rates[name]
                if self.distance_rows is not None:
                    numbers[f"{prefix}/±C[{a},{b}]/{name}"] = r.errors[name]
            numbers[f"{prefix}/spearman[{a},{b}]"] = r.bias.spearman
            numbers[f"{prefix}/pairs_obeying[{a},{b}]"] = r.bias.pairs_obeying
        numbers = {k: float(v) for k, v in numbers.items() if math.isfinite(v)}
        send(logger, numbers, step)
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


def weight_variation(moved: ArrayLike, norm: ArrayLike) -> np.ndarray:
    """Appendix A.2's normalized weight variation :math:`\\|\\theta^{(t_{k+1})} -
    \\theta^{(t_k)}\\| / \\|\\theta^{(t_k)}\\|` from its two norms (scalars or arrays, broadcast).

    NaN where :math:`\\|\\theta^{(t_k)}\\| = 0`: a layer of zeros has no relative change.

    >>> weight_variation([0.5, 1.0], [2.0, 0.0])
    array([0.25,  nan])
    """
    moved, norm = np.asarray(moved, float), np.asarray(norm, float)
    out = np.full(np.broadcast_shapes(moved.shape, norm.shape), np.nan)
    return np.divide(moved, norm, out=out, where=norm > 0)
