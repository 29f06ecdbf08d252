"""Findings as records: the paper's sentence, the quantity, the rule fixed before any run.

A :class:`Finding` holds one or more :class:`Claim` records, each quoting the sentence of the
paper it tests, naming the quantity measured and the pass rule, all written down before any run.
A rule changed after seeing results says so in its ``changed`` field (the earlier rule and the
reason), which the report lists in a section of its own. Its ``plan`` lists the runs it needs
(:class:`~depthaware.recipes.runs.RunSpec`) and its ``judge`` turns their results into one
:class:`Verdict` per claim, with three outcomes:

* ``holds``: the rule holds in every seed;
* ``does not hold``: the rule fails in at least one seed where it could be tested (the note says
  whether the cause is the measurement, the set-up or the claim, as far as the report can tell);
* ``not tested``: at this scale the rule cannot be applied (the note gives the measured reason:
  data too small, not converged, a component not learned, a diverged run).

Per-seed outcomes are always kept beside the overall one.

Scales shorten the whole schedule in proportion (epochs, LR milestones and the windows of
Definition 2.1 alike), never the run alone: ``paper`` is the paper's schedule, ``small`` a fifth
of it (a quick look), ``tiny`` a thirtieth (a smoke test of the machinery, not a measurement). A
claim on a Definition 2.1 window is tested at the paper's schedule only (:func:`short_window`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..measure import spearman

__all__ = [
    "BIAS",
    "CALIBRATED",
    "OUTCOMES",
    "SCALES",
    "Claim",
    "Context",
    "Finding",
    "Scale",
    "Verdict",
    "bias_present",
    "calibration_text",
    "column",
    "decreasing",
    "mean_sd",
    "outcome",
    "short_window",
    "sketch_calibration",
    "sketch_holds",
    "spearman",
]

OUTCOMES = ("holds", "does not hold", "not tested")

#: Spearman(depth, C) at or below this counts as "the layer convergence bias is present"
BIAS = -0.5


@dataclass(frozen=True)
class Scale:
    """A schedule factor: every epoch count and window of the paper is multiplied by it."""

    name: str
    factor: float

    def epochs(self, paper_epochs: int) -> int:
        return max(2, round(paper_epochs * self.factor))

    def at(self, paper_epoch: int) -> int:
        """A point of the paper's schedule (a milestone, a window's end) at this scale."""
        return max(1, round(paper_epoch * self.factor))


SCALES = {s.name: s for s in (Scale("paper", 1.0), Scale("small", 1 / 5), Scale("tiny", 1 / 30))}


@dataclass(frozen=True)
class Claim:
    """One testable sentence of the paper, and how it is tested (fixed before any run)."""

    key: str
    quote: str  # the paper's words
    quantity: str  # what is measured, with window and theta*
    rule: str  # the pass rule, per seed
    paper: str  # the paper's number(s), or "qualitative"
    changed: str = ""  # a rule changed after seeing results: when, the earlier rule and why


@dataclass
class Verdict:
    """A claim's result: the outcome, the per-seed outcomes, our numbers in words."""

    claim: Claim
    outcome: str
    per_seed: list[str]
    measured: str
    note: str = ""
    numbers: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}; got {self.outcome!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "claim": asdict(self.claim)}


def outcome(per_seed: Sequence[bool | None]) -> str:
    """The overall outcome of per-seed results (None: not testable in that seed).

    ``does not hold`` if any tested seed fails; ``holds`` if every seed was tested and holds;
    otherwise ``not tested``.
    """
    tested = [v for v in per_seed if v is not None]
    if not all(tested):
        return "does not hold"
    return "holds" if tested and len(tested) == len(per_seed) else "not tested"


def seed_outcomes(per_seed: Sequence[bool | None]) -> list[str]:
    return [{True: "holds", False: "does not hold", None: "not tested"}[v] for v in per_seed]


def verdict(
    claim: Claim, per_seed, measured: str, note: str = "", untestable: str = "", **numbers
) -> Verdict:
    """A :class:`Verdict` from per-seed rule results (True / False / None = not testable);
    ``untestable`` (a reason) makes every seed not tested, the numbers still shown."""
    if untestable:
        per_seed, note = [None] * len(per_seed), untestable
    return Verdict(claim, outcome(per_seed), seed_outcomes(per_seed), measured, note, numbers)


def short_window(scale: Scale, paper_end: int) -> str:
    """The reason a claim on the paper's window ``[0, paper_end]`` of Definition 2.1 is not
    tested at ``scale``, or ``""`` at the paper's schedule.

    A shorter scale shrinks the window with the schedule, but not the first epochs: the LR is the
    paper's until its decay, so they run as in the paper's schedule, and the shrunken window covers
    another part of training (the plain FCNN's ``[0,10]`` is its initial loss plateau and escape;
    at the paper's scale, too, its ``C[0,10]`` puts Hidden layer 1 first in every seed).

    >>> short_window(SCALES["paper"], 50)
    ''
    >>> short_window(SCALES["small"], 50)[:55]
    "not tested at scale small: the paper's window [0,50] is"
    """
    w = scale.at(paper_end)
    if w == paper_end:
        return ""
    return (
        f"not tested at scale {scale.name}: the paper's window [0,{paper_end}] is [0,{w}] here, "
        "and the first epochs do not shrink with the schedule: the window covers another part of "
        "training"
    )


def bias_present(rank_correlation: float) -> bool:
    """The layer convergence bias is present when Spearman(depth, C) <= :data:`BIAS`."""
    return rank_correlation <= BIAS


def decreasing(values: Sequence[float]) -> bool:
    """Strictly decreasing (NaN anywhere: False)."""
    v = [float(x) for x in values]
    return all(math.isfinite(x) for x in v) and all(a > b for a, b in zip(v, v[1:]))


#: the pooled share of windows a 95% band must cover over a run's re-sketches (its calibration)
CALIBRATED = 0.93


def sketch_calibration(exact, resketched, every: int = 1) -> dict:
    """A run's re-sketches (:func:`~depthaware.measure.distances.resketched`, one report per
    sketch seed) against its exact report, pooled over the sketch seeds and the windows of every
    ``every``-th snapshot (:func:`~depthaware.measure.sketch.window_errors`): the share of
    windows the 95% band covers, their number, the median and 95th-percentile relative error, and
    the largest absolute error of the windows left out of those (a rate below 10% of its layer's
    largest), in units of the layer's largest rate."""
    from ..measure.sketch import small_window_errors, window_errors

    counted = [w for sk in resketched for w in window_errors(exact, sk, every)]
    small = [w[3] for sk in resketched for w in small_window_errors(exact, sk, every)]
    errors = np.asarray([w[3] for w in counted])
    return {
        "resketches": len(resketched),
        "windows": len(counted),
        "coverage": float(np.mean([w[4] for w in counted])) if counted else math.nan,
        "median": float(np.median(errors)) if counted else math.nan,
        "p95": float(np.quantile(errors, 0.95)) if counted else math.nan,
        "small_windows": len(small),
        "small_max": max(small) if small else math.nan,
    }


def sketch_holds(calibration: dict | None, same_verdicts: list[bool]) -> bool | None:
    """The rule of a sketched line for one seed: every re-sketch gives the exact trajectory's
    verdict, and the 95% bands are calibrated: pooled over the re-sketches they cover the exact
    rate in at least :data:`CALIBRATED` of the windows. Precision is reported, not gated. None
    (not tested) for a run without such windows."""
    if calibration is None or not calibration["windows"]:
        return None
    return all(same_verdicts) and calibration["coverage"] >= CALIBRATED


def calibration_text(calibrations, same) -> str:
    """Each seed's calibration: coverage over windows and re-sketches, the verdicts agreeing,
    the median / 95th-percentile relative error and the small windows' largest absolute one."""
    return "; ".join(
        "no run"
        if c is None
        else f"{c['coverage']:.1%} of {c['windows']} ({c['resketches']} sketch seeds), verdict "
        f"{sum(v)}/{len(v)}, {c['median']:.2%} / {c['p95']:.1%}, small windows ≤ "
        f"{c['small_max']:.2%} of the largest rate"
        for c, v in zip(calibrations, same)
    )


def column(rows, k: int) -> list:
    """The ``k``-th value of each seed's row (None for a seed without one)."""
    return [None if r is None else r[k] for r in rows]


def mean_sd(values, fmt: str = ".3g") -> str:
    """``mean ± sample std`` over seeds (None counts as NaN)."""
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():{fmt}} ± {sd:{fmt}}"


@dataclass
class Context:
    """What a finding's judge sees: the scale, the seeds and every run's result."""

    scale: Scale
    seeds: int
    results: dict  # RunSpec.key -> its result (a recipes.results.RESULTS object)
    data_dir: str | None = None

    def result(self, spec):
        return self.results[spec.key]


@dataclass(frozen=True)
class Finding:
    """One of the paper's findings: its claims, the runs it needs and the judge of their results.

    ``plan(scale, seeds, data_dir) -> list[RunSpec]``; ``judge(context) -> list[Verdict]`` (one
    per claim, in order). Its figures are drawn by :data:`depthaware.recipes.figures.FIGURES`.
    """

    name: str
    section: str
    title: str
    claims: tuple[Claim, ...]
    plan: Callable
    judge: Callable
