"""FSDP2 (``fully_shard``) with 2 gloo processes on CPU: LARS, FeedbackSGD and DepthSGD over
sharded parameters equal one process on the global batch, with one collective per group and
step; FSDP1's flat parameters are refused."""

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import depthaware as da
import depthaware.distributed as dd

STEPS = 20
WORLD = 2


def net(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
    ).to(dtype)
    with torch.no_grad():
        model[2].weight.zero_()  # a zero-initialised weight: LARS's group-mean fallback
    return model


def batch(dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 4, generator=g, dtype=dtype)
    return x, x.sum(1, keepdim=True).sin()


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
}


def train(model, opt, x, y, count=None, traj=None):
    for step in range(STEPS):
        if traj is not None and step % 5 == 0:
            traj.snapshot(step)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        if count is not None:
            count.append(0)
        opt.step()


def _worker(rank, init_file, out):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    mesh = init_device_mesh("cpu", (WORLD,))
    calls = []
    real = dd.dist.all_reduce

    def counting(*args, **kwargs):
        calls[-1] += 1
        return real(*args, **kwargs)

    dd.dist.all_reduce = counting
    results = {}
    for dtype in (torch.float32, torch.float64):
        x, y = batch(dtype)
        per = len(x) // WORLD
        xs, ys = x[rank * per : (rank + 1) * per], y[rank * per : (rank + 1) * per]
        for name, make in OPTIMIZERS.items():
            model = net(dtype)
            for layer in model:
                if isinstance(layer, nn.Linear):
                    fully_shard(layer, mesh=mesh)
            fully_shard(model, mesh=mesh)
            opt = make(model)  # after sharding: the optimizer holds the DTensors
            calls.clear()
            traj = None
            if name == "LARS per tensor" and dtype == torch.float32:  # every rank records
                traj = da.measure.Trajectory(model, f"{out}.traj")
            train(model, opt, xs, ys, calls, traj)
            results[(name, dtype)] = (
                [p.full_tensor().detach().clone() for p in model.parameters()],
                sorted(set(calls)),
                len(opt.param_groups),
            )
    dd.dist.all_reduce = real
    if rank == 0:
        results["writer pid"] = os.getpid()
        torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp2")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp / "out.pt")), nprocs=WORLD, join=True)
    return {**torch.load(tmp / "out.pt"), "folder": tmp / "out.pt.traj"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fully_shard_two_processes_equal_one_process_on_the_global_batch(sharded, name, dtype):
    x, y = batch(dtype)
    model = net(dtype)
    train(model, OPTIMIZERS[name](model), x, y)
    params, calls, n_groups = sharded[(name, dtype)]
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(model.parameters(), params):
        torch.testing.assert_close(b, a.detach(), **tol, msg=name)
    # LARS and FeedbackSGD: one all_reduce per parameter group and step (the norms and dot
    # products of all its tensors); DepthSGD: one per step (its finiteness check)
    assert calls == ([1] if name == "DepthSGD" else [n_groups])


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


def test_shard_groups_reduce_over_the_shard_dimension_only():
    """A replicated DTensor needs no reduction; a plain tensor none either."""
    assert dd.shard_groups([torch.zeros(3)]) == []


def test_fsdp1_flat_parameters_are_refused():
    flat = nn.Parameter(torch.zeros(242))
    flat._fsdp_flattened = True  # what FullyShardedDataParallel marks its FlatParameter with
    flat.grad = torch.ones(242)
    for cls in (da.optim.LARS, da.optim.FeedbackSGD):
        with pytest.raises(ValueError, match="FullyShardedDataParallel .FSDP1.*fully_shard"):
            cls([flat]).step()
