"""Appendix A.3 (factors affecting the bias, Figs. 12-16) and A.6 (block placement, Fig. 20).

All on the residual FCNN of Section 3.1 ("Here we use the FCNNs with residual connections"),
the paper's sine schedule at the chosen scale, :math:`\\theta^*` = the last epoch. The bias of a
run is measured over the residual FCNN's window :math:`[0, 5]` as Spearman's rank correlation
between depth and :math:`C` over every layer but the output layer (as Fig. 1 compares them):
present when it is at most :data:`~depthaware.recipes.findings.BIAS` (-0.5).
"""

from __future__ import annotations

import numpy as np

from .findings import (
    Claim,
    Finding,
    bias_present,
    mean_sd,
    rates,
    short_window,
    spearman,
    verdict,
)
from .sine_findings import resfcnn, sine_spec

__all__ = ["FACTORS", "FINDINGS", "PLACEMENTS", "bias_strength", "factor_rates"]

#: name -> SineConfig overrides of the residual FCNN (Figs. 12-16)
FACTORS = {
    "base": {},
    "lr 0.01": {"lr": 0.01},
    "weight decay 1e-3": {"weight_decay": 1e-3},
    "weight decay 1e-2": {"weight_decay": 1e-2},
    "6 blocks": {"res_blocks": (2,) * 6},
    "8 blocks": {"res_blocks": (2,) * 8},
    "Adam 1e-3": {"optimizer": "adam", "lr": 1e-3},
    "RMSprop 1e-3": {"optimizer": "rmsprop", "lr": 1e-3},
    "Adagrad 1e-2": {"optimizer": "adagrad", "lr": 1e-2},
    "BatchNorm": {"norm": "batch", "lr": 0.01},
    "LayerNorm": {"norm": "layer", "lr": 0.01},
    "GroupNorm": {"norm": "group", "lr": 0.01},
    "BatchNorm, LR 0.1": {"norm": "batch"},
    "LayerNorm, LR 0.1": {"norm": "layer"},
    "GroupNorm, LR 0.1": {"norm": "group"},
}
NORMS = ("BatchNorm", "LayerNorm", "GroupNorm")

FACTOR_CLAIMS = (
    Claim(
        "a3-lr",
        "When the learning rate gets smaller, layer convergence bias becomes weaker.",
        "Spearman(depth, C[0,5]) at LR 0.1 (the paper's) and LR 0.01",
        "the bias is present at LR 0.1 and Spearman is higher (weaker) at LR 0.01, per seed",
        "qualitative (Fig. 13)",
    ),
    Claim(
        "a3-weight-decay",
        "when the weight decay becomes stronger, the residual blocks converge slower in a more "
        "and more similar convergence rate",
        "mean and coefficient of variation of C[0,5] over Res-Blocks 1-4 at weight decay "
        "0, 1e-3, 1e-2",
        "both strictly decrease as the weight decay grows, per seed",
        "qualitative (Fig. 14)",
    ),
    Claim(
        "a3-depth",
        "As shown in Fig. 12, all the networks show layer convergence bias.",
        "Spearman(depth, C[0,5]) with 4 (the paper's), 6 and 8 residual blocks",
        "the bias is present at every depth, per seed",
        "qualitative (Fig. 12)",
    ),
    Claim(
        "a3-optimizer",
        "It is evident that with adaptive optimizers, layer convergence bias does not hold "
        "anymore.",
        "Spearman(depth, C[0,5]) under Adam (LR 1e-3), RMSprop (1e-3) and Adagrad (1e-2)",
        "the bias is absent (Spearman > -0.5) under each of the three, per seed",
        "qualitative (Fig. 15)",
    ),
    Claim(
        "a3-batchnorm",
        "all layers converge faster when adding batch normalization to them [...] The layer "
        "convergence bias also holds for batch normalization.",
        "C[0,5] of Res-Blocks 1-4 with BatchNorm in every branch, and its Spearman(depth, C)",
        "every block's C is larger than without normalization, and the bias is present, per seed",
        "qualitative (Fig. 16)",
    ),
    Claim(
        "a3-layer-group-norm",
        "For layer normalization and group normalization, the models show a significantly "
        "faster convergence rate than the model using batch normalization. [...] different "
        "layers have similar convergence rates, thus no evident layer convergence bias emerges.",
        "mean C[0,5] over Res-Blocks 1-4 and Spearman(depth, C) with LayerNorm and GroupNorm (8 "
        "groups), against BatchNorm, all at LR 0.01 (as the BatchNorm claim)",
        "for each: the mean C is larger than with BatchNorm and the bias is absent, per seed",
        "qualitative (Fig. 16)",
    ),
)


def factors_plan(scale, seeds, data_dir=None):
    return [sine_spec(resfcnn(scale, **kw), s) for kw in FACTORS.values() for s in range(seeds)]


def factor_rates(ctx, name: str, seed: int) -> dict | None:
    """C[0,5] of every layer in the run of factor ``name`` (None if it diverged)."""
    r = ctx.result(sine_spec(resfcnn(ctx.scale, **FACTORS[name]), seed))
    return None if "diverged" in r else rates(r, 0, ctx.scale.at(5))


def bias_strength(c: dict | None) -> float | None:
    """Spearman(depth, C) over every layer but the output layer."""
    if c is None:
        return None
    compared = [n for n in c if n != "Output layer"]
    return spearman(range(len(compared)), [c[n] for n in compared])


def _blocks(c: dict) -> list[float]:
    return [v for n, v in c.items() if n.startswith("Res-Block")]


def _strictly_down(values) -> bool:
    return all(a > b for a, b in zip(values, values[1:]))


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

    wd = ("base", "weight decay 1e-3", "weight decay 1e-2")
    stats = {n: [None if x is None else _blocks(x) for x in c[n]] for n in wd}
    mean = {n: [None if b is None else float(np.mean(b)) for b in stats[n]] for n in wd}
    cv = {
        n: [None if b is None else float(np.std(b) / abs(np.mean(b))) for b in stats[n]] for n in wd
    }
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
                lambda s: (
                    _strictly_down([mean[n][s] for n in wd])
                    and _strictly_down([cv[n][s] for n in wd])
                ),
                *wd,
            ),
            "mean C of the blocks at wd 0 / 1e-3 / 1e-2: "
            + " / ".join(mean_sd(mean[n]) for n in wd)
            + "; coefficient of variation: "
            + " / ".join(mean_sd(cv[n], ".2f") for n in wd),
            mean=mean,
            cv=cv,
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
        ),
        verdict(
            FACTOR_CLAIMS[3],
            per_seed(
                lambda s: (
                    not any(
                        bias_present(S[n][s]) for n in ("Adam 1e-3", "RMSprop 1e-3", "Adagrad 1e-2")
                    )
                ),
                "Adam 1e-3",
                "RMSprop 1e-3",
                "Adagrad 1e-2",
            ),
            "Spearman(depth, C) " + spearmans("base", "Adam 1e-3", "RMSprop 1e-3", "Adagrad 1e-2"),
        ),
        verdict(
            FACTOR_CLAIMS[4],
            per_seed(
                lambda s: (
                    bias_present(S["BatchNorm"][s])
                    and all(
                        a > b
                        for a, b in zip(
                            _blocks(c["BatchNorm"][s]), _blocks(c["base"][s]), strict=True
                        )
                    )
                ),
                "base",
                "BatchNorm",
            ),
            "Spearman(depth, C) "
            + spearmans("BatchNorm")
            + "; mean C of the blocks without / with BatchNorm (LR 0.01): "
            + " / ".join(
                mean_sd([x and np.mean(_blocks(x)) for x in c[n]]) for n in ("lr 0.01", "BatchNorm")
            )
            + diverged_at_01,
        ),
        verdict(
            FACTOR_CLAIMS[5],
            per_seed(
                lambda s: all(
                    not bias_present(S[n][s])
                    and np.mean(_blocks(c[n][s])) > np.mean(_blocks(c["BatchNorm"][s]))
                    for n in norms
                ),
                "BatchNorm",
                *norms,
            ),
            "Spearman(depth, C) "
            + spearmans(*norms)
            + "; mean C of the blocks BatchNorm / LayerNorm / GroupNorm: "
            + " / ".join(
                mean_sd([x and np.mean(_blocks(x)) for x in c[n]]) for n in ("BatchNorm", *norms)
            ),
        ),
    ]


# ---------------------------------------------------------------------------------------------
# A.6, Fig. 20
# ---------------------------------------------------------------------------------------------
PLACEMENTS = ((4, 1, 1, 1), (1, 4, 1, 1), (1, 1, 4, 1), (1, 1, 1, 4))
PLACEMENT_CLAIMS = (
    Claim(
        "a6-mse",
        "As the block with depth=4 being placed shallower in the FCNN, the regression MSE loss "
        "goes higher.",
        "test MSE at the end of training with block sizes (4,1,1,1), (1,4,1,1), (1,1,4,1), "
        "(1,1,1,4) (linear layers per block; one-layer blocks are W σ(h))",
        "Spearman(position of the 4-layer block, MSE) < 0, per seed",
        "MSE falls from (4,1,1,1) to (1,1,1,4) (Fig. 20)",
    ),
    Claim(
        "a6-slowest",
        "We can see that the blocks with the largest complexity always converge the most slowly.",
        "C[0,5] of Res-Blocks 1-4 in each placement",
        "the 4-layer block has the smallest C of the four in every placement, per seed",
        "qualitative (Fig. 20)",
    ),
)


def placement_plan(scale, seeds, data_dir=None):
    return [sine_spec(resfcnn(scale, res_blocks=p), s) for p in PLACEMENTS for s in range(seeds)]


def placement_judge(ctx):
    runs = {
        p: [ctx.result(sine_spec(resfcnn(ctx.scale, res_blocks=p), s)) for s in range(ctx.seeds)]
        for p in PLACEMENTS
    }
    mse = {p: [None if "diverged" in r else r["test_mse"] for r in runs[p]] for p in PLACEMENTS}
    slowest = {
        p: [
            None
            if "diverged" in r
            else int(np.argmin(_blocks(rates(r, 0, ctx.scale.at(5))))) == p.index(4)
            for r in runs[p]
        ]
        for p in PLACEMENTS
    }
    by_seed = [[mse[p][s] for p in PLACEMENTS] for s in range(ctx.seeds)]
    return [
        verdict(
            PLACEMENT_CLAIMS[0],
            [None if None in m else spearman(range(4), m) < 0 for m in by_seed],
            "; ".join(f"{p}: {mean_sd(mse[p], '.2e')}" for p in PLACEMENTS),
            mse={str(p): v for p, v in mse.items()},
        ),
        verdict(
            PLACEMENT_CLAIMS[1],
            [
                None
                if any(slowest[p][s] is None for p in PLACEMENTS)
                else all(slowest[p][s] for p in PLACEMENTS)
                for s in range(ctx.seeds)
            ],
            untestable=short_window(ctx.scale, 5),
            measured="the 4-layer block is the slowest in "
            + ", ".join(f"{p}: {sum(bool(v) for v in slowest[p])}/{ctx.seeds}" for p in PLACEMENTS),
            slowest={str(p): v for p, v in slowest.items()},
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
    Finding(
        "block-placement",
        "A.6, Fig. 20",
        "the biggest residual block placed deeper gives the lower error",
        PLACEMENT_CLAIMS,
        placement_plan,
        placement_judge,
    ),
]
