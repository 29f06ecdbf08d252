"""Overhead of the gradient-predictiveness monitor on training steps of a CIFAR-sized ResNet-18
(batch 32, 6 layers): 10 steps without it, with it every 10 steps, and every step."""

import pytest
import torch
from conftest import device, synchronized

import depthaware as da


@pytest.mark.parametrize("every", [None, 10, 1], ids=["none", "k=10", "k=1"])
def test_steps_with_predictiveness_monitor(benchmark, every):
    dev = device()
    torch.manual_seed(0)
    model = da.models.cifar_resnet18(num_classes=10).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = torch.nn.functional.cross_entropy
    batch = (torch.randn(32, 3, 32, 32, device=dev), torch.randint(0, 10, (32,), device=dev))
    other = (torch.randn(32, 3, 32, 32, device=dev), torch.randint(0, 10, (32,), device=dev))
    monitor = every and da.measure.PredictivenessMonitor(model, loss, opt, every=every)

    @synchronized
    def steps(n=10):
        for _ in range(n):
            if monitor:
                monitor.update(batch, other)
            opt.zero_grad(set_to_none=True)
            loss(model(batch[0]), batch[1]).backward()
            opt.step()

    benchmark.pedantic(steps, rounds=3, warmup_rounds=1)
