"""A 21x21 landscape of one layer of a CIFAR-sized ResNet-18 (width 16, 64 images): ours (prefix
cache, affine-chain basis, vmap) vs the copy-perturb-forward loop. Targets (issue): >= 100x
faster for ``layer4.1.conv2``, >= 1.2x for ``layer1.0.conv1``."""

import pytest
import torch
import torch.nn.functional as F
from conftest import device, synchronized

import depthaware as da
from depthaware.measure.landscapes import landscape


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    dev = device()
    net = da.models.cifar_resnet18(num_classes=10, width=16).to(dev).eval()
    return net, torch.randn(64, 3, 32, 32, device=dev), torch.randint(0, 10, (64,), device=dev)


@pytest.mark.parametrize("method", ["auto", "loop"])
@pytest.mark.parametrize("layer", ["layer4.1.conv2", "layer1.0.conv1"])
def test_landscape_grid(benchmark, setup, layer, method):
    net, x, y = setup

    @synchronized
    def grid():
        g = torch.Generator().manual_seed(0)
        return landscape(net, layer, F.cross_entropy, x, y, steps=21, method=method, generator=g)

    benchmark.pedantic(grid, rounds=1, warmup_rounds=0)
