"""Does freezing give time back, and at what cost? Same runs with and without freezing.

Three model/data pairs, one setting for all of them:

* ``resfcnn-sine``: the residual FCNN on the sine task (test MSE);
* ``cnn-digits``: a CIFAR-style ResNet-18 of width 8 on scikit-learn's digits (test accuracy);
* ``vit-digits``: the small vanilla width-graded ViT (patch 2) on digits (test accuracy), with
  the recipe that trains it to convergence there (AdamW, peak LR 5e-4, weight decay 0.05, a
  5-epoch linear warm-up, 40 epochs, batch 64; see :mod:`.images`).

Methods, each at the same epochs and the same global schedule (cosine, after the pair's warm-up):

* ``none``: no freezing, the pair's plain optimizer;
* ``freezeout-cubic`` / ``freezeout-linear``: :class:`~depthaware.freeze.FreezeOut`, ``t0=0.5``;
* ``convergence``: :class:`~depthaware.freeze.ConvergenceFreezer` with its defaults
  (``threshold=0.5``, ``patience=2``), one check per epoch;
* acting on the bias through the LR instead (no freezing): ``depth-lr`` (the pair's optimizer on
  :func:`~depthaware.optim.depth_param_groups` with a geometric scale, deepest layer 0.1×),
  ``staggered`` (:class:`~depthaware.optim.DepthStaggered`, deepest layer starting at 0.1×,
  catching up at half the run), ``lars`` (:class:`~depthaware.optim.LARS` with LARC clipping,
  SGD's LR and momentum 0.9), ``feedback`` (:class:`~depthaware.optim.FeedbackSGD`).

Backward FLOPs are counted with ``torch.utils.flop_counter`` for every frozen-prefix state of each
model (one batch) and summed over the steps each run spent in that state; the convergence
signal's cost (three passes over the candidate layer per check) is added.
"""

from __future__ import annotations

import copy
import functools
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.flop_counter import FlopCounterMode

from .._io import write_json, write_text
from ..freeze import ConvergenceFreezer, FreezeOut
from ..layers import LayerGroups, layer_groups
from ..models import ResidualFCNN, cifar_resnet18
from ..optim import LARS, CosineDecay, DepthStaggered, FeedbackSGD, depth_param_groups
from .data import digits
from .loop import train
from .results import ActingResult
from .sine import sine_data

__all__ = [
    "FREEZE_METHODS",
    "LR_METHODS",
    "METHODS",
    "PAIRS",
    "ActingConfig",
    "acting_run",
    "compare",
    "run",
]

FREEZE_METHODS = ("none", "freezeout-cubic", "freezeout-linear", "convergence")
LR_METHODS = ("depth-lr", "staggered", "lars", "feedback")
METHODS = FREEZE_METHODS + LR_METHODS


@dataclass(frozen=True)
class Pair:
    name: str
    epochs: int
    batch_size: int
    lr: float
    optimizer: str  # "sgd" or "adamw"
    metric: str  # "mse" (lower is better) or "accuracy" (percent)
    warmup_epochs: int = 0

    def build(self) -> nn.Module:
        if self.name == "resfcnn-sine":
            return ResidualFCNN()
        if self.name == "cnn-digits":
            return cifar_resnet18(num_classes=10, in_chans=1, width=8)
        return timm.create_model(
            "vit_wg_vanilla_small", num_classes=10, img_size=8, patch_size=2, in_chans=1
        )

    def data(self, seed: int):
        if self.name == "resfcnn-sine":
            x, y = sine_data(5000, seed)
            xt, yt = sine_data(5000, seed + 10_000)
            return x, y, xt, yt
        return digits(seed)

    def loss(self, out, y):
        if self.metric == "mse":
            return nn.functional.mse_loss(out, y)
        return nn.functional.cross_entropy(out, y)

    def score(self, out, y) -> float:
        if self.metric == "mse":
            return nn.functional.mse_loss(out, y).item()
        return 100.0 * (out.argmax(1) == y).float().mean().item()


PAIRS = {
    "resfcnn-sine": Pair("resfcnn-sine", 60, 128, 0.1, "sgd", "mse"),
    "cnn-digits": Pair("cnn-digits", 30, 64, 0.05, "sgd", "accuracy"),
    "vit-digits": Pair("vit-digits", 40, 64, 5e-4, "adamw", "accuracy", warmup_epochs=5),
}


def _optimizer(pair: Pair, layers: LayerGroups, method: str = "none"):
    if method in ("lars", "feedback"):  # SGD-family: SGD's LR and weight decay
        sgd_groups = depth_param_groups(
            layers, pair.lr if pair.optimizer == "sgd" else 0.05, weight_decay=5e-4
        )
        return LARS(sgd_groups, trust_clip=True) if method == "lars" else FeedbackSGD(sgd_groups)
    wd = 5e-4 if pair.optimizer == "sgd" else 0.05
    scale = "geometric" if method == "depth-lr" else None
    groups = depth_param_groups(layers, pair.lr, scale, weight_decay=wd)
    if pair.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=0.9)
    return torch.optim.AdamW(groups)


def backward_flops(pair: Pair, batch) -> list[int]:
    """Backward FLOPs of one step with the first ``k`` layers frozen, for ``k = 0..L-1``."""
    x, y = batch
    out = []
    model = pair.build()
    layers = layer_groups(model)
    for k in range(len(layers)):
        m = copy.deepcopy(model)
        ls = layer_groups(m)
        for layer in list(ls)[:k]:
            for p in layer.params:
                p.requires_grad_(False)
        loss = pair.loss(m(x), y)
        counter = FlopCounterMode(display=False)
        with counter:
            loss.backward()
        out.append(counter.get_total_flops())
    return out


def run(
    pair: Pair, method: str, seed: int, flops: list[int] | None = None, epochs: int | None = None
) -> ActingResult:
    """Train one pair with one method; returns its metric, wall time and (given the pair's
    :func:`backward_flops`) backward FLOPs.

    ``epochs`` shortens the pair's schedule in proportion (warm-up included)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    epochs = epochs or pair.epochs
    warmup = round(pair.warmup_epochs * epochs / pair.epochs)
    x, y, xt, yt = pair.data(seed)
    torch.manual_seed(seed)
    model = pair.build()
    layers = layer_groups(model)
    opt = _optimizer(pair, layers, method)
    steps_per_epoch = math.ceil(len(x) / pair.batch_size)
    total = epochs * steps_per_epoch
    base = CosineDecay(total, warmup * steps_per_epoch)
    if method.startswith("freezeout"):
        sched = FreezeOut(opt, layers, total, t0=0.5, spacing=method.split("-")[1], base=base)
        freezer = sched
    elif method == "staggered":
        sched, freezer = DepthStaggered(opt, base, start=0.1, catch_up=total // 2), None
    else:
        sched = LambdaLR(opt, base)
        freezer = (
            ConvergenceFreezer(opt, layers, check_every=steps_per_epoch)
            if method == "convergence"
            else None
        )
    prefix_steps = [0] * len(layers)  # steps spent with k layers frozen
    signal_flops = 0

    def after_step() -> None:
        nonlocal signal_flops
        prefix_steps[len(freezer.frozen) if freezer else 0] += 1
        if isinstance(freezer, ConvergenceFreezer):
            candidate = freezer.candidate
            if candidate and (freezer.t + 1) % freezer.check_every == 0:
                signal_flops += 3 * layers.numel(candidate)
            freezer.step()
        sched.step()

    start = time.perf_counter()
    train(
        model,
        opt,
        x,
        y,
        epochs=epochs,
        batch_size=pair.batch_size,
        loss_fn=pair.loss,
        seed=seed + 1,
        after_step=after_step,
    )
    wall = time.perf_counter() - start
    with torch.no_grad():
        model.eval()
        score = pair.score(model(xt), yt)
    counted = {}
    if flops is not None:
        counted["backward_flops"] = sum(s * f for s, f in zip(prefix_steps, flops)) + signal_flops
        counted["backward_flops_unfrozen"] = total * flops[0]
    return ActingResult(
        pair=pair.name,
        method=method,
        seed=seed,
        metric=pair.metric,
        score=score,
        wall_s=wall,
        epochs=epochs,
        frozen_at_epoch={
            n: t / steps_per_epoch for n, t in (freezer.frozen.items() if freezer else [])
        },
        **counted,
    )


def _mean_std(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def _summary(rows: list[ActingResult]) -> dict:
    keys = ("score", "wall_s", "backward_flops")
    return {key: _mean_std([getattr(r, key) for r in rows]) for key in keys}


@dataclass(frozen=True)
class ActingConfig:
    """One run of the comparison: a pair (a key of :data:`PAIRS`), a method, its epochs."""

    pair: str
    method: str
    epochs: int


def acting_run(config: ActingConfig, seed: int, extras=()) -> ActingResult:
    """:func:`run` with the pair's backward FLOPs per frozen prefix: the run queue's unit
    (:data:`~depthaware.recipes.runs.RUNNERS` ``"acting"``)."""
    pair = PAIRS[config.pair]
    return run(pair, config.method, seed, _pair_flops(pair), config.epochs)


@functools.cache
def _pair_flops(pair: Pair) -> list[int]:
    """:func:`backward_flops` of a pair on its first batch, once per pair and process (the
    comparison runs every method and seed of a pair in turn)."""
    x, y, *_ = pair.data(0)
    return backward_flops(pair, (x[: pair.batch_size], y[: pair.batch_size]))


def compare(
    out, *, scale: str = "paper", seeds: int = 5, epochs: int | None = None, progress=True
) -> dict:
    """Every pair x method x seed; writes ``out/report.json`` and ``out/table.md``.

    ``scale`` shortens every pair's schedule in proportion (``paper``: the pairs' own 60 / 30 /
    40 epochs, ``small``: a fifth); ``epochs`` sets one count for all pairs instead. The runs
    are :func:`acting_run` s through the findings' run queue
    (:func:`~depthaware.recipes.runs.execute`), one after the other, so that their wall times
    compare; each finished run is cached in ``out/runs/`` under a key of the package version,
    the run's config and seed, and an interrupted comparison resumes from them.
    """
    from .findings import SCALES
    from .runs import RunSpec, execute  # the queue runs acting_run: imported on use

    out = Path(out)
    t0 = time.perf_counter()
    report = {"finding": "acting", "scale": scale, "seeds": list(range(seeds)), "pairs": {}}
    specs = [
        RunSpec("acting", ActingConfig(p.name, m, epochs or SCALES[scale].epochs(p.epochs)), s)
        for p in PAIRS.values()
        for s in range(seeds)
        for m in METHODS
    ]
    names = {spec.key: f"{spec.config.pair} {spec.config.method}" for spec in specs}
    results, _ = execute(specs, out / "runs", jobs=1, progress=progress, names=names)
    rows = [results[spec.key] for spec in specs]
    for pair in PAIRS.values():
        ours = [r for r in rows if r.pair == pair.name]
        none = [r for r in ours if r.method == "none"]
        base, none_wall = _summary(none), {r.seed: r.wall_s for r in none}
        methods = {}
        for method in METHODS:
            mine = [r for r in ours if r.method == method]
            summ = _summary(mine)
            summ["backward_flops_saved"] = (
                1 - summ["backward_flops"]["mean"] / base["backward_flops"]["mean"]
            )
            summ["wall_saved"] = _mean_std([1 - r.wall_s / none_wall[r.seed] for r in mine])
            summ["score_change"] = summ["score"]["mean"] - base["score"]["mean"]
            summ["frozen_at_epoch"] = [r.frozen_at_epoch for r in mine]
            methods[method] = summ
        report["pairs"][pair.name] = {
            "metric": pair.metric,
            "epochs": ours[0].epochs,
            "methods": methods,
            "runs": [r.to_dict() for r in ours],
        }
    report["elapsed_s"] = time.perf_counter() - t0
    report["table"] = table(report)
    write_json(out / "report.json", report)
    write_text(out / "table.md", report["table"] + "\n")
    return report


def table(report: dict) -> str:
    """Markdown: one row per pair and method, and the schedule that was actually run.

    Wall time saved is ``1 - wall(method) / wall(none)`` per seed (the runs go one after another
    on one machine), mean ± std over seeds; the note under the table gives the spread of the
    ``none`` runs themselves, the machine's noise floor for that column."""
    epochs = ", ".join(f"{n} {p['epochs']} epochs" for n, p in report["pairs"].items())
    lines = [
        f"Scale {report['scale']}: {epochs}; {len(report['seeds'])} seeds; score = test MSE "
        "(lower is better) or test accuracy %.",
        "",
        "| pair | method | score (mean ± std) | change | backward FLOPs saved | wall time saved |",
        "|---|---|---|---|---|---|",
    ]
    noise = []
    for name, pair in report["pairs"].items():
        unit = "test MSE" if pair["metric"] == "mse" else "test acc %"
        for method, s in pair["methods"].items():
            lines.append(
                f"| {name} | {method} | {s['score']['mean']:.4g} ± {s['score']['std']:.2g} "
                f"({unit}) | {s['score_change']:+.3g} | {100 * s['backward_flops_saved']:.1f}% "
                f"| {100 * s['wall_saved']['mean']:.1f} ± {100 * s['wall_saved']['std']:.1f}% |"
            )
        none = pair["methods"]["none"]["wall_s"]
        noise.append(f"{name} {none['mean']:.3g} ± {none['std']:.2g} s")
    lines += ["", "Wall time of the `none` runs (mean ± std over seeds): " + ", ".join(noise) + "."]
    return "\n".join(lines)
