"""A model's state for the length of a measurement: train/eval mode (every module's own mode
restored after) and, where a measurement perturbs them, weights and buffers.

``model.train(was_training)`` would restore one flag for the whole tree and so undo a per-module
mode the user set, such as the eval-mode BatchNorms of frozen layers (:mod:`depthaware.freeze`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

__all__ = ["in_mode", "preserved"]


@contextlib.contextmanager
def in_mode(model: nn.Module, train: bool) -> Iterator[nn.Module]:
    """Run with ``model.train(train)``; afterwards every submodule has its former mode again.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    >>> _ = net[1].eval()                      # a frozen layer's BatchNorm
    >>> with in_mode(net, train=False):
    ...     net[0].training
    False
    >>> net.training, net[0].training, net[1].training
    (True, True, False)
    """
    modes = {m: m.training for m in model.modules()}
    model.train(train)
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode


@contextlib.contextmanager
def preserved(model: nn.Module, train: bool, params: Iterable[str] = ()) -> Iterator[nn.Module]:
    """:func:`in_mode`, and the named parameters ``params`` and every buffer restored afterwards
    (values saved first; for a measurement that perturbs weights or updates BatchNorm statistics).
    """
    live = dict(model.named_parameters())
    saved = {n: live[n].detach().clone() for n in params}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    try:
        with in_mode(model, train):
            yield model
    finally:
        with torch.no_grad():
            for n, v in saved.items():
                live[n].copy_(v)
            for n, b in model.named_buffers():
                b.copy_(buffers[n])
