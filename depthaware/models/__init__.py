"""Architectures from the paper. Importing registers the width-graded ViTs with timm."""

from .cnn import (
    CifarResNet,
    CifarVGG,
    cifar_resnet18,
    cifar_resnet50,
    cifar_vgg19,
    resnet50,
    vgg19,
)
from .counts import describe
from .fcnn import FCNN, ResidualFCNN
from .vit import GRADES, WidthGrade, WidthGradedViT, width_graded_vit

__all__ = [
    "FCNN",
    "GRADES",
    "CifarResNet",
    "CifarVGG",
    "ResidualFCNN",
    "WidthGrade",
    "WidthGradedViT",
    "cifar_resnet18",
    "cifar_resnet50",
    "cifar_vgg19",
    "describe",
    "resnet50",
    "vgg19",
    "width_graded_vit",
]
