"""Appendix A.6 (block placement, Fig. 20): the residual FCNN with one 4-layer block placed at
each of the four positions, the paper's sine schedule at the chosen scale, :math:`\\theta^*` =
the last epoch."""

from __future__ import annotations

import numpy as np

from .factor_rules import block_rates
from .findings import Claim, Finding, mean_sd, short_window, spearman, verdict
from .sine_findings import resfcnn, sine_spec

__all__ = ["FINDINGS", "PLACEMENTS"]

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
    mse = {p: [None if r.diverged else r.test_mse for r in runs[p]] for p in PLACEMENTS}
    slowest = {
        p: [
            None
            if r.diverged
            else int(np.argmin(block_rates(r.report.rates(0, ctx.scale.at(5))))) == p.index(4)
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
        "block-placement",
        "A.6, Fig. 20",
        "the biggest residual block placed deeper gives the lower error",
        PLACEMENT_CLAIMS,
        placement_plan,
        placement_judge,
    ),
]
