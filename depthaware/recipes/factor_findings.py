"""Appendix A.3: the factors affecting the bias (Figs. 12-16).

All on the residual FCNN of Section 3.1 ("Here we use the FCNNs with residual connections"),
the paper's sine schedule at the chosen scale, :math:`\\theta^*` = the last epoch. The bias of a
run is measured over the residual FCNN's window :math:`[0, 5]` as Spearman's rank correlation
between depth and :math:`C` over every layer but the output layer (as Fig. 1 compares them):
present when it is at most :data:`~depthaware.recipes.findings.BIAS` (-0.5).
"""

from __future__ import annotations

import numpy as np

from .factor_claims import (
    ADAPTIVE,
    BATCHNORM_NOTE,
    DECAY_MARK,
    FACTOR_CLAIMS,
    FACTORS,
    NORMS,
    WEIGHT_DECAYS,
)
from .factor_rules import (
    adaptive_breaks_order,
    bias_strength,
    block_rates,
    block_spearman,
    coefficient_of_variation,
    column,
    decay_dominated,
    decay_rate,
    decay_share,
    strictly_down,
    weight_decay_slows,
)
from .findings import (
    Finding,
    bias_present,
    mean_sd,
    short_window,
    verdict,
)
from .sine_findings import resfcnn, sine_spec

__all__ = ["FINDINGS", "factor_rates"]


def factors_plan(scale, seeds, data_dir=None):
    return [sine_spec(resfcnn(scale, **kw), s) for kw in FACTORS.values() for s in range(seeds)]


def _config(ctx, name: str):
    return resfcnn(ctx.scale, **FACTORS[name])


def _share(ctx, name: str, seed: int) -> float | None:
    r = ctx.result(sine_spec(_config(ctx, name), seed))
    return None if r.diverged else decay_share(r.report, _config(ctx, name))


def _dominated(ctx, name: str, seed: int) -> bool | None:
    r = ctx.result(sine_spec(_config(ctx, name), seed))
    return None if r.diverged else decay_dominated(r.report, _config(ctx, name))


def factor_rates(ctx, name: str, seed: int) -> dict | None:
    """C[0,5] of every layer in the run of factor ``name`` (None if it diverged)."""
    r = ctx.result(sine_spec(_config(ctx, name), seed))
    return None if r.diverged else r.report.rates(0, ctx.scale.at(5))


def factors_judge(ctx):
    out = _factors_judge(ctx)
    if short_window(ctx.scale, 5):
        out = [verdict(v.claim, v.per_seed, v.measured, untestable=short_window(ctx.scale, 5),
                       **v.numbers) for v in out]  # fmt: skip
    return out


def _factors_judge(ctx):
    c = {name: [factor_rates(ctx, name, s) for s in range(ctx.seeds)] for name in FACTORS}
    S = {name: [bias_strength(x) for x in runs] for name, runs in c.items()}

    def per_seed(test, *names):
        return [
            None if any(c[n][s] is None for n in names) else bool(test(s)) for s in range(ctx.seeds)
        ]

    def spearmans(*names) -> str:
        return "; ".join(f"{n}: {mean_sd(S[n], '.2f')}" for n in names)

    wd = (*WEIGHT_DECAYS, DECAY_MARK)
    mean = {n: [None if x is None else float(np.mean(block_rates(x))) for x in c[n]] for n in wd}
    cv = {
        n: [None if x is None else coefficient_of_variation(block_rates(x)) for x in c[n]]
        for n in wd
    }
    dominated = {n: [_dominated(ctx, n, s) for s in range(ctx.seeds)] for n in wd}
    shares = {n: [_share(ctx, n, s) for s in range(ctx.seeds)] for n in wd if n != "base"}
    gone = {n: [s for s in range(ctx.seeds) if c[n][s] is None] for n in ADAPTIVE}
    excluded = "; ".join(
        f"{n} diverged in seed{'s' * (len(v) > 1)} {', '.join(map(str, v))} (excluded: its "
        "numbers measure the explosion)"
        for n, v in gone.items()
        if v
    )
    S_blocks = {n: [block_spearman(x) for x in c[n]] for n in ("base", *ADAPTIVE)}
    norms = ("LayerNorm", "GroupNorm")
    diverged = {n: sum(x is None for x in c[f"{n}, LR 0.1"]) for n in NORMS}
    diverged_at_01 = "; at the paper's LR 0.1 the run diverges in " + ", ".join(
        f"{n} {k}/{ctx.seeds}" for n, k in diverged.items()
    )
    return [
        verdict(
            FACTOR_CLAIMS[0],
            per_seed(
                lambda s: bias_present(S["base"][s]) and S["lr 0.01"][s] > S["base"][s],
                "base",
                "lr 0.01",
            ),
            "Spearman(depth, C) " + spearmans("base", "lr 0.01"),
            spearman=S,
        ),
        verdict(
            FACTOR_CLAIMS[1],
            per_seed(
                lambda s: weight_decay_slows(
                    [mean[n][s] for n in wd], [cv[n][s] for n in wd], [dominated[n][s] for n in wd]
                ),
                *wd,
            ),
            "mean C of the blocks at wd 0 / 1e-4 / 3e-4 / 1e-3 / 1e-2: "
            + " / ".join(mean_sd(mean[n]) for n in wd)
            + "; coefficient of variation: "
            + " / ".join(mean_sd(cv[n], ".3f") for n in wd)
            + "; share of the blocks' distance to θ* decay alone explains at 1e-4 / 3e-4 / 1e-3 "
            "/ 1e-2: "
            + " / ".join(mean_sd(v, ".3f") for v in shares.values())
            + "; decay-dominated: "
            + (
                ", ".join(
                    f"{n[13:]} in {sum(dominated[n])}/{ctx.seeds}" for n in wd if any(dominated[n])
                )
                or "none"
            )  # fmt: skip
            + f" (decay alone at 1e-2: C = {decay_rate(_config(ctx, DECAY_MARK), 5):.5f})",
            mean=mean,
            cv=cv,
            decay_share=shares,
            decay_dominated=dominated,
        ),
        verdict(
            FACTOR_CLAIMS[2],
            per_seed(
                lambda s: all(bias_present(S[n][s]) for n in ("base", "6 blocks", "8 blocks")),
                "base",
                "6 blocks",
                "8 blocks",
            ),
            "Spearman(depth, C) " + spearmans("base", "6 blocks", "8 blocks"),
            spearman={n: S[n] for n in ("base", "6 blocks", "8 blocks")},
        ),
        verdict(
            FACTOR_CLAIMS[3],
            [
                None
                if c["base"][s] is None or all(c[n][s] is None for n in ADAPTIVE)
                else adaptive_breaks_order(
                    block_rates(c["base"][s]),
                    [block_rates(c[n][s]) for n in ADAPTIVE if c[n][s] is not None],
                )
                for s in range(ctx.seeds)
            ],
            "Spearman(depth, C) over the blocks (with the input layer): "
            + "; ".join(
                f"{'SGD 0.1' if n == 'base' else n}: {mean_sd(S_blocks[n], '.2f')} "
                f"({mean_sd(S[n], '.2f')})"
                for n in ("base", *ADAPTIVE)
            )
            + "; blocks in Observation 2.1's order: "
            + ", ".join(
                f"{'SGD 0.1' if n == 'base' else n} "
                f"{sum(bool(x) and strictly_down(block_rates(x)) for x in c[n])}/{ctx.seeds}"
                for n in ("base", *ADAPTIVE)
            )
            + (f"; {excluded}" if excluded else ""),
            spearman_blocks=S_blocks,
            diverged=gone,
        ),
        verdict(
            FACTOR_CLAIMS[4],
            per_seed(
                lambda s: (
                    bias_present(S["BatchNorm"][s])
                    and all(
                        a > b
                        for a, b in zip(
                            block_rates(c["BatchNorm"][s]),
                            block_rates(c["lr 0.01"][s]),
                            strict=True,
                        )
                    )
                ),
                "lr 0.01",
                "BatchNorm",
            ),
            "Spearman(depth, C) "
            + spearmans("BatchNorm")
            + "; C of Res-Blocks 1-4 at LR 0.01 without normalization: "
            + " / ".join(mean_sd(column(c["lr 0.01"], k)) for k in range(4))
            + ", with BatchNorm: "
            + " / ".join(mean_sd(column(c["BatchNorm"], k)) for k in range(4))
            + diverged_at_01,
            note=BATCHNORM_NOTE,
            rates={n: c[n] for n in ("lr 0.01", "BatchNorm")},
            spearman={n: S[n] for n in ("BatchNorm", "BatchNorm, LR 0.1")},
        ),
        verdict(
            FACTOR_CLAIMS[5],
            per_seed(
                lambda s: all(
                    not bias_present(S[n][s])
                    and np.mean(block_rates(c[n][s])) > np.mean(block_rates(c["BatchNorm"][s]))
                    for n in norms
                ),
                "BatchNorm",
                *norms,
            ),
            "Spearman(depth, C) "
            + spearmans(*norms)
            + "; mean C of the blocks BatchNorm / LayerNorm / GroupNorm: "
            + " / ".join(
                mean_sd([x and np.mean(block_rates(x)) for x in c[n]])
                for n in ("BatchNorm", *norms)
            ),
            rates={n: c[n] for n in ("BatchNorm", *norms)},
            spearman={n: S[n] for n in norms},
        ),
    ]


FINDINGS = [
    Finding(
        "factors",
        "A.3, Figs. 12-16",
        "learning rate, weight decay, depth, optimizer and normalization vs the bias",
        FACTOR_CLAIMS,
        factors_plan,
        factors_judge,
    ),
]
