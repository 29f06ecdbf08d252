"""The sine-task findings of Sections 3.1 and 4 (Figs. 1, 3, 4), as fixed records, and the
sine runs every sine-task finding shares (Section 5's are in :mod:`.frequency_findings`).

Every run follows Appendix A.1 at the chosen scale (SGD, LR 0.1 decayed ×0.1 at epoch 150 of 300,
batch 128, 5000 points), :math:`\\theta^*` is the last epoch of that full schedule, and the
windows are the paper's: :math:`[0, 50]` for the plain FCNN, :math:`[0, 5]` for the residual one.
The residual FCNN is Section 5's block :math:`z + F(z)` unless a claim says otherwise; the
block-sensitive claims (Figs. 3, 4) are judged under both that block and He et al.'s
post-activation block :math:`\\sigma(z + F(z))`, and each verdict names its block.
"""

from __future__ import annotations

import math

import numpy as np

from .findings import (
    CALIBRATED,
    Claim,
    Finding,
    calibration_text,
    column,
    decreasing,
    mean_sd,
    short_window,
    sketch_calibration,
    sketch_holds,
    spearman,
    verdict,
)
from .runs import RunSpec
from .sine import RESKETCHES, SineConfig

__all__ = [
    "FINDINGS",
    "FORMS",
    "plain_fcnn",
    "resfcnn",
    "seed_results",
    "sine_spec",
]

FORMS = {"identity": "Section 5 block z + F(z)", "post": "post-activation block σ(z + F(z))"}


def resfcnn(scale, **kw) -> SineConfig:
    """The residual FCNN on the paper's sine schedule at ``scale``."""
    return SineConfig(
        model="resfcnn", epochs=scale.epochs(300), lr_milestones=(scale.at(150),), **kw
    )


def sine_spec(config: SineConfig, seed: int, *extras: str) -> RunSpec:
    return RunSpec("sine", config, seed, frozenset(extras))


def seed_results(ctx, config, *extras) -> list[dict | None]:
    """Each seed's result of ``config`` (None where the run diverged)."""
    out = []
    for seed in range(ctx.seeds):
        r = ctx.result(sine_spec(config, seed, *extras))
        out.append(None if r.diverged else r)
    return out


def _per_seed(values, fmt=".3g") -> str:
    return " / ".join("diverged" if v is None else f"{v:{fmt}}" for v in values)


# ---------------------------------------------------------------------------------------------
# Section 3.1, Fig. 1
# ---------------------------------------------------------------------------------------------
FIG1 = (
    Claim(
        "fig1-fcnn",
        "For the first 50 epochs, the shallower layers are moving faster to their convergence "
        "point (e.g., C_Layer 1 ≈ 0.012, C_Hidden layer 1 ≈ 0.009, C_Hidden layer 2 ≈ 0.006)",
        "C[0,50] (Definition 2.1) of Layer 1, Hidden layer 1, Hidden layer 2 of the plain FCNN "
        "[1-32-32-32-1], sigmoid; θ* = epoch 300",
        "Layer 1 > Hidden layer 1 > Hidden layer 2, in every seed",
        "0.012 / 0.009 / 0.006",
    ),
    Claim(
        "fig1-resfcnn",
        "the difference in layer-wise convergence rate can be observed even earlier (i.e., "
        "C_Res-Block 1^(t0,t5) ≈ 2 C_Res-Block 4^(t0,t5))",
        "C[0,5] of Res-Block 1 over Res-Block 4 of the residual FCNN; θ* = epoch 300",
        "C_RB1 / C_RB4 > 1 in every seed (the paper's ≈ 2 beside it)",
        "≈ 2",
    ),
)
HIDDEN = ("Layer 1", "Hidden layer 1", "Hidden layer 2")
#: why the sketched lines' rules changed (shared by fig1-resfcnn-sketched and cnn-resnet-sketched)
SKETCH_CHANGE = (
    "2026-12-07, after an audit of the 3-seed paper run: the rule was “{earlier}”. Measured over "
    "200 sketch seeds the band is honest (pooled coverage 94.8 ± 0.5% on the sine run, 95.4 ± "
    "0.3% on the ResNet; observed variance over the formula's 1.00-1.05), but a single run's "
    "coverage swings, because its windows share the errors of a few distances: “>= 90% in every "
    "seed” fails an honest 95% band 28-43% of the time. “Largest error <= 5%” is out of reach for"
    " any sketch of 4,096 numbers (an exact Gaussian JL sketch of that size misses it as often: a"
    " largest one-epoch error of 6.4% median on the ResNet, 5.9-26% on the sine run), and “<= "
    "1.4% over windows of 10 epochs or more” would have been a threshold set at the value "
    "measured. The rule now tests what a sketch promises, calibration over {n} re-sketches of the"
    " run's exact snapshots and the same verdict from each, and reports the precision without "
    "gating it"
)
SKETCHED = Claim(
    "fig1-resfcnn-sketched",
    "the difference in layer-wise convergence rate can be observed even earlier (i.e., "
    "C_Res-Block 1^(t0,t5) ≈ 2 C_Res-Block 4^(t0,t5))",
    "the residual FCNN's exact snapshots sketched anew with 20 sketch seeds (k = 4096 numbers "
    "per layer, each residual block's 33K parameters sketched): Fig. 1's verdict from each, and, "
    "pooled over the sketch seeds, the share of windows between snapshots 10 epochs apart (an "
    "exact rate at least 10% of its layer's largest) whose 95% band covers the exact rate; the "
    "median and 95th-percentile relative error, and the smaller windows' largest absolute "
    "error in units of the layer's largest rate, reported",
    f"every sketch seed gives the exact trajectory's verdict and the pooled coverage is at "
    f"least {CALIBRATED:.0%} (the band is calibrated), in every seed",
    "– (a check of the package's sketch, not a claim of the paper)",
    changed="2026-12-02, a measurement bug, not a new rule: the window from epoch 0 to θ* was "
    "counted. Its rate is 1 / 300 on every trajectory and every sketch row, so its band is 0 "
    "wide, and where float rounding (1e-17) set the two apart it counted as not covered; it "
    "measures nothing and is left out. "
    + SKETCH_CHANGE.format(
        earlier="the same verdict (sketch seed 0), a median error <= 1% and a largest <= 5%, and "
        "the 95% band covering the exact rate in >= 90% of the windows, in every seed",
        n=RESKETCHES,
    ),
)


def plain_fcnn(scale) -> SineConfig:
    """The plain FCNN [1-32-32-32-1] on the paper's sine schedule at ``scale``."""
    return SineConfig(model="fcnn", epochs=scale.epochs(300), lr_milestones=(scale.at(150),))


def fig1_plan(scale, seeds, data_dir=None):
    return [sine_spec(plain_fcnn(scale), s, "grad_magnitude") for s in range(seeds)] + [
        sine_spec(resfcnn(scale), s, "grad_magnitude", "resketch") for s in range(seeds)
    ]


def fig1_judge(ctx):
    w50, w5 = ctx.scale.at(50), ctx.scale.at(5)
    plain = seed_results(ctx, plain_fcnn(ctx.scale), "grad_magnitude")
    plain = [None if r is None else r.report.rates(0, w50) for r in plain]
    runs = seed_results(ctx, resfcnn(ctx.scale), "grad_magnitude", "resketch")
    res = [None if r is None else r.report.rates(0, w5) for r in runs]

    def ratio_of(report) -> float:
        c = report.rates(0, w5)
        return c["Res-Block 1"] / c["Res-Block 4"]

    calib = [None if r is None else sketch_calibration(r.report, r.resketch, every=10)
             for r in runs]  # fmt: skip
    sk_ratios = [None if r is None else [ratio_of(sk) for sk in r.resketch] for r in runs]
    columns = {n: [None if c is None else c[n] for c in plain] for n in HIDDEN}
    ratio = [None if c is None else c["Res-Block 1"] / c["Res-Block 4"] for c in res]
    same = [[] if q is None else [(x > 1) == (r > 1) for x in q] for q, r in zip(sk_ratios, ratio)]
    return [
        verdict(
            FIG1[0],
            [None if c is None else decreasing([c[n] for n in HIDDEN]) for c in plain],
            " / ".join(mean_sd(columns[n]) for n in HIDDEN)
            + "; per seed (L1, H1, H2): "
            + "; ".join(_per_seed([columns[n][s] for n in HIDDEN]) for s in range(ctx.seeds)),
            untestable=short_window(ctx.scale, 50),
            rates=columns,
            window=[0, w50],
        ),
        verdict(
            FIG1[1],
            [None if q is None else q > 1 for q in ratio],
            f"{mean_sd(ratio)}; per seed {_per_seed(ratio)}",
            untestable=short_window(ctx.scale, 5),
            ratio=ratio,
            window=[0, w5],
        ),
        verdict(
            SKETCHED,
            [None if c is None else sketch_holds(c, v) for c, v in zip(calib, same)],
            "sketched C_RB1 / C_RB4 over the sketch seeds per seed "
            + _per_seed([None if q is None else min(q) for q in sk_ratios])
            + " to "
            + _per_seed([None if q is None else max(q) for q in sk_ratios])
            + f" (exact {_per_seed(ratio)}); per seed: coverage pooled over windows and sketch "
            "seeds, sketch seeds giving the exact verdict, median / 95th-percentile relative "
            "error: " + calibration_text(calib, same),
            untestable=short_window(ctx.scale, 5),
            calibration=calib,
            sketched_ratios=sk_ratios,
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Section 4, Figs. 3-4
# ---------------------------------------------------------------------------------------------
def _fig3_claims(form: str) -> tuple[Claim, ...]:
    block = FORMS[form]
    return (
        Claim(
            f"fig3a-{form}",
            "sim(G_l,t, G'_l,t) indicates the stability of gradients with different data batches "
            "[...] Res-Block 1 has more predictive gradients than Res-Block 4",
            f"mean cos(G, G') (Definition 4.1, w.r.t. data) of Res-Blocks 1 and 4 over the "
            f"measurements before the LR decay (LR 0.1); {block}",
            "RB1 > RB4, in every seed (signed cosine: the definition's range is [-1, 1]; the "
            "|cos| reading is shown beside)",
            "qualitative (Fig. 3a)",
        ),
        Claim(
            f"fig3b-{form}",
            "sim(G_l,t, G''_l,t) reflects whether the currently estimated gradient is in a "
            "consistent decreasing direction [...] Res-Block 1 has more predictive gradients "
            "than Res-Block 4",
            f"mean cos(G, G'') (w.r.t. parameters) of Res-Blocks 1 and 4 before the LR decay, "
            f"with the network's top Hessian eigenvalue beside 2/η; {block}",
            "RB1 > RB4, in every seed (signed cosine; |cos| beside)",
            "qualitative (Fig. 3b)",
        ),
        Claim(
            f"fig3b-after-{form}",
            "the gradient predictiveness w.r.t. parameters of all layers get close to 1 (see "
            "Fig. 3 (b,right) for the predictiveness with the learning rate of 0.01)",
            f"mean cos(G, G'') of Res-Blocks 1 and 4 after the LR decay (LR 0.01); {block}",
            "both >= 0.9, in every seed",
            "close to 1",
        ),
        Claim(
            f"fig4-{form}",
            "For the shallower blocks, the surfaces are flatter near the minimizer (Fig. 4: "
            "Deeper layers are optimized on more rugged landscapes)",
            f"mean loss rise over the unit disc (||β|| <= 1) of each block's landscape at θ*, its "
            f"directions normalized per weight matrix (Section 4's rule for FC layers, after Li "
            f"et al.), Res-Blocks 1-4; {block}; top Hessian eigenvalue beside",
            "rise(RB1) < rise(RB4) and Spearman(depth, rise) > 0, in every seed",
            "qualitative (Fig. 4)",
            changed="2026-12-01, wording only (the rule and its numbers are unchanged): the "
            "quantity said “β in [-1, 1]²” and “filter-normalized”; the rise is the mean over "
            "the unit disc of that grid, and an FC layer's direction is normalized per weight "
            "matrix.",
        ),
    )


FIG34 = tuple(c for form in FORMS for c in _fig3_claims(form))
EXTRAS34 = ("predictiveness", "sharpness")


def fig34_plan(scale, seeds, data_dir=None):
    return [
        sine_spec(resfcnn(scale, block_form=form), s, *EXTRAS34)
        for form in FORMS
        for s in range(seeds)
    ]


def _phase_mean(series, values, after: bool) -> float:
    """Mean of ``values`` (one per measurement) before (LR as at the start) or after the decay."""
    lr0 = series["lr"][0]
    kept = [v for v, lr in zip(values, series["lr"]) if v is not None and (lr < lr0) == after]
    return float(np.mean(kept)) if kept else math.nan


def _blocks14(series, kind: str, after: bool, absolute: bool = False) -> list[float] | None:
    """[RB1, RB4] phase means of one predictiveness kind (None for a diverged run)."""
    if series is None:
        return None
    pick = abs if absolute else (lambda v: v)
    return [
        _phase_mean(series, [pick(v) for v in series["layers"][f"Res-Block {k}"][kind]], after)
        for k in (1, 4)
    ]


def fig34_judge(ctx):
    out = []
    blocks = [f"Res-Block {k}" for k in range(1, 5)]
    for form, claims in zip(FORMS, (FIG34[:4], FIG34[4:])):
        runs = seed_results(ctx, resfcnn(ctx.scale, block_form=form), *EXTRAS34)
        series = [None if r is None else r.predictiveness for r in runs]
        for claim, kind in zip(claims[:2], ("data", "parameters")):
            signed = [_blocks14(s, kind, after=False) for s in series]
            absolute = [_blocks14(s, kind, after=False, absolute=True) for s in series]
            abs_holds = sum(a is not None and a[0] > a[1] for a in absolute)
            measured = (
                f"RB1 {mean_sd(column(signed, 0))}, RB4 {mean_sd(column(signed, 1))}; |cos| "
                f"reading: RB1 > RB4 in {abs_holds} of {ctx.seeds} seeds"
            )
            numbers = {"signed": signed, "absolute": absolute}
            if kind == "parameters":
                lam = [
                    None if s is None else _phase_mean(s, s["lambda_max"], False) for s in series
                ]
                measured += f"; λ_max before the decay {mean_sd(lam)} vs 2/η = 20"
                numbers["lambda_max_before_decay"] = lam
            per_seed = [None if p is None else p[0] > p[1] for p in signed]
            out.append(verdict(claim, per_seed, measured, **numbers))
        after = [_blocks14(s, "parameters", after=True) for s in series]
        out.append(
            verdict(
                claims[2],
                [None if a is None else min(a) >= 0.9 for a in after],
                f"RB1 {mean_sd(column(after, 0))}, RB4 {mean_sd(column(after, 1))}",
                after=after,
            )
        )
        rise = [None if r is None else [r.sharpness[b]["rise"] for b in blocks] for r in runs]
        eig = [
            None if r is None else [r.sharpness[b]["top_eigenvalue"] for b in blocks] for r in runs
        ]
        out.append(
            verdict(
                claims[3],
                [None if v is None else v[0] < v[3] and spearman(range(4), v) > 0 for v in rise],
                "rise RB1-4 "
                + " / ".join(mean_sd(column(rise, k)) for k in range(4))
                + "; top eigenvalue RB1-4 "
                + " / ".join(mean_sd(column(eig, k)) for k in range(4)),
                rise=rise,
                top_eigenvalue=eig,
            )
        )
    return out


FINDINGS = [
    Finding(
        "fcnn-bias",
        "3.1, Fig. 1",
        "shallower layers of the plain and the residual FCNN converge faster",
        (*FIG1, SKETCHED),
        fig1_plan,
        fig1_judge,
    ),
    Finding(
        "predictiveness-sharpness",
        "4, Figs. 3-4",
        "shallower blocks have more predictive gradients and flatter landscapes",
        FIG34,
        fig34_plan,
        fig34_judge,
    ),
]
