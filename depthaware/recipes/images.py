"""One image-classification run (CNN or width-graded ViT) with its measurements, JSON-ready.

The recipes are the paper's (Appendix A.1) at the chosen scale:

* CNNs on CIFAR-sized data: SGD with momentum 0.9, LR 0.01 with cosine decay, batch 128, weight
  decay 1e-4, 100 epochs (:func:`cnn_config`);
* ViTs: Adam (decoupled weight decay 1e-4), peak LR 3e-4 after a linear warm-up, cosine decay,
  batch 256, 200 epochs (:func:`vit_config`). On the default digits (8×8) the ViT recipe that
  trains a ``vit_wg_*_small`` to convergence is AdamW, peak LR 5e-4, weight decay 0.05, 5 warm-up
  epochs, batch 64, 40 epochs: the paper's constants leave it on a loss plateau.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import timm
import torch
from torch import nn

from ..layers import layer_groups
from ..measure import Trajectory, convergence
from ..measure.distances import resketched
from ..models import cifar_resnet18, cifar_vgg19
from .data import load_images
from .glyphs import glyphs
from .loop import DIVERGE_FACTOR, train
from .results import ImageResult, check_extras
from .sine import RESKETCHES, SKETCH_K

__all__ = ["EXTRAS", "GlyphConfig", "ImageConfig", "cnn_config", "image_run", "vit_config"]

#: what an image run can measure besides its curves (:func:`image_run`)
EXTRAS = ("sketch", "resketch")


@dataclass(frozen=True)
class ImageConfig:
    model: str  # "resnet18", "vgg19" (CIFAR-sized) or a timm name (the vit_wg_* models)
    data_dir: str | None = None  # None: scikit-learn's digits
    width: int = 64  # CNNs' first-stage channels
    patch_size: int = 4  # ViTs
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "sgd"  # "sgd" or "adamw"
    lr: float = 0.01
    weight_decay: float = 1e-4
    warmup_epochs: int = 0

    def images(self, seed: int):
        """``(x, y, x_test, y_test, source)``: the digits split by ``seed``, or ``data_dir``'s."""
        return load_images(self.data_dir, seed)


@dataclass(frozen=True)
class GlyphConfig(ImageConfig):
    """An image run on the glyph task (:func:`~depthaware.recipes.glyphs.glyphs`, data seed 0:
    a run's seed changes the initialization and the batch order, not the images): a proxy for
    natural images, harder than the digits, generated with no download. It trains on the
    training split and scores on the test split; the validation split is not read."""

    per_class: tuple[int, int, int] = (120, 40, 40)
    size: int = 32
    difficulty: float = 0.3

    def images(self, seed: int):
        x, y, _, _, xt, yt = glyphs(
            0, per_class=self.per_class, size=self.size, difficulty=self.difficulty
        )
        return x, y, xt, yt, f"glyphs ({self.size} px, difficulty {self.difficulty:g}; a proxy)"


def cnn_config(model: str, scale, data_dir=None) -> ImageConfig:
    """Appendix A.1's CIFAR recipe; width 64 with data at the paper's scale, else 16 (a CPU's)."""
    width = 64 if data_dir is not None and scale.name == "paper" else 16
    return ImageConfig(model, data_dir, width=width, epochs=scale.epochs(100))


def vit_config(model: str, scale, data_dir=None) -> ImageConfig:
    """Appendix A.1's ViT recipe with data (``model`` of the paper's size at the paper's scale),
    the converging digits recipe without (module docstring)."""
    if data_dir is None:
        return ImageConfig(
            f"{model}_small",
            None,
            patch_size=2,
            epochs=scale.epochs(40),
            batch_size=64,
            optimizer="adamw",
            lr=5e-4,
            weight_decay=0.05,
            warmup_epochs=scale.at(5),
        )
    name = model if scale.name == "paper" else f"{model}_small"
    epochs = scale.epochs(200)
    return ImageConfig(
        name,
        data_dir,
        epochs=epochs,
        batch_size=256,
        optimizer="adamw",
        lr=3e-4,
        weight_decay=1e-4,
        warmup_epochs=max(1, round(epochs / 20)),
    )


def _build(config: ImageConfig, x: torch.Tensor, classes: int) -> nn.Module:
    if config.model == "resnet18":
        return cifar_resnet18(num_classes=classes, in_chans=x.shape[1], width=config.width)
    if config.model == "vgg19":  # torchvision's VGG layers take RGB
        return cifar_vgg19(num_classes=classes, width=config.width)
    return timm.create_model(
        config.model,
        num_classes=classes,
        img_size=x.shape[-1],
        patch_size=config.patch_size,
        in_chans=x.shape[1],
    )


def _schedule(opt, config: ImageConfig, steps_per_epoch: int):
    """Linear warm-up over ``warmup_epochs``, then cosine to zero, stepped every batch."""
    total, warm = config.epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch

    def factor(t: int) -> float:
        if t < warm:
            return (t + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (t - warm) / max(1, total - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    model.eval()
    hits = sum((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
               for i in range(0, len(x), batch))  # fmt: skip
    return 100.0 * hits / len(x)


def image_run(config: ImageConfig, seed: int, extras=()) -> ImageResult:
    """Train ``config`` from ``seed``; returns the per-layer distance curves (a snapshot per
    epoch, as :func:`~depthaware.recipes.sine.sine_run`), the training loss per epoch, the final
    train and test accuracy and the training's wall time (``train_seconds``: what it cost). A
    model the data's image size cannot take (VGG-19's five poolings need 32 px) says why
    (``unsupported``) and has nothing else. ``extras`` (of :data:`EXTRAS`): ``sketch``, the
    distances of the same run from a CountSketch trajectory (:data:`~.sine.SKETCH_K` numbers per
    layer larger than that, sketch seed 0, snapshots beside the exact ones), as
    :func:`~depthaware.recipes.sine.sine_run`'s; ``resketch``, the exact snapshots sketched anew
    with each of :data:`~depthaware.recipes.sine.RESKETCHES` sketch seeds."""
    extras = check_extras(extras, EXTRAS)
    x, y, xt, yt, source = config.images(seed)
    classes = int(y.max()) + 1
    given = {"config": asdict(config), "seed": seed, "extras": extras, "data": source}
    if config.model == "vgg19" and (x.shape[-1] < 32 or x.shape[1] != 3):
        return ImageResult(**given, unsupported=f"VGG-19's five poolings need 32 px RGB images; "
                           f"{source} has {x.shape[1]}×{x.shape[-1]}×{x.shape[-1]}")  # fmt: skip
    torch.manual_seed(seed)
    model = _build(config, x, classes)
    opt: torch.optim.Optimizer
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(
            model.parameters(), config.lr, momentum=0.9, weight_decay=config.weight_decay
        )
    else:
        opt = torch.optim.AdamW(model.parameters(), config.lr, weight_decay=config.weight_decay)
    sched = _schedule(opt, config, math.ceil(len(x) / config.batch_size))
    trajectories = [Trajectory(layer_groups(model), unit="epoch")]
    if "sketch" in extras:
        trajectories.append(Trajectory(layer_groups(model), sketch=SKETCH_K, unit="epoch"))

    def snapshot(epoch: int, *_) -> None:
        for traj in trajectories:
            traj.snapshot(epoch)

    snapshot(0)
    start = time.perf_counter()
    try:
        losses = train(
            model,
            opt,
            x,
            y,
            epochs=config.epochs,
            batch_size=config.batch_size,
            loss_fn=nn.functional.cross_entropy,
            seed=seed + 1,
            after_step=sched.step,
            after_epoch=snapshot,
            diverge_factor=DIVERGE_FACTOR,
        )
    except FloatingPointError as err:
        return ImageResult(**given, diverged=str(err))
    seconds = time.perf_counter() - start
    return ImageResult(
        **given,
        report=convergence(trajectories[0]),
        sketch=convergence(trajectories[1]) if "sketch" in extras else None,
        resketch=[resketched(trajectories[0], SKETCH_K, s) for s in range(RESKETCHES)]
        if "resketch" in extras
        else None,
        train_seconds=seconds,
        train_loss=losses,
        train_accuracy=accuracy(model, x, y),
        test_accuracy=accuracy(model, xt, yt),
    )
