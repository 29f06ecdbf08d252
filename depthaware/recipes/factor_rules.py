"""The per-seed rules of Appendix A.3's claims (the factors affecting the bias), each a pure
function of one run's numbers so that it is tested on numbers written by hand."""

from __future__ import annotations

import math

import numpy as np

from .findings import spearman

__all__ = [
    "adaptive_breaks_order",
    "bias_strength",
    "block_rates",
    "block_spearman",
    "coefficient_of_variation",
    "column",
    "decay_dominated",
    "decay_rate",
    "strictly_down",
    "weight_decay_slows",
]


def bias_strength(c: dict | None) -> float | None:
    """Spearman(depth, C) over every layer but the output layer."""
    if c is None:
        return None
    compared = [n for n in c if n != "Output layer"]
    return spearman(range(len(compared)), [c[n] for n in compared])


def block_rates(c: dict) -> list[float]:
    """The Res-Blocks' rates of a ``{layer: C}`` (the input and output layers left out)."""
    return [v for n, v in c.items() if n.startswith("Res-Block")]


def strictly_down(values) -> bool:
    return all(a > b for a, b in zip(values, values[1:]))


def column(runs, k: int) -> list:
    """Res-Block ``k + 1``'s C in each seed's run (None where it diverged)."""
    return [None if x is None else block_rates(x)[k] for x in runs]


def coefficient_of_variation(values) -> float:
    """Coefficient of variation: standard deviation over the absolute mean."""
    return float(np.std(values) / abs(np.mean(values)))


def block_spearman(c: dict | None) -> float | None:
    """Spearman(depth, C) over the residual blocks only."""
    return None if c is None else spearman(range(len(block_rates(c))), block_rates(c))


def adaptive_breaks_order(sgd_blocks, adaptive_blocks) -> bool:
    """a3-optimizer's rule in one seed: every adaptive run's block rates (Res-Block 1 first)
    break Observation 2.1's order (not strictly decreasing) and rank-correlate with depth above
    the SGD run's.

    >>> adaptive_breaks_order([4, 3, 2, 1], [[3, 4, 2, 1]])
    True
    >>> adaptive_breaks_order([4, 3, 2, 1], [[3, 4, 2, 1], [4, 3, 2, 1]])
    False
    """
    sgd = spearman(range(len(sgd_blocks)), sgd_blocks)
    return all(not strictly_down(b) and spearman(range(len(b)), b) > sgd for b in adaptive_blocks)


def decay_rate(config, window: int) -> float:
    """:math:`C_{[0,w]}` of weights that only decay under SGD's coupled weight decay: each step
    multiplies them by :math:`1 - \\eta\\lambda`, so with :math:`\\theta^* \\approx 0`,
    :math:`d(t)/d(0) = (1 - \\eta\\lambda)^s` after :math:`s` steps and
    :math:`C = (1 - (1 - \\eta\\lambda)^s) / w`, with :math:`s = w \\lceil n / B \\rceil`.

    >>> from depthaware.recipes.sine import SineConfig
    >>> round(decay_rate(SineConfig(weight_decay=1e-2), 5), 5)  # 200 steps at LR 0.1
    0.03627
    """
    steps = window * math.ceil(config.n_train / config.batch_size)
    return (1 - (1 - config.lr * config.weight_decay) ** steps) / window


def decay_dominated(report, config, window: int) -> bool:
    """Whether a run's residual blocks (its :class:`~depthaware.measure.ConvergenceReport`)
    measure their weight decay rather than learning: their
    joint norm at :math:`\\theta^*` is below 0.2 of the initial one, or their mean
    :math:`C_{[0,w]}` is within 1% of :func:`decay_rate`."""
    blocks = [k for k, n in enumerate(report.layers) if n.startswith("Res-Block")]
    norms = np.sqrt(np.square(report.norms[blocks]).sum(0))  # (T,)
    if norms[-1] < 0.2 * norms[0]:
        return True
    mean_c = float(np.mean(block_rates(report.rates(0, window))))
    decay = decay_rate(config, window)
    return config.weight_decay > 0 and abs(mean_c - decay) <= 0.01 * decay


def weight_decay_slows(means, cvs, dominated) -> bool | None:
    """a3-weight-decay's rule in one seed, over the grid (weight decay 0 first): at the strongest
    weight decay whose run is not decay-dominated, the mean C and the CV are both below weight
    decay 0's; None (not testable) when no run above 0, or the run at 0, learns.

    >>> weight_decay_slows([5, 4, 3, 2], [0.2, 0.3, 0.2, 0.1], [False] * 4)
    True
    >>> weight_decay_slows([5, 4, 3, 9], [0.2, 0.3, 0.2, 0.1], [False, False, False, True])
    False
    """
    learning = [k for k in range(1, len(means)) if not dominated[k]]
    if dominated[0] or not learning:
        return None
    k = learning[-1]
    return means[k] < means[0] and cvs[k] < cvs[0]
