"""The plug-in band against the sketch's own sampling distribution: over many hash seeds of one
trajectory, the sketched rates' errors in units of their stated standard error have an RMS of 1
and the 95% band covers the exact rate in 95% of draws."""

import numpy as np
import torch

from depthaware.measure.distances import streamed
from depthaware.measure.sketch import Z95, sketch

WINDOWS = [(0, 1), (0, 3), (1, 2), (1, 4), (2, 4)]


def _trajectory(n=8_000, steps=6):
    """Weights converging to their last snapshot, each step shrinking the distance and adding
    fresh noise (so that the distances' errors are correlated but not equal)."""
    g = torch.Generator().manual_seed(0)
    theta = [torch.randn(n, generator=g, dtype=torch.float64)]
    for _ in range(steps - 1):
        theta.append(0.7 * theta[-1] + 0.3 * torch.randn(n, generator=g, dtype=torch.float64))
    return theta


def test_the_band_has_the_spread_it_states_over_hash_seeds():
    theta, k = _trajectory(), 256
    exact = streamed(["w"], [0], enumerate({"w": t} for t in theta), {"w": theta[-1]})
    z = []
    for seed in range(200):
        snaps = [{"w": sketch(t, k, seed=seed, layer="w")} for t in theta]
        rep = streamed(["w"], [0], enumerate(snaps), snaps[-1])
        for w in WINDOWS:
            err = rep.errors(*w)["w"] / Z95  # the stated standard error
            z.append((rep.rates(*w)["w"] - exact.rates(*w)["w"]) / err)
    z = np.asarray(z)
    rms, coverage = float(np.sqrt(np.mean(z**2))), float(np.mean(np.abs(z) <= Z95))
    print(f"RMS z {rms:.3f}, coverage {coverage:.3f} over {len(z)} draws")
    assert 0.9 <= rms <= 1.1, rms
    assert 0.93 <= coverage <= 0.97, coverage
