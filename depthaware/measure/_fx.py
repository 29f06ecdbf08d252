"""The evaluation engine behind :func:`~depthaware.measure.landscape` (its three
paths are described there). ``EVALUATORS[path](model, layer, loss_fn, inputs, targets, grid,
chunk)`` returns the losses at the grid points of a :class:`Grid` and the loss at θ*.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.fx.experimental.optimization import matches_module_pattern, replace_node_module
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

__all__ = ["EVALUATORS", "Grid"]


@dataclass
class Grid:
    """Layer weights θ*, directions and the flattened grid coordinates."""

    theta: dict
    d1: Mapping
    d2: Mapping
    b1: torch.Tensor
    b2: torch.Tensor

    def __len__(self) -> int:
        return len(self.b1)

    def coords(self, lo: int, hi: int, like: torch.Tensor, ndim: int):
        def shaped(b):
            return b[lo:hi].to(like.device, like.dtype).reshape(-1, *([1] * ndim))

        return shaped(self.b1), shaped(self.b2)

    def params(self, lo: int, hi: int) -> dict[str, torch.Tensor]:
        """``{name: θ* + β1 d1 + β2 d2}`` for grid points ``lo:hi``, stacked on dim 0."""
        out = {}
        for n, w in self.theta.items():
            c1, c2 = self.coords(lo, hi, w, w.ndim)
            out[n] = w + c1 * self.d1[n] + c2 * self.d2[n]
        return out


def _owner(names):
    def owns(node) -> bool:
        if node.op == "call_module":
            return any(n.startswith(node.target + ".") for n in names)
        return node.op == "get_attr" and node.target in names

    return owns


def _cut(gm: torch.fx.GraphModule, source) -> tuple[torch.fx.GraphModule, list]:
    """The part of ``gm`` that depends on the nodes for which ``source(node)`` is true, as a
    GraphModule whose placeholders are the values it needs from the rest (returned in order)."""
    dependent: set = set()
    for node in gm.graph.nodes:
        if source(node) or any(a in dependent for a in node.all_input_nodes):
            dependent.add(node)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    if output not in dependent:
        raise ValueError("the model's output does not depend on the layer's parameters")
    needed = [
        n
        for n in gm.graph.nodes
        if n not in dependent and n.op != "get_attr" and any(u in dependent for u in n.users)
    ]
    graph, env = torch.fx.Graph(), dict[torch.fx.Node, torch.fx.Node]()
    for i, n in enumerate(needed):
        env[n] = graph.placeholder(f"cached_{i}")
    for n in gm.graph.nodes:
        if n in dependent or (n.op == "get_attr" and any(u in dependent for u in n.users)):
            env[n] = graph.node_copy(n, lambda a: env[a])
    return torch.fx.GraphModule(gm, graph), needed


class _Keep(torch.fx.Interpreter):
    """Runs the graph once and keeps copies of the values of ``keep`` (copies: a later in-place
    op, such as ``ReLU(inplace=True)``, would otherwise change them)."""

    def __init__(self, gm, keep):
        super().__init__(gm)
        self.keep, self.kept = set(keep), {}

    def run_node(self, n):
        value = super().run_node(n)
        if n in self.keep:
            self.kept[n] = value.clone() if isinstance(value, torch.Tensor) else value
        return value


def _values(gm, nodes, inputs) -> tuple[list, object]:
    """The values of ``nodes`` and the output, from one run of ``gm`` on ``inputs``."""
    interpreter = _Keep(gm, nodes)
    output = interpreter.run(inputs)
    return [interpreter.kept[n] for n in nodes], output


_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_FUSABLE: list[tuple[tuple[type, type], Callable]] = [
    ((nn.Conv1d, nn.BatchNorm1d), fuse_conv_bn_eval),
    ((nn.Conv2d, nn.BatchNorm2d), fuse_conv_bn_eval),
    ((nn.Conv3d, nn.BatchNorm3d), fuse_conv_bn_eval),
    ((nn.Linear, nn.BatchNorm1d), fuse_linear_bn_eval),
]


def _affine_chain(gm, layer):
    """The node up to which the network is affine in the layer's parameters, or ``None``.

    That is the one call of a Linear/Conv module holding exactly the layer's parameters,
    followed, while each node has a single user, by eval-mode BatchNorm or the addition of a
    layer-independent tensor (a skip connection). Three evaluations of that chain then give its
    value at every grid point.
    """
    calls = [n for n in gm.graph.nodes if _owner(layer.param_names)(n)]
    if len(calls) != 1 or calls[0].op != "call_module" or len(calls[0].args) != 1:
        return None
    node, modules = calls[0], dict(gm.named_modules())
    own = {f"{node.target}.{n}" for n, _ in modules[node.target].named_parameters()}
    if (
        calls[0].kwargs
        or not isinstance(modules[node.target], _AFFINE)
        or own != set(layer.param_names)
    ):
        return None
    while len(node.users) == 1:
        user = next(iter(node.users))
        module = modules.get(user.target) if user.op == "call_module" else None
        eval_norm = (
            isinstance(module, nn.modules.batchnorm._BatchNorm)
            and not module.training
            and module.track_running_stats
        )
        add = user.op == "call_function" and user.target in (operator.add, torch.add)
        if not (eval_norm or (add and len(user.args) == 2 and not user.kwargs)):
            break
        node = user
    return node


def _upto(gm: torch.fx.GraphModule, name: str) -> torch.fx.GraphModule:
    """``gm`` cut after its node ``name``, which becomes the output."""
    graph, env = torch.fx.Graph(), dict[torch.fx.Node, torch.fx.Node]()
    for n in gm.graph.nodes:
        env[n] = graph.node_copy(n, lambda a: env[a])
        if n.name == name:
            graph.output(env[n])
            break
    out = torch.fx.GraphModule(gm, graph)
    out.graph.eliminate_dead_code()
    out.recompile()
    return out


def _inference_copy(gm: torch.fx.GraphModule, keep) -> torch.fx.GraphModule:
    """A copy for eval-mode evaluation: BatchNorm folded into the Conv/Linear before it (except
    modules holding parameters ``keep``, which are substituted), channels-last weights."""
    gm = copy.deepcopy(gm)
    modules = dict(gm.named_modules())
    owns = _owner(keep)
    for pattern, fuse in _FUSABLE:
        for node in list(gm.graph.nodes):
            if not matches_module_pattern(pattern, node, modules):
                continue
            first = node.args[0]
            keep_apart = owns(first) or owns(node)  # their parameters are substituted
            if len(first.users) > 1 or keep_apart or not modules[node.target].track_running_stats:
                continue
            replace_node_module(first, modules, fuse(modules[first.target], modules[node.target]))
            node.replace_all_uses_with(first)
            gm.graph.erase_node(node)
    gm.recompile()
    return gm.to(memory_format=torch.channels_last)


def _channels_last(values: list) -> list:
    return [
        v.contiguous(memory_format=torch.channels_last)
        if isinstance(v, torch.Tensor) and v.ndim == 4
        else v
        for v in values
    ]


def _batched(model, layer, loss_fn, inputs, targets, grid: Grid, chunk: int | None):
    """Prefix cache + vmap over chunks of grid points; for a single Linear/Conv layer, its
    output at every grid point is :math:`y^* + \\beta_1 (y_1 - y^*) + \\beta_2 (y_2 - y^*)`
    from three evaluations, so only what follows it is batched."""
    gm = torch.fx.symbolic_trace(model)
    node = _affine_chain(gm, layer)
    owner = _owner(layer.param_names)
    if node is None:
        rest, needed = _cut(gm, owner)
        cached, output = _values(gm, needed, inputs)
        fast = rest if model.training else _inference_copy(rest, layer.param_names)
        cached = cached if model.training else _channels_last(cached)

        def one(params):
            return loss_fn(functional_call(fast, params, tuple(cached)), targets)

        chunk = chunk or 4
        losses = [
            v
            for lo in range(0, len(grid), chunk)
            for v in torch.vmap(one)(grid.params(lo, min(lo + chunk, len(grid))))
        ]
        return losses, float(loss_fn(output, targets))
    suffix, needed_s = _cut(gm, owner)
    chain = _upto(suffix, node.name)
    rest, needed = _cut(gm, lambda n: node in n.all_input_nodes)
    values, output = _values(gm, [node, *needed_s, *needed], inputs)
    y0, chain_in, cached = values[0], values[1 : len(needed_s) + 1], values[len(needed_s) + 1 :]
    basis = torch.stack(
        [
            functional_call(chain, {n: w + d[n] for n, w in grid.theta.items()}, tuple(chain_in))
            - y0
            for d in (grid.d1, grid.d2)
        ]
    ).flatten(1)  # (2, numel of the chain's output)
    fast = rest if model.training else _inference_copy(rest, ())
    cached = cached if model.training else _channels_last(cached)
    at = needed.index(node)

    def one_output(y):
        return loss_fn(fast(*cached[:at], y, *cached[at + 1 :]), targets)

    chunk = chunk or max(1, 2**22 // y0.numel())  # about 16 MB of float32 per chunk
    out = []
    for lo in range(0, len(grid), chunk):
        coeffs = torch.cat(grid.coords(lo, min(lo + chunk, len(grid)), y0, 1), dim=1)  # (k, 2)
        ys = torch.addmm(y0.reshape(1, -1), coeffs, basis).view(-1, *y0.shape)
        out.extend(torch.vmap(one_output)(ys))
    return out, float(loss_fn(output, targets))


def _prefix(model, layer, loss_fn, inputs, targets, grid: Grid, chunk: int | None):
    gm = torch.fx.symbolic_trace(model)
    rest, needed = _cut(gm, _owner(layer.param_names))
    cached, output = _values(gm, needed, inputs)
    out = []
    for k in range(len(grid)):
        params = {name: v[0] for name, v in grid.params(k, k + 1).items()}
        fresh = tuple(c.clone() if isinstance(c, torch.Tensor) else c for c in cached)
        out.append(loss_fn(functional_call(rest, params, fresh), targets).reshape(()))
    return out, float(loss_fn(output, targets))


def _loop(model, layer, loss_fn, inputs, targets, grid: Grid, chunk: int | None):
    """Copy-perturb-forward: the reference path (weights restored by the caller)."""
    center = float(loss_fn(model(inputs), targets))
    out = []
    for k in range(len(grid)):
        for p, v in zip(layer.params, grid.params(k, k + 1).values()):
            p.copy_(v[0])
        out.append(loss_fn(model(inputs), targets).reshape(()))
    return out, center


EVALUATORS = {"batched": _batched, "prefix": _prefix, "loop": _loop}
