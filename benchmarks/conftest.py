"""Shared pieces of the benchmark suite: run with ``pytest benchmarks/ --benchmark-only``."""

import pytest

from depthaware.bench import device, synchronize


def synchronized(fn):
    """Wrap ``fn`` so that a CUDA timing covers the work, not just its launch."""

    def run(*args, **kwargs):
        out = fn(*args, **kwargs)
        synchronize()
        return out

    return run


@pytest.fixture
def dev():
    return device()
