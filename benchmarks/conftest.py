"""Shared pieces of the benchmark suite: run with ``pytest benchmarks/ --benchmark-only``."""

import pytest
import torch

from depthaware.bench import device


def synchronized(fn):
    """Wrap ``fn`` so that an accelerator's timing covers the work, not just its launch."""

    def run(*args, **kwargs):
        out = fn(*args, **kwargs)
        if torch.accelerator.is_available():
            torch.accelerator.synchronize()
        return out

    return run


@pytest.fixture
def dev():
    return device()
