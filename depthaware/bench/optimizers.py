"""Section (1) of `depthaware bench`: one optimizer step on a resnet50-shaped parameter set.

The optimizers are timed in turn, round after round (:func:`~depthaware.bench.timing.median_times`),
beside the bandwidth floor (the bytes a momentum step must move over this machine's measured
in-place update bandwidth) and the time of the extra passes that LARS (norms) and FeedbackSGD
(gradient norm, inner product with the previous gradient, copy) make.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import timm.optim
import torch
import torchvision

from .. import optim
from ..optim.functional import norms as tensor_norms
from .timing import Row, compared, median_times, update_bandwidth

__all__ = ["OPTIMIZERS", "WD", "optimizer_rows", "resnet50_with_grads"]

WD = 1e-4


def _plain(m):
    return list(m.parameters())


def _groups(m):
    return optim.depth_param_groups(m, 0.1, "geometric", end=0.1, weight_decay=WD)


OPTIMIZERS: dict[str, Callable] = {
    "torch SGD fused": lambda m: torch.optim.SGD(_plain(m), 0.1, 0.9, weight_decay=WD, fused=True),
    "torch SGD foreach": lambda m: torch.optim.SGD(
        _plain(m), 0.1, 0.9, weight_decay=WD, foreach=True
    ),
    "depth groups + torch SGD fused": lambda m: torch.optim.SGD(_groups(m), 0.1, 0.9, fused=True),
    "depth groups + torch SGD foreach": lambda m: torch.optim.SGD(
        _groups(m), 0.1, 0.9, foreach=True
    ),
    "depthaware LARS": lambda m: optim.LARS(_plain(m), 0.1, momentum=0.9, weight_decay=WD),
    "depthaware FeedbackSGD": lambda m: optim.FeedbackSGD(_groups(m), 0.1, momentum=0.9),
    "timm Lars": lambda m: timm.optim.Lars(_plain(m), 0.1, 0.9, weight_decay=WD),
    "timm Lamb": lambda m: timm.optim.Lamb(_plain(m), 1e-3, weight_decay=WD),
    "torch AdamW foreach": lambda m: torch.optim.AdamW(
        _plain(m), 1e-3, weight_decay=WD, foreach=True
    ),
}


def resnet50_with_grads(dev) -> torch.nn.Module:
    net = torchvision.models.resnet50().to(dev)
    for p in net.parameters():
        p.grad = torch.randn_like(p) * 1e-2
    return net


def optimizer_rows(dev, quick: bool) -> Iterator[Row]:
    """Section (1): the step times, their floors and the targets."""
    model = resnet50_with_grads(dev)
    rounds = 5 if quick else 30
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    timed = {name: make(model).step for name, make in OPTIMIZERS.items()}
    params = list(model.parameters())
    grads = [p.grad for p in params if p.grad is not None]
    foreach = dev.type == "cuda"
    timed["norms"] = lambda: (
        tensor_norms(params, foreach=foreach),
        tensor_norms(grads, foreach=foreach),
    )
    prevs = [g.clone() for g in grads]

    def feedback_passes() -> None:  # FeedbackSGD's reads beyond SGD's, as it makes them
        tensor_norms(grads, foreach=foreach)
        [torch.dot(g.reshape(-1), b.reshape(-1)) for g, b in zip(grads, prevs)]
        torch._foreach_copy_(prevs, grads)

    timed["feedback passes"] = feedback_passes
    t = median_times(timed, rounds, warmup=2)
    model.load_state_dict(state)
    n = sum(p.numel() for p in params)
    floor = 5 * 4 * n / update_bandwidth(dev)  # read w, g, buf; write w, buf (float32)
    fused, norms, passes = t["torch SGD fused"], t.pop("norms"), t.pop("feedback passes")
    rows = [Row("bandwidth floor of a momentum step", floor)]
    rows += [Row(f"step: {k}", v, "torch SGD fused", v / fused) for k, v in t.items()]
    rows += [
        Row(
            "norms of every weight and gradient (LARS's reads)",
            norms,
            "torch SGD fused",
            norms / fused,
        ),
        Row(
            "fused SGD + those norms (LARS's floor here)",
            fused + norms,
            "torch SGD fused",
            1 + norms / fused,
        ),
        Row(
            "gradient norm, <g, g_prev> and copy (FeedbackSGD's extra passes)",
            passes,
            "torch SGD fused",
            passes / fused,
        ),
        Row(
            "fused SGD + those passes (FeedbackSGD's floor here)",
            fused + passes,
            "torch SGD fused",
            1 + passes / fused,
        ),
        compared(
            "LARS vs fused SGD", t["depthaware LARS"], "torch SGD fused", fused, "<= 1.5", 1.5
        ),
        compared(
            "LARS vs timm Lars (ours/theirs)",
            t["depthaware LARS"],
            "timm Lars",
            t["timm Lars"],
            "<= 0.4 (2.5x faster)",
            0.4,
        ),
        compared(
            "depth groups vs plain SGD (fused)",
            t["depth groups + torch SGD fused"],
            "torch SGD fused",
            fused,
            "<= 1.05",
            1.05,
        ),
        compared(
            "depth groups vs plain SGD (foreach)",
            t["depth groups + torch SGD foreach"],
            "torch SGD foreach",
            t["torch SGD foreach"],
            "<= 1.05",
            1.05,
        ),
    ]
    yield from rows
