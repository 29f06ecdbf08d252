"""Every finding's pass rule on synthetic run results where the answer is known: each rule is shown
to hold, to fail and (where it has one) to refuse to test. No training happens here."""

import numpy as np
import pytest
from findings_helpers import RES, context, fake_run, outcomes, res_rates, with_sketch

from depthaware.recipes import frequency_findings
from depthaware.recipes.findings import outcome
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
