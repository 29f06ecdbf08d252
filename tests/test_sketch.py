"""CountSketch snapshots: the estimator against its definition, persistence, and refusals."""

import json
import math
import statistics
import subprocess
import sys

import pytest
import torch
from torch import nn

import depthaware as da
from depthaware.errors import InputError
from depthaware.measure.sketch import ROWS, sketch


def test_the_sketch_is_the_countsketch_matrix_applied_to_the_vector():
    """Built a second way: the explicit m x n matrix of each row (one +-1 per column)."""
    x = torch.randn(300, dtype=torch.float64)
    s = sketch(x, 64, seed=3, layer="L")
    m = 64 // ROWS
    for r in range(ROWS):
        matrix = torch.zeros(m, 300, dtype=torch.float64)
        for i in range(300):
            e = torch.zeros(300, dtype=torch.float64)
            e[i] = 1.0
            column = sketch(e, 64, seed=3, layer="L")[r]
            assert (column != 0).sum() == 1 and column.abs().sum() == 1  # one bucket, a sign
            matrix[:, i] = column
        torch.testing.assert_close(s[r], matrix @ x)


def test_linear_and_a_shards_sketch_at_its_offset_adds_up_to_the_whole():
    x, y = torch.randn(5000, dtype=torch.float64), torch.randn(5000, dtype=torch.float64)
    sk = lambda v, **kw: sketch(v, 256, seed=0, layer="a", **kw)  # noqa: E731
    torch.testing.assert_close(sk(x) - sk(y), sk(x - y))
    torch.testing.assert_close(sk(x), sk(x[:1234]) + sk(x[1234:], offset=1234))


def test_chunks_do_not_change_the_sketch(monkeypatch):
    x = torch.randn(5001, dtype=torch.float64)
    whole = sketch(x, 256, seed=1, layer="a", offset=3)
    monkeypatch.setattr(da.measure.sketch, "CHUNK", 100)  # many chunks and a short last one
    torch.testing.assert_close(sketch(x, 256, seed=1, layer="a", offset=3), whole)


def test_the_squared_norm_is_unbiased_with_the_stated_variance():
    x = torch.randn(20000, generator=torch.Generator().manual_seed(0)).double()
    ratios = [
        (sketch(x, 1024, seed=s, layer="a").square().sum(1).mean() / x.square().sum()).item()
        for s in range(60)
    ]
    assert statistics.mean(ratios) == pytest.approx(1.0, abs=3 * math.sqrt(2 / 1024 / 60))
    assert statistics.stdev(ratios) == pytest.approx(math.sqrt(2 / 1024), rel=0.3)


def test_a_bad_size_is_refused_before_any_work():
    with pytest.raises(ValueError, match="4 times a power of two"):
        da.measure.Trajectory(nn.Sequential(nn.Linear(2, 2)), sketch=1000)


def _layers():
    torch.manual_seed(0)
    return da.layer_groups(nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2)))


def test_small_layers_are_kept_exactly_and_large_ones_sketched():
    traj = da.measure.Trajectory(_layers(), sketch=256)  # layers of 4160 and 130 parameters
    traj.snapshot(0)
    snap = traj[0]
    assert snap["0"].shape == (ROWS, 64) and snap["2"].shape == (130,)
    assert traj.meta["sketch"] == {"k": 256, "rows": ROWS, "seed": 0}


KILLED = """
import os, sys, torch
from torch import nn
import depthaware as da
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))
traj = da.measure.Trajectory(da.layer_groups(net), sys.argv[1], sketch=256, seed=7)
for step in range(3):
    traj.snapshot(step)
    with torch.no_grad():
        net[0].weight.mul_(0.9)
os.kill(os.getpid(), 9)
"""


@pytest.mark.processes
def test_a_sketched_folder_resumes_after_kill_9_with_its_seed_and_refuses_mixing(tmp_path):
    proc = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)])
    assert proc.returncode == -9
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["sketch"] == {"k": 256, "rows": ROWS, "seed": 7}
    layers = _layers()
    with da.measure.Trajectory(layers, tmp_path, sketch=256, seed=7) as traj:
        assert traj.steps == [0, 1, 2]
        traj.snapshot(3)
    for other in (dict(sketch=None), dict(sketch=256, seed=8), dict(sketch=128, seed=7)):
        with pytest.raises(InputError, match="holds sketched .k=256, seed=7. snapshots"):
            da.measure.Trajectory(layers, tmp_path, **other)
    report = da.measure.convergence(da.measure.Trajectory.load(tmp_path))
    assert report.distance_rows.shape == (2, 4, ROWS)


def _sketched_and_exact():
    """Reports of one run of :func:`_layers` (the weights shrink with noise between
    snapshots), sketched at k = 256 and exact."""
    layers = _layers()
    sketched, exact = (da.measure.Trajectory(layers, sketch=k) for k in (256, None))
    for step in range(4):
        sketched.snapshot(step)
        exact.snapshot(step)
        with torch.no_grad():
            for p in layers.parameters():
                p.mul_(0.8).add_(0.01 * torch.randn_like(p))
    return da.measure.convergence(sketched), da.measure.convergence(exact)


def test_a_sketched_report_gives_error_bars_and_round_trips():
    rep, ref = _sketched_and_exact()
    errors = rep.errors(0, 1)
    assert errors["2"] == 0.0 and errors["0"] > 0  # the small layer is exact
    assert rep.rates(0, 1)["2"] == ref.rates(0, 1)["2"]
    assert abs(rep.rates(0, 1)["0"] - ref.rates(0, 1)["0"]) <= errors["0"]
    row = rep.table([(0, 1)])[0]
    assert row["±C[0,1]"] == errors["0"]
    again = da.measure.ConvergenceReport.from_arrays(rep.arrays())
    assert again.errors(0, 1) == errors
    assert ref.errors(0, 1) == {"0": 0.0, "2": 0.0} and "±C[0,1]" not in ref.table([(0, 1)])[0]


def test_the_distance_plot_draws_a_sketched_layers_95_percent_band():
    """The band around d(t)/d(t0) is each row's own curve's t-band (scipy's t quantile, by hand),
    drawn for the sketched layer only; an exact report draws no band."""
    from scipy import stats

    rep, ref = _sketched_and_exact()
    rows = rep.distance_rows[0]  # layer "0": (T, ROWS)
    curves = [[r[t] / r[0] for r in rows.T] for t in range(4)]
    want = [stats.t.ppf(0.975, ROWS - 1) * statistics.stdev(c) / math.sqrt(ROWS) for c in curves]
    band = rep.normalized_errors()
    assert band["0"] == pytest.approx(want, rel=1e-4)
    assert band["0"][1:-1].min() > 0  # 0 at t0 and at θ*: 1 and 0 in every row
    assert not band["2"].any()  # kept exactly
    (drawn,) = da.plots.convergence(rep).axes[0].collections
    xy = drawn.get_paths()[0].vertices
    for step, mid, half in zip(rep.steps, rep.normalized()["0"], band["0"], strict=True):
        ys = xy[xy[:, 0] == step, 1]
        assert (ys.min(), ys.max()) == pytest.approx((mid - half, mid + half), abs=1e-9)
    assert not da.plots.convergence(ref).axes[0].collections


def test_the_error_plot_marks_each_window_by_its_length_and_band():
    counted = [("a", 0, 1, 0.02, True), ("a", 0, 4, 0.07, False), ("b", 2, 3, 0.001, True)]
    ax = da.plots.sketch_errors(counted).axes[0]
    inside, outside = ax.collections
    assert inside.get_offsets().tolist() == [[1, 2.0], [1, 0.1]]  # (length, error in %)
    assert outside.get_offsets().tolist()[0] == pytest.approx([4, 7.0])
    assert len(outside.get_offsets()) == 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "2 inside their band", "1 outside their band"
    ]  # fmt: skip
    empty = da.plots.sketch_errors([]).axes[0]  # no sketched layer: axes, no marks, no legend
    assert not empty.collections and empty.get_legend() is None


def test_a_rate_within_its_error_of_zero_is_flagged():
    """Rows' distances that disagree more than the window moves them: a rate no sketch can tell."""
    import numpy as np

    rows = np.array([[[1.0, 1.0, 1.0, 1.0], [0.99, 1.02, 0.98, 1.01]]])  # (L=1, T=2, ROWS)
    rep = da.measure.ConvergenceReport(
        ["a"], [0], np.array([0, 1]), np.sqrt((rows**2).mean(2)), np.ones((1, 2)),
        np.ones((1, 1)), distance_rows=rows,
    )  # fmt: skip
    rate, error = rep.rates(0, 1)["a"], rep.errors(0, 1)["a"]
    assert abs(rate) < error and rep.uncertain(0, 1) == ["a"]
    assert rep.to_dict([(0, 1)])["uncertain"] == {"C[0,1]": ["a"]}


def test_auto_sketches_only_above_the_limit(monkeypatch):
    from depthaware.measure import trajectory

    assert da.measure.Trajectory(_layers()).sketch_size is None
    monkeypatch.setattr(trajectory, "AUTO_LIMIT", 100)
    assert da.measure.Trajectory(_layers()).sketch_size == trajectory.AUTO_K
