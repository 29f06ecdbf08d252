"""Sections (2)-(5) of `depthaware bench`: what the measurements and freezing cost or save."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from .. import freeze, measure, models, optim
from ..layers import layer_groups
from ..measure.landscapes import landscape
from .timing import Row, compared, median_time, median_times

__all__ = ["freezing_rows", "landscape_rows", "memory_rows", "overhead_rows"]


def overhead_rows(dev, quick: bool) -> Iterator[Row]:
    """Section (2): the measurements' cost as a share of training a CIFAR ResNet-18, batch 128."""
    torch.manual_seed(0)
    model = models.cifar_resnet18(num_classes=10).to(dev)
    layers = layer_groups(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = torch.nn.functional.cross_entropy
    batch = (torch.randn(128, 3, 32, 32, device=dev), torch.randint(0, 10, (128,), device=dev))
    other = (torch.randn(128, 3, 32, 32, device=dev), torch.randint(0, 10, (128,), device=dev))

    def step():
        opt.zero_grad(set_to_none=True)
        loss(model(batch[0]), batch[1]).backward()
        opt.step()

    rounds = 3 if quick else 7
    t_step = median_time(step, rounds)
    epoch = t_step * 391  # CIFAR-10: 50,000 images at batch 128
    yield Row("train step, CIFAR ResNet-18, batch 128", t_step)
    traj = measure.Trajectory(layers)
    t_mem = median_time(lambda: traj.snapshot(len(traj)), rounds)
    with tempfile.TemporaryDirectory() as d:
        disk = measure.Trajectory(layers, d)
        t_disk = median_time(lambda: disk.snapshot(len(disk)), rounds)
    grads = measure.GradMagnitude(layers)
    step()
    t_grad = median_time(grads.update, rounds)
    t_pred = median_time(lambda: measure.predictiveness(model, loss, opt, batch, other), 1, 0)
    fb = optim.FeedbackSGD(optim.depth_param_groups(layers, 0.01), momentum=0.9)
    sgd = torch.optim.SGD(optim.depth_param_groups(layers, 0.01), momentum=0.9)
    t = median_times({"fb": fb.step, "sgd": sgd.step}, rounds, 2)
    t_fb, t_sgd = t["fb"], t["sgd"]
    share = "share of an epoch (391 steps)"
    rows = [
        compared("snapshot per epoch, memory", t_mem, share, epoch, "<= 0.02", 0.02),
        compared("snapshot per epoch, disk", t_disk, share, epoch, "<= 0.02", 0.02),
        compared("GradMagnitude.update every step", t_grad, "train step", t_step, None, 1),
        compared(
            "gradient monitor, one measurement (L + 2 passes)",
            t_pred,
            "train step",
            t_step,
            None,
            1,
        ),
        Row(
            "gradient monitor: measuring every k steps costs <= 5% of training",
            math.ceil(t_pred / t_step / 0.05),
            "train step",
            t_pred / t_step / math.ceil(t_pred / t_step / 0.05),
            unit="steps",
        ),
        compared(
            "feedback signal (FeedbackSGD - SGD step)", t_fb - t_sgd, "train step", t_step, None, 1
        ),
    ]
    for row in rows:
        if row.target is None:
            row.met = None
        yield row


def landscape_rows(dev, quick: bool) -> Iterator[Row]:
    """Section (3): batched landscape grids against the copy-perturb-forward loop."""
    torch.manual_seed(0)
    net = models.cifar_resnet18(num_classes=10, width=16).to(dev).eval()
    x = torch.randn(64, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (64,), device=dev)
    steps = 11 if quick else 21
    for layer, limit in (("layer4.1.conv2", 100.0), ("layer1.0.conv1", 1.2)):
        times = {}
        # ours: median of 3 after a warm-up call; the loop (441 forwards, seconds): one call
        for method, rounds, warmup in (("auto", 3, 1), ("loop", 1, 0)):
            times[method] = median_time(
                lambda m=method, layer=layer: landscape(
                    net,
                    layer,
                    torch.nn.functional.cross_entropy,
                    x,
                    y,
                    steps=steps,
                    method=m,
                    generator=torch.Generator().manual_seed(0),
                ),
                rounds,
                warmup,
            )
        speedup = times["loop"] / times["auto"]
        yield (
            Row(
                f"landscape {steps}x{steps} {layer} (width 16, 64 imgs)",
                times["auto"],
                "copy-perturb-forward loop",
                speedup,
                None if quick else f">= {limit}x faster",  # the targets are for 21x21
                None if quick else speedup >= limit,
            )
        )


def freezing_rows(dev, quick: bool) -> Iterator[Row]:
    """Section (4): an epoch with the shallowest half frozen against none frozen."""
    epochs = {}
    for frozen in (0, 3):
        torch.manual_seed(0)
        model = models.cifar_resnet18(num_classes=10).to(dev)
        layers = layer_groups(model)
        opt = torch.optim.SGD(optim.depth_param_groups(layers, 0.05), momentum=0.9)
        for name in layers.names[:frozen]:
            freeze.freeze_layer(opt, layers, name)
        x = torch.randn(64, 3, 32, 32, device=dev)
        y = torch.randint(0, 10, (64,), device=dev)

        def epoch(steps=2 if quick else 5, model=model, opt=opt, x=x, y=y):
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()

        epochs[frozen] = epoch
    times = median_times(epochs, 3)
    saved = 1 - times[3] / times[0]
    yield (
        Row(
            "epoch with stem+stage1+stage2 frozen (CIFAR ResNet-18)",
            times[3],
            "no freezing",
            saved,
            ">= 0.25 saved",
            saved >= 0.25,
        )
    )


def memory_rows(dev, quick: bool) -> Iterator[Row]:
    """Section (5): the memory of one Trajectory snapshot, in memory and on disk."""
    model = models.cifar_resnet18(num_classes=10)
    layers = layer_groups(model)
    for dtype in (torch.float32, torch.bfloat16):
        traj = measure.Trajectory(layers, dtype=dtype)
        traj.snapshot(0)
        yield Row(f"trajectory per snapshot, memory {dtype}", traj.nbytes(), unit="bytes")
    with tempfile.TemporaryDirectory() as d:
        disk = measure.Trajectory(layers, d)
        disk.snapshot(0)
        size = sum(p.stat().st_size for p in Path(d).glob("*.pt"))
    yield Row("trajectory per snapshot, disk", size, unit="bytes")
