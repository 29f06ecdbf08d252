import json
import math

import pytest
import torch

import depthaware as da
from depthaware.cli import main
from depthaware.recipes import sine


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


def test_plain_fcnn_bias_holds_in_three_seeds():
    """Section 3.1 at the paper's setting: C over [0, 50] is Layer 1 > Hidden 1 > Hidden 2."""
    for seed in range(3):
        run = sine.train_sine(sine.SineConfig(model="fcnn"), seed)
        c = da.measure.convergence(run.trajectory).rates(0, 50)
        assert c["Layer 1"] > c["Hidden layer 1"] > c["Hidden layer 2"], (seed, c)


def test_residual_fcnn_trains_stably_at_lr_0_1():
    run = sine.train_sine(sine.SineConfig(model="resfcnn", epochs=3), seed=0)
    assert run.train_loss[-1] < run.train_loss[0]


def test_sine_reproduce_writes_report(tmp_path):
    out = tmp_path / "sine"
    sine.reproduce(out, epochs=6, progress=False)
    report = json.loads((out / "report.json").read_text())
    assert report["finding"] == "sine-fcnn" and set(report["models"]) == {"fcnn", "resfcnn"}
    fcnn = report["models"]["fcnn"]
    assert fcnn["window"] == [0, 6] and fcnn["paper_rates"]["Layer 1"] == 0.012
    assert set(fcnn["mean_rates"]) == {
        "Layer 1",
        "Hidden layer 1",
        "Hidden layer 2",
        "Output layer",
    }
    assert report["models"]["resfcnn"]["window"] == [0, 5]
    lines = (out / "rates.csv").read_text().splitlines()
    assert lines[0].startswith("model,seed,t1,t2,layer,depth,rate")
    assert len(lines) == 1 + 4 + 6
    assert (out / "fig1.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_rejects_bad_counts(capsys):
    assert main(["reproduce", "fcnn-bias", "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "no-such-finding"])
