import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import depthaware as da

SQRT2 = math.sqrt(2)


def hand_trajectory():
    """Two layers of two weights each, snapshots at steps 0, 2, 5 (final: all zeros)."""
    model = nn.Sequential(nn.Linear(1, 2, bias=False), nn.Linear(2, 1, bias=False))
    traj = da.measure.Trajectory(da.layer_groups(model))
    values = {0: ([3, 4], [1, 1]), 2: ([0, 4], [1, 0]), 5: ([0, 0], [0, 0])}
    for step, (w0, w1) in values.items():
        with torch.no_grad():
            model[0].weight.copy_(torch.tensor(w0, dtype=torch.float32).reshape(2, 1))
            model[1].weight.copy_(torch.tensor(w1, dtype=torch.float32).reshape(1, 2))
        traj.snapshot(step)
    return model, traj


def test_definition_2_1_by_hand():
    _, traj = hand_trajectory()
    rep = da.measure.convergence(traj)
    np.testing.assert_allclose(rep.distance("0"), [5, 4, 0])
    np.testing.assert_allclose(rep.distance("1"), [SQRT2, 1, 0])
    # C = (d(t1) - d(t2)) / ((t2 - t1) d(t0))
    r = rep.rates(0, 2)
    assert r["0"] == pytest.approx((5 - 4) / (2 * 5))
    assert r["1"] == pytest.approx((SQRT2 - 1) / (2 * SQRT2))
    r = rep.rates(2, 5)
    assert r["0"] == pytest.approx(4 / (3 * 5))
    assert r["1"] == pytest.approx(1 / (3 * SQRT2))
    assert rep.rates(0, 5) == pytest.approx({"0": 0.2, "1": 0.2})
    np.testing.assert_allclose(rep.normalized()["0"], [1, 0.8, 0])


def test_weight_variation_a2_by_hand():
    _, traj = hand_trajectory()
    wv = da.measure.convergence(traj).weight_variation()
    # ||theta(t_k) - theta(t_k+1)|| / ||theta(t_k)||
    np.testing.assert_allclose(wv["0"], [3 / 5, 4 / 4])
    np.testing.assert_allclose(wv["1"], [1 / SQRT2, 1 / 1])


def test_given_final_point():
    model, traj = hand_trajectory()
    rep = da.measure.convergence(traj, final=2)
    assert rep.rates(0, 2)["0"] == pytest.approx((3 - 0) / (2 * 3))
    # a LayerGroups as the final point: the model's current weights (all zero here)
    same = da.measure.convergence(traj, final=da.layer_groups(model))
    np.testing.assert_allclose(same.distances, da.measure.convergence(traj).distances)
    with pytest.raises(ValueError, match="layer '0' have 3 values"):
        da.measure.convergence(traj, final={"0": torch.zeros(3), "1": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"unknown \['x'\], missing \['1'\]"):
        da.measure.convergence(traj, final={"0": torch.zeros(2), "x": torch.zeros(2)})


def test_bias_statistics():
    _, traj = hand_trajectory()
    rep = da.measure.convergence(traj)
    early = rep.bias(0, 2)  # the deeper layer is faster here
    assert (early.spearman, early.pairs_obeying, early.n_pairs) == (1.0, 0.0, 1)
    late = rep.bias(2, 5)
    assert (late.spearman, late.pairs_obeying) == (-1.0, 1.0)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 5, size=9).astype(float)
        y = rng.normal(size=9)
        y[:3] = y[3]  # ties on both sides
        assert da.measure.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_bad_windows_and_names():
    _, traj = hand_trajectory()
    rep = da.measure.convergence(traj)
    with pytest.raises(ValueError, match=r"window 0:3 needs two snapshot steps .* are \[0, 2, 5\]"):
        rep.rates(0, 3)
    with pytest.raises(ValueError, match="t1 < t2"):
        rep.rates(2, 2)
    with pytest.raises(ValueError, match="unknown layer 'deep'"):
        rep.distance("deep")
    short = da.measure.Trajectory(da.layer_groups(nn.Sequential(nn.Linear(1, 1))))
    short.snapshot(0)
    with pytest.raises(ValueError, match="at least two snapshots"):
        da.measure.convergence(short)


def test_layer_that_never_moves_has_nan_rate_and_bias_leaves_it_out():
    model = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 1), nn.Linear(1, 1))
    traj = da.measure.Trajectory(da.layer_groups(model))
    for step in range(3):
        traj.snapshot(step)
        with torch.no_grad():
            model[1].weight.add_(1.0)  # layer 1 moves fast
            model[2].weight.add_(0.1)  # layer 2 slowly (relative to its distance)
    rep = da.measure.convergence(traj)
    assert math.isnan(rep.rates(0, 1)["0"]) and rep.rates(0, 1)["1"] == pytest.approx(0.5)
    bias = rep.bias(0, 1)
    assert bias.excluded == ("0",) and bias.n_pairs == 1
    assert bias.to_dict()["excluded"] == ["0"]
    w = rep.window(0, 2)  # a window's numbers at once: those of the methods one by one
    assert w.window == (0, 2) and w.bias == rep.bias(0, 2) and w.uncertain == []
    assert w.errors == {"0": 0.0, "1": 0.0, "2": 0.0}  # exact snapshots
    assert w.rates["1"] == rep.rates(0, 2)["1"] == pytest.approx(0.5)  # (2 - 0) / (2 * 2)


def test_table_dict_and_csv(tmp_path):
    _, traj = hand_trajectory()
    rep, windows = da.measure.convergence(traj), [(0, 2), (2, 5)]
    rows = rep.table(windows)
    assert [r["layer"] for r in rows] == ["0", "1"]
    assert rows[0]["C[0,2]"] == pytest.approx(0.1)
    d = rep.to_dict(windows)
    assert [b["t1"] for b in d["bias"]] == [0, 2]
    assert [b["t1"] for b in rep.to_dict()["bias"]] == [0]  # no windows kept: the whole run
    rep.to_csv(tmp_path / "rates.csv", windows)
    lines = (tmp_path / "rates.csv").read_text().splitlines()
    assert lines[0] == 'layer,depth,distance_t0,distance_end,"C[0,2]","C[2,5]"'
    assert len(lines) == 3


def test_grad_magnitude_matches_direct_mean():
    model = da.models.FCNN((1, 5, 3, 1))
    layers = da.layer_groups(model)
    model(torch.randn(7, 1)).pow(2).sum().backward()
    got = da.measure.grad_magnitude(layers)
    for layer in layers:
        direct = torch.cat([p.grad.abs().reshape(-1) for p in layer.params]).mean().item()
        assert got[layer.name] == pytest.approx(direct, rel=1e-6)
    monitor = da.measure.GradMagnitude(layers)
    monitor.update()
    for p in model.parameters():
        p.grad.mul_(3)
    monitor.update()
    assert monitor.compute()["Layer 1"] == pytest.approx(2 * got["Layer 1"], rel=1e-6)
    model.zero_grad(set_to_none=True)
    assert all(math.isnan(v) for v in da.measure.grad_magnitude(layers).values())


def test_arrays_round_trip_through_json():
    import json

    _, traj = hand_trajectory()
    rep = da.measure.convergence(traj)
    back = da.measure.ConvergenceReport.from_arrays(json.loads(json.dumps(rep.arrays())))
    assert back.rates(0, 2) == rep.rates(0, 2) and back.layers == rep.layers


def test_log_to_a_callable_sends_the_rates_and_bias_by_hand():
    _, traj = hand_trajectory()
    rep = da.measure.convergence(traj)
    got = []
    sent = rep.log_to(lambda numbers, step: got.append((numbers, step)), 7, [(0, 2)])
    assert got == [(sent, 7)]
    assert sent == pytest.approx(
        {
            "convergence/C[0,2]/0": (5 - 4) / (2 * 5),
            "convergence/C[0,2]/1": (SQRT2 - 1) / (2 * SQRT2),
            "convergence/spearman[0,2]": 1.0,  # layer 1 (deeper) is the faster here
            "convergence/pairs_obeying[0,2]": 0.0,
        }
    )
    with pytest.raises(TypeError, match="add_scalar"):
        rep.log_to(object(), 0)


def test_log_to_a_summary_writer_is_read_back_from_its_event_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    _, traj = hand_trajectory()
    rep = da.measure.convergence(traj)
    with SummaryWriter(tmp_path) as writer:
        sent = rep.log_to(writer, 3, [(0, 2), (0, 5)])
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    scalars = {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}
    assert set(scalars) == set(sent)
    for tag, value in sent.items():
        (event,) = scalars[tag]
        assert event.step == 3 and event.value == pytest.approx(value, rel=1e-6)
    assert events.Tags()["images"] == []  # numbers only: the figure is the caller's
