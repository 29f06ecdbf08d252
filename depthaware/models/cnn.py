"""The paper's CNNs (Section 3.2): ResNet-50 and VGG-19, plus CIFAR-sized variants for CPU runs.

The ImageNet models are torchvision's (``weights=None``: nothing is downloaded). The CIFAR-sized
variants are torchvision's ``ResNet``/``VGG`` classes with a 3×3 stride-1 stem and no max-pool
(ResNet) or a global-pool classifier (VGG), and a base ``width`` so that a CPU can train them.

Their layers are what :func:`depthaware.layer_groups` finds for torchvision's classes: ResNet
``stem, stage1..stage4, fc`` (the paper's "first conv and four stages"; ``granularity="fine"``
gives one layer per block) and VGG ``layer1..layer19`` (the paper's VGG-19 numbering).

>>> import torch, depthaware as da
>>> net = da.models.cifar_resnet18(num_classes=10, width=16)
>>> net(torch.randn(2, 3, 32, 32)).shape, da.layer_groups(net).names
(torch.Size([2, 10]), ['stem', 'stage1', 'stage2', 'stage3', 'stage4', 'fc'])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torchvision.models as tvm
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.vgg import cfgs, make_layers

__all__ = [
    "CifarResNet",
    "CifarVGG",
    "cifar_resnet18",
    "cifar_resnet50",
    "cifar_vgg19",
    "resnet50",
    "vgg19",
]


def resnet50(num_classes: int = 1000, **kwargs: Any) -> tvm.ResNet:
    """torchvision's ResNet-50 (25.6M parameters at 1000 classes), randomly initialised."""
    return tvm.resnet50(weights=None, num_classes=num_classes, **kwargs)


def vgg19(num_classes: int = 1000, batch_norm: bool = False, **kwargs: Any) -> tvm.VGG:
    """torchvision's VGG-19 (143.7M parameters at 1000 classes), randomly initialised."""
    build = tvm.vgg19_bn if batch_norm else tvm.vgg19
    return build(weights=None, num_classes=num_classes, **kwargs)


def _check_width(width: int) -> None:
    if int(width) != width or width <= 0:
        raise ValueError(f"width must be a positive integer; got {width}")


class CifarResNet(tvm.ResNet):
    """torchvision's ResNet for small images: 3×3 stride-1 stem, no max-pool, base ``width``.

    Args:
        block: torchvision's ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` (ResNet-18) or ``(3, 4, 6, 3)`` (-50).
        num_classes, in_chans: output classes, input channels.
        width: channels of the first stage (64 in the paper's networks); stage ``s`` has
            ``width·2^(s-1)`` (times the block's expansion).
        norm_layer: normalization factory, default ``nn.BatchNorm2d``.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        width: int = 64,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ):
        _check_width(width)
        if len(layers) != 4 or min(layers) <= 0:
            raise ValueError(f"layers must be four positive block counts; got {layers}")
        nn.Module.__init__(self)
        # the attributes torchvision's ResNet._make_layer reads
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = nn.Conv2d(in_chans, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = self._norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm) and m.weight is not None:
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


class CifarVGG(tvm.VGG):
    """torchvision's VGG for 32×32 images: convolutions of ``cfg`` scaled to ``width``, then a
    global average pool and three linear layers of ``8·width`` units (16 + 3 = 19 layers for
    VGG-19).
    """

    def __init__(
        self,
        cfg: str = "E",
        *,
        num_classes: int = 10,
        width: int = 64,
        batch_norm: bool = False,
        dropout: float = 0.5,
    ):
        _check_width(width)
        if cfg not in cfgs:
            raise ValueError(f"unknown VGG config {cfg!r}; torchvision has {sorted(cfgs)}")
        nn.Module.__init__(self)
        scaled = [v if v == "M" else v * width // 64 for v in cfgs[cfg]]
        self.features = make_layers(scaled, batch_norm=batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        hidden = 8 * width
        self.classifier = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)


def cifar_resnet18(num_classes: int = 10, **kwargs: Any) -> CifarResNet:
    return CifarResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, **kwargs)


def cifar_resnet50(num_classes: int = 10, **kwargs: Any) -> CifarResNet:
    return CifarResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, **kwargs)


def cifar_vgg19(num_classes: int = 10, **kwargs: Any) -> CifarVGG:
    return CifarVGG("E", num_classes=num_classes, **kwargs)
