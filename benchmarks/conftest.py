"""Shared pieces of the benchmark suite: run with ``pytest benchmarks/ --benchmark-only``."""

import pytest
import torch

from depthaware.bench import device


def synchronized(fn):
    """Wrap ``fn`` so that a CUDA timing covers the work, not just its launch."""

    def run(*args, **kwargs):
        out = fn(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out

    return run


@pytest.fixture
def dev():
    return device()
