"""Bias-aware SGD: a per-layer LR multiplier driven by how predictive each layer's gradient is.

Section 4 of the paper: layers whose gradients keep their direction (predictive, flat minima)
learn fast and tolerate large steps; layers whose gradient direction keeps changing (the deeper
ones, early in training) learn poorly under a large LR. :class:`FeedbackSGD` measures this live,
for free, and turns it into an LR multiplier.

Signal. The cosine between the layer's gradient and its gradient at the previous step,

.. math::

    c_l = \\frac{\\langle g_l^{(t)}, g_l^{(t-1)} \\rangle}{\\|g_l^{(t)}\\|\\,\\|g_l^{(t-1)}\\|}
        = \\frac{\\|g^{(t)} + g^{(t-1)}\\|^2 - \\|g^{(t)}\\|^2 - \\|g^{(t-1)}\\|^2}
               {2\\,\\|g^{(t)}\\|\\,\\|g^{(t-1)}\\|},

costs one inner product per tensor, one stored gradient and no extra backward pass (the new
gradient's norm is taken anyway for the NaN check, the previous one is kept from the step
before). The new gradient comes from a new batch *and* from parameters that every layer has just
moved, so it is the paper's gradient predictiveness w.r.t. data and parameters (Definition 4.1)
in one online estimate. It is
smoothed, :math:`e_l \\leftarrow \\beta e_l + (1-\\beta) c_l` (:math:`e_l = 1` at the start), and
mapped to a bounded multiplier, linear in :math:`e_l`:

.. math::

    m_l = m_{\\min} + (m_{\\max} - m_{\\min})\\, \\frac{1 + e_l}{2} \\in [m_{\\min}, m_{\\max}].

The update is LARS's kernel with :math:`q = m_l`:
:math:`b \\leftarrow \\mu b + m_l(g + \\lambda w)`, :math:`w \\leftarrow w - \\gamma b`.
``signal_by="group"`` (default) computes one cosine per param group (per layer with
:func:`~depthaware.optim.depth_param_groups`), ``"param"`` one per tensor.

>>> import torch, depthaware as da
>>> net = da.models.FCNN((1, 8, 1))
>>> opt = da.optim.FeedbackSGD(da.optim.depth_param_groups(net, lr=0.1), momentum=0.9)
>>> for _ in range(2):
...     opt.zero_grad(); net(torch.randn(4, 1)).sum().backward(); opt.step()
>>> sorted(opt.multipliers())
['Layer 1', 'Output layer']
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import ParamsT

from ..distributed import local
from .functional import dot, feedback_multiplier, gradient_cosines, norms, real_view
from .param_groups import FromModel
from .scaled_sgd import GroupStep, ScaledSGD

__all__ = ["DepthFeedbackSGD", "FeedbackSGD"]


class FeedbackSGD(ScaledSGD):
    """Momentum SGD whose per-layer LR follows the live gradient-predictiveness signal.

    Everything after ``lr`` is keyword-only, as in :class:`~depthaware.optim.LARS`.

    Args:
        params: parameters or groups (best: :func:`~depthaware.optim.depth_param_groups`).
        lr, momentum, weight_decay, nesterov: as ``torch.optim.SGD``.
        beta: EMA factor of the signal.
        min_scale, max_scale: the multiplier's bounds, ``0 <= min_scale <= max_scale``.
        signal_by: ``"group"`` or ``"param"``.
        check_finite: raise ``FloatingPointError`` on NaN/inf gradients before any update.
        foreach, fused: the kernel paths, as :class:`~depthaware.optim.LARS`.
    """

    scale_name = "LR multiplier"
    float32_state = ("signal", "prev_norm")

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.1,
        *,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        beta: float = 0.9,
        min_scale: float = 0.1,
        max_scale: float = 1.0,
        signal_by: str = "group",
        check_finite: bool = True,
        foreach: bool | None = None,
        fused: bool | None = None,
    ):
        if not 0 <= beta < 1:
            raise ValueError(f"Invalid beta: {beta}")
        if not 0 <= min_scale <= max_scale:
            raise ValueError(f"need 0 <= min_scale <= max_scale; got {min_scale}, {max_scale}")
        if signal_by not in ("group", "param"):
            raise ValueError(f"signal_by must be 'group' or 'param'; got {signal_by!r}")
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            check_finite=check_finite,
            foreach=foreach,
            fused=fused,
            beta=beta,
            min_scale=min_scale,
            max_scale=max_scale,
            signal_by=signal_by,
        )

    def multipliers(self) -> dict[str, float]:
        """The current LR multiplier of each group, keyed by layer name (or group index)."""
        out = {}
        for i, group in enumerate(self.param_groups):
            signals = [
                self.state[p]["signal"] for p in group["params"] if "signal" in self.state[p]
            ]
            if signals:
                e = torch.stack(signals).float().mean().item()
                out[group.get("layer", i)] = feedback_multiplier(
                    e, group["min_scale"], group["max_scale"]
                )
        return out

    def _prevs(self, owners) -> list[torch.Tensor]:
        """Each tensor's previous gradient (this rank's shard of it, for a sharded parameter)."""
        for p in owners:
            state = self.state[p]
            if "signal" not in state:
                state["prev_grad"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["signal"] = torch.ones((), dtype=torch.float32, device=p.device)
                state["prev_norm"] = torch.zeros((), dtype=torch.float32, device=p.device)
        return [local(real_view(self.state[p]["prev_grad"])) for p in owners]

    def _local_stats(self, work: GroupStep) -> dict[str, torch.Tensor]:
        prevs = self._prevs(work.owners)
        if work.foreach:  # no multi-tensor dot: <g, b> = (|g + b|^2 - |g|^2 - |b|^2) / 2
            return {"s_norm": norms(torch._foreach_add(work.grads, prevs), foreach=True)}
        return {"dot": torch.stack([dot(g, b) for g, b in zip(work.grads, prevs)])}

    def _scales(self, work: GroupStep) -> torch.Tensor:
        group, stats = work.group, work.stats
        states = [self.state[p] for p in work.owners]
        prevs = self._prevs(work.owners)
        g_norm = stats["g_norm"]
        b_norm = torch.stack([s["prev_norm"] for s in states]).to(g_norm.dtype)
        if "s_norm" in stats:
            dots = (stats["s_norm"].square() - g_norm.square() - b_norm.square()) / 2
        else:
            dots = stats["dot"].to(g_norm.dtype)
        cos = gradient_cosines(dots, g_norm, b_norm, by_group=group["signal_by"] == "group")
        if work.foreach:
            torch._foreach_copy_(prevs, work.grads)
        else:
            for prev, g in zip(prevs, work.grads):
                prev.copy_(g)
        # no signal while the previous gradient is zero (the first step): keep the EMA
        ema, beta = torch.stack([s["signal"] for s in states]), group["beta"]
        ema = torch.where(torch.isnan(cos), ema, beta * ema + (1 - beta) * cos)
        torch._foreach_copy_([s["signal"] for s in states], list(ema.unbind()))
        torch._foreach_copy_([s["prev_norm"] for s in states], list(g_norm.float().unbind()))
        # float32 whatever the parameters' dtypes: each tensor's update rounds q in its own
        # precision, so a float32 tensor's step never depends on a bfloat16 neighbour's
        return feedback_multiplier(ema, group["min_scale"], group["max_scale"])


class DepthFeedbackSGD(FromModel, FeedbackSGD):
    """:class:`~depthaware.optim.FeedbackSGD` for timm's factory (``"depthfeedback"``), with
    ``model=``."""
