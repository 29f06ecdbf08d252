"""FSDP2 (``fully_shard``) with 2 gloo processes on CPU: LARS, FeedbackSGD and DepthSGD over
sharded parameters equal one process on the global batch, with one collective per group and
step; FSDP1's flat parameters are refused."""

import copy
import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fsdp_helpers import batch, cnn, images, net, shard
from process_helpers import end_worker
from torch import nn

import depthaware as da
import depthaware.distributed as dd

STEPS = 20
WORLD = 2


def groups(model, lr):
    return da.optim.depth_param_groups(model, lr)


OPTIMIZERS = {
    "LARS per tensor": lambda m: da.optim.LARS(groups(m, 0.5), trust_coefficient=0.02),
    "LARS group, 1-d, wd, nesterov, clip": lambda m: da.optim.LARS(
        groups(m, 0.5),
        trust_coefficient=0.02,
        trust_by="group",
        adapt_1d=True,
        weight_decay=1e-3,
        nesterov=True,
        trust_clip=True,
    ),
    "LARS foreach, wd": lambda m: da.optim.LARS(
        groups(m, 0.5), trust_coefficient=0.02, weight_decay=1e-3, foreach=True
    ),
    "FeedbackSGD": lambda m: da.optim.FeedbackSGD(groups(m, 0.1), momentum=0.9),
    "FeedbackSGD per tensor, foreach": lambda m: da.optim.FeedbackSGD(
        groups(m, 0.1), momentum=0.9, signal_by="param", foreach=True
    ),
    "DepthSGD": lambda m: da.optim.DepthSGD(groups(m, 0.1), momentum=0.9),
    "SGD + FreezeOut": lambda m: with_freezer(
        torch.optim.SGD(groups(m, 0.1), momentum=0.9),
        lambda opt: da.freeze.FreezeOut(opt, m, total_steps=STEPS),
    ),
    "SGD + ConvergenceFreezer": lambda m: with_freezer(
        torch.optim.SGD(groups(m, 0.1), momentum=0.9),
        lambda opt: da.freeze.ConvergenceFreezer(opt, m, check_every=2, max_step=12),
    ),
}


def with_freezer(opt, make):
    """The optimizer, its freezer stepped after every optimizer step (a post-step hook)."""
    freezer = make(opt)
    opt.register_step_post_hook(lambda *args: freezer.step())
    opt.freezer = freezer
    return opt


def train(model, opt, x, y, count=None, traj=None):
    for step in range(STEPS):
        if traj is not None and step % 5 == 0:
            traj.snapshot(step)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        if count is not None:
            count.append(0)  # counts the collectives of this optimizer step
        opt.step()
        if count is not None:
            count.append(None)  # none counted until the next step


def _worker(rank, init_file, out):
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    mesh = init_device_mesh("cpu", (WORLD,))
    calls = []
    real = dd.dist.all_reduce

    def counting(*args, **kwargs):
        if calls and calls[-1] is not None:
            calls[-1] += 1
        return real(*args, **kwargs)

    dd.dist.all_reduce = counting
    results = {}
    for dtype in (torch.float32, torch.float64):
        x, y = batch(dtype)
        per = len(x) // WORLD
        xs, ys = x[rank * per : (rank + 1) * per], y[rank * per : (rank + 1) * per]
        for name, make in OPTIMIZERS.items():
            model = shard(net(dtype), mesh)
            opt = make(model)  # after sharding: the optimizer holds the DTensors
            calls.clear()
            traj = None
            if name == "LARS per tensor" and dtype == torch.float32:  # every rank records
                traj = da.measure.Trajectory(model, f"{out}.traj")
            if name == "FeedbackSGD" and dtype == torch.float32:  # sketched, with no gather
                traj = da.measure.Trajectory(model, sketch=64, seed=3)
                from torch.distributed.tensor import DTensor

                full_tensor, gathered = DTensor.full_tensor, []

                def recording(self, *args, _seen=gathered, _full=full_tensor, **kwargs):
                    _seen.append(self.numel())
                    return _full(self, *args, **kwargs)

                DTensor.full_tensor = recording
            train(model, opt, xs, ys, calls, traj)
            if name == "FeedbackSGD" and dtype == torch.float32:
                DTensor.full_tensor = full_tensor
                results["sketched"] = {s: traj[s] for s in traj.steps}
                results["gathered"] = sorted(set(gathered))
            results[(name, dtype)] = (
                [p.full_tensor().detach().clone() for p in model.parameters()],
                sorted({c for c in calls if c is not None}),
                len(opt.param_groups),
                dict(getattr(getattr(opt, "freezer", None), "frozen", {})),
            )
            if name == "DepthSGD" and dtype == torch.float64:  # the last step's gradients
                results["grad magnitude", rank] = da.measure.grad_magnitude(model)
    x, y = images()
    for name in CNN:
        model = shard(cnn(), mesh)
        train(model, OPTIMIZERS[name](model), x[rank::WORLD], y[rank::WORLD])
        results["cnn", name] = [p.full_tensor().detach().clone() for p in model.parameters()]
    dd.dist.all_reduce = real
    gathered = [None] * WORLD
    dist.all_gather_object(gathered, results.pop(("grad magnitude", rank)))
    results["grad magnitude"] = gathered
    results["resume"] = _resume_is_bit_identical(mesh, rank)
    hsdp = init_device_mesh("cpu", (1, WORLD), mesh_dim_names=("replicate", "shard"))
    x, y = batch(torch.float32)
    per = len(x) // WORLD
    model = shard(net(torch.float32), hsdp)
    train(model, OPTIMIZERS["LARS per tensor"](model), x[rank * per : (rank + 1) * per],
          y[rank * per : (rank + 1) * per])  # fmt: skip
    results["hsdp"] = [p.full_tensor().detach().clone() for p in model.parameters()]
    if rank == 0:
        results["writer pid"] = os.getpid()
        torch.save(results, out)
    end_worker()


def _resume_is_bit_identical(mesh, rank) -> bool:
    """torch.distributed.checkpoint's state dicts of a sharded LARS run: 5 steps, save, 5 more;
    a fresh model and optimizer loaded from the save take the same 5 steps bit-identically."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )
    from torch.distributed.fsdp import fully_shard

    x, y = batch(torch.float32)
    xs, ys = x[rank::WORLD], y[rank::WORLD]

    def sharded_run():
        model = net(torch.float32)
        fully_shard(model, mesh=mesh)
        return model, da.optim.LARS(groups(model, 0.5), trust_coefficient=0.02, foreach=True)

    def steps(model, opt):
        for _ in range(5):
            opt.zero_grad()
            nn.functional.mse_loss(model(xs), ys).backward()
            opt.step()

    model, opt = sharded_run()
    steps(model, opt)
    saved = (get_model_state_dict(model), get_optimizer_state_dict(model, opt))
    saved = copy.deepcopy(saved)
    steps(model, opt)
    again, again_opt = sharded_run()
    set_model_state_dict(again, saved[0])
    set_optimizer_state_dict(again, again_opt, saved[1])
    steps(again, again_opt)
    return all(torch.equal(a.full_tensor(), b.full_tensor())
               for a, b in zip(model.parameters(), again.parameters()))  # fmt: skip


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp2")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp / "out.pt")), nprocs=WORLD, join=True)
    return {**torch.load(tmp / "out.pt"), "folder": tmp / "out.pt.traj"}


@pytest.mark.processes
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fully_shard_two_processes_equal_one_process_on_the_global_batch(sharded, name, dtype):
    x, y = batch(dtype)
    model = net(dtype)
    opt = OPTIMIZERS[name](model)
    train(model, opt, x, y)
    params, calls, n_groups, frozen = sharded[(name, dtype)]
    if hasattr(opt, "freezer"):  # the same layers froze at the same steps
        assert frozen == opt.freezer.frozen and frozen
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(model.parameters(), params):
        torch.testing.assert_close(b, a.detach(), **tol, msg=name)
    # LARS and FeedbackSGD: one all_reduce per parameter group and step (the norms and dot
    # products of all its tensors); DepthSGD: one per step (its finiteness check)
    expected = {"DepthSGD": [1]}.get(name, [0] if "Freez" in name else [n_groups])
    assert calls == expected


CNN = ["LARS per tensor", "FeedbackSGD"]


@pytest.mark.processes
@pytest.mark.parametrize("name", CNN)
def test_a_small_cnn_under_fully_shard_equals_one_process(sharded, name):
    x, y = images()
    model = cnn()
    train(model, OPTIMIZERS[name](model), x, y)
    for a, b in zip(model.parameters(), sharded["cnn", name]):
        torch.testing.assert_close(b, a.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.processes
def test_grad_magnitude_is_the_global_one_on_every_rank(sharded):
    x, y = batch(torch.float64)
    model = net(torch.float64)
    train(model, OPTIMIZERS["DepthSGD"](model), x, y)
    expected = da.measure.grad_magnitude(model)
    for per_rank in sharded["grad magnitude"]:
        assert per_rank.keys() == expected.keys()
        for k, v in expected.items():
            assert per_rank[k] == pytest.approx(v, rel=1e-10)


@pytest.mark.processes
def test_a_sketched_trajectory_under_fully_shard_equals_one_process_without_a_gather(sharded):
    x, y = batch(torch.float32)
    model = net(torch.float32)
    ref = da.measure.Trajectory(model, sketch=64, seed=3)
    train(model, OPTIMIZERS["FeedbackSGD"](model), x, y, traj=ref)
    assert ref.steps == sorted(sharded["sketched"])
    assert sharded["gathered"] == [1, 16]  # only the parameters of the 17-parameter layer
    for step in ref.steps:
        snap = sharded["sketched"][step]
        assert snap["2"].shape == (4, 16)  # 272 parameters: sketched
        for name, v in ref[step].items():
            torch.testing.assert_close(snap[name], v, rtol=1e-5, atol=1e-6)


@pytest.mark.processes
def test_a_trajectory_under_fully_shard_equals_one_processs_and_rank_0_wrote_it(sharded, tmp_path):
    x, y = batch(torch.float32)
    model = net(torch.float32)
    ref = da.measure.Trajectory(model)
    train(model, OPTIMIZERS["LARS per tensor"](model), x, y, traj=ref)
    folder = sharded["folder"]
    lock = json.loads((folder / ".writer.lock").read_text())
    assert lock["pid"] == sharded["writer pid"]
    traj = da.measure.Trajectory.load(folder)
    assert traj.steps == ref.steps == [0, 5, 10, 15]
    for step in ref.steps:
        for name, v in ref[step].items():
            torch.testing.assert_close(traj[step][name], v, rtol=1e-6, atol=1e-6)


@pytest.mark.processes
def test_a_resume_through_distributed_checkpoint_continues_bit_identically(sharded):
    assert sharded["resume"]


@pytest.mark.processes
def test_hsdp_reduces_over_the_shard_dimension_only(sharded):
    """A 1x2 (replicate x shard) mesh: the statistics are summed over the shard dimension."""
    x, y = batch(torch.float32)
    model = net(torch.float32)
    train(model, OPTIMIZERS["LARS per tensor"](model), x, y)
    for a, b in zip(model.parameters(), sharded["hsdp"]):
        torch.testing.assert_close(b, a.detach(), rtol=1e-6, atol=1e-6)
