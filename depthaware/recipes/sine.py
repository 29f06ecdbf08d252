"""The sine regression task of Section 3.1 and its training recipe (Appendix A.1).

Target:
:math:`f(x) = \\sin x + \\tfrac13 \\sin 3x + \\tfrac1{10} \\sin 10x + \\tfrac1{30} \\sin 30x`
on :math:`[-2, 2]`, 5000 training and 5000 test points (Table 1), MSE loss, SGD with LR 0.1
decayed to 0.01 at epoch 150, batch 128, 300 epochs, no weight decay.

A snapshot is taken before training (step 0 = :math:`t_0`) and after every epoch, so the
trajectory's step ``e`` is the end of epoch ``e``.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from .. import plots
from .._io import atomic_open, write_json
from ..layers import layer_groups
from ..measure import GradMagnitude, Trajectory, convergence
from ..models import FCNN, ResidualFCNN

__all__ = ["SineConfig", "SineRun", "sine_data", "sine_target", "train_sine"]


_FREQUENCIES = (1, 3, 10, 30)


def sine_target(x: torch.Tensor, complexity: int = 4) -> torch.Tensor:
    """The paper's target; ``complexity=k`` keeps its ``k`` lowest components (Figure 8: 1 is
    ``sin x``, 2 adds ``sin(3x)/3``, ...)."""
    if complexity not in range(1, 5):
        raise ValueError(f"complexity must be 1..4; got {complexity}")
    return sum(torch.sin(f * x) / f for f in _FREQUENCIES[:complexity])


def sine_data(n: int, seed: int, target: Callable = sine_target, domain=(-2.0, 2.0)):
    """``n`` points drawn uniformly on ``domain`` with their targets, shapes ``(n, 1)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * (domain[1] - domain[0]) + domain[0]
    return x, target(x)


@dataclass(frozen=True)
class SineConfig:
    """Everything a sine run depends on (defaults: the paper's Appendix A.1)."""

    model: str = "fcnn"  # "fcnn" ([1-32-32-32-1], sigmoid) or "resfcnn"
    widths: tuple[int, ...] = (1, 32, 32, 32, 1)
    activation: str = "sigmoid"
    res_width: int = 128
    res_blocks: tuple[int, ...] = (2, 2, 2, 2)
    res_activation: str = "relu"
    epochs: int = 300
    lr: float = 0.1
    lr_milestones: tuple[int, ...] = (150,)
    lr_gamma: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    complexity: int = 4  # target components kept (Figure 8)
    batch_size: int = 128
    n_train: int = 5000
    n_test: int = 5000

    def build(self) -> nn.Module:
        if self.model == "fcnn":
            return FCNN(self.widths, activation=self.activation)
        if self.model == "resfcnn":
            return ResidualFCNN(
                width=self.res_width, blocks=self.res_blocks, activation=self.res_activation
            )
        raise ValueError(f"unknown sine model {self.model!r}; use 'fcnn' or 'resfcnn'")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SineRun:
    """What one seed of a sine run produced."""

    config: SineConfig
    seed: int
    trajectory: Trajectory
    grad_magnitude: dict[str, list[float]]  # per layer, mean |g| of each epoch
    train_loss: list[float]
    test_loss: list[float]


def train_sine(
    config: SineConfig,
    seed: int,
    *,
    directory=None,
    progress: bool = False,
    optimizer: Callable | None = None,
    callback: Callable | None = None,
) -> SineRun:
    """Train one model on the sine task, recording a trajectory and gradient magnitudes.

    Args:
        config: the run's settings.
        seed: seeds the model's initialisation, the data and the batch order.
        directory: where the trajectory lives (``None``: memory).
        progress: show a tqdm bar over epochs.
        optimizer: ``f(model) -> torch.optim.Optimizer``; default SGD from ``config``.
        callback: ``f(epoch, model, optimizer, x, y)``, called after every epoch (measurements).
    """
    torch.manual_seed(seed)
    model = config.build()
    layers = layer_groups(model)
    target = partial(sine_target, complexity=config.complexity)
    x, y = sine_data(config.n_train, seed, target)
    x_test, y_test = sine_data(config.n_test, seed + 10_000, target)
    opt = (
        optimizer(model)
        if optimizer
        else torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    )
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(config.lr_milestones), config.lr_gamma)
    traj = Trajectory(layers, directory)
    grads = GradMagnitude(layers)
    order = torch.Generator().manual_seed(seed + 20_000)
    history = {name: [] for name in layers.names}
    train_loss, test_loss = [], []
    traj.snapshot(0)
    for epoch in tqdm(
        range(1, config.epochs + 1),
        disable=not progress,
        leave=False,
        desc=f"{config.model} seed {seed}",
    ):
        model.train()
        perm = torch.randperm(config.n_train, generator=order)
        total = torch.zeros(())
        for i in range(0, config.n_train, config.batch_size):
            idx = perm[i : i + config.batch_size]
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grads.update()
            opt.step()
            total += loss.detach() * len(idx)
        sched.step()
        traj.snapshot(epoch)
        for name, g in grads.compute().items():
            history[name].append(g)
        grads.reset()
        train_loss.append(total.item() / config.n_train)
        with torch.no_grad():
            model.eval()
            test_loss.append(nn.functional.mse_loss(model(x_test), y_test).item())
        if not math.isfinite(train_loss[-1]):
            raise FloatingPointError(f"{config.model} seed {seed} diverged at epoch {epoch}")
        if callback is not None:
            callback(epoch, model, opt, x, y)
    return SineRun(config, seed, traj, history, train_loss, test_loss)


# ---------------------------------------------------------------------------------------------
# `depthaware reproduce sine-fcnn`
# ---------------------------------------------------------------------------------------------
PAPER_FCNN_RATES = {"Layer 1": 0.012, "Hidden layer 1": 0.009, "Hidden layer 2": 0.006}
PAPER_RES_RATIO = 2.0
_PAPER_WINDOW = {"fcnn": 50, "resfcnn": 5}
_COMPARED = {
    "fcnn": list(PAPER_FCNN_RATES),
    "resfcnn": ["Res-Block 1", "Res-Block 2", "Res-Block 3", "Res-Block 4"],
}


def reproduce(out, *, epochs: int = 300, seeds: int = 1, progress: bool = True) -> dict:
    """Section 3.1 / Figure 1: layer convergence bias in the plain and the residual FCNN.

    Writes ``out/report.json``, ``out/rates.csv`` (one row per model, seed and layer) and
    ``out/fig1.png`` (gradient magnitude and convergence curves of the first seed).

    Returns:
        The report as a dict.
    """
    out = Path(out)
    t_start = time.perf_counter()
    report = {"finding": "sine-fcnn", "epochs": epochs, "seeds": list(range(seeds)), "models": {}}
    csv_rows, figure_runs = [], {}
    for model in ("fcnn", "resfcnn"):
        config = SineConfig(model=model, epochs=epochs)
        window = (0, min(_PAPER_WINDOW[model], epochs))
        per_seed = []
        for seed in range(seeds):
            run = train_sine(config, seed, progress=progress)
            conv = convergence(run.trajectory, windows=[window])
            rates = conv.rates(*window)
            compared = [rates[n] for n in _COMPARED[model]]
            per_seed.append(
                {
                    "seed": seed,
                    "rates": rates,
                    "ordered": all(a > b for a, b in zip(compared, compared[1:])),
                    "ratio_first_last": compared[0] / compared[-1],
                    "bias": conv.bias(*window).to_dict(),
                    "test_mse": run.test_loss[-1],
                }
            )
            csv_rows += [
                {
                    "model": model,
                    "seed": seed,
                    "t1": window[0],
                    "t2": window[1],
                    "layer": row["layer"],
                    "depth": row["depth"],
                    "rate": row[f"C[{w}]"],
                    "distance_t0": row["distance_t0"],
                    "distance_end": row["distance_end"],
                }
                for w in [f"{window[0]},{window[1]}"]
                for row in conv.table()
            ]
            if seed == 0:
                figure_runs[model] = (conv, run.grad_magnitude)
        names = list(per_seed[0]["rates"])
        summary = {
            "config": config.to_dict(),
            "window": list(window),
            "compared": _COMPARED[model],
            "mean_rates": {n: float(sum(s["rates"][n] for s in per_seed) / seeds) for n in names},
            "ordered_in_every_seed": all(s["ordered"] for s in per_seed),
            "per_seed": per_seed,
        }
        if model == "fcnn":
            summary["paper_rates"] = PAPER_FCNN_RATES
        else:
            summary["paper_ratio_first_last"] = PAPER_RES_RATIO
        report["models"][model] = summary
    report["elapsed_s"] = time.perf_counter() - t_start

    write_json(out / "report.json", report)
    with atomic_open(out / "rates.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows(csv_rows)
    plots.save(figure1(figure_runs), out / "fig1.png")
    return report


def figure1(runs: dict) -> Figure:
    """Figure 1: per model, mean |gradient| (left) and normalized distance (right)."""
    fig = Figure(figsize=(9, 3.4 * len(runs)), layout="constrained")
    axes = fig.subplots(len(runs), 2, squeeze=False)
    for row, (model, (conv, grads)) in zip(axes, runs.items()):
        hidden = [n for n in conv.layers if n != "Output layer"]
        plots.grad_magnitude(grads, ax=row[0], layers=hidden)
        plots.convergence(conv, ax=row[1], layers=hidden)
        row[0].set_title(f"{model}: gradient magnitude")
        row[1].set_title(f"{model}: convergence")
    return fig
