"""Every finding's pass rule on synthetic run results where the answer is known: each rule is shown
to hold, to fail and (where it has one) to refuse to test. No training happens here."""

import numpy as np
import pytest
from findings_helpers import (
    PAPER,
    PAPER_FACTORS,
    RES,
    SHALLOW_FASTER,
    context,
    factor_make,
    fake_run,
    outcomes,
    res_rates,
    with_sketch,
)

from depthaware.measure import ConvergenceReport
from depthaware.recipes import (
    factor_findings,
    factor_rules,
    frequency_findings,
    image_findings,
    sine_findings,
)
from depthaware.recipes.findings import SCALES, outcome
from depthaware.recipes.paper import FINDINGS


def test_outcome_combines_seeds():
    assert outcome([True, True]) == "holds"
    assert outcome([True, False]) == outcome([None, False]) == "does not hold"
    assert outcome([True, None]) == outcome([None, None]) == "not tested"


@pytest.mark.parametrize("ordered", [True, False])
def test_fcnn_bias_rules(ordered):
    plain = ["Layer 1", "Hidden layer 1", "Hidden layer 2", "Output layer"]
    c = [0.012, 0.009, 0.006, 0.001] if ordered else [0.006, 0.009, 0.012, 0.001]

    def make(spec):
        if spec.config.model == "fcnn":
            return fake_run(dict(zip(plain, c)), 50)
        blocks = [0.05, 0.04, 0.03, 0.02] if ordered else [0.02, 0.03, 0.04, 0.05]
        return with_sketch(fake_run(res_rates([0.006, *blocks]), 5))

    expected = "holds" if ordered else "does not hold"
    # a perfect sketch agrees with the exact rates whatever they say
    assert outcomes("fcnn-bias", make) == [expected, expected, "holds"]


def test_the_sketched_rates_must_agree_with_the_exact_ones():
    def make(spec):
        if spec.config.model == "fcnn":
            plain = {"Layer 1": 0.012, "Hidden layer 1": 0.009, "Hidden layer 2": 0.006}
            return fake_run(plain, 50)
        run = fake_run(res_rates([0.06, 0.05, 0.04, 0.03, 0.02]), 5)
        return with_sketch(run, lambda step: 1.03 if step in (100, 200) else 1.0)  # 3% off twice

    verdict = FINDINGS["fcnn-bias"].judge(context("fcnn-bias", make))[2]
    assert verdict.outcome == "does not hold"  # the windows at 100 or 200 are not covered
    worst = verdict.numbers["calibration"][0]
    assert worst["coverage"] < 0.93 and worst["p95"] > 0.005 and worst["resketches"] == 3


def test_a_diverged_seed_is_not_tested():
    def make(spec):
        if spec.seed == 1:
            return {"diverged": "the training loss became nan in epoch 1"}
        if spec.config.model == "fcnn":
            return fake_run(
                {"Layer 1": 0.012, "Hidden layer 1": 0.009, "Hidden layer 2": 0.006}, 50
            )
        return with_sketch(fake_run(res_rates([0.06, 0.05, 0.04, 0.03, 0.02]), 5))

    verdicts = FINDINGS["fcnn-bias"].judge(context("fcnn-bias", make))
    assert [v.per_seed for v in verdicts] == [["holds", "not tested"]] * 3
    assert [v.outcome for v in verdicts] == ["not tested"] * 3


def _series(rb1, rb4, after=0.99):
    """Predictiveness at 6 points: 3 at LR 0.1, 3 at LR 0.01."""
    layers = {n: {"data": [0.5] * 6, "parameters": [0.5] * 6} for n in RES}
    for kind in ("data", "parameters"):
        layers["Res-Block 1"][kind] = [rb1] * 3 + [after] * 3
        layers["Res-Block 4"][kind] = [rb4] * 3 + [after] * 3
    return {"epoch": [0, 2, 4, 6, 8, 10], "lr": [0.1] * 3 + [0.01] * 3,
            "lambda_max": [19.0] * 6, "layers": layers}  # fmt: skip


@pytest.mark.parametrize("good", [True, False])
def test_predictiveness_and_flatness_rules(good):
    rise = [0.1, 0.2, 0.3, 0.4] if good else [0.4, 0.3, 0.2, 0.1]
    sharp = {f"Res-Block {k}": {"rise": r, "top_eigenvalue": 1.0} for k, r in enumerate(rise, 1)}

    def make(spec):
        series = _series(0.3, -0.2) if good else _series(-0.2, 0.3, after=0.5)
        return fake_run(res_rates([0.05] * 5), 5, predictiveness=series, sharpness=sharp)

    got = outcomes("predictiveness-sharpness", make)
    assert got == (["holds"] * 8 if good else ["does not hold"] * 8)


def test_the_absolute_reading_is_shown_beside_the_signed_one():
    # signed: RB1 (-0.2) > RB4 (-0.6) holds; |cos| reading: 0.2 < 0.6 reverses
    sharp = {f"Res-Block {k}": {"rise": 0.1 * k, "top_eigenvalue": 1.0} for k in range(1, 5)}
    ctx = context(
        "predictiveness-sharpness",
        lambda s: fake_run(
            res_rates([0.5] * 5), 1, predictiveness=_series(-0.2, -0.6), sharpness=sharp
        ),  # fmt: skip
    )
    v = FINDINGS["predictiveness-sharpness"].judge(ctx)[0]
    assert v.outcome == "holds" and "|cos| reading: RB1 > RB4 in 0 of 2 seeds" in v.measured


def _spectrum(functions):
    x = np.linspace(-2, 2, 801)
    values = {"Input layer": np.zeros_like(x)}
    for k, f in enumerate(functions, start=1):
        values[f"Res-Block {k}"] = f(x)
    return {"x": x.tolist(), "values": {k: v.tolist() for k, v in values.items()}}


COMPONENTS = [lambda x, w=w: np.sin(w * x) / w for w in (1, 3, 10, 30)]
FIG6 = [  # each function fits its component, with a little of another (as in Fig. 6)
    lambda x: np.sin(x) + 0.001 * np.sin(10 * x),
    lambda x: np.sin(3 * x) / 3 + 0.01 * np.sin(10 * x),
    lambda x: np.sin(10 * x) / 10 + 0.01 * np.sin(x),
    lambda x: np.sin(30 * x) / 30 + 0.001 * np.sin(x),
]


@pytest.mark.parametrize("case", ["paper", "reversed", "30x not learned", "function 1 too large"])
def test_frequency_rules(case):
    functions = {
        "paper": FIG6,
        "reversed": FIG6[::-1],
        "30x not learned": [*FIG6[:3], lambda x: 0.02 * np.sin(x)],
        "function 1 too large": [lambda x: 6 * np.sin(x), *FIG6[1:]],  # range 12 against 2
    }[case]

    def make(spec):
        c = spec.config.complexity
        ratio = {4: 0.6, 3: 0.8, 2: 1.0, 1: 1.2}[c] if case != "reversed" else c / 4
        blocks = [0.05, 0.045, 0.04, 0.05 * ratio]
        extra = {"spectrum": _spectrum(functions)} if c == 4 else {}
        return fake_run(res_rates([0.06, *blocks]), 5, **extra)

    got = outcomes("frequency", make)  # spectrum, ranges-order, ranges-match, fig8
    assert (
        got
        == {
            "paper": ["holds"] * 4,
            "reversed": ["does not hold"] * 4,
            # the ranges of the three learned functions are still tested
            "30x not learned": ["does not hold", "holds", "holds", "holds"],
            # the order of the ranges and the spectrum do not see the scale; the match does
            "function 1 too large": ["holds", "holds", "does not hold", "holds"],
        }[case]
    )


def test_random_orderings_pass_the_spectrum_rule_at_its_stated_chance():
    """The functions' amplitudes drawn at random (exchangeable over depth): the rule passes as
    often as the report says a random ordering does, within 5 points."""
    rng = np.random.default_rng(0)
    widths = 1 / np.array(frequency_findings.FREQUENCIES, dtype=float)
    draws = [np.abs(rng.normal(size=(4, 4))) * widths for _ in range(4000)]
    rate = np.mean([frequency_findings.high_share_rises(a.tolist()) for a in draws])
    assert abs(rate - frequency_findings.SPECTRUM_CHANCE) <= 0.05, rate
    assert "4.2% per seed" in FINDINGS["frequency"].claims[0].rule


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
    table = {**PAPER_FACTORS, **dict.fromkeys(factor_findings.ADAPTIVE, adam)}
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


def _image_run(spec, *, window_loss=0.5, train_acc=90.0, test_acc=None, strength=-1.0):
    if spec.config.model == "vgg19":
        return {"unsupported": "VGG-19's five poolings need 32 px; digits has 8 px images"}
    layers = [*image_findings.STAGES, "fc"]
    tilt = 0.001 * np.arange(len(layers))
    c = 0.01 - tilt if strength < 0 else 0.01 + tilt
    run = fake_run(dict(zip(layers, c)), 20, epochs=100, data="digits")
    run["train_loss"] = [1.0] * 19 + [window_loss] + [0.01] * 80  # epoch 20 ends the window; flat
    run["train_accuracy"] = train_acc
    run["test_accuracy"] = test_acc
    return run


def cnn_outcomes(make):
    return FINDINGS["cnn-bias"].judge(context("cnn-bias", make))


def test_cnn_validity_rule():
    learning = cnn_outcomes(lambda s: _image_run(s, window_loss=0.5))
    # no VGG on 8 px images; no sketched curves in these runs: the sketch is not tested
    assert [v.outcome for v in learning] == ["holds", "not tested", "not tested"]
    assert "VGG-19's five poolings" in learning[1].note
    learned = cnn_outcomes(lambda s: _image_run(s, window_loss=0.09))[0]
    assert learned.outcome == "not tested" and "0.09 of the first epoch's" in learned.note
    reversed_ = cnn_outcomes(lambda s: _image_run(s, strength=1.0))[0]
    assert reversed_.outcome == "does not hold"


@pytest.mark.parametrize(
    "error, strength, expected",
    [
        (lambda step: 1.0, -1.0, "holds"),  # a perfect sketch, the bias present
        (lambda step: 1.0, 1.0, "holds"),  # ... or absent: the sketch agrees whatever it says
        (lambda step: 1.03 if step in (30, 60) else 1.0, -1.0, "does not hold"),  # 3% off twice
        (lambda step: 1.0 + 1e-3 * (step % 10), -1.0, "holds"),  # off between the 10-epoch grid
    ],
)
def test_cnn_sketch_rule(error, strength, expected):
    def make(spec):
        run = _image_run(spec, strength=strength)
        return run if "unsupported" in run else with_sketch(run, error)

    sketched = cnn_outcomes(make)[2]
    assert sketched.claim.key == "cnn-resnet-sketched"
    assert sketched.outcome == expected
    grid, fine = sketched.numbers["calibration"][0], sketched.numbers["every_epoch"][0]
    # 3 re-sketches of 6 layers (all with spread rows here), 55 windows of 11 snapshots but one
    assert grid["windows"] + grid["small_windows"] == 3 * 6 * 54
    assert fine["windows"] + fine["small_windows"] > (grid["windows"] + grid["small_windows"]) / 3


def test_cnn_sketch_rule_needs_the_same_verdict():
    def make(spec):  # stage 4's sketched distances fall faster than stage 1's over [0, 20]
        run = _image_run(spec)
        if "unsupported" in run:
            return run
        run = with_sketch(run)
        sketch = run["resketch"][1]  # one sketch seed of three gives another outcome
        sketch["distances"] = [list(d) for d in sketch["distances"]]
        sketch["distance_rows"] = [[list(r) for r in d] for d in sketch["distance_rows"]]
        for t in range(1, 21):  # 15% lower distances at epochs 1-20: C[0,20] above stage 1's
            sketch["distances"][4][t] *= 0.85
            sketch["distance_rows"][4][t] = [d * 0.85 for d in sketch["distance_rows"][4][t]]
        return run

    sketched = cnn_outcomes(make)[2]
    assert "verdict 2/3" in sketched.measured and sketched.outcome == "does not hold"


def test_the_sketch_lines_draw_their_figures(tmp_path):
    from depthaware.recipes.figures import FIGURES

    plain = ["Layer 1", "Hidden layer 1", "Hidden layer 2", "Output layer"]

    def sine(spec):
        names = plain if spec.config.model == "fcnn" else RES
        run = fake_run(dict.fromkeys(names, 0.01), 5, grad_magnitude={n: [1.0, 0.5] for n in names})
        return run if spec.config.model == "fcnn" else with_sketch(run)

    def image(spec):
        run = _image_run(spec)
        return run if "unsupported" in run else with_sketch(run, lambda t: 1.03 if t == 30 else 1)

    drawn = FIGURES["fcnn-bias"](context("fcnn-bias", sine), tmp_path)
    assert drawn == ["figures/fig1.png", "figures/sketch-resfcnn.png"]
    drawn = FIGURES["cnn-bias"](context("cnn-bias", image), tmp_path)
    assert drawn == ["figures/sketch-resnet.png"]
    for name in ("fig1.png", "sketch-resfcnn.png", "sketch-resnet.png"):
        assert (tmp_path / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    assert FIGURES["cnn-bias"](context("cnn-bias", _image_run), tmp_path) == []  # no sketch


@pytest.mark.parametrize(
    "train_acc, order, loss, expected",
    [
        (90, (70, 60, 50), "learned", "holds"),
        (90, (50, 60, 70), "learned", "does not hold"),
        (100, (70, 60, 50), "learned", "not tested"),  # the training set is memorized
        (90, (70, 60, 50), "learning", "not tested"),  # not converged
        (30, (70, 60, 50), "stalled", "not tested"),  # never learned the task
    ],
)
def test_vit_validity_rule(train_acc, order, loss, expected):
    acc = dict(zip(image_findings.VITS, order))

    def make(spec):
        name = spec.config.model.removesuffix("_small")
        run = _image_run(spec, train_acc=train_acc, test_acc=acc[name])
        if loss == "learning":
            run["train_loss"][-1] = 0.005  # fell by half over the last tenth
        if loss == "stalled":
            run["train_loss"] = [2.3] * 90 + [1.9] * 10  # settled at 0.83 of the first epoch's
        return run

    (vit,) = FINDINGS["vit-width"].judge(context("vit-width", make))
    assert vit.outcome == expected
    assert (loss == "stalled") == ("has not learned" in vit.note)


@pytest.mark.parametrize("scale", ["paper", "small"])
def test_a_definition_2_1_window_is_tested_at_the_paper_scale_only(scale):
    at = SCALES[scale].at

    def make(spec):  # the same ordered rates over the scale's windows
        epochs = spec.config.epochs
        if spec.config.model == "fcnn":
            plain = {"Layer 1": 0.012, "Hidden layer 1": 0.009, "Hidden layer 2": 0.006}
            return fake_run(plain, at(50), epochs)
        return with_sketch(fake_run(res_rates([0.06, 0.05, 0.04, 0.03, 0.02]), at(5), epochs))

    fcnn, res, sk = FINDINGS["fcnn-bias"].judge(context("fcnn-bias", make, scale=SCALES[scale]))
    if scale == "paper":
        assert fcnn.outcome == res.outcome == sk.outcome == "holds"
    else:
        assert fcnn.outcome == res.outcome == sk.outcome == "not tested"
        assert "the paper's window [0,50] is [0,10] here" in fcnn.note
        assert "the paper's window [0,5] is [0,1] here" in res.note
