"""Width-graded Vision Transformers (Section 6.1, Figure 9, Appendix A.7), on timm's ViT.

The paper builds three 12-encoder ViTs of basic width 256 that differ only in where the wide
encoders sit: widths ``W`` for groups of ``N`` consecutive encoders,

* deeper encoders wider:    ``W = (2, 4, 8), N = (6, 3, 3)``
* vanilla:                  ``W = (4, 4, 4), N = (4, 4, 4)``
* deeper encoders narrower: ``W = (8, 4, 2), N = (3, 3, 6)``

We read an encoder's *width* as its MLP expansion ratio ``r`` (hidden size ``r·d``). An encoder of
embedding width ``d`` then holds :math:`(4 + 2r)\\,d^2` weights (attention ``4d^2``, MLP ``2rd^2``),
so a model holds :math:`d^2 \\sum_i (4 + 2 r_i)` and the three variants, whose ratios sum to 48
each, have the same parameter count (biases included: 9,982,184 at 1000 classes, 224 px, patch 16).

The models are timm's ``VisionTransformer`` with timm's ``Block`` (a ``block_fn`` that hands each
encoder its ratio), registered with ``@register_model``:

>>> import timm, depthaware
>>> m = timm.create_model("vit_wg_deeper_wider_small", num_classes=10, img_size=32, patch_size=4)
>>> [b.mlp.fc1.out_features // m.embed_dim for b in m.blocks]
[2, 2, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

__all__ = ["GRADES", "WidthGrade", "WidthGradedViT", "width_graded_vit"]


@dataclass(frozen=True)
class WidthGrade:
    """MLP ratios ``widths`` for groups of ``counts`` consecutive encoders."""

    widths: tuple[float, ...]
    counts: tuple[int, ...]

    def __post_init__(self):
        if len(self.widths) != len(self.counts) or not self.widths:
            raise ValueError(
                f"widths {self.widths} and counts {self.counts} must be non-empty, of equal length"
            )
        bad_w = [w for w in self.widths if not w > 0]
        bad_n = [n for n in self.counts if int(n) != n or n <= 0]
        if bad_w or bad_n:
            raise ValueError(
                f"widths must be > 0 and counts positive integers; bad widths {bad_w}, "
                f"bad counts {bad_n}"
            )

    @property
    def depth(self) -> int:
        return int(sum(self.counts))

    def ratios(self) -> list[float]:
        """The MLP ratio of every encoder, shallowest first."""
        return [w for w, n in zip(self.widths, self.counts) for _ in range(int(n))]


GRADES = {
    "deeper_wider": WidthGrade((2, 4, 8), (6, 3, 3)),
    "vanilla": WidthGrade((4, 4, 4), (4, 4, 4)),
    "deeper_narrower": WidthGrade((8, 4, 2), (3, 3, 6)),
}
#: the two sizes: the paper's (basic width 256, ImageNet's 224 px in patches of 16) and a
#: CPU-sized one (embed dim 64, CIFAR's 32 px in patches of 4)
SIZES = {
    "": dict(embed_dim=256, num_heads=8, img_size=224, patch_size=16),
    "_small": dict(embed_dim=64, num_heads=4, img_size=32, patch_size=4),
}


class WidthGradedViT(VisionTransformer):
    """timm's ``VisionTransformer`` whose encoders have per-encoder MLP ratios.

    Everything else (patch embedding, attention, heads, ``forward_features``,
    ``reset_classifier``, ``group_matcher``, ``no_weight_decay``) is timm's, and its layers are
    those :func:`depthaware.layer_groups` gives every timm ViT: ``Patch Embedding``,
    ``Encoder Block 1..N``, ``Head`` (the paper's names, Appendix A.7).
    """

    pretrained_cfg: dict[str, Any]  # timm's data config, set by its builder
    default_cfg: dict[str, Any]

    def __init__(self, grade: WidthGrade, **kwargs: Any):
        depth = kwargs.pop("depth", grade.depth)
        if depth != grade.depth:
            raise ValueError(f"counts {grade.counts} give {grade.depth} encoders, depth is {depth}")
        ratios = grade.ratios()

        def block_fn(*, mlp_ratio: float, depth: int, **block_kwargs: Any) -> Block:
            return Block(mlp_ratio=ratios[depth], depth=depth, **block_kwargs)  # depth: its index

        kwargs.pop("mlp_ratio", None)
        # timm calls block_fn(**kwargs) for each block: a factory serves as well as a class
        super().__init__(depth=depth, block_fn=cast(type[nn.Module], block_fn), **kwargs)
        self.grade = grade


def width_graded_vit(
    widths: Sequence[float],
    counts: Sequence[int],
    *,
    embed_dim: int = 256,
    num_heads: int = 8,
    img_size: int = 224,
    patch_size: int = 16,
    num_classes: int = 1000,
    **kwargs: Any,
) -> WidthGradedViT:
    """A ViT with custom grades, e.g. ``width_graded_vit((1, 3, 6), (4, 4, 4), embed_dim=128)``.

    Args:
        widths: MLP expansion ratio of each group of encoders (each > 0).
        counts: number of encoders in each group; ``sum(counts)`` is the depth.
        embed_dim, num_heads, img_size, patch_size, num_classes: as timm's ``VisionTransformer``.
        **kwargs: anything else timm's ``VisionTransformer`` takes (``drop_path_rate``, ...).
    """
    grade = WidthGrade(tuple(widths), tuple(counts))
    model = WidthGradedViT(
        grade,
        embed_dim=embed_dim,
        num_heads=num_heads,
        img_size=img_size,
        patch_size=patch_size,
        num_classes=num_classes,
        **kwargs,
    )
    return _fit_data_cfg(model, _data_cfg(""))


def _data_cfg(size: str) -> dict:
    """timm's pretrained (data) config of a variant: no weights, the size's input resolution."""
    img = SIZES[size]["img_size"]
    return dict(
        url="",
        num_classes=1000,
        input_size=(3, img, img),
        pool_size=None,
        crop_pct=1.0,
        interpolation="bicubic",
        fixed_input_size=True,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        first_conv="patch_embed.proj",
        classifier="head",
    )


#: read by timm's register_model: the registry's data config of every variant
default_cfgs = generate_default_cfgs(
    {f"vit_wg_{grade}{size}": _data_cfg(size) for grade in GRADES for size in SIZES}
)


def _create(variant: str, grade: str, size: str, pretrained: bool, **kwargs: Any) -> WidthGradedViT:
    """timm's builder; the model's data config then follows the input it was built for (timm's
    own ViTs keep the registry's 224 px there, whatever ``img_size`` says)."""
    if pretrained:
        raise ValueError(f"{variant} has no pretrained weights; use pretrained=False")
    model = build_model_with_cfg(
        WidthGradedViT, variant, pretrained=False, grade=GRADES[grade], **{**SIZES[size], **kwargs}
    )
    return _fit_data_cfg(model, model.pretrained_cfg)


def _fit_data_cfg(model: WidthGradedViT, cfg: dict) -> WidthGradedViT:
    """Set ``cfg`` as the model's data config, its input size and channels as built."""
    chans = model.patch_embed.proj.in_channels
    model.pretrained_cfg = model.default_cfg = {
        **cfg,
        "input_size": (chans, *model.patch_embed.img_size),
        "num_classes": model.num_classes,
        "mean": (0.5,) * chans,
        "std": (0.5,) * chans,
    }
    return model


@register_model
def vit_wg_deeper_wider(pretrained: bool = False, **kwargs: Any) -> WidthGradedViT:
    """Deeper encoders wider, W=(2,4,8), N=(6,3,3), embed dim 256 (the paper's best, 80.75%)."""
    return _create("vit_wg_deeper_wider", "deeper_wider", "", pretrained, **kwargs)


@register_model
def vit_wg_vanilla(pretrained: bool = False, **kwargs: Any) -> WidthGradedViT:
    """Uniform encoders, W=(4,4,4), N=(4,4,4), embed dim 256 (paper: 78.88%)."""
    return _create("vit_wg_vanilla", "vanilla", "", pretrained, **kwargs)


@register_model
def vit_wg_deeper_narrower(pretrained: bool = False, **kwargs: Any) -> WidthGradedViT:
    """Deeper encoders narrower, W=(8,4,2), N=(3,3,6), embed dim 256 (paper: 75.75%)."""
    return _create("vit_wg_deeper_narrower", "deeper_narrower", "", pretrained, **kwargs)


@register_model
def vit_wg_deeper_wider_small(pretrained: bool = False, **kwargs: Any) -> WidthGradedViT:
    """Deeper encoders wider at embed dim 64, 4 heads, 32 px in patches of 4 (CPU-sized)."""
    return _create("vit_wg_deeper_wider_small", "deeper_wider", "_small", pretrained, **kwargs)


@register_model
def vit_wg_vanilla_small(pretrained: bool = False, **kwargs: Any) -> WidthGradedViT:
    """Uniform encoders at embed dim 64, 4 heads, 32 px in patches of 4 (CPU-sized)."""
    return _create("vit_wg_vanilla_small", "vanilla", "_small", pretrained, **kwargs)


@register_model
def vit_wg_deeper_narrower_small(pretrained: bool = False, **kwargs: Any) -> WidthGradedViT:
    """Deeper encoders narrower at embed dim 64, 4 heads, 32 px in patches of 4 (CPU-sized)."""
    return _create(
        "vit_wg_deeper_narrower_small", "deeper_narrower", "_small", pretrained, **kwargs
    )
