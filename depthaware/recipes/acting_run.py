"""One run of the acting comparison: a task trained with one method at one setting from one seed,
its validation score after every epoch, and what reaching it cost (steps, backward FLOPs, seconds).

Backward FLOPs are counted with ``torch.utils.flop_counter`` for every frozen-prefix state of the
model (one batch) and summed over the steps the run spent in each state; the convergence
signal's cost (three passes over the candidate layer per check) is added. Seconds are the
training's own: the validation after each epoch is timed apart and left out.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from torch.utils.flop_counter import FlopCounterMode

from ..freeze import ConvergenceFreezer, FreezeOut
from ..layers import LayerGroups, layer_groups
from ..optim import LARS, CosineDecay, DepthStaggered, FeedbackSGD, depth_param_groups
from .acting_tasks import METHODS, SGD_FAMILY, TASKS, Task
from .loop import train
from .results import ActingResult

__all__ = ["ActingConfig", "acting_run", "backward_flops"]


@dataclass(frozen=True)
class ActingConfig:
    """Everything one run depends on: a task (a key of :data:`~.acting_tasks.TASKS`), a method,
    its epochs, its LR and its knob's value (None for a method without one), and whether the
    data is the tiny test-sized set."""

    task: str
    method: str
    epochs: int
    lr: float
    knob: float | None = None
    tiny: bool = False

    @property
    def value(self) -> float:
        """The knob's value, for a method that has a knob."""
        if self.knob is None:
            raise ValueError(f"method {self.method!r} needs its knob {METHODS[self.method]}")
        return self.knob

    @property
    def setting(self) -> dict:
        knob = METHODS[self.method]
        return {"lr": self.lr, **({knob[0]: self.knob} if knob else {})}


def _optimizer(task: Task, layers: LayerGroups, config: ActingConfig):
    if config.method in SGD_FAMILY:
        groups = depth_param_groups(layers, config.lr, weight_decay=5e-4)
        if config.method == "lars":
            return LARS(groups, trust_clip=True, trust_coefficient=config.value)
        if config.method == "feedback":
            return FeedbackSGD(groups, min_scale=config.value)
        return torch.optim.SGD(groups, momentum=0.9)
    wd = 5e-4 if task.optimizer == "sgd" else 0.05
    scale = "geometric" if config.method == "depth-lr" else None
    end = config.value if config.method == "depth-lr" else 0.1
    groups = depth_param_groups(layers, config.lr, scale, end=end, weight_decay=wd)
    if task.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=0.9)
    return torch.optim.AdamW(groups)


def backward_flops(task: Task, batch) -> list[int]:
    """Backward FLOPs of one step with the first ``k`` layers frozen, for ``k = 0..L-1``."""
    x, y = batch
    out = []
    model = task.build()
    for k in range(len(layer_groups(model))):
        m = copy.deepcopy(model)
        for layer in list(layer_groups(m))[:k]:
            for p in layer.params:
                p.requires_grad_(False)
        loss = task.loss(m(x), y)
        counter = FlopCounterMode(display=False)
        with counter:
            loss.backward()
        out.append(counter.get_total_flops())
    return out


@functools.cache
def _task_flops(name: str, tiny: bool) -> list[int]:
    task = TASKS[name]
    x, y, *_ = task.data(tiny)
    return backward_flops(task, (x[: task.batch_size], y[: task.batch_size]))


def acting_run(config: ActingConfig, seed: int, extras=()) -> ActingResult:
    """Train ``config`` from ``seed`` (the same initialization and data order for every method at
    a seed): the run queue's unit (:data:`~depthaware.recipes.runs.RUNNERS` ``"acting"``).

    Returns the final validation and test score, the validation score, steps, backward FLOPs and
    training seconds after every epoch, the training's seconds and FLOPs in all, and when each
    layer froze. A run whose loss becomes NaN/inf is ``diverged`` (its scores the worst)."""
    task = TASKS[config.task]
    if config.method not in task.methods:
        raise ValueError(f"unknown method {config.method!r} for {task.name}: {task.methods}")
    flops = _task_flops(config.task, config.tiny)
    x, y, xv, yv, xt, yt = task.data(config.tiny)
    torch.manual_seed(seed)
    model = task.build()
    layers = layer_groups(model)
    opt = _optimizer(task, layers, config)
    steps_per_epoch = math.ceil(len(x) / task.batch_size)
    total = config.epochs * steps_per_epoch
    warmup = round(task.warmup_epochs * config.epochs / task.epochs) * steps_per_epoch
    base = CosineDecay(total, warmup)
    freezer: FreezeOut | ConvergenceFreezer | None = None
    sched: LRScheduler
    if config.method == "freezeout":
        sched = freezer = FreezeOut(opt, layers, total, t0=config.value, spacing="cubic", base=base)
    elif config.method == "staggered":
        sched = DepthStaggered(opt, base, start=config.value, catch_up=total // 2)
    else:
        sched = LambdaLR(opt, base)
        if config.method == "convergence":
            freezer = ConvergenceFreezer(
                opt, layers, check_every=steps_per_epoch, threshold=config.value
            )
    prefix_steps = [0] * len(layers)  # steps spent with k layers frozen
    signal_flops = 0
    curve: dict[str, list[float]] = {"val": [], "seconds": [], "cpu": [], "steps": [], "flops": []}
    # wall and CPU seconds (one thread per worker: CPU time is what other processes on a shared
    # machine do not add to), each without the evaluations
    timing = {"start": 0.0, "evaluating": 0.0, "cpu_start": 0.0, "cpu_evaluating": 0.0}

    def spent_flops() -> int:
        return sum(s * f for s, f in zip(prefix_steps, flops)) + signal_flops

    def after_step() -> None:
        nonlocal signal_flops
        prefix_steps[len(freezer.frozen) if freezer else 0] += 1
        if isinstance(freezer, ConvergenceFreezer):
            candidate = freezer.candidate
            if candidate and (freezer.t + 1) % freezer.check_every == 0:
                signal_flops += 3 * layers.numel(candidate)
            freezer.step()
        sched.step()

    def after_epoch(epoch: int, _loss: float) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        curve["seconds"].append(start - timing["start"] - timing["evaluating"])
        curve["cpu"].append(cpu - timing["cpu_start"] - timing["cpu_evaluating"])
        curve["steps"].append(epoch * steps_per_epoch)
        curve["flops"].append(spent_flops())
        curve["val"].append(task.score(model, xv, yv))
        timing["evaluating"] += time.perf_counter() - start
        timing["cpu_evaluating"] += time.process_time() - cpu

    given: dict[str, Any] = {
        "task": task.name,
        "method": config.method,
        "seed": seed,
        "metric": task.metric,
        "setting": config.setting,
        "epochs": config.epochs,
    }
    timing["start"], timing["cpu_start"] = time.perf_counter(), time.process_time()
    try:
        train(model, opt, x, y, epochs=config.epochs, batch_size=task.batch_size,
              loss_fn=task.loss, seed=seed + 1, after_step=after_step,
              after_epoch=after_epoch)  # fmt: skip
    except FloatingPointError as err:
        return ActingResult(**given, diverged=str(err), val_curve=curve["val"])
    return ActingResult(
        **given,
        val_score=curve["val"][-1],
        test_score=task.score(model, xt, yt),
        wall_s=curve["seconds"][-1],
        cpu_s=curve["cpu"][-1],
        backward_flops=spent_flops(),
        backward_flops_unfrozen=total * flops[0],
        val_curve=curve["val"],
        seconds_curve=curve["seconds"],
        cpu_curve=curve["cpu"],
        steps_curve=curve["steps"],
        flops_curve=curve["flops"],
        frozen_at_epoch={
            n: t / steps_per_epoch for n, t in (freezer.frozen.items() if freezer else [])
        },
    )
