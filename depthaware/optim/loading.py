"""Loading an optimizer ``state_dict`` saved elsewhere: what it must fit, and what it may lack.

``torch.optim.Optimizer.load_state_dict`` pairs the saved parameters with the live ones by their
flat position and replaces every group's settings with the saved ones. So it loads, without a
word, a state whose groups come in another order (Res-Block 1 gets Res-Block 2's ``lr`` when the
two have the same shapes), a state of another model whose buffers a multi-tensor kernel would then
read past their end, and an FSDP2 state of ``DTensor`` buffers into plain parameters (the first
step fails inside the kernel). :func:`check_loaded_state` refuses each before anything is loaded,
naming what differs. :func:`load_filling` loads and then fills the settings a state saved by
another optimizer class lacks (torch's ``SGD`` saves no ``trust_coefficient``), as torch's own
optimizers fill missing defaults in ``__setstate__``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from itertools import chain

import torch
from torch.optim.optimizer import Optimizer

from ..distributed import is_dtensor
from .functional import real_view

__all__ = ["PARAM_SHAPED", "check_loaded_state", "load_filling", "param_name"]

#: state entries that have their parameter's shape (the others are 0-dim: steps, signals)
PARAM_SHAPED = ("momentum_buffer", "prev_grad")
#: group settings of a kernel path or a check: a state from torch's own optimizers lacks some, and
#: filling them from this optimizer changes no number
_PATH_KEYS = {"foreach", "fused", "differentiable", "maximize", "capturable", "check_finite"}


def param_name(group: dict, p: torch.Tensor) -> str:
    """``'fc.weight'`` (the group's ``names``) or ``#i of shape (...)``."""
    index = next(i for i, q in enumerate(group["params"]) if q is p)
    names = group.get("names")
    return f"'{names[index]}'" if names else f"#{index} of shape {tuple(p.shape)}"


def _layout(groups: list[dict]) -> str:
    sizes = ", ".join(str(len(g["params"])) for g in groups)
    layers = [g["layer"] for g in groups if "layer" in g]
    named = f" (layers {', '.join(map(repr, dict.fromkeys(layers)))})" if layers else ""
    return f"{len(groups)} param group{'s' * (len(groups) != 1)} of {sizes} parameters{named}"


def check_loaded_state(optimizer: Optimizer, state_dict: dict) -> None:
    """Refuse a ``state_dict`` that does not fit ``optimizer``, before anything is loaded.

    Checked, each a ``ValueError`` naming what differs:

    * the group layout (how many groups, how many parameters each): a state of
      ``LARS(model.parameters())`` does not fit ``LARS(depth_param_groups(model))``;
    * each group's ``layer`` and parameter ``names`` where both sides carry them: the same
      layout in another order would give one layer another's settings and state;
    * every state tensor with dimensions has its parameter's shape (complex parameters: their
      own or their real view's) and a 0-dim entry stays 0-dim: a state saved for another model
      (another width) would be read past its end by a multi-tensor or fused kernel;
    * a state tensor is a ``DTensor`` exactly where its parameter is one: a sharded (FSDP2)
      state loads into sharded parameters only.
    """
    saved = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
    if not isinstance(saved, list) or not all(isinstance(g, dict) for g in saved):
        raise ValueError("not an optimizer state_dict: it has no list of 'param_groups'")
    live = optimizer.param_groups
    if [len(g["params"]) for g in saved] != [len(g["params"]) for g in live]:
        raise ValueError(
            f"this state_dict has {_layout(saved)}, the optimizer {_layout(live)}: its groups "
            "were built another way (model.parameters() against depth_param_groups(...), or "
            "another model); build the optimizer's groups as they were when it was saved. "
            "Nothing was loaded"
        )
    for i, (have, got) in enumerate(zip(live, saved)):
        for key in ("layer", "names"):
            if key in have and key in got and list(_listed(have[key])) != list(_listed(got[key])):
                first = next(
                    (a, b) for a, b in zip(_listed(got[key]), _listed(have[key])) if a != b
                )
                raise ValueError(
                    f"param group {i} holds {key} {first[0]!r} in the state_dict, {first[1]!r} "
                    "in this optimizer: the groups come in another order (or from another "
                    "model); build them in the saved order. Nothing was loaded"
                )
    ids = chain.from_iterable(g["params"] for g in saved)
    owners = ((g, p) for g in live for p in g["params"])
    for pid, (group, p) in zip(ids, owners):
        for key, value in state_dict.get("state", {}).get(pid, {}).items():
            if isinstance(value, torch.Tensor):
                _check_entry(group, p, key, value)


def _listed(value):
    return value if isinstance(value, (list, tuple)) else [value]


def _check_entry(group: dict, p: torch.Tensor, key: str, value: torch.Tensor) -> None:
    layer = f" of layer '{group['layer']}'" if "layer" in group else ""
    where = f"state {key!r} of parameter {param_name(group, p)}{layer}"
    if is_dtensor(value) and not is_dtensor(p):
        raise ValueError(
            f"{where} is a DTensor (saved from sharded parameters with a plain "
            "optimizer.state_dict()), the parameter a plain tensor: save it with torch.distributed"
            ".checkpoint.state_dict.get_optimizer_state_dict(model, optimizer, options="
            "StateDictOptions(full_state_dict=True)) for an unsharded run. Nothing was loaded"
        )
    if is_dtensor(p) and not is_dtensor(value) and value.ndim:
        raise ValueError(
            f"{where} is a plain tensor, the parameter a DTensor (fully_shard): load it with "
            "torch.distributed.checkpoint.state_dict.set_optimizer_state_dict(model, optimizer, "
            "state_dict), which shards it. Nothing was loaded"
        )
    shapes = {tuple(p.shape), tuple(real_view(p).shape)}
    if tuple(value.shape) in shapes or (value.ndim == 0 and key not in PARAM_SHAPED):
        return
    raise ValueError(
        f"{where} has shape {tuple(value.shape)}, the parameter {tuple(p.shape)}: this "
        "state_dict was saved for another model (another width?); nothing was loaded"
    )


def load_filling(optimizer: Optimizer, state_dict: dict, load: Callable[[dict], None]) -> None:
    """``load(state_dict)`` (``Optimizer.load_state_dict``), then every setting the loaded
    groups lack taken from the group it replaced (the optimizer's own). A state saved by another
    optimizer class (torch's ``SGD`` into ``LARS``) so loads its hyper-parameters and buffers and
    keeps this optimizer's own settings, with a ``UserWarning`` naming them."""
    before = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    saved = [set(g) for g in state_dict["param_groups"]]
    load(state_dict)
    filled = set()
    for group, old, got in zip(optimizer.param_groups, before, saved):
        for key, value in old.items():
            if key not in got:  # even where __setstate__ filled a default: the group's own
                group[key] = value
                filled.add(key)
    own = sorted(filled - _PATH_KEYS)
    if own:
        warnings.warn(
            f"the loaded state_dict's param groups have no {own} (saved by another optimizer "
            f"class?): they keep {type(optimizer).__name__}'s values, and its state loads as "
            "it is",
            stacklevel=3,
        )
