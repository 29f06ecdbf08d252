"""What each residual block contributes to the output, and at which frequency (Section 5).

For a residual network with a linear head, :math:`h_0 = \\mathrm{embed}(x)`,
:math:`h_k = h_{k-1} + F_k(h_{k-1})` and :math:`y = W h_K + b`, the output splits exactly into

.. math::

    y = \\underbrace{W h_0 + b}_{\\text{input layer}}
        + \\sum_{k=1}^{K} \\underbrace{W F_k(h_{k-1})}_{\\text{Res-Block } k},

the decomposition the paper uses for Figure 6. Each contribution's range (max - min over the
input domain) and dominant frequency (the largest non-constant FFT bin, in cycles per unit of
input) say which block fits which part of the target.

The model needs ``embed(x)``, ``blocks`` (each with ``branch(h)``) and a linear ``fc_out``, as
:class:`~depthaware.models.ResidualFCNN` has.
"""

from __future__ import annotations

import torch

__all__ = ["block_contributions", "block_frequencies", "dominant_frequency"]


@torch.no_grad()
def block_contributions(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"Input layer": W h_0 + b, "Res-Block k": W F_k(h_{k-1})}``; they sum to ``model(x)``."""
    for attr in ("embed", "blocks", "fc_out"):
        if not hasattr(model, attr):
            raise ValueError(
                f"{type(model).__name__} has no `{attr}`: block contributions need "
                "embed(x), blocks with branch(h), and a linear fc_out"
            )
    if not isinstance(model.fc_out, torch.nn.Linear):
        raise ValueError(f"fc_out must be nn.Linear; got {type(model.fc_out).__name__}")
    h = model.embed(x)
    out = {"Input layer": model.fc_out(h)}
    for k, block in enumerate(model.blocks, start=1):
        branch = block.branch(h)
        out[f"Res-Block {k}"] = branch @ model.fc_out.weight.T
        h = h + branch
    return out


def dominant_frequency(values: torch.Tensor, span: float) -> float:
    """The strongest non-constant frequency (cycles per unit) of samples on a uniform grid.

    Args:
        values: shape ``(N,)``, sampled at ``N`` evenly spaced points over an interval of length
            ``span`` (endpoint excluded).
    """
    if values.ndim != 1 or len(values) < 4:
        raise ValueError(f"values must be 1-D with at least 4 samples; got {tuple(values.shape)}")
    spectrum = torch.fft.rfft(values.double() - values.double().mean()).abs()
    k = int(spectrum[1:].argmax()) + 1
    return k / span


def block_frequencies(model, domain=(-2.0, 2.0), points: int = 2048) -> dict[str, dict]:
    """Range and dominant frequency of every contribution over a 1-D input domain."""
    lo, hi = domain
    x = torch.linspace(lo, hi, points + 1)[:-1].unsqueeze(1)
    param = next(model.parameters())
    parts = block_contributions(model, x.to(param.device, param.dtype))
    return {
        name: {
            "range": float(v.max() - v.min()),
            "dominant_frequency": dominant_frequency(v[:, 0].cpu(), hi - lo),
        }
        for name, v in parts.items()
    }
