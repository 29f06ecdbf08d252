"""Section (10) of `depthaware bench`: how fast the command answers ``--help`` and
``--version`` in a fresh process (the front door, :mod:`depthaware_cli`, imports no torch),
beside a bare Python start."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import torch

from .timing import Row

__all__ = ["cli_rows"]


def _seconds(args: list[str], rounds: int) -> float:
    """Median wall seconds of ``python args`` in a fresh process."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cli_rows(dev: torch.device, quick: bool) -> Iterator[Row]:
    rounds = 3 if quick else 7
    yield Row("python -c pass (a bare interpreter's start)", _seconds(["-c", "pass"], rounds))
    for flag in ("--help", "--version"):
        seconds = _seconds(["-m", "depthaware_cli", flag], rounds)
        yield Row(f"depthaware {flag}", seconds, None, None, "<= 1 s", seconds <= 1.0)
