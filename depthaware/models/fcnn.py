"""The paper's fully connected networks (Section 3.1, Table 2, Appendix A.6).

* :class:`FCNN` -- plain ``[1-32-32-32-1]`` with sigmoid by default; layers named as the paper does:
  ``Layer 1`` (the input fc), ``Hidden layer 1``, ``Hidden layer 2``, ..., ``Output layer``.
* :class:`ResidualFCNN` -- ``fc [1-128] -> 4 res-blocks [128-128-128] -> fc [128-1]`` with ReLU
  (132,481 parameters, the paper's "132k"); ``blocks=(4, 1, 1, 1)`` gives the Appendix A.6
  variants (linear layers per block). Layers: ``Input layer``, ``Res-Block 1``.., ``Output layer``.

The residual block is ``h + W_k σ(... σ(W_1 h))``: the activation sits inside the branch and the
skip path stays linear (the "pre-activation" reading). The literal post-activation reading,
``σ(h + F(h))``, would let no block's contribution be read off the output; with an identity skip
path the output decomposes into block contributions exactly (Section 5).

Stability at the paper's LR 0.1: with PyTorch's default initialisation the input fc (fan-in 1)
draws weights from U(-1, 1), the 128 hidden units are large, and SGD at LR 0.1 diverges within the
first ten steps (measured: every seed, with and without a down-scaled branch). Glorot (Xavier)
initialisation of the input fc keeps the same training setting stable, so it is the default
(``input_init="xavier"``; ``"default"`` restores PyTorch's).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FCNN", "ResidualFCNN", "activation"]

_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def activation(name: str | type[nn.Module]) -> nn.Module:
    """An activation module from a name (``sigmoid``, ``relu``, ``tanh``, ``gelu``) or a class."""
    if isinstance(name, str):
        if name not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
        return _ACTIVATIONS[name]()
    return name()


class FCNN(nn.Module):
    """Plain fully connected network, e.g. the paper's ``[1-32-32-32-1]``.

    Args:
        widths: layer widths from input to output, at least ``(in, out)``.
        activation: between every two linear layers (not after the last).

    >>> net = FCNN((1, 32, 32, 32, 1))
    >>> [name for name, _ in net.layer_map().items()]
    ['Layer 1', 'Hidden layer 1', 'Hidden layer 2', 'Output layer']
    """

    def __init__(self, widths: Sequence[int] = (1, 32, 32, 32, 1), *, activation="sigmoid"):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or min(widths) <= 0:
            raise ValueError(f"widths need at least two positive entries; got {widths}")
        self.widths = widths
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.act = _activation_module(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, in)
        for fc in self.fcs[:-1]:
            x = self.act(fc(x))
        return self.fcs[-1](x)

    def layer_map(self) -> dict[str, str]:
        n = len(self.fcs)
        names = ["Layer 1"] + [f"Hidden layer {i}" for i in range(1, n - 1)]
        names += ["Output layer"] if n > 1 else []
        return {name: f"fcs.{i}" for i, name in enumerate(names)}


class ResidualBlock(nn.Module):
    """``h + W_k σ(W_{k-1} ... σ(W_1 h))``: ``num_linear`` linear layers in the branch."""

    def __init__(self, width: int, num_linear: int, act: nn.Module):
        super().__init__()
        if num_linear < 1:
            raise ValueError(f"a residual block needs at least one linear layer; got {num_linear}")
        self.fcs = nn.ModuleList(nn.Linear(width, width) for _ in range(num_linear))
        self.act = act

    def branch(self, h: torch.Tensor) -> torch.Tensor:
        out = self.fcs[0](h)
        for fc in self.fcs[1:]:
            out = fc(self.act(out))
        return out

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.branch(h)


class ResidualFCNN(nn.Module):
    """Residual FCNN: input fc, residual blocks, output fc (Section 3.1, Appendix A.6).

    Args:
        in_features, out_features: input and output dimensions.
        width: the blocks' width (128 in the paper).
        blocks: linear layers per residual block, e.g. ``(2, 2, 2, 2)`` (paper default) or
            ``(4, 1, 1, 1)`` (Appendix A.6).
        activation: inside each residual branch and after the input fc.
        input_init: ``"xavier"`` (default, stable at LR 0.1) or ``"default"`` (PyTorch's).

    >>> net = ResidualFCNN()
    >>> sum(p.numel() for p in net.parameters()), list(net.layer_map())[:2]
    (132481, ['Input layer', 'Res-Block 1'])
    """

    def __init__(
        self,
        in_features: int = 1,
        out_features: int = 1,
        *,
        width: int = 128,
        blocks: Sequence[int] = (2, 2, 2, 2),
        activation="relu",
        input_init: str = "xavier",
    ):
        super().__init__()
        if min(in_features, out_features, width) <= 0:
            raise ValueError(
                f"sizes must be positive; got in={in_features}, out={out_features}, width={width}"
            )
        if not blocks:
            raise ValueError("blocks must name at least one residual block")
        self.blocks_spec = tuple(int(b) for b in blocks)
        self.act = _activation_module(activation)
        self.fc_in = nn.Linear(in_features, width)
        if input_init == "xavier":
            nn.init.xavier_uniform_(self.fc_in.weight)
            nn.init.zeros_(self.fc_in.bias)
        elif input_init != "default":
            raise ValueError(f"input_init must be 'xavier' or 'default'; got {input_init!r}")
        self.blocks = nn.ModuleList(ResidualBlock(width, k, self.act) for k in self.blocks_spec)
        self.fc_out = nn.Linear(width, out_features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # (batch, in) -> (batch, width)
        return self.act(self.fc_in(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.fc_out(h)

    def layer_map(self) -> dict[str, str]:
        names = {"Input layer": "fc_in"}
        names.update({f"Res-Block {i + 1}": f"blocks.{i}" for i in range(len(self.blocks))})
        names["Output layer"] = "fc_out"
        return names


def _activation_module(act) -> nn.Module:
    return act if isinstance(act, nn.Module) else activation(act)
