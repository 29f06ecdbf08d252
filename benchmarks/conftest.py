"""Shared pieces of the benchmark suite: run with ``pytest benchmarks/ --benchmark-only -n 0``
(xdist's workers would turn the timing off).

These time our tools and their peers side by side and assert no target: a target is a ratio to
a peer timed in the same process (``depthaware bench`` asserts those, docs/bench.md), while
pytest-benchmark's own comparison (``--benchmark-compare``) is against a saved earlier run."""

import torch


def synchronized(fn):
    """Wrap ``fn`` so that an accelerator's timing covers the work, not just its launch."""

    def run(*args, **kwargs):
        out = fn(*args, **kwargs)
        if torch.accelerator.is_available():
            torch.accelerator.synchronize()
        return out

    return run
