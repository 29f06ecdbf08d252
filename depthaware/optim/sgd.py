"""DepthSGD: ``torch.optim.SGD`` over depth parameter groups, with a NaN/inf check that runs in
torch's step hooks (registered in ``timm``'s factory as ``depthsgd`` by :mod:`.registry`)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import ParamsT

from ..distributed import is_dtensor, local, reduce_sums, shard_groups
from ..layers import LayerGroups
from .functional import check_finite, check_lr
from .kernels import fusable
from .loading import check_loaded_state, load_filling, param_name
from .param_groups import Scale, by_model

__all__ = ["DepthSGD"]


class DepthSGD(torch.optim.SGD):
    """``torch.optim.SGD`` over depth parameter groups, with a NaN/inf check.

    The per-layer LR lives in each group's ``lr`` (:func:`~depthaware.optim.depth_param_groups`,
    or ``model=`` to split the given groups by the model's layers). A group without ``depth``, at
    construction or through ``add_param_group``, trains as plain SGD at its own ``lr``, with a
    ``UserWarning``.

    Args:
        params, lr, momentum, dampening, weight_decay, nesterov: as ``torch.optim.SGD``.
        model, lr_scale, end: split ``params`` by ``model``'s layers with this depth scale
            (:func:`~depthaware.optim.split_by_layer`).
        check_finite: raise ``FloatingPointError`` naming the parameter on a NaN/inf gradient,
            before anything is updated (one host sync per step). Skipped on a step that
            ``torch.amp.GradScaler`` drives with ``fused=True``: the kernel skips that step itself
            (and the momentum buffers that torch's fused SGD allocates uninitialised on such a
            skipped first step are dropped, so the next step starts them afresh). A NaN/inf
            ``lr`` is refused on every step, naming its group.
        **kwargs: ``maximize``, ``foreach``, ``differentiable``, ``fused``, as ``torch.optim.SGD``.
            ``fused=True`` is decided once: a parameter the fused kernel cannot update sends every
            group to the multi-tensor path, with a warning; a sparse gradient on the fused path
            is refused before anything moves.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.1,
        momentum: float = 0.9,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        model: nn.Module | LayerGroups | None = None,
        lr_scale: Scale = None,
        end: float = 0.1,
        check_finite: bool = True,
        **kwargs: Any,
    ):
        super().__init__(
            by_model(params, model, lr, lr_scale, end),
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            **kwargs,
        )
        self.defaults["check_finite"] = check_finite
        for group in self.param_groups:
            group.setdefault("check_finite", check_finite)
        self._decide_path()
        self._hook()

    def _decide_path(self) -> None:
        """The kernel path, decided once for the whole optimizer: ``fused=True`` stays fused only
        if torch's fused kernel updates every parameter correctly, which a DTensor
        (``fully_shard``: the kernel has no sharding rule) and, on a CPU, a strided view (the
        kernel reads its memory as flat) or a complex tensor rule out. Otherwise every group
        takes the multi-tensor path, with a ``UserWarning`` naming the parameter: one path for
        all groups, so that a ``GradScaler`` either hands every group scaled gradients for the
        fused kernel or unscales them all itself."""
        if not self.defaults.get("fused"):
            return
        for group in self.param_groups:
            for p in group["params"]:
                if is_dtensor(p) or (p.device.type == "cpu" and not fusable(p, p, None)):
                    why = "a DTensor" if is_dtensor(p) else "a strided view or complex"
                    warnings.warn(
                        f"DepthSGD(fused=True): parameter {param_name(group, p)} is {why}, which "
                        "torch's fused kernel cannot update; every group takes the multi-tensor "
                        "(foreach) path instead",
                        stacklevel=3,
                    )
                    self.defaults.update(fused=False, foreach=True)
                    for g in self.param_groups:
                        g.update(fused=False, foreach=True)
                    self._step_supports_amp_scaling = False
                    return

    def _hook(self) -> None:
        """The check runs in torch's step hooks around ``SGD.step`` itself (a pickled or copied
        optimizer has no hooks, so ``__setstate__`` registers them again)."""
        self._hooked = True
        self._fresh: tuple | None = None  # buffers a GradScaler step may leave uninitialised
        self.register_step_pre_hook(_before_step)
        self.register_step_post_hook(_after_step)

    def __setstate__(self, state):
        super().__setstate__(state)
        if "defaults" in state:  # unpickled: a pickle of a version before check_finite existed
            for group in self.param_groups:
                group.setdefault("check_finite", self.defaults.get("check_finite", True))
        if not hasattr(self, "_hooked"):  # unpickled or copied: no hooks yet (load_state_dict
            self._hook()  # calls this too, on an optimizer that has them)

    def load_state_dict(self, state_dict: dict) -> None:
        """``torch.optim.SGD.load_state_dict``. A state that does not fit (another group layout
        or order, another model's shapes, a sharded state for plain parameters) is refused before
        anything loads (``depthaware.optim.loading.check_loaded_state``); settings that the
        saved groups lack (a state of torch's SGD has no ``check_finite``) keep this optimizer's."""
        check_loaded_state(self, state_dict)
        load_filling(self, state_dict, super().load_state_dict)
        # the loaded groups carry their path: a GradScaler hands scaled gradients to fused ones
        self._step_supports_amp_scaling = any(g["fused"] for g in self.param_groups)

    def add_param_group(self, param_group: dict) -> None:
        if "depth" not in param_group:
            warnings.warn(
                "DepthSGD got a parameter group without 'depth': it trains as plain SGD at the "
                "group's own lr. Pass model= (with lr_scale=) or groups from "
                "depthaware.optim.depth_param_groups for per-layer LRs.",
                stacklevel=3,
            )
        super().add_param_group(param_group)
        if hasattr(self, "_hooked"):  # a group added after construction: the path is decided again
            self._decide_path()

    def _prepare(self) -> None:
        """Before ``SGD.step`` updates anything: the finiteness checks, and a sparse gradient
        refused on the fused path (torch's fused kernel takes none). A ``GradScaler`` step of the
        fused kernel hands over scaled gradients, which the kernel checks and skips itself: then
        only the momentum buffers this step creates are remembered (:meth:`_drop_unwritten`)."""
        check_lr(self.param_groups)
        scale, found_inf = getattr(self, "grad_scale", None), getattr(self, "found_inf", None)
        for group in self.param_groups:
            if not group["fused"]:
                continue
            sparse = [p for p in group["params"] if p.grad is not None and p.grad.is_sparse]
            if sparse:
                raise RuntimeError(
                    f"DepthSGD(fused=True): parameter {param_name(group, sparse[0])} has a sparse "
                    "gradient, which torch's fused kernel does not take; use fused=False"
                )
        if found_inf is not None:  # torch's fused SGD starts a buffer with empty_like, and a
            # skipped step never writes it: remember which buffers this step creates
            fresh = [
                p
                for g in self.param_groups
                if g["momentum"]
                for p in g["params"]
                if p.grad is not None and self.state[p].get("momentum_buffer") is None
            ]
            self._fresh = (fresh, found_inf)
        if scale is None:
            self._check_gradients()

    def _drop_unwritten(self) -> None:
        """After a step a GradScaler skipped (an overflow): the momentum buffers it created were
        never written, so they are dropped and the next step starts them as a first step."""
        fresh, self._fresh = self._fresh or ([], None), None
        params, found_inf = fresh
        if params and bool(found_inf):
            for p in params:
                self.state[p].pop("momentum_buffer", None)

    @torch.no_grad()
    def _check_gradients(self) -> None:
        groups = [
            (g, [p for p in g["params"] if p.grad is not None])
            for g in self.param_groups
            if g["check_finite"]
        ]
        grads = [p.grad for _, ps in groups for p in ps]
        if not grads:
            return
        # max |g| of this rank's values: finite exactly when every entry is, and never overflows;
        # a sharded gradient's shards' maxima are summed in float64 (one collective for the
        # step), so that every rank takes the same decision
        values = [_dense_values(local(g)) for g in grads]
        top = torch.zeros(len(values), dtype=torch.float64, device=values[0].device)
        full = [i for i, v in enumerate(values) if v.numel()]  # an FSDP2 shard may be empty
        if full:
            found = torch._foreach_norm([values[i] for i in full], math.inf)
            top[full] = torch.stack(found).to(torch.float64)
        top = reduce_sums(top[None], shard_groups(grads))[0]
        check_finite(torch.isfinite(top), groups, "gradient")


def _before_step(optimizer: DepthSGD, args, kwargs):
    """Step pre-hook: :meth:`DepthSGD._prepare` now, or, for a step with a closure, right after
    the closure has computed the gradients it checks (the closure runs inside ``SGD.step``)."""
    closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
    if closure is None:
        optimizer._prepare()
        return None

    def checked():
        loss = closure()
        optimizer._prepare()
        return loss

    return (args[0],), {"closure": checked}


def _after_step(optimizer: DepthSGD, args, kwargs) -> None:
    optimizer._drop_unwritten()


def _dense_values(g: torch.Tensor) -> torch.Tensor:
    if g.is_sparse:
        g = g.coalesce().values()
    return torch.view_as_real(g) if g.is_complex() else g
