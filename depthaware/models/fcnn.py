r"""The paper's fully connected networks (Section 3.1, Table 2, Appendices A.3 and A.6).

* :class:`FCNN` -- plain ``[1-32-32-32-1]`` with sigmoid by default; layers named as the paper does:
  ``Layer 1`` (the input fc), ``Hidden layer 1``, ``Hidden layer 2``, ..., ``Output layer``.
* :class:`ResidualFCNN` -- ``fc [1-128] -> 4 res-blocks [128-128-128] -> fc [128-1]`` with ReLU
  (132,481 parameters, the paper's "132k"); ``blocks=(4, 1, 1, 1)`` gives the Appendix A.6
  variants (linear layers per block). Layers: ``Input layer``, ``Res-Block 1``.., ``Output layer``.

The residual branch with :math:`k` linear layers is
:math:`F(h) = W_k\,\sigma(W_{k-1} \cdots \sigma(W_1 h))` (a one-layer branch is
:math:`W_1 \sigma(h)`, so that every block is nonlinear), and ``block_form`` places it:

* ``"identity"`` (default): :math:`z_l = z_{l-1} + F(z_{l-1})`, Section 5's
  :math:`z_l = T_l(z_{l-1}) + z_{l-1}`;
* ``"post"``: :math:`z_l = \sigma(z_{l-1} + F(z_{l-1}))`, He et al.'s (2016) original block,
  which Section 3.1 cites;
* ``"pre"``: :math:`z_l = z_{l-1} + F(\sigma(z_{l-1}))`, the pre-activation block.

Whatever the form, the linear output layer applied to the differences :math:`z_l - z_{l-1}`
splits the output exactly into block contributions
(:func:`~depthaware.measure.frequency.block_contributions`). ``norm`` (``"batch"``, ``"layer"``,
``"group"`` with 8 groups; Appendix A.3, Fig. 16) normalizes each branch's input,
:math:`F(N(z))`, the pre-norm placement. Placed after a branch's linear layers instead, the
normalization turns the branch's small outputs into unit-scale ones at every block, and SGD
diverges in the first epoch (measured: every seed, at LR 0.1 and, for LayerNorm and GroupNorm,
at 0.01 too); with pre-norm BatchNorm, LayerNorm and GroupNorm train at LR 0.01.

Input initialisation (``input_init``). The input fc has fan-in 1, so PyTorch's default draws its
weights from U(-1, 1): the 128 hidden units are large and SGD at the paper's LR 0.1 diverges
within the first ten steps. Glorot (Xavier) weights keep LR 0.1 stable, but with zero biases all
128 ReLU kinks sit at :math:`x = 0`, and the network starts from a function with a single kink.
``"spread"`` (default) keeps the Glorot weights and sets each unit's bias so that its kink lies
at a point drawn uniformly from ``input_range`` (the task's domain, :math:`[-2, 2]` for the sine
task); ``"xavier"`` (zero biases) and ``"default"`` (PyTorch's) are the other two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from timm.layers import get_act_layer
from torch import nn

__all__ = ["FCNN", "ResidualFCNN", "activation"]


#: an activation: a module, its class, or a name timm's ``get_act_layer`` knows
Activation = str | type[nn.Module] | nn.Module


def activation(name: str | type[nn.Module]) -> nn.Module:
    """An activation module from a class or a name that timm's ``get_act_layer`` knows
    (``sigmoid``, ``relu``, ``tanh``, ``gelu``, ``silu`` ...)."""
    try:
        return get_act_layer(name)()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}: not a name timm.layers.get_act_layer knows "
            "(e.g. 'sigmoid', 'relu', 'tanh', 'gelu', 'silu')"
        ) from None


class FCNN(nn.Module):
    """Plain fully connected network, e.g. the paper's ``[1-32-32-32-1]``.

    Args:
        widths: layer widths from input to output, at least ``(in, out)``.
        activation: between every two linear layers (not after the last).

    >>> net = FCNN((1, 32, 32, 32, 1))
    >>> [name for name, _ in net.layer_map().items()]
    ['Layer 1', 'Hidden layer 1', 'Hidden layer 2', 'Output layer']
    """

    def __init__(
        self,
        widths: Sequence[int] = (1, 32, 32, 32, 1),
        *,
        activation: Activation = "sigmoid",
    ):
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


BLOCK_FORMS = ("identity", "post", "pre")
INPUT_INITS = ("spread", "xavier", "default")
_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm1d,
    "layer": nn.LayerNorm,
    "group": lambda width: nn.GroupNorm(8, width),
}


class ResidualBlock(nn.Module):
    """One residual block (module docstring): ``num_linear`` linear layers in the branch."""

    def __init__(
        self, width: int, num_linear: int, act: nn.Module, form: str = "identity", norm=None
    ):
        super().__init__()
        if num_linear < 1:
            raise ValueError(f"a residual block needs at least one linear layer; got {num_linear}")
        if form not in BLOCK_FORMS:
            raise ValueError(f"block_form must be one of {BLOCK_FORMS}; got {form!r}")
        if norm is not None and norm not in _NORMS:
            raise ValueError(f"norm must be None or one of {sorted(_NORMS)}; got {norm!r}")
        self.fcs = nn.ModuleList(nn.Linear(width, width) for _ in range(num_linear))
        self.norm = _NORMS[norm](width) if norm else nn.Identity()  # on the branch's input
        self.act, self.form = act, form

    def branch(self, h: torch.Tensor) -> torch.Tensor:  # (batch, width) -> (batch, width)
        h = self.norm(h)
        if len(self.fcs) == 1:
            return self.fcs[0](self.act(h))
        for k, fc in enumerate(self.fcs):
            h = fc(self.act(h) if k else h)
        return h

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.form == "pre":
            return h + self.branch(self.act(h))
        out = h + self.branch(h)
        return self.act(out) if self.form == "post" else out


class ResidualFCNN(nn.Module):
    """Residual FCNN: input fc, residual blocks, output fc (Section 3.1, Appendices A.3, A.6).

    Args:
        in_features, out_features: input and output dimensions.
        width: the blocks' width (128 in the paper).
        blocks: linear layers per residual block, e.g. ``(2, 2, 2, 2)`` (paper default) or
            ``(4, 1, 1, 1)`` (Appendix A.6).
        activation: inside each residual branch and after the input fc.
        block_form: ``"identity"`` (Section 5), ``"post"`` or ``"pre"`` (module docstring).
        norm: ``None``, ``"batch"``, ``"layer"`` or ``"group"`` in every branch.
        input_init: ``"spread"`` (default), ``"xavier"`` or ``"default"`` (module docstring).
        input_range: where ``"spread"`` places the input units' kinks.

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
        activation: Activation = "relu",
        block_form: str = "identity",
        norm: str | None = None,
        input_init: str = "spread",
        input_range: tuple[float, float] = (-2.0, 2.0),
    ):
        super().__init__()
        if min(in_features, out_features, width) <= 0:
            raise ValueError(
                f"sizes must be positive; got in={in_features}, out={out_features}, width={width}"
            )
        if not blocks:
            raise ValueError("blocks must name at least one residual block")
        if input_init not in INPUT_INITS:
            raise ValueError(f"input_init must be one of {INPUT_INITS}; got {input_init!r}")
        self.blocks_spec = tuple(int(b) for b in blocks)
        self.act = _activation_module(activation)
        self.fc_in = nn.Linear(in_features, width)
        if input_init != "default":
            _glorot_input(self.fc_in, input_range if input_init == "spread" else None)
        self.blocks = nn.ModuleList(
            ResidualBlock(width, k, self.act, block_form, norm) for k in self.blocks_spec
        )
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


@torch.no_grad()
def _glorot_input(fc: nn.Linear, kink_range: tuple[float, float] | None) -> None:
    """Glorot weights; biases zero, or placing unit ``j``'s kink ``w_j . u_j + b_j = 0`` at a point
    ``u_j`` drawn uniformly from the box ``kink_range`` (one draw per unit)."""
    nn.init.xavier_uniform_(fc.weight)
    if kink_range is None:
        nn.init.zeros_(fc.bias)
        return
    lo, hi = kink_range
    u = torch.empty_like(fc.weight).uniform_(lo, hi)
    fc.bias.copy_(-(fc.weight * u).sum(1))


def _activation_module(act: Activation) -> nn.Module:
    return act if isinstance(act, nn.Module) else activation(act)
