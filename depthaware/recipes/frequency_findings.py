"""The frequency findings of Section 5 (Figs. 6 and 8a-d), as fixed records.

The residual FCNN (Section 5's block :math:`z + F(z)`) on the paper's sine schedule; each block's
contribution to the output (:func:`~depthaware.measure.block_contributions`) is fitted with
least-squares amplitudes at the target's frequencies 1, 3, 10, 30. Fig. 8 trains on targets with
the 4, 3, 2, 1 lowest components and compares Res-Block 4's convergence rate with Res-Block 1's.
"""

from __future__ import annotations

import torch

from ..measure.frequency import amplitudes
from .findings import (
    Claim,
    Finding,
    column,
    decreasing,
    mean_sd,
    rates,
    short_window,
    spearman,
    verdict,
)
from .sine import FREQUENCIES
from .sine_findings import resfcnn, seed_results, sine_spec

__all__ = ["COMPLEXITIES", "FINDINGS", "four_functions"]

FIG68 = (
    Claim(
        "fig6-spectrum",
        "It can be seen that the deeper layers tend to fit the more complex components of the "
        "target function",
        "the four functions of Section 5, T5(z1) (input layer + Res-Block 1) and the "
        "contributions of Res-Blocks 2, 3, 4, over [-2, 2]; each one's least-squares amplitudes "
        "at the target's frequencies 1, 3, 10, 30 and their amplitude-weighted mean frequency "
        "over the components the network learned (output amplitude >= half the target's)",
        "the mean frequency rises with depth: Spearman(function, mean frequency) > 0 and "
        "function 4's > function 1's, in every seed",
        "qualitative (Fig. 6)",
    ),
    Claim(
        "fig6-ranges",
        "the ranges of the four fitted functions are 2.3, 0.7, 0.5, and 0.06, which are "
        "similar to the four components",
        "range (max - min over [-2, 2]) of the four functions above",
        "strictly decreasing with depth, in every seed; not tested in a seed whose network did "
        "not learn all four components (output amplitude < half the target's)",
        "2.3 / 0.7 / 0.5 / 0.06",
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


def _spectrum_of(sp: dict) -> dict:
    """Per seed: the four functions' amplitudes, mean frequency over the learned components and
    ranges, and the whole output's amplitudes (a component is learned at >= half its amplitude)."""
    x = torch.tensor(sp["x"])
    functions = [torch.tensor(v) for v in four_functions(sp).values()]
    output = amplitudes(sum(functions), x, FREQUENCIES)
    learned = [a >= 0.5 / w for a, w in zip(output, FREQUENCIES)]
    mean_frequency = []
    for f in functions:
        amp = [a for a, ok in zip(amplitudes(f, x, FREQUENCIES), learned) if ok]
        weights = [w for w, ok in zip(FREQUENCIES, learned) if ok]
        mean_frequency.append(sum(w * a for w, a in zip(weights, amp)) / max(sum(amp), 1e-12))
    return {
        "mean_frequency": mean_frequency,
        "ranges": [float(f.max() - f.min()) for f in functions],
        "output_amplitudes": output,
        "not_learned": [f"sin({w}x)/{w}" for w, ok in zip(FREQUENCIES, learned) if not ok],
    }


def fig68_judge(ctx):
    runs = seed_results(ctx, resfcnn(ctx.scale), "spectrum")
    spec = [None if r is None else _spectrum_of(r["spectrum"]) for r in runs]
    centroid = [None if s is None else s["mean_frequency"] for s in spec]
    ranges = [None if s is None else s["ranges"] for s in spec]
    missing = sorted({name for s in spec if s for name in s["not_learned"]})
    ratio = {}
    for c in COMPLEXITIES:
        extras = ("spectrum",) if c == 4 else ()
        ratio[c] = []
        for r in seed_results(ctx, resfcnn(ctx.scale, complexity=c), *extras):
            c5 = None if r is None else rates(r, 0, ctx.scale.at(5))
            ratio[c].append(None if c5 is None else c5["Res-Block 4"] / c5["Res-Block 1"])
    by_seed = [[ratio[c][s] for c in COMPLEXITIES] for s in range(ctx.seeds)]
    note = ""
    if missing:
        note = (
            f"not learned by the network: {', '.join(missing)} (output amplitude below half "
            "the target's), so the four functions cannot all match the four components: the "
            "set-up (what SGD fits in this schedule) stops the test, not the claim"
        )
    return [
        verdict(
            FIG68[0],
            [None if c is None else spearman(range(4), c) > 0 and c[3] > c[0] for c in centroid],
            "mean frequency of the four functions "
            + " / ".join(mean_sd(column(centroid, k)) for k in range(4))
            + (f"; not learned: {', '.join(missing)}" if missing else ""),
            spectrum=spec,
        ),
        verdict(
            FIG68[1],
            [None if s is None or s["not_learned"] else decreasing(s["ranges"]) for s in spec],
            "ranges " + " / ".join(mean_sd(column(ranges, k), ".2f") for k in range(4)),
            note=note,
            ranges=ranges,
        ),
        verdict(
            FIG68[2],
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
