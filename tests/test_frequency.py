import math

import pytest
import torch

import depthaware as da
from depthaware.measure import frequency


def test_contributions_sum_back_to_the_output():
    torch.manual_seed(0)
    model = da.models.ResidualFCNN(blocks=(2, 1, 3))
    x = torch.linspace(-2, 2, 101).unsqueeze(1)
    parts = frequency.block_contributions(model, x)
    assert list(parts) == ["Input layer", "Res-Block 1", "Res-Block 2", "Res-Block 3"]
    torch.testing.assert_close(sum(parts.values()), model(x).detach(), rtol=1e-5, atol=1e-6)


def test_dominant_frequency_of_known_signals():
    x = torch.linspace(-2, 2, 1025)[:-1]
    assert frequency.dominant_frequency(torch.sin(2 * math.pi * 3 * x), 4.0) == 3.0
    # the sine target's sin(30x) term: 30 / (2 pi) cycles per unit, on the grid's 1/4 resolution
    mixed = torch.sin(x) + torch.sin(30 * x) * 2
    assert frequency.dominant_frequency(mixed, 4.0) == pytest.approx(30 / (2 * math.pi), abs=0.25)


def test_block_frequencies_and_bad_models():
    info = frequency.block_frequencies(da.models.ResidualFCNN())
    assert set(info["Res-Block 1"]) == {"range", "dominant_frequency"}
    with pytest.raises(ValueError, match="has no `embed`"):
        frequency.block_contributions(da.models.FCNN(), torch.zeros(2, 1))
