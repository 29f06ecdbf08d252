"""Appendix A.3's factors (Figs. 12-16): each factor's settings of the residual FCNN, and the
claims made about them, with their quantities and pass rules (fixed before any run; judged in
:mod:`.factor_findings` by the rules of :mod:`.factor_rules`)."""

from __future__ import annotations

from typing import Any

from .findings import Claim

__all__ = [
    "ADAPTIVE",
    "BATCHNORM_NOTE",
    "DECAY_MARK",
    "FACTORS",
    "FACTOR_CLAIMS",
    "NORMS",
    "WEIGHT_DECAYS",
]

#: name -> SineConfig overrides of the residual FCNN (Figs. 12-16)
FACTORS: dict[str, dict[str, Any]] = {
    "base": {},
    "lr 0.01": {"lr": 0.01},
    "weight decay 1e-4": {"weight_decay": 1e-4},
    "weight decay 3e-4": {"weight_decay": 3e-4},
    "weight decay 1e-3": {"weight_decay": 1e-3},
    "weight decay 1e-2": {"weight_decay": 1e-2},  # decay-dominated: a marked point
    "6 blocks": {"res_blocks": (2,) * 6},
    "8 blocks": {"res_blocks": (2,) * 8},
    "Adam 1e-3": {"optimizer": "adam", "lr": 1e-3},
    "RMSprop 1e-3": {"optimizer": "rmsprop", "lr": 1e-3},
    "RMSprop 1e-2": {"optimizer": "rmsprop", "lr": 1e-2},
    "Adagrad 1e-2": {"optimizer": "adagrad", "lr": 1e-2},
    "BatchNorm": {"norm": "batch", "lr": 0.01},
    "LayerNorm": {"norm": "layer", "lr": 0.01},
    "GroupNorm": {"norm": "group", "lr": 0.01},
    "BatchNorm, LR 0.1": {"norm": "batch"},
    "LayerNorm, LR 0.1": {"norm": "layer"},
    "GroupNorm, LR 0.1": {"norm": "group"},
}
NORMS = ("BatchNorm", "LayerNorm", "GroupNorm")
#: the weight-decay grid in the learning regime (wd 0 first); 1e-2 is a marked point beside it
WEIGHT_DECAYS = ("base", "weight decay 1e-4", "weight decay 3e-4", "weight decay 1e-3")
DECAY_MARK = "weight decay 1e-2"
BATCHNORM_NOTE = (
    "At the paper's LR 0.1 every normalized run diverges (counts above) in this recipe's "
    "pre-norm placement F(N(z)); placed after each branch's linear layers instead, the "
    "normalization diverges in the first epoch at LR 0.1 as well (measured, see "
    "depthaware.models.ResidualFCNN). An independent audit of this report found the same at LR "
    "0.1 for He et al.'s block fc-BN-ReLU-fc-BN-add-ReLU (with or without a BatchNorm on the "
    "input, with or without a zero-initialised last γ) and for z + BN(fc(ReLU(BN(fc z)))); the "
    "one variant it found to train (BatchNorm in the branches only, zero last γ, no input "
    "BatchNorm) reverses the bias. Those variants are the audit's numbers, not rerun here."
)
ADAPTIVE = ("Adam 1e-3", "RMSprop 1e-3", "RMSprop 1e-2", "Adagrad 1e-2")

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
        "mean and coefficient of variation (CV) of C[0,5] over Res-Blocks 1-4 at weight decay "
        "0, 1e-4, 3e-4, 1e-3 and 1e-2; a run is decay-dominated when weight decay alone explains "
        "at least 90% of its blocks' squared distance from θ0 to θ*, 1 - ||θ* - cθ0||² / ||θ* - "
        "θ0||² with c = Π(1 - η_t λ) over the run's steps, measured from the run itself",
        "over every weight decay whose run is not decay-dominated (at least three, weight decay 0 "
        "among them), the mean C and the CV both strictly fall as the weight decay grows, per "
        "seed: the claim's trend (“slower”, “more and more similar”) over the whole grid",
        "qualitative (Fig. 14)",
        changed="2026-12-01, after the 3-seed paper run: the rule was “mean and CV strictly "
        "decrease over weight decay 0, 1e-3, 1e-2”; at 1e-2 the blocks' weights decay to θ* ≈ 0 "
        "and C[0,5] equals the decay factor, a measurement of the decay, not of learning. "
        "2026-12-07, after an audit of the 3-seed paper run: the rule compared the strongest "
        "learning decay with weight decay 0 only (the CV rose at 1e-4 in 3 of 3 seeds and the "
        "rule never looked), and its decay-dominated detector assumed θ* = 0 (it missed 1e-3, "
        "where decay alone explains 99.3% of the distance to θ*). The rule now reads the trend "
        "over every learning point and the detector measures the share of the distance decay "
        "explains, from the run.",
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
        "C[0,5] of Res-Blocks 1-4 and their Spearman(depth, C) under Adam (LR 1e-3), RMSprop "
        "(1e-3, and torch's default 1e-2) and Adagrad (1e-2), beside the same seed's SGD run; "
        "the learning rates are this recipe's own choice (the paper gives none)",
        "under each adaptive optimizer, Observation 2.1's pairwise order over the blocks is "
        "broken (C not strictly decreasing from Res-Block 1 to 4) and the blocks' Spearman(depth, "
        "C) is above the same seed's SGD run's, per seed",
        "qualitative (Fig. 15)",
        changed="2026-12-01, after the 3-seed paper run: the rule was “the bias is absent "
        "(Spearman(depth, C) > -0.5 over the input layer and the four blocks) under each”. "
        "Observation 2.1 defines the bias as the order of every pair, and the input layer "
        "(fan-in 1) alone pulled Adam's Spearman to -0.7 while its blocks' order was broken "
        "(-0.4 over the blocks): the rule now reads the order over the blocks against SGD's; "
        "RMSprop at torch's default LR 1e-2 was added beside 1e-3. 2026-12-07, after an audit: "
        "the RMSprop 1e-2 run exploded (training loss 1.5e9 to 1.1e10 in epoch 1) and was read "
        "as a measurement, since only NaN/inf counted as diverged; a run now diverges by a "
        "definition fixed before any run (an epoch's mean training loss above 10 times the "
        "initial one, depthaware.recipes.loop.DIVERGE_FACTOR) and is left out of the comparison, "
        "named.",
    ),
    Claim(
        "a3-batchnorm",
        "all layers converge faster when adding batch normalization to them [...] The layer "
        "convergence bias also holds for batch normalization.",
        "C[0,5] of Res-Blocks 1-4 with BatchNorm in every branch, and its Spearman(depth, C), "
        "both at LR 0.01 (at the paper's 0.1 the BatchNorm runs diverge)",
        "every block's C is larger than without normalization at the same LR 0.01, and the bias "
        "is present, per seed",
        "qualitative (Fig. 16)",
        changed="2026-12-01, after the 3-seed paper run: a comparison bug, not a new rule. The "
        "BatchNorm runs (LR 0.01) were compared with the runs without normalization at LR 0.1; "
        "they are now compared with those at LR 0.01, as the rule's text said.",
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
