"""Parameter and multiply-add counts of a model (Table 2 of the paper)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ..mode import in_mode

__all__ = ["describe"]


def describe(model: nn.Module, input_size: Sequence[int]) -> dict[str, int]:
    """Parameters and multiply-adds of one forward pass on a single input.

    Multiply-adds are half the FLOPs that ``torch.utils.flop_counter.FlopCounterMode`` counts
    (matrix products, convolutions, and attention, run through the math kernel so that its two
    products are seen); elementwise work is not counted, as is usual.
    The model's train/eval mode is restored afterwards.

    Args:
        model: any module.
        input_size: one input's shape without the batch dimension, e.g. ``(3, 224, 224)``.

    Returns:
        ``{"params": ..., "trainable": ..., "macs": ...}``.

    >>> import depthaware as da
    >>> da.models.describe(da.models.FCNN((1, 32, 32, 32, 1)), (1,))
    {'params': 2209, 'trainable': 2209, 'macs': 2112}
    """
    if not input_size or min(input_size) <= 0:
        raise ValueError(
            f"input_size must be a non-empty shape of positive sizes; got {input_size}"
        )
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    counter = FlopCounterMode(display=False)
    # the math kernel decomposes attention into matrix products the counter sees
    with in_mode(model, train=False), torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(torch.zeros(1, *input_size, device=device, dtype=dtype))
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "macs": counter.get_total_flops() // 2,
    }
