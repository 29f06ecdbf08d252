"""The frequency findings of Section 5 (Figs. 6 and 8a-d), as fixed records.

The residual FCNN (Section 5's block :math:`z + F(z)`) on the paper's sine schedule; each block's
contribution to the output (:func:`~depthaware.measure.block_contributions`) is fitted with
least-squares amplitudes at the target's frequencies 1, 3, 10, 30. Fig. 8 trains on targets with
the 4, 3, 2, 1 lowest components and compares Res-Block 4's convergence rate with Res-Block 1's.
"""

from __future__ import annotations

import torch

from ..measure.frequency import spectrum
from .findings import (
    Claim,
    Finding,
    column,
    decreasing,
    mean_sd,
    short_window,
    spearman,
    verdict,
)
from .sine import FREQUENCIES
from .sine_findings import resfcnn, seed_results, sine_spec

__all__ = [
    "COMPLEXITIES",
    "COMPONENT_RANGES",
    "FINDINGS",
    "SIMILAR",
    "SPECTRUM_CHANCE",
    "four_functions",
    "high_share_rises",
    "high_shares",
    "ranges_match",
]

#: the ranges (max - min over [-2, 2]) of the target's components sin(ωx)/ω
COMPONENT_RANGES = tuple(
    float((torch.sin(w * x) / w).max() - (torch.sin(w * x) / w).min())
    for x in [torch.linspace(-2, 2, 8001, dtype=torch.float64)]
    for w in FREQUENCIES
)
#: the widest ratio between a fitted range and its component's that the paper calls "similar"
SIMILAR = max(p / c for p, c in zip((2.3, 0.7, 0.5, 0.06), COMPONENT_RANGES))
#: the chance that four values in random order strictly rise (fig6-spectrum's rule by luck)
SPECTRUM_CHANCE = 1 / 24

FIG68 = (
    Claim(
        "fig6-spectrum",
        "It can be seen that the deeper layers tend to fit the more complex components of the "
        "target function",
        "the four functions of Section 5, T5(z1) (input layer + Res-Block 1) and the "
        "contributions of Res-Blocks 2, 3, 4, over [-2, 2]; each one's least-squares amplitudes "
        "a_ω at the target's frequencies ω = 1, 3, 10, 30 and its share of energy at ω >= 10, "
        "(a_10² + a_30²) / Σ a_ω²",
        "the high-frequency share strictly rises from function 1 to function 4, in every seed "
        f"(random orderings pass with chance 1/24 = {SPECTRUM_CHANCE:.1%} per seed, "
        f"{SPECTRUM_CHANCE**3:.4%} in 3 of 3)",
        "qualitative (Fig. 6)",
        changed="2026-12-01, after the 3-seed paper run: the rule was “the amplitude-weighted "
        "mean frequency over the learned components rises: Spearman(function, mean frequency) "
        "> 0 and function 4's > function 1's”, which random orderings pass 46% of the time per "
        "seed (10% in 3 of 3), and whose mean frequencies (1.3-2.9 rad) only said that sin x "
        "and sin 3x dominate every function. The new rule is passed by chance 4.2% of the time.",
    ),
    Claim(
        "fig6-ranges-order",
        "the ranges of the four fitted functions are 2.3, 0.7, 0.5, and 0.06",
        "range (max - min over [-2, 2]) of each of the four functions (T5(z1), Res-Blocks 2, 3, "
        "4), whether or not the network learned its component",
        "the four functions' ranges strictly fall with depth, in every seed: the sentence gives "
        "all four ranges",
        "2.3 / 0.7 / 0.5 / 0.06",
        changed="2026-12-01, after the 3-seed paper run: split from “fig6-ranges” (ranges "
        "strictly decreasing; not tested in a seed that did not learn all four components), "
        "which hid, behind sin 30x not being learned, the two parts that can be tested. "
        "2026-12-07, after an audit: the rule read only the functions whose component was "
        "learned, which left out Res-Block 4 (sin 30x is not learned); the paper's sentence "
        "gives the ranges of all four fitted functions, so all four are read.",
    ),
    Claim(
        "fig6-ranges-match",
        "the ranges of the four fitted functions are 2.3, 0.7, 0.5, and 0.06, which are "
        "similar to the four components",
        "range of each function whose component the network learned, over its component's "
        f"range on [-2, 2] ({' / '.join(f'{r:.3g}' for r in COMPONENT_RANGES)})",
        f"each such ratio lies within a factor {SIMILAR:.1f} of 1, in every seed: the widest "
        "gap the paper itself calls similar (its 0.5 for sin(10x)/10, whose range is 0.2)",
        "2.3 / 0.7 / 0.5 / 0.06",
        changed="2026-12-01, after the 3-seed paper run: split from “fig6-ranges” (see "
        "fig6-ranges-order); the tolerance is the paper's own, and function 1 is tested even "
        "when sin 30x is not learned.",
    ),
    Claim(
        "fig8",
        "After discarding more and more high-frequency components, the deeper layers converge "
        "faster and faster",
        "C[0,5] of Res-Block 4 over Res-Block 1 with the target's 4, 3, 2, 1 lowest components "
        "(Complexity = 4 ... 1); θ* = the end of each full run",
        "the ratio rises as the complexity falls: Spearman(complexity, ratio) < 0 and the ratio "
        "at complexity 1 > at complexity 4, in every seed",
        "qualitative (Fig. 8a-d)",
    ),
)
COMPLEXITIES = (4, 3, 2, 1)


def fig68_plan(scale, seeds, data_dir=None):
    specs = [sine_spec(resfcnn(scale), s, "spectrum") for s in range(seeds)]
    return specs + [
        sine_spec(resfcnn(scale, complexity=c), s) for c in COMPLEXITIES[1:] for s in range(seeds)
    ]


def four_functions(spectrum: dict) -> dict[str, list[float]]:
    """The paper's grouping: T5(z1) = input layer + Res-Block 1, then Res-Blocks 2, 3, 4."""
    v = spectrum["values"]
    first = [a + b for a, b in zip(v["Input layer"], v["Res-Block 1"])]
    return {"T5(z1)": first, **{f"Res-Block {k}": v[f"Res-Block {k}"] for k in (2, 3, 4)}}


def high_shares(amps) -> list[float]:
    """Each function's share of energy at ω >= 10, :math:`(a_{10}^2 + a_{30}^2) /
    \\sum_\\omega a_\\omega^2` (``amps``: a row of amplitudes at :data:`FREQUENCIES` per
    function)."""
    high = [k for k, w in enumerate(FREQUENCIES) if w >= 10]
    return [sum(a[k] ** 2 for k in high) / max(sum(x**2 for x in a), 1e-30) for a in amps]


def high_share_rises(amps) -> bool:
    """fig6-spectrum's rule in one seed: the :func:`high_shares` strictly rise from function 1
    to function 4.

    >>> high_share_rises([[1, 0.3, 0.01, 0], [1, 0.3, 0.1, 0], [0.2, 0.3, 0.1, 0], [0, 0, 0, 1]])
    True
    >>> high_share_rises([[1, 0.3, 0.1, 0], [1, 0.3, 0.01, 0], [0.2, 0.3, 0.1, 0], [0, 0, 0, 1]])
    False
    """
    return decreasing(high_shares(amps)[::-1])


def ranges_match(ranges, learned) -> bool | None:
    """fig6-ranges-match's rule in one seed: each learned component's function has a range
    within a factor :data:`SIMILAR` of the component's; None if no component was learned.

    >>> ranges_match([2.3, 0.7, 0.5, 0.9], [True, True, True, False])
    True
    >>> ranges_match([0.63, 0.7, 0.5, 0.06], [True] * 4)  # 0.63 is 3.2 times below 2.0
    False
    """
    ratios = [r / c for r, c, ok in zip(ranges, COMPONENT_RANGES, learned) if ok]
    return None if not ratios else all(1 / SIMILAR <= q <= SIMILAR for q in ratios)


def _spectrum_of(sp: dict) -> dict:
    """Per seed: the four functions' amplitudes and ranges, the whole output's amplitudes, and
    which components were learned (at >= half their amplitude)."""
    functions = {k: torch.tensor(v) for k, v in four_functions(sp).items()}
    s = spectrum(functions, torch.tensor(sp["x"]), FREQUENCIES)
    output = s["output"]["amplitudes"]
    learned = [a >= 0.5 / w for a, w in zip(output, FREQUENCIES)]
    return {
        "amplitudes": [s[k]["amplitudes"] for k in functions],
        "ranges": [s[k]["range"] for k in functions],
        "output_amplitudes": output,
        "learned": learned,
        "not_learned": [f"sin({w}x)/{w}" for w, ok in zip(FREQUENCIES, learned) if not ok],
    }


def fig68_judge(ctx):
    runs = seed_results(ctx, resfcnn(ctx.scale), "spectrum")
    spec = [None if r is None else _spectrum_of(r.spectrum) for r in runs]
    ranges = [None if s is None else s["ranges"] for s in spec]
    missing = sorted({name for s in spec if s for name in s["not_learned"]})
    shares = [None if s is None else high_shares(s["amplitudes"]) for s in spec]
    ratio = {}
    for c in COMPLEXITIES:
        extras = ("spectrum",) if c == 4 else ()
        ratio[c] = []
        for r in seed_results(ctx, resfcnn(ctx.scale, complexity=c), *extras):
            c5 = None if r is None else r.report.rates(0, ctx.scale.at(5))
            ratio[c].append(None if c5 is None else c5["Res-Block 4"] / c5["Res-Block 1"])
    by_seed = [[ratio[c][s] for c in COMPLEXITIES] for s in range(ctx.seeds)]
    note = ""
    if missing:
        note = (
            f"not learned by the network: {', '.join(missing)} (output amplitude below half "
            "the target's): its function is left out of the ranges' tests; the set-up (what SGD "
            "fits in this schedule) stops that part, not the claim"
        )

    ratios = [None if r is None else [v / c for v, c in zip(r, COMPONENT_RANGES)] for r in ranges]

    return [
        verdict(
            FIG68[0],
            [None if s is None else high_share_rises(s["amplitudes"]) for s in spec],
            "share of energy at ω >= 10 of the four functions "
            + " / ".join(mean_sd(column(shares, k)) for k in range(4))
            + "; per seed: "
            + "; ".join(
                "diverged" if h is None else " / ".join(f"{v:.3g}" for v in h) for h in shares
            )
            + (f"; not learned: {', '.join(missing)}" if missing else ""),
            spectrum=spec,
        ),
        verdict(
            FIG68[1],
            [None if s is None else decreasing(s["ranges"]) for s in spec],
            "ranges "
            + " / ".join(mean_sd(column(ranges, k), ".2f") for k in range(4))
            + "; per seed: "
            + "; ".join(
                "diverged" if r is None else " / ".join(f"{v:.3g}" for v in r) for r in ranges
            ),  # fmt: skip
            note=note.replace("its function is left out of the ranges' tests; ", "")
            if missing
            else "",  # fmt: skip
            ranges=ranges,
        ),
        verdict(
            FIG68[2],
            [None if s is None else ranges_match(s["ranges"], s["learned"]) for s in spec],
            "range over the component's: "
            + " / ".join(mean_sd(column(ratios, k), ".2f") for k in range(4)),
            note=note,
            ratios=ratios,
            learned=[None if s is None else s["learned"] for s in spec],
        ),
        verdict(
            FIG68[3],
            [None if None in r else spearman(COMPLEXITIES, r) < 0 and r[3] > r[0] for r in by_seed],
            "RB4/RB1 at complexity 4, 3, 2, 1: "
            + ", ".join(mean_sd(ratio[c]) for c in COMPLEXITIES),
            untestable=short_window(ctx.scale, 5),
            ratio={str(c): v for c, v in ratio.items()},
        ),
    ]


FINDINGS = [
    Finding(
        "frequency",
        "5, Figs. 6, 8a-d",
        "deeper blocks fit the higher frequencies; simpler targets speed them up",
        FIG68,
        fig68_plan,
        fig68_judge,
    ),
]
