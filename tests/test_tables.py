"""Measuring trained models: checkpoint folders (checked file by file) and one model + data."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

import depthaware as da
from depthaware import checkpoints, reports
from depthaware.measure import from_checkpoints, from_model


def _fcnn():
    torch.manual_seed(0)
    return da.models.FCNN((1, 8, 8, 1))


@pytest.fixture
def folder(tmp_path):
    """Checkpoints of a short real training run, named like a user's (epoch_3.pt ...)."""
    net = _fcnn()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x = torch.linspace(-2, 2, 64).unsqueeze(1)
    y = torch.sin(3 * x)
    layers = da.layer_groups(net)
    traj = da.measure.Trajectory(layers)
    for epoch in range(6):
        torch.save({"model": net.state_dict(), "epoch": epoch}, tmp_path / f"epoch_{epoch}.pt")
        traj.snapshot(epoch)
        for _ in range(20):
            opt.zero_grad()
            F.mse_loss(net(x), y).backward()
            opt.step()
    return tmp_path, da.measure.convergence(traj)


def test_checkpoint_report_equals_the_live_trajectory(folder):
    path, live = folder
    got = from_checkpoints(path, _fcnn(), windows=[(0, 2), (0, 5)], progress=False)
    assert got.layers == live.layers and list(got.steps) == list(range(6))
    for w in [(0, 2), (0, 5)]:
        assert got.rates(*w) == pytest.approx(live.rates(*w), rel=1e-6)
    assert [r["layer"] for r in got.table()] == ["Layer 1", "Hidden layer 1", "Output layer"]
    with pytest.raises(ValueError, match=r"window 0:7 needs two snapshot steps t1 < t2; the steps"):
        from_checkpoints(path, _fcnn(), windows=[(0, 7)], progress=False)


def test_checkpoint_errors_name_file_and_key(folder, tmp_path_factory):
    path, _ = folder
    ckpt = torch.load(path / "epoch_3.pt")
    del ckpt["model"]["fcs.1.bias"]
    torch.save(ckpt, path / "epoch_3.pt")
    with pytest.raises(ValueError, match=r"epoch_3\.pt.*missing key 'fcs\.1\.bias'"):
        from_checkpoints(path, _fcnn(), progress=False)
    ckpt["model"]["fcs.1.bias"] = torch.zeros(5)
    torch.save(ckpt, path / "epoch_3.pt")
    with pytest.raises(ValueError, match=r"epoch_3\.pt.*'fcs\.1\.bias' has shape \(5,\)"):
        from_checkpoints(path, _fcnn(), progress=False)
    ckpt["model"]["fcs.1.bias"] = torch.zeros(8)
    ckpt["model"]["extra.weight"] = torch.zeros(1)
    torch.save(ckpt, path / "epoch_3.pt")
    with pytest.raises(ValueError, match=r"epoch_3\.pt.*unexpected key 'extra\.weight'"):
        from_checkpoints(path, _fcnn(), progress=False)
    (path / "final.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"final\.pt: not a readable torch checkpoint"):
        checkpoints.checkpoint_steps(path)
    with pytest.raises(ValueError, match="need two or more"):
        checkpoints.checkpoint_steps(tmp_path_factory.mktemp("empty"))


def test_model_report_rows_and_the_model_is_unchanged():
    torch.manual_seed(0)
    net = da.models.cifar_resnet18(num_classes=10, width=4).train()
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    rows = from_model(net, F.cross_entropy, (x, y), steps=3, iters=3, progress=False)
    assert [r["layer"] for r in rows] == da.layer_groups(net).names
    for r in rows:
        assert math.isfinite(r["top_eigenvalue"]) and r["response_frequency"] > 0
        assert -1 <= r["predictiveness_parameters"] <= 1 and r["nonfinite_points"] == 0
    assert net.training and all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_write_table_csv_and_json(tmp_path):
    rows = [{"layer": "a", "x": 1.0}, {"layer": "b", "x": math.nan}]
    csv_path, json_path = reports.write_table(rows, tmp_path)
    assert csv_path.read_text().splitlines() == ["layer,x", "a,1.0", "b,nan"]
    assert json.loads(json_path.read_text())[1] == {"layer": "b", "x": None}
