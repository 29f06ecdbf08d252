import copy

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from process_helpers import end_worker
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import depthaware as da
from depthaware.freeze import ConvergenceFreezer, FreezeOut


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, 16),
        nn.BatchNorm1d(16),
        nn.Tanh(),
        nn.Linear(16, 16),
        nn.Tanh(),
        nn.Linear(16, 16),
        nn.Tanh(),
        nn.Linear(16, 1),
    )


def data(n=64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    return x, x.sum(1, keepdim=True).sin()


def setup(model, total=20, **kw):
    layers = da.layer_groups(model)
    opt = torch.optim.SGD(da.optim.depth_param_groups(layers, 0.1), momentum=0.9)
    return layers, opt, FreezeOut(opt, layers, total_steps=total, **kw)


def train_steps(model, opt, freezer, steps, x, y):
    for _ in range(steps):
        model.train()
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        freezer.step()


def test_freeze_times_linear_and_cubic():
    layers, opt, fo = setup(net(), total=100, t0=0.5, spacing="linear")
    assert list(fo.freeze_steps.values()) == pytest.approx([50, 200 / 3, 250 / 3, 100])
    _, _, fc = setup(net(), total=100, t0=0.5)
    assert list(fc.freeze_steps.values()) == pytest.approx(
        [12.5, 100 * (2 / 3) ** 3, 100 * (5 / 6) ** 3, 100]
    )


def test_freezeout_anneals_then_freezes_and_frozen_layers_stay_put():
    model = net()
    x, y = data()
    layers, opt, fo = setup(model, total=20, t0=0.5, spacing="linear")  # layer 0 at step 10
    lr = lambda name: next(g["lr"] for g in opt.param_groups if g["layer"] == name)  # noqa: E731
    train_steps(model, opt, fo, 5, x, y)
    assert lr("0") == pytest.approx(0.1 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi / 2))))
    train_steps(model, opt, fo, 5, x, y)
    assert list(fo.frozen) == ["0"] and lr("0") == 0.0
    frozen = [p.detach().clone() for p in layers["0"].params]
    assert all(not p.requires_grad and p.grad is None for p in layers["0"].params)
    assert not any(p in opt.state for p in layers["0"].params), "optimizer state released"
    stats = model[1].running_mean.clone()
    train_steps(model, opt, fo, 10, x, y)
    assert all(torch.equal(a, b) for a, b in zip(frozen, layers["0"].params))
    assert torch.equal(stats, model[1].running_mean), "frozen BatchNorm keeps its statistics"
    assert model[1].training is False
    assert "7" not in fo.frozen, "the last layer trains to the end"
    assert fo.frozen_fraction() == pytest.approx(
        sum(layers.numel(n) for n in ("0", "3", "5")) / layers.numel()
    )


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_backward_stops_at_the_first_trainable_layer():
    model = net()
    x, y = data()
    layers, opt, fo = setup(model, total=20, t0=0.5, spacing="linear")
    train_steps(model, opt, fo, 14, x, y)  # layers 0 and 3 frozen (steps 10, 13.3)
    assert list(fo.frozen) == ["0", "3"]
    reached = []
    for i in (0, 3, 5):
        model[i].register_full_backward_hook(lambda m, gi, go, i=i: reached.append(i))
    hidden = model[:5](x)
    assert hidden.grad_fn is None, "no graph is recorded through the frozen prefix"
    nn.functional.mse_loss(model(x), y).backward()
    assert reached == [5]


def test_resume_matches_an_uninterrupted_run():
    x, y = data()
    model = net()
    _, opt, fo = setup(model, total=30, t0=0.3)
    train_steps(model, opt, fo, 30, x, y)

    model2 = net()
    layers2, opt2, fo2 = setup(model2, total=30, t0=0.3)
    train_steps(model2, opt2, fo2, 12, x, y)
    saved = copy.deepcopy((model2.state_dict(), opt2.state_dict(), fo2.state_dict()))
    model3 = net(seed=5)
    model3.load_state_dict(saved[0])
    layers3, opt3, fo3 = setup(model3, total=30, t0=0.3)
    fo3.load_state_dict(saved[2])
    opt3.load_state_dict(saved[1])
    train_steps(model3, opt3, fo3, 18, x, y)
    assert fo3.frozen == fo.frozen and len(fo.frozen) >= 2
    for a, b in zip(model.parameters(), model3.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(model.buffers(), model3.buffers()):
        assert torch.equal(a, b)


def test_convergence_freezer_freezes_shallow_first_and_resumes():
    x, y = data(256)

    def run(model, steps, freezer=None, opt=None):
        layers = da.layer_groups(model)
        opt = opt or torch.optim.SGD(model.parameters(), lr=0.05)
        freezer = freezer or ConvergenceFreezer(
            opt, layers, check_every=5, threshold=0.5, patience=2
        )
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            freezer.step()
        return freezer, opt

    model = net()
    fz, _ = run(model, 400)
    assert list(fz.frozen) == list(da.layer_groups(model).names[: len(fz.frozen)])
    assert 1 <= len(fz.frozen) <= 3
    assert all(fz.history[n] for n in fz.frozen)

    half = net()
    fz_half, opt_half = run(half, 200)
    state = copy.deepcopy((half.state_dict(), opt_half.state_dict(), fz_half.state_dict()))
    again = net(seed=3)
    again.load_state_dict(state[0])
    layers = da.layer_groups(again)
    opt = torch.optim.SGD(again.parameters(), lr=0.05)
    fz2 = ConvergenceFreezer(opt, layers, check_every=5, threshold=0.5, patience=2)
    fz2.load_state_dict(state[2])
    opt.load_state_dict(state[1])
    run(again, 200, fz2, opt)
    assert fz2.frozen == fz.frozen
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_bad_arguments():
    model = net()
    layers = da.layer_groups(model)
    with pytest.raises(ValueError, match="name no layer"):
        FreezeOut(torch.optim.SGD(da.optim.depth_param_groups(da.models.FCNN(), 0.1)), layers, 10)
    opt = torch.optim.SGD(da.optim.depth_param_groups(layers, 0.1))
    with pytest.raises(ValueError, match="spacing"):
        FreezeOut(opt, layers, 10, spacing="quadratic")
    with pytest.raises(ValueError, match="keep"):
        ConvergenceFreezer(None, layers, keep=len(layers))


def _ddp_worker(rank, world, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    x, y = data()
    per = len(x) // world
    model = net()
    model[1] = nn.Identity()  # BatchNorm statistics are per-process under DDP
    layers = da.layer_groups(model)
    opt = torch.optim.SGD(da.optim.depth_param_groups(layers, 0.1), momentum=0.9)
    try:
        FreezeOut(opt, layers, 20, ddp=DDP(model))
    except ValueError as e:
        assert "find_unused_parameters" in str(e)
    else:
        raise AssertionError("DDP without find_unused_parameters was accepted")
    ddp = DDP(model, find_unused_parameters=True)
    fo = FreezeOut(opt, layers, 20, t0=0.5, spacing="linear", ddp=ddp)
    train_steps(
        ddp, opt, fo, 20, x[rank * per : (rank + 1) * per], y[rank * per : (rank + 1) * per]
    )
    if rank == 0:
        torch.save([p.detach() for p in model.parameters()], out)
    end_worker()


@pytest.mark.processes
def test_freezing_under_ddp_two_processes(tmp_path):
    out = tmp_path / "w.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    model = net()
    model[1] = nn.Identity()
    x, y = data()
    layers = da.layer_groups(model)
    opt = torch.optim.SGD(da.optim.depth_param_groups(layers, 0.1), momentum=0.9)
    fo = FreezeOut(opt, layers, 20, t0=0.5, spacing="linear")
    train_steps(model, opt, fo, 20, x, y)
    assert len(fo.frozen) == 3
    for a, b in zip(model.parameters(), torch.load(out)):
        torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-6)


def test_convergence_freezer_variation_is_appendix_a2_of_a_trajectory():
    """The freezer's signal at each check equals the report's Appendix A.2 weight variation of a
    Trajectory snapshotted at the same steps (same formula, reached through float64 snapshots)."""
    x, y = data(256)
    model = net()
    layers = da.layer_groups(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    fz = ConvergenceFreezer(opt, layers, check_every=5, threshold=1e-6, patience=99)
    traj = da.measure.Trajectory(layers)
    for t in range(1, 31):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        fz.step()
        if t % 5 == 0:
            traj.snapshot(t)
    first = layers.names[0]
    expected = da.measure.convergence(traj).weight_variation()[first]
    assert fz.history[first] == pytest.approx(expected.tolist(), rel=1e-5)
    assert len(expected) == 5


def test_weight_variation_of_a_zero_layer_is_nan_not_a_huge_number():
    wv = da.measure.weight_variation([1.0, 0.0, 2.0], [0.0, 0.0, 4.0])
    assert np.isnan(wv[:2]).all() and wv[2] == 0.5


def test_max_step_freezes_the_one_candidate_its_docstring_names():
    """At the first check from max_step on, the candidate freezes whatever its signal; the next
    layers freeze by the rule only (here never: a threshold the signal cannot reach)."""
    x, y = data(64)
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    freezer = ConvergenceFreezer(opt, da.layer_groups(model), check_every=2, threshold=1e-9,
                                 max_step=5)  # fmt: skip
    for _ in range(20):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        freezer.step()
    assert freezer.frozen == {da.layer_groups(model).names[0]: 6}
    again = ConvergenceFreezer(opt, da.layer_groups(model), check_every=2, threshold=1e-9,
                               max_step=5)  # fmt: skip
    again.load_state_dict(freezer.state_dict())  # the one forced freeze is spent on resume too
    assert again._forced and again.frozen == freezer.frozen
