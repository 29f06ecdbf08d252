import json
import math

import pytest
import torch

import depthaware as da
from depthaware.cli import main
from depthaware.recipes import sine
from depthaware.recipes.results import SineResult


def test_sine_data_matches_section_3_1():
    x, y = sine.sine_data(5000, seed=0)
    assert x.shape == y.shape == (5000, 1)
    assert x.min() >= -2 and x.max() <= 2
    x0 = torch.tensor([[0.5]])
    expected = torch.tensor(
        [[math.sin(0.5) + math.sin(1.5) / 3 + math.sin(5) / 10 + math.sin(15) / 30]]
    )
    torch.testing.assert_close(sine.sine_target(x0), expected)
    assert not torch.equal(sine.sine_data(10, 0)[0], sine.sine_data(10, 1)[0])


@pytest.mark.slow
def test_plain_fcnn_bias_holds_in_three_seeds():
    """Section 3.1 at the paper's setting: C over [0, 50] is Layer 1 > Hidden 1 > Hidden 2."""
    for seed in range(3):
        run = sine.train_sine(sine.SineConfig(model="fcnn"), seed)
        c = da.measure.convergence(run.trajectory).rates(0, 50)
        assert c["Layer 1"] > c["Hidden layer 1"] > c["Hidden layer 2"], (seed, c)


def test_residual_fcnn_trains_stably_at_lr_0_1():
    run = sine.train_sine(sine.SineConfig(model="resfcnn", epochs=3), seed=0)
    assert run.train_loss[-1] < run.train_loss[0]


def test_sine_run_measures_what_it_is_asked_for():
    config = sine.SineConfig(model="resfcnn", epochs=4, lr_milestones=(2,), n_train=512)
    r = sine.sine_run(config, 0, sine.EXTRAS)
    assert r.report.layers[0] == "Input layer" and len(r.report.distances[0]) == 5  # epochs 0..4
    series = r.predictiveness
    assert series["epoch"] == [0, 1, 2, 3, 4]
    assert series["lr"] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.01])
    assert set(series["layers"]) == set(r.report.layers) and len(series["lambda_max"]) == 5
    assert set(r.sharpness["Res-Block 1"]) >= {"rise", "top_eigenvalue", "loss"}
    assert len(r.spectrum["values"]["Res-Block 4"]) == len(r.spectrum["x"]) == 801
    assert len(r.grad_magnitude["Res-Block 1"]) == 4
    with pytest.raises(ValueError, match="unknown extras"):
        sine.sine_run(config, 0, ["everything"])
    # the cache's round trip: the JSON of the dict reads back to the same result
    cached = json.loads(json.dumps(r.to_dict()))
    again = SineResult.from_dict(cached)
    assert again.to_dict() == cached and again.extras == r.extras == tuple(sorted(sine.EXTRAS))
    for a, b in ((again.report, r.report), (again.sketch, r.sketch)):
        assert a.rates(0, 4) == b.rates(0, 4) and a.errors(1, 3) == b.errors(1, 3)
    with pytest.raises(ValueError, match=r"not a SineResult: unknown entries \['stray'\]"):
        SineResult.from_dict({**cached, "stray": 1})


def test_a_diverging_run_is_reported_not_raised():
    config = sine.SineConfig(model="resfcnn", norm="batch", epochs=2, lr_milestones=(1,))
    r = sine.sine_run(config, 0)  # BatchNorm in the branches at LR 0.1 diverges
    assert "epoch 1" in r.diverged and r.report is None


def test_cli_rejects_bad_counts(capsys):
    assert main(["reproduce", "fcnn-bias", "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["reproduce", "no-such-finding"]) == 2  # argparse's error, in one line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'no-such-finding'" in err, err
