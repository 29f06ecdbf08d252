"""Observation 2.1 as numbers: the bias statistics of a window's rates (Spearman correlation of
depth and rate, the share of layer pairs whose shallower layer is faster).
:class:`~depthaware.measure.ConvergenceReport` reads its windows through these."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["BiasStats", "bias_stats", "spearman"]

Window = tuple[int, int]


@dataclass(frozen=True)
class BiasStats:
    """How strongly a window obeys Observation 2.1.

    Attributes:
        window: ``(t1, t2)``.
        spearman: rank correlation between depth and rate; ``-1`` when every shallower layer
            converges faster, ``+1`` for the reverse.
        pairs_obeying: fraction of pairs ``depth_i < depth_j`` with ``C_i > C_j``.
        n_pairs: number of pairs compared.
        excluded: layers without a finite rate, left out of both: never moved (frozen), or
            diverged.
        diverged: ``{layer: first step}`` for the excluded layers whose weights became NaN/inf.
    """

    window: Window
    spearman: float
    pairs_obeying: float
    n_pairs: int
    excluded: tuple[str, ...] = ()
    diverged: dict[str, int] = field(default_factory=dict)

    @property
    def never_moved(self) -> tuple[str, ...]:
        """The excluded layers that did not diverge (their weights never moved)."""
        return tuple(n for n in self.excluded if n not in self.diverged)

    def to_dict(self) -> dict:
        return {
            "t1": self.window[0],
            "t2": self.window[1],
            "spearman": self.spearman,
            "pairs_obeying": self.pairs_obeying,
            "n_pairs": self.n_pairs,
            "excluded": list(self.excluded),
            "never_moved": list(self.never_moved),
            "diverged": dict(self.diverged),
        }


def bias_stats(
    window: Window, rates: Mapping[str, float], depths: Sequence[int], diverged: Mapping[str, int]
) -> BiasStats:
    """The :class:`BiasStats` of one window's ``rates`` (``{layer: C}``, in depth order with
    ``depths``); layers without a finite rate are left out and listed, with the step from which
    those in ``diverged`` became non-finite."""
    names = list(rates)
    kept = [k for k, n in enumerate(names) if math.isfinite(rates[n])]
    excluded = tuple(n for n in names if not math.isfinite(rates[n]))
    c = np.array([rates[names[k]] for k in kept])
    depth = np.array([depths[k] for k in kept], dtype=float)
    pairs = [(a, b) for a in range(len(c)) for b in range(len(c)) if depth[a] < depth[b]]
    obey = sum(c[a] > c[b] for a, b in pairs)
    return BiasStats(
        (window[0], window[1]),
        spearman(depth, c) if len(c) > 1 else math.nan,
        float(obey / len(pairs)) if pairs else math.nan,
        len(pairs),
        excluded,
        {n: s for n, s in diverged.items() if n in excluded},
    )


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN if either side is constant."""
    rx, ry = _rank(np.asarray(x, float)), _rank(np.asarray(y, float))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else math.nan


def _rank(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(len(a), dtype=float)
    for v in np.unique(a):  # average the ranks of ties
        tie = a == v
        ranks[tie] = ranks[tie].mean()
    return ranks
