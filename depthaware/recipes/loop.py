"""The one plain training loop of the recipes (sine task, images, freezing comparison).

Minibatch SGD-style training over in-memory tensors: every epoch a fresh permutation drawn from
``seed``, one optimizer step per batch. What differs between recipes comes in through two hooks:
``after_step()`` (per-step schedules, freezers) and ``after_epoch(epoch, mean_loss)`` (per-epoch
schedules, snapshots, measurements). Epochs are counted from 1; epoch 0 is the state before
training, where recipes take their first snapshot.

Divergence is defined before any run: the training loss becomes NaN or inf, or an epoch's mean
training loss exceeds :data:`DIVERGE_FACTOR` times the loss at initialization (the mean over the
training set before the first step, in eval mode). An exploded run's numbers measure the
explosion, not learning, so it is no result; the recipes pass the factor.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["DIVERGE_FACTOR", "initial_loss", "train"]

#: an epoch's mean training loss above this many times the initial loss: the run diverged
DIVERGE_FACTOR = 10.0


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    loss_fn: Callable,
    seed: int,
    after_step: Callable[[], None] | None = None,
    after_epoch: Callable[[int, float], None] | None = None,
    diverge_factor: float | None = None,
) -> list[float]:
    """Train ``model`` on ``(x, y)``; returns each epoch's mean training loss.

    Raises:
        FloatingPointError: the training loss became NaN or inf, or (with ``diverge_factor``)
            an epoch's mean exceeded that many times :func:`initial_loss` (names the epoch).
    """
    order = torch.Generator().manual_seed(seed)
    limit = None if diverge_factor is None else diverge_factor * initial_loss(
        model, x, y, loss_fn, batch_size
    )  # fmt: skip
    losses = []
    for epoch in range(1, epochs + 1):
        model.train()
        total = torch.zeros((), dtype=torch.float64)
        for idx in torch.randperm(len(x), generator=order).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * len(idx)
            if after_step is not None:
                after_step()
        losses.append(total.item() / len(x))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"the training loss became {losses[-1]} in epoch {epoch}")
        if diverge_factor is not None and limit is not None and losses[-1] > limit:
            raise FloatingPointError(
                f"the training loss {losses[-1]:.3g} in epoch {epoch} is over {diverge_factor:g} "
                f"times the initial {limit / diverge_factor:.3g}: the run exploded"
            )
        if after_epoch is not None:
            after_epoch(epoch, losses[-1])
    return losses


@torch.no_grad()
def initial_loss(model: nn.Module, x, y, loss_fn: Callable, batch_size: int) -> float:
    """The mean loss of ``model`` over ``(x, y)`` in eval mode (no statistic changes), in batches
    of ``batch_size``: the reference level of :data:`DIVERGE_FACTOR`."""
    was = model.training
    model.eval()
    try:
        total = sum(loss_fn(model(x[i : i + batch_size]), y[i : i + batch_size]).double()
                    * len(x[i : i + batch_size]) for i in range(0, len(x), batch_size))  # fmt: skip
    finally:
        model.train(was)
    return float(total) / len(x)
