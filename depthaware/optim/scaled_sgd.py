"""ScaledSGD: the bookkeeping shared by LARS and FeedbackSGD (the math is in :mod:`.functional`,
the update kernels in :mod:`.kernels`).

Momentum SGD whose update of every tensor is scaled by a ratio ``q`` that a subclass computes:
``b <- momentum * b + q * (g + weight_decay * w)``; ``w <- w - lr * b``. This class keeps the
momentum buffers, checks every gradient and every scale for NaN/inf before anything is updated
(two host syncs per step), picks the kernel path and steps. It follows torch's optimizer
conventions: closures, ``add_param_group``, ``state_dict`` round trips, deepcopy and pickle,
complex parameters (as their real views), non-contiguous and mixed-dtype parameters, and FSDP2's
sharded (DTensor) parameters, whose per-tensor statistics are reduced over their shards in one
collective per group and step (:mod:`depthaware.distributed`); sparse gradients and FSDP1's flat
parameters are refused with an error naming them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, overload

import torch
from torch.optim.optimizer import Optimizer, ParamsT

from ..distributed import is_dtensor, local, reduce_sums, refuse_flat, shard_groups
from .functional import check_finite, check_lr, norms, real_view
from .kernels import choose_path, scaled_sgd
from .loading import check_loaded_state, load_filling, param_name

__all__ = ["GroupStep", "ScaledSGD"]


class ScaledSGD(Optimizer):
    """Momentum SGD with a per-tensor scale ``q`` from ``_scales`` (see the module docstring).

    Subclasses implement ``_scales(group, params, grads, stats, foreach, owners) -> Tensor (P,)``,
    where ``params``/``grads`` are the (real views of the, and for sharded parameters this rank's
    shards of the) tensors with a gradient, ``owners`` the parameters themselves (keys of
    ``self.state``) and ``stats`` the whole tensors' statistics: ``g_norm`` and those of
    ``_local_stats``.
    """

    #: what the scale is called in the error raised when it is NaN or inf
    scale_name = "step scale"
    #: state keys that stay float32 whatever the parameter's dtype (``load_state_dict`` would
    #: otherwise cast them to it, and a resumed bfloat16 run would not continue bit-identically)
    float32_state: tuple[str, ...] = ()

    def __init__(
        self,
        params: ParamsT,
        *,
        lr: float,
        momentum: float,
        weight_decay: float,
        nesterov: bool,
        check_finite: bool,
        foreach: bool | None,
        fused: bool | None,
        **extra: Any,
    ):
        if not lr >= 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"Invalid momentum: {momentum}")
        if not weight_decay >= 0:
            raise ValueError(f"Invalid weight_decay: {weight_decay}")
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum requires momentum > 0")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            check_finite=check_finite,
            foreach=foreach,
            fused=fused,
            **extra,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "defaults" in state:  # unpickled (load_state_dict fills its groups itself): a pickle
            for group in self.param_groups:  # of a version before an option existed
                for key, value in self.defaults.items():
                    group.setdefault(key, value)

    def load_state_dict(self, state_dict: dict) -> None:
        """``Optimizer.load_state_dict``, keeping the :attr:`float32_state` entries in float32.

        A state that does not fit (another group layout or order, another model's shapes, a
        sharded state for plain parameters) is refused first, naming what differs
        (``depthaware.optim.loading.check_loaded_state``); settings the saved groups lack
        (a state of torch's SGD) keep this optimizer's
        (``depthaware.optim.loading.load_filling``)."""
        check_loaded_state(self, state_dict)
        kept: list[tuple[torch.Tensor, str, torch.Tensor]] = []

        def keep(optimizer, loaded):  # runs after any user pre-hook: the ids are final
            ids = chain.from_iterable(g["params"] for g in loaded["param_groups"])
            params = chain.from_iterable(g["params"] for g in self.param_groups)
            for pid, p in zip(ids, params):
                state = loaded["state"].get(pid, {})
                kept.extend((p, k, state[k]) for k in self.float32_state if k in state)

        handle = self.register_load_state_dict_pre_hook(keep)
        try:
            load_filling(self, state_dict, super().load_state_dict)
        finally:
            handle.remove()
        for p, key, value in kept:
            self.state[p][key] = value.to(p.device, torch.float32, copy=True)

    def _local_stats(self, work: GroupStep) -> dict[str, torch.Tensor]:
        """Per-tensor statistics the scales need beyond the gradient norms, shape ``(P,)`` each,
        computed on this rank's tensors of ``work``: a key ending in ``_norm`` holds L2 norms,
        any other key sums over the elements (a dot product). Sharded tensors' entries are then
        reduced over their shards, all in one collective with the gradient norms."""
        return {}

    def _scales(self, work: GroupStep) -> torch.Tensor:
        """The ratio ``q`` of every tensor of ``work``, shape ``(P,)``, from its whole-tensor
        statistics ``work.stats`` (``g_norm`` and those of :meth:`_local_stats`)."""
        raise NotImplementedError

    def _init_group(self, group: dict, owners, params, grads, bufs) -> None:
        """Append the group's tensors with a gradient (torch's convention, which
        ``torch.compile`` relies on): the parameters (``owners``), their real views, gradients
        and momentum buffers."""
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(
                    f"{type(self).__name__} does not support sparse gradients: parameter "
                    f"{param_name(group, p)} has one (use torch.optim.SGD or SparseAdam there)"
                )
            owners.append(p)
            params.append(real_view(p))
            grads.append(real_view(p.grad))
            if group["momentum"]:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                bufs.append(real_view(state["momentum_buffer"]))

    @staticmethod
    def _check(values: list[torch.Tensor], work: list[GroupStep], what: str) -> None:
        """One host sync: every ``values`` entry of the groups with ``check_finite`` is finite."""
        rows = [(w, v) for w, v in zip(work, values) if w.group["check_finite"]]
        if rows:
            finite = torch.cat([torch.isfinite(v) for _, v in rows])
            check_finite(finite, [(w.group, w.owners) for w, _ in rows], what)

    def _prepare(self, group: dict) -> GroupStep | None:
        """A group's tensors with a gradient, its kernel path and whole-tensor statistics."""
        owners: list[torch.Tensor] = []
        params: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        bufs: list[torch.Tensor] = []
        self._init_group(group, owners, params, grads, bufs)
        if not params:
            return None
        refuse_flat(owners, type(self).__name__)
        sharded = shard_groups(params)
        if any(map(is_dtensor, params)):  # each rank updates its shard (or its full replica);
            # the statistics of sharded tensors are then summed over the shards
            params, grads, bufs = (
                [local(t) for t in params],
                [local(t) for t in grads],
                [local(t) for t in bufs],
            )
        path = choose_path(group["fused"], group["foreach"], params)
        work = GroupStep(group, owners, params, grads, bufs if group["momentum"] else None, path)
        stats = {"g_norm": norms(grads, foreach=work.foreach)}
        stats.update(self._local_stats(work))
        work.stats = _whole_tensor(stats, sharded)
        return work

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Performs a single optimization step (``closure`` re-evaluates the loss).

        Every group's gradients and then every group's scales are checked before any parameter
        moves (one host sync each), so a NaN anywhere leaves all of them as they were."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        check_lr(self.param_groups)
        work = [w for w in map(self._prepare, self.param_groups) if w is not None]
        if not work and not getattr(self, "_warned_no_grad", False):
            self._warned_no_grad = True
            warnings.warn(
                f"{type(self).__name__}.step(): no parameter has a gradient, nothing was updated. "
                "An optimizer built before fully_shard (or before moving or wrapping the model) "
                "holds parameters the model no longer uses: build it after.",
                stacklevel=3,
            )
        self._check([w.stats["g_norm"] for w in work], work, "gradient")
        scales = [self._scales(w) for w in work]
        self._check(scales, work, self.scale_name)  # every scale first
        for w, q in zip(work, scales):
            group = w.group
            scaled_sgd(
                w.params,
                w.grads,
                w.bufs,
                q,
                lr=float(group["lr"]),
                momentum=group["momentum"],
                weight_decay=group["weight_decay"],
                nesterov=group["nesterov"],
                foreach=w.foreach,
                fused=w.path == "fused",
            )
        return loss


@dataclass
class GroupStep:
    """One param group's share of a step: its tensors with a gradient (``owners``: the
    parameters, keys of the state; ``params``/``grads``/``bufs``: their real views, this rank's
    shards of sharded ones), the kernel path, then its statistics."""

    group: dict
    owners: list
    params: list
    grads: list
    bufs: list | None
    path: str
    stats: dict = field(default_factory=dict)

    @property
    def foreach(self) -> bool:
        return self.path == "foreach"


def _whole_tensor(stats: dict[str, torch.Tensor], sharded) -> dict[str, torch.Tensor]:
    """``stats`` with sharded tensors' entries summed over their shards (norms as squares, then
    the root): one ``all_reduce`` for all the statistics of a group. Unchanged without shards."""
    if not sharded:
        return stats
    keys = list(stats)
    rows = [stats[k].square() if k.endswith("_norm") else stats[k] for k in keys]
    dtype = torch.float64 if any(r.dtype == torch.float64 for r in rows) else torch.float32
    reduced = reduce_sums(torch.stack([r.to(dtype) for r in rows]), sharded)
    return {k: r.sqrt() if k.endswith("_norm") else r for k, r in zip(keys, reduced.unbind())}
