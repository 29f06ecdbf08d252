"""The one plain training loop of the recipes (sine task, images, freezing comparison).

Minibatch SGD-style training over in-memory tensors: every epoch a fresh permutation drawn from
``seed``, one optimizer step per batch. What differs between recipes comes in through two hooks:
``after_step()`` (per-step schedules, freezers) and ``after_epoch(epoch, mean_loss)`` (per-epoch
schedules, snapshots, measurements). Epochs are counted from 1; epoch 0 is the state before
training, where recipes take their first snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["train"]


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
) -> list[float]:
    """Train ``model`` on ``(x, y)``; returns each epoch's mean training loss.

    Raises:
        FloatingPointError: the training loss became NaN or inf (names the epoch).
    """
    order = torch.Generator().manual_seed(seed)
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
        if after_epoch is not None:
            after_epoch(epoch, losses[-1])
    return losses
