"""The pieces every section of `depthaware bench` shares: a measured row, the device, the
clock and the bandwidth floor.

Timing uses :func:`torch.utils.benchmark.timer`, the clock of ``torch.utils.benchmark``, which
synchronizes the accelerator (CUDA or another) before it reads the time, so that a timing covers
the work and not only its launch. The functions are called in turn round after round rather than
with ``Timer.blocked_autorange`` one after the other: on a shared machine a drift in speed (other
load, clock) then hits all alike, and their ratios compare like with like (sequential timing moved
the optimizer ratios 10-20% between runs here).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch.utils.benchmark import timer

__all__ = ["Row", "compared", "device", "median_time", "median_times", "update_bandwidth"]


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


K = TypeVar("K", bound=Hashable)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def median_time(fn: Callable, rounds: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``rounds`` (after ``warmup`` untimed calls)."""
    return median_times({"": fn}, rounds, warmup)[""]


def median_times(
    fns: Mapping[K, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    clock: Callable[[], float] = timer,
) -> dict[K, float]:
    """Median seconds of each function, called in turn round after round after ``warmup``
    untimed rounds (module docstring); ``clock`` reads the time after synchronizing."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[K, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def update_bandwidth(dev, nbytes: int = 1 << 28) -> float:
    """Bytes per second of a large in-place update ``a += 1e-9 * b`` (two reads and one write
    counted), the access pattern of an optimizer step. On this CPU it moves more bytes per second
    than ``copy_`` (28.8 vs 19.4 GB/s), so a floor from ``copy_`` would not be a floor."""
    a = torch.zeros(nbytes // 4, device=dev)
    b = torch.ones_like(a)
    return 3 * nbytes / median_time(lambda: a.add_(b, alpha=1e-9), 5)


def compared(name, seconds, peer, peer_s, target, limit, lower_is_better=True) -> Row:
    """A row whose ratio ``seconds / peer_s`` is held to ``limit`` (at most, or at least)."""
    ratio = seconds / peer_s
    met = ratio <= limit if lower_is_better else ratio >= limit
    return Row(name, seconds, peer, ratio, target, met)
