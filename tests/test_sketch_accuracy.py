"""Rates from sketched trajectories against exact ones on the same runs, at k = 4096, over every
window whose exact rate is at least 10% of its layer's largest: the findings' rule for a sketched
line (re-sketched with 20 sketch seeds, the 95% bands cover the exact rate in >= 93% of the
windows pooled; the median relative error <= 1%; Fig. 1's verdicts the same). Fast here on a
short run (precision and verdicts); `-m slow` runs the paper-scale sine runs (3 seeds each)
and the CIFAR-sized ResNet on digits."""

import math

import numpy as np
import pytest
import torch

import depthaware as da
from depthaware.measure.sketch import sketch_agreement, window_errors
from depthaware.recipes.sine import SineConfig, train_sine


def compare(exact, sketched, every: int = 1, verdict=None) -> dict:
    """:func:`~depthaware.measure.sketch.sketch_agreement` of two trajectories of one
    run, whether a finding's ``verdict(report)`` is the same on both, and how many layers the
    sketch holds."""
    a, b = da.measure.convergence(exact), da.measure.convergence(sketched)
    return {
        **sketch_agreement(a, b, every),
        "verdict": None if verdict is None else (verdict(a), verdict(b)),
        "sketched layers": sum(v.ndim == 2 for v in sketched[sketched.steps[0]].values()),
    }


def fig1_plain(report):  # Fig. 1's rule: C[0,50] of the first three layers decreasing
    c = report.rates(0, 50)
    return c["Layer 1"] > c["Hidden layer 1"] > c["Hidden layer 2"]


def fig1_residual(report):  # C[0,5] of Res-Block 1 over Res-Block 4 above 1
    c = report.rates(0, 5)
    return c["Res-Block 1"] / c["Res-Block 4"] > 1


def sine_both(config, seed, k=4096, sketch_seed=0):
    sketched = {}

    def record(epoch, model, *_):
        if "t" not in sketched:
            sketched["t"] = da.measure.Trajectory(model, sketch=k, seed=sketch_seed)
        sketched["t"].snapshot(epoch)

    run = train_sine(config, seed, callback=record)
    return run.trajectory, sketched["t"]


def test_sketched_rates_are_precise_and_keep_the_verdict_on_a_short_residual_run():
    """A short run's exact snapshots sketched anew with 20 sketch seeds: the median relative error
    is <= 1% and every sketch gives the exact Fig. 1 verdict. (Coverage is judged over sketches:
    tests/test_sketch_band.py and the findings' sketched lines at the paper's scale. One seed's
    coverage is no test: a run's windows share the errors of a few distances, and over these
    seeds it ranges from 73% to 100%.)"""
    from depthaware.measure.distances import resketched as sketched_anew
    from depthaware.recipes.findings import sketch_calibration

    config = SineConfig(model="resfcnn", epochs=20, lr_milestones=(10,), n_train=1000)
    traj = train_sine(config, 0).trajectory
    exact = da.measure.convergence(traj)
    again = [sketched_anew(traj, 4096, seed) for seed in range(20)]
    assert sketch_calibration(exact, again)["median"] <= 0.01
    assert all(fig1_residual(r) == fig1_residual(exact) for r in again)


def test_a_sketched_trajectory_is_its_exact_snapshots_sketched():
    """What a live sketched trajectory records equals the exact one's snapshots sketched after the
    fact with the same seed (the calibration above stands for it)."""
    from depthaware.measure.distances import resketched as sketched_anew

    config = SineConfig(model="resfcnn", epochs=3, lr_milestones=(2,), n_train=500)
    exact, live = sine_both(config, 0, sketch_seed=1)
    a, b = da.measure.convergence(live), sketched_anew(exact, 4096, 1)
    # equal to the float32 the trajectory stores its sketches in
    assert np.allclose(a.distances, b.distances, rtol=1e-5, atol=0)
    for w in [(0, 1), (0, 2), (1, 2)]:
        assert a.errors(*w) == pytest.approx(b.errors(*w), rel=1e-3)


def test_agreement_leaves_out_the_window_from_the_start_to_theta_star():
    """Hand-made curves: the last snapshot is θ* (distance 0); every sketch row is exact but at
    step 2, where the four rows are off by +1%, -1%, +2%, -2%."""
    d = [1.0, 0.8, 0.5, 0.3, 0.0]
    off = [0.01, -0.01, 0.02, -0.02]
    rows = [[[x * (1 + e) if t == 2 else x for e in off] for t, x in enumerate(d)]]
    arrays = {"layers": ["w"], "depths": [0], "steps": [0, 1, 2, 3, 4], "norms": [[1.0] * 5],
              "steps_moved": [[1.0] * 4]}  # fmt: skip
    exact = da.measure.ConvergenceReport.from_arrays({**arrays, "distances": [d]})
    rms = [x * math.sqrt(1 + 0.00025) if t == 2 else x for t, x in enumerate(d)]
    sketched = da.measure.ConvergenceReport.from_arrays(
        {**arrays, "distances": [rms], "distance_rows": rows}
    )
    result = sketch_agreement(exact, sketched)
    assert result["windows"] == 9  # the 10 windows of 5 snapshots but [0, 4] (every rate >= 10%)
    # the largest: [2, 3], where d(2)'s root-mean-square error is 0.5 (sqrt(1.00025) - 1) against
    # an exact rate of 0.2
    assert result["max"] == pytest.approx(0.5 * (math.sqrt(1.00025) - 1) / 0.2, rel=1e-9)
    assert result["coverage"] == 1.0
    counted = window_errors(exact, sketched)  # what the summary is made of, window by window
    assert [(t1, t2) for _, t1, t2, _, _ in counted] == [
        (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)
    ]  # fmt: skip
    assert max(counted, key=lambda c: c[3])[1:3] == (2, 3)
    assert all(c for *_, c in counted) and {n for n, *_ in counted} == {"w"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("model", ["fcnn", "resfcnn"])
def test_sketched_rates_agree_on_the_paper_scale_sine_runs(model, seed):
    verdict = fig1_plain if model == "fcnn" else fig1_residual
    result = compare(*sine_both(SineConfig(model=model), seed), every=10, verdict=verdict)
    print(model, seed, result)
    assert result["verdict"][0] == result["verdict"][1]
    if model == "fcnn":  # every layer has at most k parameters: kept exactly, nothing to compare
        assert result["sketched layers"] == 0 and result["windows"] == 0, result
        return
    assert result["median"] <= 0.01, result


@pytest.fixture(scope="module")
def resnet_digits():
    """A CIFAR ResNet-18 (width 16) trained 20 epochs on digits at a constant LR 0.01: its exact
    and its sketched trajectory (k = 4096, sketch seed 0), a snapshot per epoch."""
    from depthaware.recipes.data import load_images
    from depthaware.recipes.loop import train

    x, y, *_ = load_images(None, 0)
    torch.manual_seed(0)
    model = da.models.cifar_resnet18(num_classes=10, in_chans=x.shape[1], width=16)
    layers = da.layer_groups(model)
    exact = da.measure.Trajectory(layers, sketch=None)
    sketched = da.measure.Trajectory(layers, sketch=4096)
    opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=1e-4)
    for traj in (exact, sketched):
        traj.snapshot(0)

    def both(epoch, _loss):
        exact.snapshot(epoch)
        sketched.snapshot(epoch)

    train(model, opt, x, y, epochs=20, batch_size=128, loss_fn=torch.nn.functional.cross_entropy,
          seed=1, after_epoch=both)  # fmt: skip
    return exact, sketched


@pytest.mark.slow
def test_sketched_rates_agree_on_a_cifar_sized_resnet_on_digits(resnet_digits):
    exact, sketched = resnet_digits
    result = compare(exact, sketched)
    print("resnet18 digits", result)
    assert result["median"] <= 0.01, result
    # the same run's exact snapshots sketched with 19 other seeds: how the largest error (reported,
    # not gated) and the coverage spread over sketch seeds
    again = [result] + [resketched(exact, seed) for seed in range(1, 20)]
    print("largest error over sketch seeds 0-19:", [round(a["max"], 4) for a in again])
    calibrated(again)


def calibrated(agreements) -> None:
    """The 95% band is calibrated: over sketch seeds its coverage averages >= 93% (the findings'
    rule), though one run's windows share their sketch's errors, so one seed's coverage can fall
    below that."""
    from depthaware.recipes.findings import CALIBRATED

    coverage = [a["coverage"] for a in agreements]
    print("coverage per sketch seed:", [round(c, 3) for c in coverage], "mean", np.mean(coverage))
    assert np.mean(coverage) >= CALIBRATED, coverage


@pytest.mark.slow
def test_sketch_seeds_on_the_recipes_resnet(monkeypatch):
    """cnn-resnet-sketched's first run (the paper-scale CIFAR ResNet recipe on digits, seed 0)
    with its exact snapshots kept and sketched again at sketch seeds 0-19, on the 10-epoch grid
    that line judges and on every window between epochs."""
    from depthaware.measure.trajectory import Trajectory
    from depthaware.recipes import images
    from depthaware.recipes.findings import SCALES

    made = []

    class Kept(Trajectory):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(images, "Trajectory", Kept)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the findings' run queue: the same floats as the line's run
    try:
        run = images.image_run(images.cnn_config("resnet18", SCALES["paper"]), 0, ["sketch"])
    finally:
        torch.set_num_threads(threads)
    exact = made[0]  # made[1] is the run's sketched trajectory
    line = sketch_agreement(run.report, run.sketch, every=10)
    print("the line's seed 0:", line)
    assert resketched(exact, 0, every=10) == pytest.approx(line, rel=1e-4)
    for every in (10, 1):
        again = [resketched(exact, seed, every) for seed in range(20)]
        largest = [a["max"] for a in again]
        print(f"every {every}: largest error per sketch seed", [round(m, 4) for m in largest])
        calibrated(again)


def resketched(exact, seed, every=1, k=4096) -> dict:
    """:func:`sketch_agreement` of ``exact`` with its snapshots sketched at sketch seed ``seed``."""
    return sketch_agreement(da.measure.convergence(exact), resketch(exact, seed, k), every)


def resketch(exact, seed, k=4096):
    """The report of ``exact``'s snapshots sketched at sketch seed ``seed``, as a Trajectory
    would (layers of at most ``k`` exact)."""
    from depthaware.measure.distances import streamed
    from depthaware.measure.sketch import sketch

    def encoded(step):
        return {
            n: sketch(v, k, seed=seed, layer=n) if exact.numels[n] > k else v
            for n, v in exact[step].items()
        }

    snapshots = [(step, encoded(step)) for step in exact.steps]
    return streamed(exact.layer_names, exact.depths, snapshots, snapshots[-1][1])


@pytest.mark.slow
def test_a_windows_sketch_error_is_the_one_countsketch_variance_predicts(resnet_digits):
    """Why short windows miss. A rate is :math:`(d_1 - d_2) / d_0` over three distances
    :math:`d_i = \\|a_i\\|`, :math:`a_i = \\theta(t_i) - \\theta^*`, each squared distance
    estimated by the mean of the rows' squared norms with errors :math:`e_i` of covariance
    (CountSketch, k buckets in all) :math:`\\frac{2}{k}(\\langle a_i, a_j\\rangle^2 - \\sum_l
    a_{il}^2 a_{jl}^2)`; to first order the rate's relative error is :math:`\\frac{e_1 / d_1 - e_2
    / d_2}{2 (d_1 - d_2)} - \\frac{e_0}{2 d_0^2}` (:math:`e_2 = 0` at θ*). A
    window's move :math:`\\delta = a_2 - a_1` at an angle φ from the way to θ* (:math:`-a_1`)
    has a part across it that barely changes the distance but whose inner product with
    :math:`a_1` (0) the sketch knows only to about :math:`\\|a_1\\| \\|\\delta\\| \\sin\\varphi /
    \\sqrt{k}`: the larger φ, the larger the error. Checked on the 20-epoch ResNet's windows
    (those :func:`sketch_agreement` counts) over sketch seeds 0-19: the observed error is the
    predicted one, and the largest errors are short windows at a wide angle."""
    exact, _ = resnet_digits
    k, steps, ref = 4096, exact.steps, da.measure.convergence(exact)
    away = {  # a_i of each sketched layer, float64
        t: {n: (v - exact[steps[-1]][n]).double().flatten() for n, v in exact[t].items()}
        for t in steps
    }
    windows = [(a, b) for i, a in enumerate(steps) for b in steps[i + 1 :]]
    windows.remove((steps[0], steps[-1]))  # its rate is 1 / (t2 - t0) on every sketch
    rates = {w: ref.rates(*w) for w in windows}
    counted = []  # (layer, window, φ in degrees, predicted standard deviation)
    for name in (n for n in exact.layer_names if exact.numels[n] > k):
        top = max(abs(r[name]) for r in rates.values())
        for t1, t2 in (w for w in windows if abs(rates[w][name]) >= 0.1 * top):
            a = [away[t][name] for t in (steps[0], t1, t2)]
            d = [float(v.norm()) for v in a]
            cov = np.array([[float(x @ y) ** 2 - float(x.square() @ y.square()) for y in a]
                            for x in a]) * 2 / k  # fmt: skip
            # errors e_i of the squared distances; d_i's error is e_i / (2 d_i) (0 at θ*)
            g = np.array([-1 / d[0] ** 2, 1 / (d[1] * (d[1] - d[2])), 0.0]) / 2
            if d[2] > 0:
                g[2] = -1 / (2 * d[2] * (d[1] - d[2]))
            move = a[2] - a[1]
            phi = math.degrees(math.acos(min(1.0, float(-a[1] @ move) / (d[1] * move.norm()))))
            counted.append((name, (t1, t2), phi, math.sqrt(g @ cov @ g)))
    reports = [resketch(exact, seed, k) for seed in range(20)]
    observed = [
        math.sqrt(np.mean([((r.rates(*w)[n] - rates[w][n]) / rates[w][n]) ** 2 for r in reports]))
        for n, w, _, _ in counted
    ]
    ratio = [o / p for o, (_, _, _, p) in zip(observed, counted, strict=True)]
    one = [phi for _, (a, b), phi, _ in counted if b - a == 1]
    longer = [phi for _, (a, b), phi, _ in counted if b - a > 1]
    worst = sorted(zip(observed, counted, strict=True), reverse=True)[:10]
    print(f"{len(counted)} windows; observed / predicted error: median {np.median(ratio):.2f}, "
          f"10-90%: {np.quantile(ratio, 0.1):.2f}-{np.quantile(ratio, 0.9):.2f}")  # fmt: skip
    print(f"φ, median: one-epoch windows {np.median(one):.0f}°, longer {np.median(longer):.0f}°")
    shown = [(n, w, round(phi), round(o, 4), round(p, 4)) for o, (n, w, phi, p) in worst]
    print("largest: (layer, window, φ, observed, predicted)", shown)
    # measured 2026-12-02: median 0.98 (0.81-1.08); φ 40° and 7°; the ten largest at 33-50°
    low, high = np.quantile(ratio, [0.1, 0.9])
    assert 0.85 <= np.median(ratio) <= 1.15 and 0.6 <= low and high <= 1.4
    assert np.median(one) >= 30 >= np.median(longer)
    assert min(phi for _, (_, _, phi, _) in worst) >= 30


def _walk_agreement(walk: torch.Tensor, k: int = 4096) -> dict:
    """:func:`sketch_agreement` of a one-layer trajectory ``walk`` (T, n) over every window."""
    from depthaware.measure.distances import streamed
    from depthaware.measure.sketch import sketch

    exact = [(t, {"w": w.float()}) for t, w in enumerate(walk)]
    sketched = [(t, {"w": sketch(s["w"], k, seed=0, layer="w")}) for t, s in exact]
    reports = [streamed(["w"], [0], s, s[-1][1]) for s in (exact, sketched)]
    return sketch_agreement(*reports)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_largest_error_depends_on_how_the_weights_walk_to_theta_star(seed):
    """Two 200k-parameter walks of 100 steps, every window counted: a random walk (θ* is where
    it stops, and a short window's step runs at a wide angle to the way there) and a walk
    pulled 5% of the way to a fixed point each step with noise (its steps run toward θ*).
    At k = 4096 the first's largest error is far above 5% and the second's below it: whether
    5% is reachable is a property of the trajectory, not of the code (docs/sketches.md)."""
    g = torch.Generator().manual_seed(seed)
    n, steps = 200_000, 100
    noise = 0.01 * torch.randn(steps, n, generator=g, dtype=torch.float64)
    random_walk = torch.cat([torch.zeros(1, n, dtype=torch.float64), noise.cumsum(0)])
    target = torch.randn(n, generator=g, dtype=torch.float64)
    pulled = [torch.zeros(n, dtype=torch.float64)]
    for step in noise:
        pulled.append(pulled[-1] + 0.05 * (target - pulled[-1]) + 0.2 * step)
    free, toward = _walk_agreement(random_walk), _walk_agreement(torch.stack(pulled))
    print(f"seed {seed}: random walk {free}; pulled walk {toward}")
    # measured 2026-12-02: median 1.0-1.7%, largest 22-28%; median 0.02-0.03%, largest 0.8-1.1%
    assert free["median"] > 0.01 and free["max"] > 0.1
    assert toward["median"] < 0.001 and toward["max"] < 0.05
