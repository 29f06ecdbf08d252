"""The image findings' pass rules (CNN and ViT validity, the sketched ResNet line, the
Definition 2.1 window) on synthetic run results where the answer is known; their figures."""

import numpy as np
import pytest
from findings_helpers import RES, context, fake_run, res_rates, with_sketch

from depthaware.recipes import image_findings
from depthaware.recipes.findings import SCALES
from depthaware.recipes.paper import FINDINGS


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

    def never_learned(spec):
        run = _image_run(spec, strength=1.0)
        return {**run, "train_loss": [1.0] * 100} if "train_loss" in run else run

    flat = cnn_outcomes(never_learned)[0]  # a flat loss is no learning in the window either
    assert flat.outcome == "not tested" and "never learned the task" in flat.note


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


STAGES_FC = [*image_findings.STAGES, "fc"]


def test_the_glyph_proxies_are_the_papers_claims_and_rules_on_glyphs():
    """Separate lines, marked as a proxy: the paper's sentence and the pass rule unchanged, the
    runs on 32-px glyphs (VGG-19 can take them), judged by the same rules both ways."""
    originals = {c.key: c for f in ("cnn-bias", "vit-width") for c in FINDINGS[f].claims}
    for name in ("cnn-bias-glyphs", "vit-width-glyphs"):
        for claim in FINDINGS[name].claims:
            paper = originals[claim.key.removesuffix("-glyphs")]
            assert (claim.quote, claim.rule, claim.paper) == (paper.quote, paper.rule, paper.paper)
            assert claim.quantity.startswith("PROXY, not the paper's data")
        for spec in FINDINGS[name].plan(SCALES["paper"], 3, None):
            assert spec.config.size == 32 and spec.config.data_dir is None

    def make(spec, strength):
        layers = image_findings.VGG_LAYERS if spec.config.model == "vgg19" else STAGES_FC
        tilt = 0.001 * np.arange(len(layers)) * (1 if strength > 0 else -1)
        run = fake_run(dict(zip(layers, 0.01 + tilt)), 20, epochs=100, data="glyphs")
        run["train_loss"] = [1.0] * 19 + [0.5] + [0.01] * 80
        return run

    for strength, expected in ((-1, "holds"), (1, "does not hold")):
        verdicts = FINDINGS["cnn-bias-glyphs"].judge(
            context("cnn-bias-glyphs", lambda s, k=strength: make(s, k))
        )
        assert [v.outcome for v in verdicts] == [expected, expected]


@pytest.mark.parametrize(
    "order, expected", [((70, 60, 50), "holds"), ((50, 60, 70), "does not hold")]
)
def test_the_vit_proxy_judges_by_the_width_rule(order, expected):
    acc = dict(zip(image_findings.VITS, order))

    def make(spec):
        run = _image_run(
            spec, train_acc=90.0, test_acc=acc[spec.config.model.removesuffix("_small")]
        )
        return run

    (vit,) = FINDINGS["vit-width-glyphs"].judge(context("vit-width-glyphs", make))
    assert vit.outcome == expected and vit.claim.key == "vit-width-glyphs"
