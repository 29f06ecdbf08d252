"""Appendix A.3's pass rules (the factors affecting the bias) on synthetic run results where
the answer is known; and the block-placement rule. No training happens here."""

import numpy as np
import pytest
from findings_helpers import (
    PAPER,
    PAPER_FACTORS,
    SHALLOW_FASTER,
    context,
    factor_make,
    fake_run,
    outcomes,
    res_rates,
)

from depthaware.measure import ConvergenceReport
from depthaware.recipes import factor_claims, factor_rules, sine_findings
from depthaware.recipes.paper import FINDINGS


def test_factor_rules_hold_on_the_papers_picture():
    assert outcomes("factors", factor_make(PAPER_FACTORS)) == ["holds"] * 6


@pytest.mark.parametrize(
    "change, failing",
    [
        ({"lr 0.01": SHALLOW_FASTER}, 0),  # not weaker
        ({"weight decay 1e-3": [0.3, 0.6, 0.4, 0.3, 0.2]}, 1),  # faster than without
        ({"weight decay 1e-3": [0.3, 0.5, 0.3, 0.2, 0.1]}, 1),  # slower, less alike
        ({"8 blocks": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}, 2),  # no bias at 8 blocks
        ({"Adagrad 1e-2": SHALLOW_FASTER}, 3),  # bias under an adaptive optimizer
        ({"RMSprop 1e-2": [0.1, 0.5, 0.4, 0.3, 0.2]}, 3),  # blocks in order, whatever the input
        ({"BatchNorm": [0.3, 0.2, 0.19, 0.18, 0.17]}, 4),  # slower than without
        ({"GroupNorm": [2.4, 2.3, 2.2, 2.1, 2.0]}, 5),  # bias with GroupNorm
    ],
)
def test_each_factor_rule_can_fail(change, failing):
    got = outcomes("factors", factor_make({**PAPER_FACTORS, **change}))
    assert got[failing] == "does not hold"
    assert [g for k, g in enumerate(got) if k != failing] == ["holds"] * 5


def test_the_optimizer_rule_reads_the_blocks_order_not_the_input_layer():
    """The audit's Adam run (seed 0): the fan-in-1 input layer alone makes Spearman -0.7 over
    input + blocks, while the blocks' order is broken (RB1 < RB2): the claim holds there."""
    adam = [0.044, 0.027, 0.035, 0.029, 0.025]
    assert factor_rules.bias_strength(res_rates(adam)) == pytest.approx(-0.7)
    table = {**PAPER_FACTORS, **dict.fromkeys(factor_claims.ADAPTIVE, adam)}
    verdicts = FINDINGS["factors"].judge(context("factors", factor_make(table)))
    assert verdicts[3].outcome == "holds"
    assert "Adam 1e-3: -0.40 ± 0.00 (-0.70 ± 0.00)" in verdicts[3].measured
    # a broken order that ranks with depth no higher than SGD's own blocks does not pass
    assert not factor_rules.adaptive_breaks_order([4, 2, 3, 1], [[4, 2, 3, 1]])


def test_batchnorm_is_compared_with_the_run_at_its_own_learning_rate():
    """Faster than the unnormalized run at LR 0.01, slower than the one at LR 0.1: holds."""
    table = {
        **PAPER_FACTORS,
        "lr 0.01": [0.3, 0.35, 0.2, 0.15, 0.1],  # Spearman -0.9: weaker than base's -1
        "BatchNorm": [0.45, 0.4, 0.25, 0.2, 0.15],  # above lr 0.01's blocks, below base's
    }
    assert outcomes("factors", factor_make(table)) == ["holds"] * 6


def test_a_decay_dominated_run_is_named_and_the_trend_is_read_over_the_others():
    """At 1e-3 the blocks' θ* is their decayed start: that run is set aside (whatever its rates)
    and the trend over 0, 1e-4, 3e-4 decides; so is 1e-2 (zero norms: θ* = 0 = cθ0 nearly)."""
    make = factor_make({**PAPER_FACTORS, "weight decay 1e-3": [0.3, 0.9, 0.2, 0.9, 0.2]})
    c = _decay_factor(sine_findings.resfcnn(PAPER, weight_decay=1e-3))

    def decayed(spec):
        run = make(spec)
        if spec.config.weight_decay == 1e-3:  # ||θ0|| = 1/(1-c), ||θ*|| = c/(1-c), d(0) = 1
            norms = np.linspace(1 / (1 - c), c / (1 - c), len(run["steps"]))
            run["norms"] = [norms.tolist()] * len(run["layers"])
        return run

    v = FINDINGS["factors"].judge(context("factors", decayed))[1]
    assert v.outcome == "holds" and "decay-dominated: 1e-3 in 2/2, 1e-2 in 2/2" in v.measured
    assert v.numbers["decay_dominated"]["weight decay 1e-3"] == [True, True]
    assert v.numbers["decay_share"]["weight decay 1e-3"] == pytest.approx([1.0, 1.0])
    assert v.numbers["decay_dominated"]["weight decay 3e-4"] == [False, False]


def _decay_factor(config) -> float:
    """c = (1 - 0.1 λ)^s (1 - 0.01 λ)^s: the paper's LR 0.1 for 150 epochs, then 0.01."""
    steps = 150 * -(-config.n_train // config.batch_size)
    return (1 - 0.1 * config.weight_decay) ** steps * (1 - 0.01 * config.weight_decay) ** steps


def _report(start: float, end: float, d0: float) -> ConvergenceReport:
    """A one-block report with ||θ0||, ||θ*|| and d(0) = ||θ0 - θ*|| as given."""
    return ConvergenceReport(
        ["Res-Block 1"], [0], np.array([0, 300]), np.array([[d0, 0.0]]),
        np.array([[start, end]]), np.array([[d0]]),
    )  # fmt: skip


def test_the_decay_share_is_what_the_vectors_give():
    """A second route: 1 - ||θ* - cθ0||² / ||θ* - θ0||² from the vectors themselves, for θ* the
    decayed start (1), a point near the start and a random point."""
    config = sine_findings.resfcnn(PAPER, weight_decay=1e-3)
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=100)
    c = _decay_factor(config)
    assert factor_rules.decay_share(_report(1.0, 0.0, 1.0), config) == pytest.approx(1 - c**2)
    for star in (c * theta0, theta0 + 0.3 * rng.normal(size=100), rng.normal(size=100)):
        report = _report(np.linalg.norm(theta0), np.linalg.norm(star),
                         np.linalg.norm(theta0 - star))  # fmt: skip
        want = 1 - np.sum((star - c * theta0) ** 2) / np.sum((star - theta0) ** 2)
        assert factor_rules.decay_share(report, config) == pytest.approx(want, abs=1e-6)
    assert factor_rules.decay_dominated(_report(1 / (1 - c), c / (1 - c), 1.0), config)
    no_decay = sine_findings.resfcnn(PAPER)
    assert not factor_rules.decay_dominated(_report(1 / (1 - c), c / (1 - c), 1.0), no_decay)


def test_the_decay_rate_is_what_pure_decay_gives():
    """A second route: C[0,5] of weights multiplied by (1 - ηλ) at each of the window's steps."""
    config = sine_findings.resfcnn(PAPER, weight_decay=1e-2)
    theta0 = np.random.default_rng(0).normal(size=100)
    steps = 5 * -(-config.n_train // config.batch_size)
    theta5 = theta0 * (1 - config.lr * config.weight_decay) ** steps
    c = (np.linalg.norm(theta0) - np.linalg.norm(theta5)) / (5 * np.linalg.norm(theta0))
    assert factor_rules.decay_rate(config, 5) == pytest.approx(c, rel=1e-12)


@pytest.mark.parametrize("falls", [True, False])
def test_block_placement_rules(falls):
    def make(spec):
        pos = spec.config.res_blocks.index(4)
        mse = 0.01 - 0.001 * pos if falls else 0.01 + 0.001 * pos
        blocks = [0.05] * 4
        blocks[pos] = 0.01 if falls else 0.09
        return fake_run(res_rates([0.06, *blocks]), 5, test_mse=mse)

    expected = "holds" if falls else "does not hold"
    assert outcomes("block-placement", make) == [expected, expected]
