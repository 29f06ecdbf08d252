"""Per-layer gradient statistics.

The mean absolute gradient of layer :math:`l` (Figure 1, left) is
:math:`\\overline{|g_l|} = \\frac{1}{n_l} \\sum_{i=1}^{n_l} |\\partial L / \\partial \\theta_{l,i}|`
over the layer's :math:`n_l` parameters that hold a gradient.

>>> import torch, depthaware as da
>>> net = da.models.FCNN((1, 4, 1))
>>> layers = da.layer_groups(net)
>>> net(torch.ones(2, 1)).sum().backward()
>>> sorted(da.measure.grad_magnitude(layers))
['Layer 1', 'Output layer']
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ..distributed import local, reduce_sums, refuse_flat, shard_groups
from ..layers import LayerGroups, as_layer_groups, model_of

__all__ = ["GradMagnitude", "PredictivenessMonitor", "grad_magnitude", "predictiveness"]


def _layer_means(layers: LayerGroups) -> torch.Tensor:
    """Mean |grad| per layer as one tensor of shape ``(L,)``, without a host sync.

    One ``torch._foreach_norm(grads, 1)`` call gives every gradient's L1 norm; an ``index_add_``
    sums them per layer. Layers without any gradient get NaN. A sharded (FSDP2) gradient's L1
    norm is its shards' sum, reduced in one collective: every rank gets the global means.
    """
    grads, owner = [], []
    counts = torch.zeros(len(layers), dtype=torch.float64)
    for k, layer in enumerate(layers):
        for p in layer.params:
            if p.grad is not None:
                grads.append(p.grad.detach())
                owner.append(k)
                counts[k] += p.grad.numel()  # a DTensor's numel is the whole tensor's
    if not grads:
        return torch.full((len(layers),), float("nan"), dtype=torch.float64)
    values = [local(g) for g in grads]
    device = values[0].device
    l1 = torch.stack(torch._foreach_norm(values, 1)).to(torch.float64)
    l1 = reduce_sums(l1[None], shard_groups(grads))[0]
    sums = torch.zeros(len(layers), dtype=torch.float64, device=device)
    sums.index_add_(0, torch.tensor(owner, device=device), l1)
    return sums / counts.to(device)  # 0/0 -> NaN for layers without gradients


def grad_magnitude(model: nn.Module | LayerGroups) -> dict[str, float]:
    """Mean absolute gradient per layer (of a model or its LayerGroups), from the ``.grad`` of its
    parameters.

    A layer none of whose parameters has a gradient gets NaN.
    """
    layers = as_layer_groups(model)
    return dict(zip(layers.names, _layer_means(layers).tolist(), strict=True))


class GradMagnitude:
    """Running mean of :func:`grad_magnitude` over the steps of an epoch.

    Call :meth:`update` after ``backward()``, :meth:`compute` at the end of the epoch and
    :meth:`reset` to start the next; ``update`` never synchronizes with the device.
    """

    def __init__(self, model: nn.Module | LayerGroups):
        self.layers = as_layer_groups(model)
        self.reset()

    def reset(self) -> None:
        """Forget the updates so far (start an epoch)."""
        self._sum: torch.Tensor | None = None
        self._n = 0

    def update(self) -> None:
        """Add this step's :func:`grad_magnitude` (the gradients as they are now)."""
        means = _layer_means(self.layers)
        self._sum = means if self._sum is None else self._sum + means
        self._n += 1

    @property
    def count(self) -> int:
        """The updates since the last :meth:`reset`."""
        return self._n

    def compute(self) -> dict[str, float]:
        """Each layer's mean gradient magnitude over the updates since :meth:`reset`."""
        if self._sum is None:
            raise ValueError("GradMagnitude.compute() before any update()")
        return dict(zip(self.layers.names, (self._sum / self._n).tolist(), strict=True))


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    denom = torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)
    return float("nan") if denom == 0 else (torch.dot(a, b) / denom).item()


def predictiveness(
    model: nn.Module | LayerGroups,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor],
    other_batch: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, dict[str, float]]:
    """Gradient predictiveness of every layer at the current step (Definition 4.1).

    With :math:`G_l` the layer's gradient on ``batch``, :math:`G'_l` on ``other_batch`` and
    :math:`G''_l` on ``batch`` after every *other* layer has taken ``optimizer``'s real step
    computed from :math:`G`:

    .. math::

        \\text{data: } \\cos(G_l, G'_l), \\qquad \\text{parameters: } \\cos(G_l, G''_l).

    Nothing is left changed: gradients are taken through ``torch.func.functional_call`` on
    detached copies (buffers such as BatchNorm statistics included), and the optimizer's step is
    taken on the live parameters and undone in a ``finally`` (weights, ``.grad`` and the
    optimizer's state restored). Costs ``L + 2`` forward/backward passes for ``L`` layers.

    Randomness (dropout, stochastic depth in train mode): every pass over ``batch`` draws the same
    random numbers, so :math:`G` and :math:`G''` differ only by the other layers' step, as the
    definition intends; the random generators are restored afterwards, so the caller's stream of
    random numbers is the same with or without the measurement.

    The arguments come in :class:`PredictivenessMonitor`'s order: the model, the loss, the
    optimizer, then the data.

    Args:
        model: the network or its LayerGroups; its train/eval mode is used as it is.
        loss_fn: ``loss_fn(output, target) -> scalar``.
        optimizer: the optimizer training ``model`` (its real update rule gives ``θ^{(t+1)}``).
        batch, other_batch: ``(input, target)`` pairs.

    Returns:
        ``{layer: {"data": cos, "parameters": cos}}``; NaN where a gradient is zero.
    """
    from torch.func import functional_call

    layers = as_layer_groups(model)
    _refuse_sharded(layers)
    model = model_of(layers)
    current = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def grads(params: dict, data) -> dict[str, torch.Tensor]:
        leaves = {n: t.detach().clone().requires_grad_(True) for n, t in params.items()}
        state = {**leaves, **{n: b.clone() for n, b in buffers.items()}}
        loss = loss_fn(functional_call(model, state, (data[0],)), data[1])
        names = [n for layer in layers for n in layer.param_names]
        got = torch.autograd.grad(loss, [leaves[n] for n in names], allow_unused=True)
        return {n: torch.zeros_like(leaves[n]) if g is None else g for n, g in zip(names, got)}

    def flat(g: dict, layer) -> torch.Tensor:
        return torch.cat([g[n].reshape(-1) for n in layer.param_names]).double()

    cuda = sorted({t.device.index or 0 for t in current.values() if t.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):  # the caller's generators are restored after
        replay = _rng_replay(cuda)

        def grads_on_batch(params: dict) -> dict[str, torch.Tensor]:
            replay()  # every pass over `batch` draws the same dropout masks
            return grads(params, batch)

        g, g_other = grads_on_batch(current), grads(current, other_batch)
        stepped = _stepped(model, optimizer, g)
        out = {}
        for layer in layers:
            g_after = grads_on_batch({**stepped, **{n: current[n] for n in layer.param_names}})
            out[layer.name] = {
                "data": _cos(flat(g, layer), flat(g_other, layer)),
                "parameters": _cos(flat(g, layer), flat(g_after, layer)),
            }
    return out


def _rng_replay(cuda: list[int]):
    """A function that sets the CPU and the given CUDA generators back to their state now."""
    cpu, gpu = torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in cuda]

    def replay() -> None:
        torch.set_rng_state(cpu)
        for d, state in zip(cuda, gpu):
            torch.cuda.set_rng_state(state, d)

    return replay


def _stepped(model, optimizer, g: dict) -> dict[str, torch.Tensor]:
    """The weights after ``optimizer``'s real step from the gradients ``g``; the model, its
    ``.grad`` and the optimizer's state are restored (``finally``)."""
    live = dict(model.named_parameters())
    saved_w = {n: p.detach().clone() for n, p in live.items()}
    saved_g = {n: p.grad for n, p in live.items()}
    saved_opt = copy.deepcopy(optimizer.state_dict())
    try:
        for n, p in live.items():
            p.grad = g[n].clone() if n in g else None
        optimizer.step()
        return {n: p.detach().clone() for n, p in live.items()}
    finally:
        with torch.no_grad():
            for n, p in live.items():
                p.copy_(saved_w[n])
                p.grad = saved_g[n]
        optimizer.load_state_dict(saved_opt)


def _refuse_sharded(layers: LayerGroups) -> None:
    """Predictiveness re-evaluates the loss at copies of the parameters: not written for FSDP's
    sharded or flat parameters, so they are refused before any work (DDP's are plain tensors)."""
    params = list(layers.parameters())
    refuse_flat(params, "predictiveness")
    if shard_groups(params):
        raise ValueError(
            "predictiveness does not take sharded (FSDP2 fully_shard) parameters; measure it "
            "under DistributedDataParallel or in one process"
        )


class PredictivenessMonitor:
    """:func:`predictiveness` every ``every`` steps of a user's loop.

    Call :meth:`update` once per step (before ``optimizer.step()``, with the step's batch and
    another one); :meth:`compute` returns the history ``{layer: {"step": [...], "data": [...],
    "parameters": [...]}}``; :meth:`reset` clears it.
    """

    def __init__(
        self,
        model: nn.Module | LayerGroups,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        *,
        every: int = 10,
    ):
        if every < 1:
            raise ValueError(f"every must be >= 1; got {every}")
        self.layers = as_layer_groups(model)
        _refuse_sharded(self.layers)
        self.loss_fn, self.optimizer, self.every = loss_fn, optimizer, every
        self.reset()

    def reset(self) -> None:
        """Forget the history and count steps from 0 again."""
        self.t = 0
        self.history: dict[str, dict[str, list[float]]] = {
            n: {"step": [], "data": [], "parameters": []} for n in self.layers.names
        }

    def update(
        self,
        batch: tuple[torch.Tensor, torch.Tensor],
        other_batch: tuple[torch.Tensor, torch.Tensor],
    ) -> None:
        """One step of the user's loop: every ``every``-th call measures
        :func:`predictiveness` on ``batch`` and ``other_batch``."""
        if self.t % self.every == 0:
            got = predictiveness(self.layers, self.loss_fn, self.optimizer, batch, other_batch)
            for name, v in got.items():
                h = self.history[name]
                h["step"].append(self.t)
                h["data"].append(v["data"])
                h["parameters"].append(v["parameters"])
        self.t += 1

    def compute(self) -> dict[str, dict[str, list[float]]]:
        """The history, ``{layer: {"step": [...], "data": [...], "parameters": [...]}}``."""
        return self.history
