"""The cost of one Trajectory snapshot and of a convergence report for a resnet18-sized model,
next to one training step of that model (CIFAR-sized input, batch 32)."""

import pytest
import torch
import torchvision
from conftest import synchronized

import depthaware as da

SNAPSHOTS = 5


@pytest.fixture(scope="module")
def setup():
    from conftest import device

    dev = device()
    model = torchvision.models.resnet18(num_classes=10).to(dev)
    layers = da.layer_groups(model, granularity="fine")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(32, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (32,), device=dev)
    return model, layers, opt, x, y


def test_train_step(benchmark, setup):
    model, _, opt, x, y = setup

    @synchronized
    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    benchmark.pedantic(step, rounds=10, warmup_rounds=2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_snapshot_memory(benchmark, setup, dtype):
    _, layers, *_ = setup
    traj = da.measure.Trajectory(layers, dtype=dtype)
    steps = iter(range(10**6))
    benchmark.pedantic(synchronized(lambda: traj.snapshot(next(steps))), rounds=10)


def test_snapshot_disk(benchmark, setup, tmp_path):
    _, layers, *_ = setup
    traj = da.measure.Trajectory(layers, tmp_path)
    steps = iter(range(10**6))
    benchmark.pedantic(lambda: traj.snapshot(next(steps)), rounds=5)


def test_convergence_report(benchmark, setup):
    model, layers, *_ = setup
    traj = da.measure.Trajectory(layers)
    for step in range(SNAPSHOTS):
        traj.snapshot(step)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.99)
    benchmark.pedantic(lambda: da.measure.convergence(traj).table([(0, 2)]), rounds=3)
