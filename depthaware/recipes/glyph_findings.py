"""The paper's image findings on the glyph proxy (:mod:`.glyphs`): separate lines, marked as a
proxy, each with the paper's sentence and pass rule unchanged (:mod:`.image_findings`), the runs
on 32-px glyphs instead of CIFAR/ImageNet. What holds here is a candidate for natural images,
not a result on them; the paper's data stays *not tested* without ``--data-dir``.
"""

from __future__ import annotations

from dataclasses import asdict, replace

from .findings import Finding
from .image_findings import CNN_CLAIMS, VIT_CLAIM, VITS, cnn_verdicts, vit_verdict
from .images import GlyphConfig, vit_config
from .runs import RunSpec

__all__ = ["FINDINGS"]

#: the glyph proxy's set-up, said in every proxy claim's quantity
PROXY = (
    "PROXY, not the paper's data: the glyphs of depthaware.recipes.glyphs (32 px RGB, 26 "
    "classes, 120 training and 40 test images a class, difficulty 0.3, data seed 0)"
)


def glyph_cnn_config(model: str, scale) -> GlyphConfig:
    """Appendix A.1's CIFAR recipe on the glyph proxy, at width 8 (the CPU budget: a ResNet-18
    run of 100 epochs took 7.5 minutes on one core, a VGG-19 run 3.5, a small ViT run 3)."""
    return GlyphConfig(model, width=8, epochs=scale.epochs(100))


def glyph_vit_config(model: str, scale) -> GlyphConfig:
    """The digits' converging ViT recipe (:func:`~depthaware.recipes.images.vit_config`) on the
    glyph proxy, with 8-px patches (16 tokens, as the digits' 2-px patches give)."""
    return GlyphConfig(**{**asdict(vit_config(model, scale)), "patch_size": 8})


GLYPH_CNN_CLAIMS = (
    replace(
        CNN_CLAIMS[0],
        key="cnn-resnet-glyphs",
        quantity=f"{PROXY}: C[0,20] of the stem and stages 1-4 of a CIFAR-style ResNet-18 of "
        "width 8 (Appendix A.1's recipe for CIFAR: SGD, LR 0.01 cosine, 100 epochs); θ* = the "
        "last epoch",
    ),
    replace(
        CNN_CLAIMS[1],
        key="cnn-vgg-glyphs",
        quantity=f"{PROXY}: C[0,20] of a CIFAR-style VGG-19 of width 8, layers 1, 5, 9, 13, 17 "
        "(the same recipe)",
    ),
)
GLYPH_VIT_CLAIM = replace(
    VIT_CLAIM,
    key="vit-width-glyphs",
    quantity=f"{PROXY}: test accuracy of deeper-wider, vanilla and deeper-narrower small ViTs "
    "(equal parameters; the digits' converging recipe: AdamW, peak LR 5e-4, weight decay 0.05, "
    "5 warm-up epochs, batch 64, 40 epochs; 8-px patches)",
)


def glyph_cnn_plan(scale, seeds, data_dir=None):
    return [
        RunSpec("image", glyph_cnn_config(m, scale), s) for m in ("resnet18", "vgg19")
        for s in range(seeds)
    ]  # fmt: skip


def glyph_vit_plan(scale, seeds, data_dir=None):
    return [RunSpec("image", glyph_vit_config(m, scale), s) for m in VITS for s in range(seeds)]


FINDINGS = [
    Finding(
        "cnn-bias-glyphs",
        "3.2, A.4, Fig. 2",
        "proxy: the bias in a ResNet-18 and a VGG-19 trained on the glyphs",
        GLYPH_CNN_CLAIMS,
        glyph_cnn_plan,
        lambda ctx: cnn_verdicts(ctx, GLYPH_CNN_CLAIMS, glyph_cnn_config)[0],
    ),
    Finding(
        "vit-width-glyphs",
        "6.1, Fig. 9",
        "proxy: the width-graded ViTs on the glyphs",
        (GLYPH_VIT_CLAIM,),
        glyph_vit_plan,
        lambda ctx: [vit_verdict(ctx, GLYPH_VIT_CLAIM, glyph_vit_config)],
    ),
]
