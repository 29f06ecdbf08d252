"""Every DTensor placement the optimizers accept steps as a plain tensor would, on every kernel
path, and the ones they do not accept are refused by name: ``Shard`` on one mesh dimension
(``fully_shard``), ``Replicate`` (torch's FSDP2-based ``replicate``, a tensor-parallel bias),
both (HSDP); not ``Partial``, nor a shard over two mesh dimensions. One rank in process for the
placements; two gloo processes for ``replicate``, against one process on the global batch."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from process_helpers import end_worker
from torch import nn

import depthaware as da
from depthaware.optim import LARS, DepthSGD, FeedbackSGD

PATHS = ["loop", "foreach", "fused"]
OPTIMIZERS = {
    "LARS": lambda params, kw: LARS(
        params, lr=0.5, trust_coefficient=0.02, weight_decay=1e-3, **kw
    ),  # fmt: skip
    "FeedbackSGD": lambda params, kw: FeedbackSGD(params, lr=0.1, momentum=0.9, **kw),
    "DepthSGD": lambda params, kw: DepthSGD(params, lr=0.1, momentum=0.9, **kw),
}
STEPS = 5


def path_kw(path):
    return dict(foreach=path == "foreach", fused=path == "fused")


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=g)
    return x, x.sum(1, keepdim=True).sin()


def train(model, opt, x, y):
    for _ in range(STEPS):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def full(p):
    return p.full_tensor() if hasattr(p, "full_tensor") else p


def plain_run(name, path, x, y):
    model = net()
    train(model, OPTIMIZERS[name](da.optim.depth_param_groups(model, lr=0.1), path_kw(path)), x, y)
    return [p.detach() for p in model.parameters()]


@pytest.fixture
def mesh(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        from torch.distributed.device_mesh import init_device_mesh

        yield init_device_mesh
    finally:
        dist.destroy_process_group()


def distribute(model, mesh, placements):
    from torch.distributed.tensor import distribute_tensor

    for module in model:
        for name, p in list(module.named_parameters(recurse=False)):
            module.register_parameter(name, nn.Parameter(distribute_tensor(p, mesh, placements)))
    return model


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_replicated_parameters_step_as_plain_ones(mesh, name, path):
    from torch.distributed.tensor import Replicate

    x, y = batch()
    model = distribute(net(), mesh("cpu", (1,)), [Replicate()])
    opt = OPTIMIZERS[name](da.optim.depth_param_groups(model, lr=0.1), path_kw(path))
    train(model, opt, *(_replicated(t, mesh) for t in (x, y)))
    for a, b in zip(plain_run(name, path, x, y), model.parameters()):
        torch.testing.assert_close(full(b).detach(), a, rtol=1e-6, atol=1e-7)


def _replicated(t, mesh):
    from torch.distributed.tensor import Replicate, distribute_tensor

    return distribute_tensor(t, mesh("cpu", (1,)), [Replicate()])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fully_shard_parameters_step_as_plain_ones_on_every_path_fused_too(mesh, name, path):
    from torch.distributed.fsdp import fully_shard

    x, y = batch()
    model = fully_shard(net(), mesh=mesh("cpu", (1,)))
    opt = OPTIMIZERS[name](da.optim.depth_param_groups(model, lr=0.1), path_kw(path))
    train(model, opt, x, y)  # DepthSGD(fused=True): no "_fused_sgd_ ... sharding strategy"
    for a, b in zip(plain_run(name, path, x, y), model.parameters()):
        torch.testing.assert_close(full(b).detach(), a, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["LARS", "FeedbackSGD"])
def test_a_shard_over_two_mesh_dimensions_and_a_pending_sum_are_refused_by_name(mesh, name):
    from torch.distributed.tensor import Partial, Shard

    model = distribute(net(), mesh("cpu", (1, 1)), [Shard(0), Shard(0)])
    opt = OPTIMIZERS[name](model.parameters(), {})
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match=r"sharded on mesh dimensions \[0, 1\]; one shard dim"):
        opt.step()
    model = distribute(net(), mesh("cpu", (1,)), [Partial()])
    opt = OPTIMIZERS[name](model.parameters(), {})
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match="has a pending .Partial. sum"):
        opt.step()


def _worker(rank, init_file, out):
    from torch.distributed._composable.replicate_with_fsdp import replicate
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    x, y = batch()
    results = {}
    for name in OPTIMIZERS:
        for path in PATHS:
            model = replicate(net(), mesh=init_device_mesh("cpu", (2,)))
            opt = OPTIMIZERS[name](da.optim.depth_param_groups(model, lr=0.1), path_kw(path))
            train(model, opt, x[rank::2], y[rank::2])
            results[name, path] = [full(p).detach().clone() for p in model.parameters()]
    if rank == 0:
        torch.save(results, out)
    end_worker()


@pytest.mark.processes
def test_replicate_on_two_processes_equals_one_process_on_the_global_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path / "out.pt")), nprocs=2, join=True)
    results = torch.load(tmp_path / "out.pt")
    x, y = batch()
    for (name, path), params in results.items():
        for a, b in zip(plain_run(name, path, x, y), params):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=f"{name} {path}")
