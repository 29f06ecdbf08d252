"""The sketch's 95% band against its own sampling distribution: over many hash seeds of one
trajectory, the band (each row's rate, Student's t over the 4 rows) covers the exact rate in 95%
of draws. One run's windows share the errors of a few distances, so this is a property over
sketches, not a promise for each run (docs/sketches.md)."""

import numpy as np
import torch

from depthaware.measure.distances import streamed
from depthaware.measure.sketch import sketch

WINDOWS = [(0, 1), (0, 3), (1, 2), (1, 4), (2, 4)]


def _trajectory(n=8_000, steps=6):
    """Weights converging to their last snapshot, each step shrinking the distance and adding
    fresh noise (so that the distances' errors are correlated but not equal)."""
    g = torch.Generator().manual_seed(0)
    theta = [torch.randn(n, generator=g, dtype=torch.float64)]
    for _ in range(steps - 1):
        theta.append(0.7 * theta[-1] + 0.3 * torch.randn(n, generator=g, dtype=torch.float64))
    return theta


def test_the_band_covers_the_exact_rate_in_95_percent_of_hash_seeds():
    theta, k = _trajectory(), 256
    exact = streamed(["w"], [0], enumerate({"w": t} for t in theta), {"w": theta[-1]})
    covered = []
    for seed in range(200):
        snaps = [{"w": sketch(t, k, seed=seed, layer="w")} for t in theta]
        rep = streamed(["w"], [0], enumerate(snaps), snaps[-1])
        for w in WINDOWS:
            error = abs(rep.rates(*w)["w"] - exact.rates(*w)["w"])
            covered.append(error <= rep.errors(*w)["w"])
    coverage = float(np.mean(covered))
    print(f"coverage {coverage:.3f} over {len(covered)} draws")
    assert 0.93 <= coverage <= 0.97, coverage
