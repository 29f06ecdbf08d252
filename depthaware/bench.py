"""`depthaware bench`: the performance table, ours side by side with torch and timm, in one run.

Each row: a name, its median seconds, the peer it is compared with, the ratio (ours / peer, or a
share of a training step), the target and whether it is met. The same setups back the
pytest-benchmark suite in ``benchmarks/``. CUDA is used when present (timings synchronize).

Sections: (1) an optimizer step on a resnet50-shaped parameter set, the optimizers timed in turn
round after round, with the bandwidth floor (the bytes a momentum step must move over this
machine's measured in-place update bandwidth) and the time of the extra passes LARS (norms) and
FeedbackSGD (gradient norm, inner product with the previous gradient, copy) make;
(2) the measurements' overhead as a share of training a CIFAR-sized ResNet-18 at batch 128;
(3) landscape grids vs the copy-perturb-forward loop; (4) an epoch with the shallowest half
frozen; (5) the memory of a Trajectory snapshot.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import timm.optim
import torch
import torchvision

from . import freeze, measure, models, optim
from .layers import layer_groups
from .measure.landscapes import landscape
from .optim.functional import norms as tensor_norms

__all__ = ["OPTIMIZERS", "Row", "run", "table"]

WD = 1e-4


@dataclass
class Row:
    """One measurement: ``value`` in ``unit`` (``"s"``: median seconds; bytes; steps)."""

    name: str
    value: float
    peer: str | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    unit: str = "s"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize() -> None:
    """Wait for queued CUDA work, so that a timing covers the work, not its launch."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_time(fn: Callable, rounds: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``rounds`` (after ``warmup`` untimed calls)."""
    return median_times({"": fn}, rounds, warmup)[""]


def median_times(fns: dict[str, Callable], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median wall seconds of each function, called in turn round after round (after ``warmup``
    untimed rounds), so that a drift in the machine's speed (other load, clock) hits all alike and
    their ratios compare like with like."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    synchronize()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


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
    "depthaware LARS": lambda m: optim.LARS(_plain(m), 0.1, 0.9, weight_decay=WD),
    "depthaware FeedbackSGD": lambda m: optim.FeedbackSGD(_groups(m), 0.1, 0.9),
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


def update_bandwidth(dev, nbytes: int = 1 << 28) -> float:
    """Bytes per second of a large in-place update ``a += 1e-9 * b`` (two reads and one write
    counted), the access pattern of an optimizer step. On this CPU it moves more bytes per second
    than ``copy_`` (28.8 vs 19.4 GB/s), so a floor from ``copy_`` would not be a floor."""
    a = torch.zeros(nbytes // 4, device=dev)
    b = torch.ones_like(a)
    return 3 * nbytes / median_time(lambda: a.add_(b, alpha=1e-9), 5)


def _ratio(name, seconds, peer, peer_s, target, limit, lower_is_better=True) -> Row:
    ratio = seconds / peer_s
    met = ratio <= limit if lower_is_better else ratio >= limit
    return Row(name, seconds, peer, ratio, target, met)


def _optimizers(dev, quick: bool) -> list[Row]:
    model = resnet50_with_grads(dev)
    rounds = 5 if quick else 30
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    timed = {name: make(model).step for name, make in OPTIMIZERS.items()}
    params = list(model.parameters())
    grads, foreach = [p.grad for p in params], dev.type == "cuda"
    timed["norms"] = lambda: (
        tensor_norms(params, foreach=foreach),
        tensor_norms(grads, foreach=foreach),
    )
    prevs = [g.clone() for g in grads]
    timed["feedback passes"] = lambda: (  # FeedbackSGD's reads beyond SGD's, as it makes them
        tensor_norms(grads, foreach=foreach),
        [torch.dot(g.reshape(-1), b.reshape(-1)) for g, b in zip(grads, prevs)],
        torch._foreach_copy_(prevs, grads),
    )
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
        _ratio("LARS vs fused SGD", t["depthaware LARS"], "torch SGD fused", fused, "<= 1.5", 1.5),
        _ratio(
            "LARS vs timm Lars (ours/theirs)",
            t["depthaware LARS"],
            "timm Lars",
            t["timm Lars"],
            "<= 0.4 (2.5x faster)",
            0.4,
        ),
        _ratio(
            "depth groups vs plain SGD (fused)",
            t["depth groups + torch SGD fused"],
            "torch SGD fused",
            fused,
            "<= 1.05",
            1.05,
        ),
        _ratio(
            "depth groups vs plain SGD (foreach)",
            t["depth groups + torch SGD foreach"],
            "torch SGD foreach",
            t["torch SGD foreach"],
            "<= 1.05",
            1.05,
        ),
    ]
    return rows


def _overheads(dev, quick: bool) -> list[Row]:
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
    rows = [Row("train step, CIFAR ResNet-18, batch 128", t_step)]
    traj = measure.Trajectory(layers)
    t_mem = median_time(lambda: traj.snapshot(len(traj)), rounds)
    with tempfile.TemporaryDirectory() as d:
        disk = measure.Trajectory(layers, d)
        t_disk = median_time(lambda: disk.snapshot(len(disk)), rounds)
    grads = measure.GradMagnitude(layers)
    step()
    t_grad = median_time(grads.update, rounds)
    t_pred = median_time(lambda: measure.predictiveness(model, loss, batch, other, opt), 1, 0)
    fb = optim.FeedbackSGD(optim.depth_param_groups(layers, 0.01), momentum=0.9)
    sgd = torch.optim.SGD(optim.depth_param_groups(layers, 0.01), momentum=0.9)
    t = median_times({"fb": fb.step, "sgd": sgd.step}, rounds, 2)
    t_fb, t_sgd = t["fb"], t["sgd"]
    share = "share of an epoch (391 steps)"
    rows += [
        _ratio("snapshot per epoch, memory", t_mem, share, epoch, "<= 0.02", 0.02),
        _ratio("snapshot per epoch, disk", t_disk, share, epoch, "<= 0.02", 0.02),
        _ratio("GradMagnitude.update every step", t_grad, "train step", t_step, None, 1),
        _ratio(
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
        _ratio(
            "feedback signal (FeedbackSGD - SGD step)", t_fb - t_sgd, "train step", t_step, None, 1
        ),
    ]
    for row in rows[-5:]:
        if row.target is None:
            row.met = None
    return rows


def _landscapes(dev, quick: bool) -> list[Row]:
    torch.manual_seed(0)
    net = models.cifar_resnet18(num_classes=10, width=16).to(dev).eval()
    x = torch.randn(64, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (64,), device=dev)
    steps = 11 if quick else 21
    rows = []
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
        rows.append(
            Row(
                f"landscape {steps}x{steps} {layer} (width 16, 64 imgs)",
                times["auto"],
                "copy-perturb-forward loop",
                speedup,
                None if quick else f">= {limit}x faster",  # the targets are for 21x21
                None if quick else speedup >= limit,
            )
        )
    return rows


def _freezing(dev, quick: bool) -> list[Row]:
    epochs = {}
    for frozen in (0, 3):
        torch.manual_seed(0)
        model = models.cifar_resnet18(num_classes=10).to(dev)
        layers = layer_groups(model)
        opt = torch.optim.SGD(optim.depth_param_groups(layers, 0.05), momentum=0.9)
        for name in layers.names[:frozen]:
            freeze.freeze_layer(layers, name, opt)
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
    return [
        Row(
            "epoch with stem+stage1+stage2 frozen (CIFAR ResNet-18)",
            times[3],
            "no freezing",
            saved,
            ">= 0.25 saved",
            saved >= 0.25,
        )
    ]


def _memory(dev, quick: bool) -> list[Row]:
    model = models.cifar_resnet18(num_classes=10)
    layers = layer_groups(model)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        traj = measure.Trajectory(layers, dtype=dtype)
        traj.snapshot(0)
        rows.append(Row(f"trajectory per snapshot, memory {dtype}", traj.nbytes(), unit="bytes"))
    with tempfile.TemporaryDirectory() as d:
        disk = measure.Trajectory(layers, d)
        disk.snapshot(0)
        size = sum(p.stat().st_size for p in Path(d).glob("*.pt"))
    rows.append(Row("trajectory per snapshot, disk", size, unit="bytes"))
    return rows


SECTIONS = {
    "optimizer": _optimizers,
    "overhead": _overheads,
    "landscape": _landscapes,
    "freezing": _freezing,
    "memory": _memory,
}


def run(quick: bool = False, sections=None) -> list[Row]:
    """Measure every section (or ``sections``) and return the rows."""
    dev = device()
    rows = []
    for name in sections or SECTIONS:
        rows += SECTIONS[name](dev, quick)
    return rows


def table(rows: list[Row]) -> str:
    """Markdown table; byte rows in MB, time rows in ms."""
    lines = [
        "| measurement | median | compared with | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        value = {
            "bytes": f"{r.value / 1e6:.1f} MB",
            "s": f"{1e3 * r.value:.2f} ms",
        }.get(r.unit, f"{r.value:g} {r.unit}")
        ratio = "" if r.ratio is None else f"{r.ratio:.3g}"
        met = {True: "yes", False: "**missed**", None: ""}[r.met]
        lines.append(
            f"| {r.name} | {value} | {r.peer or ''} | {ratio} | {r.target or ''} | {met} |"
        )
    return "\n".join(lines)


def to_json(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]
