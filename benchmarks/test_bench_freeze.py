"""Wall time of training steps with the shallowest half of the layers frozen vs none
(CIFAR-sized ResNet-18, batch 64). Target (issue): freezing half the layers saves >= 25%."""

import pytest
import torch
from conftest import device, synchronized

import depthaware as da


@pytest.mark.parametrize("frozen", [0, 3], ids=["none", "stem+stage1+stage2"])
def test_epoch_with_frozen_prefix(benchmark, frozen):
    dev = device()
    torch.manual_seed(0)
    model = da.models.cifar_resnet18(num_classes=10).to(dev)
    layers = da.layer_groups(model)  # stem, stage1..4, fc: 6 layers
    opt = torch.optim.SGD(da.optim.depth_param_groups(layers, 0.05), momentum=0.9)
    for name in layers.names[:frozen]:
        da.freeze.freeze_layer(opt, layers, name)
    x = torch.randn(64, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (64,), device=dev)

    @synchronized
    def epoch(steps=3):
        model.train()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    benchmark.pedantic(epoch, rounds=5, warmup_rounds=1)
