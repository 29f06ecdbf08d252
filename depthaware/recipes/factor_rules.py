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
    "decay_share",
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


def decay_share(report, config) -> float:
    """The share of the residual blocks' squared distance from :math:`\\theta_0` to
    :math:`\\theta^*` that weight decay alone explains, measured from the run itself.

    Under SGD's coupled weight decay, decay alone takes :math:`\\theta_0` to :math:`c\\,\\theta_0`
    with :math:`c = \\prod_t (1 - \\eta_t \\lambda)` over the run's steps (its LR schedule
    included). The share is :math:`1 - \\|\\theta^* - c\\theta_0\\|^2 / \\|\\theta^* -
    \\theta_0\\|^2` summed over the blocks, from the report's norms and distances alone
    (:math:`\\langle\\theta^*, \\theta_0\\rangle = (\\|\\theta^*\\|^2 + \\|\\theta_0\\|^2 -
    d(0)^2) / 2`): 1 when :math:`\\theta^*` is the decayed start, 0 without decay.
    """
    blocks = [k for k, n in enumerate(report.layers) if n.startswith("Res-Block")]
    start, end = report.norms[blocks, 0], report.norms[blocks, -1]
    d0 = report.distances[blocks, 0]
    dot = (end**2 + start**2 - d0**2) / 2
    per_epoch = math.ceil(config.n_train / config.batch_size)
    c = 1.0
    for epoch in range(config.epochs):
        lr = config.lr * config.lr_gamma ** sum(epoch >= m for m in config.lr_milestones)
        c *= (1 - lr * config.weight_decay) ** per_epoch
    residual = float(np.sum(end**2 - 2 * c * dot + c**2 * start**2))
    return 1 - residual / float(np.sum(d0**2))


def decay_dominated(report, config) -> bool:
    """Whether a run's residual blocks (its :class:`~depthaware.measure.ConvergenceReport`)
    measure their weight decay rather than learning: weight decay alone explains at least 90% of
    their squared distance from :math:`\\theta_0` to :math:`\\theta^*` (:func:`decay_share`)."""
    return config.weight_decay > 0 and decay_share(report, config) >= 0.9


def weight_decay_slows(means, cvs, dominated) -> bool | None:
    """a3-weight-decay's rule in one seed, over the grid (weight decay 0 first): over every run
    that is not decay-dominated, the mean C and the CV both strictly fall as the weight decay
    grows; None (not testable) with fewer than three such runs, or when the run at 0 is one.

    >>> weight_decay_slows([5, 4, 3, 2], [0.3, 0.25, 0.2, 0.1], [False] * 4)
    True
    >>> weight_decay_slows([5, 4, 3, 2], [0.2, 0.3, 0.2, 0.1], [False] * 4)  # CV rises at 1e-4
    False
    >>> weight_decay_slows([5, 4, 3, 9], [0.3, 0.2, 0.1, 0.4], [False, False, False, True])
    True
    """
    learning = [k for k in range(len(means)) if not dominated[k]]
    if dominated[0] or len(learning) < 3:
        return None
    return strictly_down([means[k] for k in learning]) and strictly_down([cvs[k] for k in learning])
