"""DistributedDataParallel with 2 gloo processes on CPU (FSDP2: test_fsdp2.py)."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from process_helpers import end_worker
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import depthaware as da

STEPS = 4


def net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
    )


def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 4, generator=g)
    return x, x.sum(1, keepdim=True).sin()


OPTIMIZERS = {
    "depth groups + SGD": lambda m: torch.optim.SGD(
        da.optim.depth_param_groups(m, 0.1, "geometric", end=0.3, weight_decay=1e-3), momentum=0.9
    ),
    "LARS": lambda m: da.optim.LARS(
        da.optim.depth_param_groups(m, 0.5),
        momentum=0.9,
        weight_decay=1e-3,
        trust_coefficient=0.02,
        trust_by="group",
    ),
    "FeedbackSGD": lambda m: da.optim.FeedbackSGD(
        da.optim.depth_param_groups(m, 0.1), momentum=0.9
    ),
}


def train(model, opt, x, y):
    for _ in range(STEPS):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _worker(rank, world, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    x, y = batch()
    per = len(x) // world
    xs, ys = x[rank * per : (rank + 1) * per], y[rank * per : (rank + 1) * per]
    results = {}
    for name, make in OPTIMIZERS.items():
        model = net()
        ddp = DDP(model)
        train(ddp, make(model), xs, ys)
        results[name] = [p.detach().clone() for p in model.parameters()]
    if rank == 0:
        torch.save(results, out)
    end_worker()


@pytest.mark.processes
def test_ddp_two_processes_match_one_process_on_the_global_batch(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    ddp_results = torch.load(out)
    x, y = batch()
    for name, make in OPTIMIZERS.items():
        model = net()
        train(model, make(model), x, y)
        for a, b in zip(model.parameters(), ddp_results[name]):
            torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-6, msg=name)
