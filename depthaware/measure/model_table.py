"""Measure one trained model on a data sample: per layer, the sharpness of its loss landscape (top
Hessian eigenvalue; mean loss rise within a radius), its gradient predictiveness (Definition 4.1)
and its response frequency (Figure 7); and what that costs (:func:`passes`). ``depthaware measure
model`` is its command line; :func:`depthaware.reports.write_table` writes the rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypedDict

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import InputError
from ..layers import LayerGroups, as_layer_groups, model_of
from ..mode import in_mode
from .frequency import response_frequency
from .gradients import predictiveness
from .sharpness import layer_sharpness

__all__ = ["DEFAULT", "Effort", "HVP_PASSES", "POINT_PASSES", "THOROUGH", "from_model", "passes",
           "time_pass"]  # fmt: skip


class Effort(TypedDict):
    """How hard :func:`from_model` looks: landscape ``steps`` per axis, Lanczos ``iters`` and
    their early-stopping ``tol``."""

    steps: int
    iters: int
    tol: float


#: the default measurement, a 7 x 7 landscape (the rise read within the radius) and at most 20
#: Lanczos steps for the top eigenvalue, stopped at a relative change of 1e-3
DEFAULT: Effort = {"steps": 7, "iters": 20, "tol": 1e-3}
#: the paper's measurement, a 21 x 21 landscape and 100 steps for the eigenvalue, none stopped
#: early
THOROUGH: Effort = {"steps": 21, "iters": 100, "tol": 0.0}
#: forward+backward passes on the whole batch per landscape point and per Hessian-vector
#: product of one layer, on average over the layers (see :func:`passes`)
POINT_PASSES, HVP_PASSES = 0.15, 0.65


def passes(n_layers: int, steps: int, iters: int) -> float:
    """The cost of :func:`from_model` in forward+backward passes of the model on the whole
    batch: per layer a landscape point costs about :data:`POINT_PASSES` of a pass and a
    Hessian-vector product :data:`HVP_PASSES` (both run on half the batch), plus 4 passes for the
    predictiveness and response frequency. The constants are averages over the layers (the
    batched landscape engine reuses the layers before each one, so shallow layers cost more and
    deep ones less) fitted to ``depthaware bench --section measure-model`` on 2 CPU cores, where
    the estimate came within a factor 1.2 and 1.7 of the time measured on two ViTs (the
    eigenvalue's steps stop early where they converge, so the estimate errs high).

    >>> passes(14, 7, 20) == round(14 * (POINT_PASSES * 49 + HVP_PASSES * 20) + 4, 1)
    True
    """
    return round(n_layers * (POINT_PASSES * steps**2 + HVP_PASSES * iters) + 4, 1)


def time_pass(model: nn.Module, loss_fn: Callable, inputs, targets) -> float:
    """Seconds of one forward+backward pass of ``model`` on ``(inputs, targets)`` in eval mode
    (no gradient is left behind): the unit :func:`passes` counts in. A first, untimed pass warms
    the caches and allocator up: a cold first pass can take 20 times a warm one."""
    with in_mode(model, train=False):
        loss_fn(model(inputs), targets).backward()  # warm-up, not timed
        start = time.perf_counter()
        loss_fn(model(inputs), targets).backward()
        seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds


def from_model(
    model: nn.Module | LayerGroups,
    loss_fn: Callable,
    batch: tuple[torch.Tensor, torch.Tensor],
    other_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    radius: float = 0.5,
    steps: int = DEFAULT["steps"],
    iters: int = DEFAULT["iters"],
    tol: float = DEFAULT["tol"],
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Per-layer sharpness, gradient predictiveness and response frequency of a trained model.

    Columns: ``top_eigenvalue`` (:func:`~depthaware.measure.top_eigenvalue`, at most
    ``iters`` Lanczos steps, stopped at a relative change ``tol``), ``loss_rise`` (mean rise
    within ``radius`` of a ``steps × steps`` landscape), the data and parameter predictiveness
    (Definition 4.1; ``optimizer`` gives the step, default SGD with lr 0.01),
    ``response_frequency`` (NaN for a layer that no module computes alone, such as a ViT's patch
    embedding with its class token and position embedding). Nothing in ``model`` changes.
    The defaults (:data:`~depthaware.measure.model_table.DEFAULT`) cost a few hundred
    forward+backward passes (:func:`~depthaware.measure.model_table.passes`);
    :data:`~depthaware.measure.model_table.THOROUGH` is the paper's 21 × 21 landscape, about five
    times as much.

    Args:
        batch, other_batch: ``(inputs, targets)``; without ``other_batch`` the batch is split
            into halves for the data predictiveness.
    """
    layers = as_layer_groups(model)
    model = model_of(layers)
    if other_batch is None:
        n = len(batch[0]) // 2
        if n < 1:
            raise InputError("batch needs at least 2 samples to split; or pass other_batch")
        batch, other_batch = (batch[0][:n], batch[1][:n]), (batch[0][n:], batch[1][n:])
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.01)
    pred = predictiveness(layers, loss_fn, optimizer, batch, other_batch)
    response = response_frequency(layers, batch[0])
    rows = []
    for layer in tqdm(layers, disable=not progress, desc="layers"):
        ls, eig = layer_sharpness(
            layers,
            layer,
            loss_fn,
            *batch,
            seed=seed,
            steps=steps,
            radius=radius,
            iters=iters,
            tol=tol,
        )
        rows.append(
            {
                "layer": layer.name,
                "depth": layer.depth,
                "top_eigenvalue": eig,
                "loss_rise": ls.rise(radius),
                "nonfinite_points": len(ls.nonfinite),
                "predictiveness_data": pred[layer.name]["data"],
                "predictiveness_parameters": pred[layer.name]["parameters"],
                "response_frequency": response[layer.name],
            }
        )
    return rows
