"""Glyphs: a 26-class image task harder than scikit-learn's digits, made from the fonts matplotlib
ships, with no download.

Each image is one of the 26 capital Latin letters in one of matplotlib's 24 fonts that draw them
(DejaVu Sans, Sans Mono and Serif in four styles each, STIX in four, and the Computer Modern
roman, bold, italic, sans, typewriter, math-italic, calligraphic and extension faces), under

* a random affine map: rotation within ±25°, scale 0.75–1.15 of the canvas, shear within ±0.3,
  a shift within ±12% of the side;
* a textured background: a colour gradient, low-frequency colour noise and stripes of a random
  direction, frequency and colour;
* a random foreground colour at least 0.3 away from the background's mean in luminance;
* 0–2 occluders (rectangles or bars of a random colour, each at most a sixth of the image);
* Gaussian pixel noise with a standard deviation drawn from [0, 0.08].

What it is: a deterministic function of ``(seed, split, size)`` (a ``torch.Generator`` per
split: the train, validation and test images are disjoint draws), balanced over classes,
normalized per channel with the training split's statistics. What it is not: natural images.
Shapes are clean vector glyphs, the nuisances are synthetic and independent of the class, and
nothing in it resembles CIFAR's or ImageNet's statistics; a method that wins here is a candidate
for natural images, not a result on them.

>>> x, y = glyph_split(0, "test", per_class=2, size=16)
>>> tuple(x.shape), int(y.max()) + 1
((52, 3, 16, 16), 26)
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CLASSES", "FONTS", "glyph_split", "glyphs"]

CLASSES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: matplotlib's fonts that draw every class (LastResortHE draws the same box for all)
FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmti10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmmi10.ttf",
    "cmsy10.ttf",
)  # fmt: skip
SPLITS = {"train": 0, "val": 1, "test": 2}
CANVAS = 64  # the masks' side before the affine map resamples them to ``size``


@functools.cache
def _masks() -> torch.Tensor:
    """Every (font, class) glyph as a coverage mask on a ``CANVAS``-square, centered by its ink
    and scaled so that its larger side spans 60% of the canvas: shape ``(fonts, classes, C, C)``."""
    import matplotlib
    from matplotlib.ft2font import FT2Font

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    out = torch.zeros(len(FONTS), len(CLASSES), CANVAS, CANVAS)
    for f, name in enumerate(FONTS):
        font = FT2Font(str(folder / name))
        for c, char in enumerate(CLASSES):
            font.set_size(48, 72)
            font.set_text(char)
            font.draw_glyphs_to_bitmap(antialiased=True)
            ink = torch.from_numpy(np.asarray(font.get_image(), dtype=np.float32) / 255.0)
            rows, cols = ink.sum(1).nonzero(), ink.sum(0).nonzero()
            ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
            side = round(0.6 * CANVAS)
            h, w = ink.shape
            h2, w2 = max(1, round(h * side / max(h, w))), max(1, round(w * side / max(h, w)))
            ink = F.interpolate(ink[None, None], (h2, w2), mode="area")[0, 0]
            top, left = (CANVAS - h2) // 2, (CANVAS - w2) // 2
            out[f, c, top : top + h2, left : left + w2] = ink
    return out


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def _placed(masks: torch.Tensor, size: int, d: float, g: torch.Generator) -> torch.Tensor:
    """Each mask under its own random affine map, resampled to ``size``: shape ``(n, 1, s, s)``;
    ``d`` (difficulty) scales the ranges."""
    n = len(masks)
    angle = _uniform(n, -25 * d, 25 * d, g) * math.pi / 180
    scale = _uniform(n, 1.15 - 0.4 * d, 1.15, g)
    shear = _uniform(n, -0.3 * d, 0.3 * d, g)
    shift = _uniform(2 * n, -0.24 * d, 0.24 * d, g).view(n, 2)  # [-1, 1] coordinates: ±12%
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotate = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    shearing = torch.eye(2).repeat(n, 1, 1)
    shearing[:, 0, 1] = shear
    forward = rotate @ shearing * scale[:, None, None]  # glyph -> image
    inverse = torch.linalg.inv(forward)  # affine_grid maps output coordinates to input ones
    theta = torch.cat([inverse, -(inverse @ shift[:, :, None])], 2)
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    return F.grid_sample(masks[:, None], grid, mode="bilinear", align_corners=False)


def _backgrounds(n: int, size: int, d: float, g: torch.Generator) -> torch.Tensor:
    """Gradient, low-frequency colour noise and stripes, each in its own colours: ``(n, 3, s,
    s)``; ``d`` (difficulty) scales the noise and the stripes."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    a, b = torch.rand(n, 3, 1, 1, generator=g), torch.rand(n, 3, 1, 1, generator=g)
    direction = _uniform(n, 0, 2 * math.pi, g)[:, None, None, None]
    ramp = (torch.cos(direction) * xs + torch.sin(direction) * ys + 1) / 2
    image = a + (b - a) * ramp
    coarse = torch.rand(n, 3, 4, 4, generator=g) - 0.5
    image = image + 0.5 * d * torch.rand(n, 1, 1, 1, generator=g) * F.interpolate(
        coarse, (size, size), mode="bicubic", align_corners=False
    )
    angle = _uniform(n, 0, math.pi, g)[:, None, None, None]
    freq = _uniform(n, 2, 7, g)[:, None, None, None]
    stripes = torch.sin(math.pi * freq * (torch.cos(angle) * xs + torch.sin(angle) * ys))
    tint = torch.rand(n, 3, 1, 1, generator=g) - 0.5
    return image + 0.35 * d * torch.rand(n, 1, 1, 1, generator=g) * stripes * tint


def _luminance(rgb: torch.Tensor) -> torch.Tensor:
    return (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).flatten(1).mean(1)


def _occlude(images: torch.Tensor, d: float, g: torch.Generator) -> torch.Tensor:
    """0-2 rectangles or bars of a random colour per image, each at most a sixth of it."""
    n, _, s, _ = images.shape
    ys, xs = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    for k in range(2):
        present = torch.rand(n, generator=g) < (0.6 if k == 0 else 0.3) * d
        h = (s * _uniform(n, 0.08, 0.4, g)).long().clamp(min=1)
        w = (s * _uniform(n, 0.08, 0.4, g)).long().clamp(min=1)
        w = torch.where(h * w > s * s // 6, (s * s // 6) // h, w).clamp(min=1)
        top = (torch.rand(n, generator=g) * (s - h + 1)).long()
        left = (torch.rand(n, generator=g) * (s - w + 1)).long()
        inside = ((ys >= top[:, None, None]) & (ys < (top + h)[:, None, None])
                  & (xs >= left[:, None, None]) & (xs < (left + w)[:, None, None]))  # fmt: skip
        mask = (inside & present[:, None, None])[:, None].float()
        colour = torch.rand(n, 3, 1, 1, generator=g)
        images = images * (1 - mask) + colour * mask
    return images


def glyph_split(seed: int, split: str, *, per_class: int, size: int = 32, difficulty=1.0):
    """``(images, labels)`` of one split: ``per_class`` images of each class, shuffled, in
    ``[0, 1]`` (not normalized), shape ``(26 * per_class, 3, size, size)``. A deterministic
    function of its arguments; ``split`` is ``"train"``, ``"val"`` or ``"test"``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}; got {split!r}")
    if per_class < 1 or size < 8:
        raise ValueError(f"need per_class >= 1 and size >= 8; got {per_class}, {size}")
    g = torch.Generator().manual_seed(1_000_003 * seed + SPLITS[split])
    n = per_class * len(CLASSES)
    labels = torch.arange(len(CLASSES)).repeat(per_class)[torch.randperm(n, generator=g)]
    fonts = torch.randint(len(FONTS), (n,), generator=g)
    d = float(difficulty)
    alpha = _placed(_masks()[fonts, labels], size, d, g).clamp(0, 1)
    background = _backgrounds(n, size, d, g).clamp(0, 1)
    base = _luminance(background)
    fg = torch.rand(n, 3, generator=g)
    lum = _luminance(fg[:, :, None, None])
    # at least 0.3 of luminance from the background's mean: shift the colour away from it
    gap = torch.where(lum >= base, 1.0, -1.0) * (0.3 - (lum - base).abs()).clamp(min=0)
    fg = (fg + gap[:, None]).clamp(0, 1)[:, :, None, None]
    images = background * (1 - alpha) + fg * alpha
    images = _occlude(images, d, g)
    sigma = _uniform(n, 0, 0.08 * d, g)[:, None, None, None]
    images = images + sigma * torch.randn(images.shape, generator=g)
    return images.clamp(0, 1), labels


def glyphs(seed: int, *, per_class: tuple[int, int, int] = (300, 60, 60), size: int = 32,
           difficulty: float = 1.0, cache: str | os.PathLike | None = None):  # fmt: skip
    """Train, validation and test splits, normalized with the training split's per-channel mean
    and standard deviation: ``(x, y, x_val, y_val, x_test, y_test)``.

    ``cache``: a folder where the splits are kept (``glyphs-<seed>-<size>-<counts>.pt``, written
    atomically) and read back by the next run (the default, ``$DEPTHAWARE_CACHE`` or none,
    generates them anew: about a second per thousand images on one core)."""
    from .._io import atomic_open

    cache = cache if cache is not None else os.environ.get("DEPTHAWARE_CACHE")
    path = None
    if cache is not None:
        counts = "-".join(map(str, per_class))
        path = Path(cache) / f"glyphs-{seed}-{size}-{counts}-{difficulty:g}.pt"
        if path.is_file():
            return tuple(torch.load(path, weights_only=True))
    splits = [
        glyph_split(seed, s, per_class=k, size=size, difficulty=difficulty)
        for s, k in zip(SPLITS, per_class)
    ]
    mean = splits[0][0].mean((0, 2, 3), keepdim=True)
    std = splits[0][0].std((0, 2, 3), keepdim=True)
    out = tuple(t for x, y in splits for t in ((x - mean) / std, y))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as f:
            torch.save(list(out), f)
    return out
