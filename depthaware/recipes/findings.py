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
    "OUTCOMES",
    "SCALES",
    "Claim",
    "Context",
    "Finding",
    "Scale",
    "Verdict",
    "bias_present",
    "column",
    "decreasing",
    "mean_sd",
    "outcome",
    "short_window",
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


def sketch_holds(agreement: dict | None, same_verdict: bool) -> bool | None:
    """The rule of a sketched line for one seed: the sketched trajectory gives the exact one's
    verdict, and over its windows (:func:`~depthaware.measure.sketch.sketch_agreement`) a median
    relative error <= 1%, a largest <= 5% and a 95% band covering the exact rate in >= 90%;
    None (not tested) for a run without such windows."""
    if agreement is None or not agreement["windows"]:
        return None
    return (
        same_verdict
        and agreement["median"] <= 0.01
        and agreement["max"] <= 0.05
        and agreement["coverage"] >= 0.9
    )


def agreement_text(agreements) -> str:
    """Each seed's sketch agreement as ``median / largest, coverage, windows``."""
    return "; ".join(
        "no run"
        if a is None
        else f"{a['median']:.2%} / {a['max']:.1%}, {a['coverage']:.1%}, {a['windows']}"
        for a in agreements
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
