"""Per-layer loss landscapes and sharpness (Section 4, Figures 4-5; Li et al. 2018).

The landscape of one layer with weights :math:`\\theta^*` (all other layers fixed) is

.. math::

    L(\\beta_1, \\beta_2) = \\mathcal{L}(\\theta^* + \\beta_1 d_1 + \\beta_2 d_2),
    \\qquad (\\beta_1, \\beta_2) \\in [-r, r]^2,

with Gaussian directions :math:`d_i` normalized to the weights (:func:`direction`): a
fully-connected weight (2-D) as a whole, :math:`d \\leftarrow d\\,\\|\\theta\\| / \\|d\\|`;
a convolution weight filter by filter (Li et al. 2018), :math:`d_k \\leftarrow
d_k\\,\\|\\theta_k\\| / \\|d_k\\|` for every output filter :math:`k`. Biases and normalization
parameters (1-D) get a zero direction, so they stay at :math:`\\theta^*`, as in Li et al.

Evaluation does no work that does not depend on the layer. The model is traced with
``torch.fx``; every node that does not depend on the layer's parameters (everything before the
layer, and skip connections around it) is computed once and cached; a *suffix* graph computes the
rest from the cache. Grid points are evaluated in chunks with ``torch.vmap`` over
``torch.func.functional_call`` of the suffix (only the layer's parameters are batched, so
downstream layers fold the grid into their batch). Where that is impossible the evaluation falls
back, and :attr:`Landscape.method` says which path ran:

* ``"batched"``: prefix cache + vmap over chunks of grid points;
* ``"prefix"``: prefix cache, one grid point at a time (e.g. BatchNorm in train mode, a loss
  that cannot be vmapped);
* ``"loop"``: copy-perturb-forward on the whole model (a model ``torch.fx`` cannot trace).

The model is evaluated in eval mode unless ``train=True``; weights, buffers, ``requires_grad``
and the train/eval mode are restored afterwards. A grid point whose loss is NaN or inf is kept
as such and listed in :attr:`Landscape.nonfinite`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import operator
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.fx.experimental.optimization import matches_module_pattern, replace_node_module
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from ..layers import Layer, LayerGroups, layer_groups

__all__ = ["Landscape", "direction", "landscape", "layer_params", "top_eigenvalue"]

logger = logging.getLogger(__name__)
METHODS = ("auto", "batched", "prefix", "loop")


@dataclass
class Landscape:
    """A layer's loss over a 2-D grid.

    Attributes:
        layer: the layer's name.
        betas: grid coordinates, shape ``(n,)``, the same on both axes.
        loss: float64, shape ``(n, n)``; ``loss[i, j]`` at ``β1 = betas[i]``, ``β2 = betas[j]``.
        center: the loss at :math:`\\theta^*`.
        method: the evaluation path that ran (``"batched"``, ``"prefix"`` or ``"loop"``).
    """

    layer: str
    betas: torch.Tensor
    loss: torch.Tensor
    center: float
    method: str

    @property
    def nonfinite(self) -> list[tuple[float, float]]:
        """``(β1, β2)`` of every grid point whose loss is NaN or inf."""
        i, j = torch.nonzero(~torch.isfinite(self.loss), as_tuple=True)
        return [(float(self.betas[a]), float(self.betas[b])) for a, b in zip(i, j)]

    def rise(self, radius: float) -> float:
        """Mean loss rise :math:`L(\\beta) - L(0)` over finite grid points with
        :math:`\\|\\beta\\|_2 \\le` ``radius``: one number for "flatter" (smaller is flatter)."""
        b1, b2 = torch.meshgrid(self.betas, self.betas, indexing="ij")
        keep = (b1**2 + b2**2 <= radius**2 + 1e-12) & torch.isfinite(self.loss)
        if not keep.any():
            raise ValueError(f"no finite grid point within radius {radius}")
        return float((self.loss[keep] - self.center).mean())

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "betas": self.betas.tolist(),
            "loss": [
                [v if math.isfinite(v) else str(v) for v in row] for row in self.loss.tolist()
            ],
            "center": self.center,
            "method": self.method,
            "nonfinite": self.nonfinite,
        }


def layer_params(model: nn.Module, layer, layers: LayerGroups | None = None) -> Layer:
    """Resolve ``layer`` (a :class:`Layer`, a layer name of ``layers``, or a module name of
    ``model``) to a :class:`Layer` of ``model``'s parameters."""
    if isinstance(layer, Layer):
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a Layer or a name; got {type(layer).__name__}")
    layers = layers if layers is not None else _try_groups(model)
    if layers is not None and layer in layers.names:
        return layers[layer]
    modules = dict(model.named_modules())
    if layer in modules and layer:
        named = [(f"{layer}.{n}", p) for n, p in modules[layer].named_parameters()]
        if named:
            return Layer(layer, 0, tuple(n for n, _ in named), tuple(p for _, p in named))
    known = layers.names if layers is not None else []
    raise ValueError(
        f"{layer!r} is neither a layer ({known}) nor a module with parameters of "
        f"{type(model).__name__}"
    )


def _try_groups(model):
    try:
        return layer_groups(model)
    except ValueError:
        return None


def direction(
    params: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """A random direction normalized to ``params`` (see the module docstring).

    >>> import torch
    >>> w = torch.randn(4, 3, 3, 3)
    >>> d = direction({"w": w}, torch.Generator().manual_seed(0))["w"]
    >>> torch.allclose(d.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1))
    True
    """
    out = {}
    for name, w in params.items():
        w = w.detach()
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        if w.ndim <= 1:
            d.zero_()
        elif w.ndim == 2:
            d.mul_(w.norm() / d.norm())
        else:
            dims = tuple(range(1, w.ndim))
            scale = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
            d.mul_(scale / torch.linalg.vector_norm(d, dim=dims, keepdim=True))
        out[name] = d
    return out


@contextlib.contextmanager
def _preserved(model: nn.Module, names, train: bool):
    """Run with ``model`` in train/eval mode; restore the mode, the named params and buffers."""
    live = dict(model.named_parameters())
    saved = {n: live[n].detach().clone() for n in names}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    modes = {m: m.training for m in model.modules()}
    model.train(train)
    try:
        yield
    finally:
        with torch.no_grad():
            for n, v in saved.items():
                live[n].copy_(v)
            for n, b in model.named_buffers():
                b.copy_(buffers[n])
        for m, mode in modes.items():
            m.training = mode


@dataclass
class _Grid:
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
    graph, env = torch.fx.Graph(), {}
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
_FUSABLE = [
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
    graph, env = torch.fx.Graph(), {}
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


def landscape(
    model: nn.Module,
    layer,
    loss_fn: Callable,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int = 21,
    radius: float = 1.0,
    directions: tuple[Mapping, Mapping] | None = None,
    generator: torch.Generator | None = None,
    method: str = "auto",
    chunk_size: int | None = None,
    train: bool = False,
    layers: LayerGroups | None = None,
) -> Landscape:
    """The 2-D loss landscape of one layer (see the module docstring for the math and paths).

    Args:
        model: the network, ``model(inputs)``.
        layer: a :class:`Layer`, a layer name (``layers`` or discovered) or a module name
            (``"layer4.1.conv2"``).
        loss_fn: ``loss_fn(output, targets) -> scalar`` (a mean over the batch).
        inputs, targets: the data sample.
        steps: grid points per axis (``steps × steps`` in all).
        radius: the grid spans ``[-radius, radius]²``.
        directions: ``(d1, d2)``, each ``{param name: tensor}``; default two :func:`direction`
            draws from ``generator``.
        method: ``"auto"`` (batched, else prefix, else loop), or one path forced.
        chunk_size: grid points per vmap call (memory grows with it); default: about 16 MB
            of the layer's output per call for a single Linear/Conv layer, else 4.
        train: evaluate in train mode (BatchNorm batch statistics; not batchable).

    Returns:
        a :class:`Landscape`.

    >>> import torch, torch.nn as nn, torch.nn.functional as F
    >>> net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    >>> x, y = torch.randn(16, 2), torch.randn(16, 1)
    >>> g = torch.Generator().manual_seed(0)
    >>> ls = landscape(net, "0", F.mse_loss, x, y, steps=5, generator=g)
    >>> ls.loss.shape, ls.method, ls.loss[2, 2].item() == ls.center
    (torch.Size([5, 5]), 'batched', True)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if steps < 2 or (chunk_size is not None and chunk_size < 1) or not radius > 0:
        raise ValueError(
            f"need steps >= 2, chunk_size >= 1, radius > 0; got {steps}, {chunk_size}, {radius}"
        )
    layer = layer_params(model, layer, layers)
    theta = {n: p.detach().clone() for n, p in zip(layer.param_names, layer.params)}
    if directions is None:
        directions = (direction(theta, generator), direction(theta, generator))
    for d in directions:
        for n, w in theta.items():
            if n not in d or d[n].shape != w.shape:
                got = tuple(d[n].shape) if n in d else "missing"
                raise ValueError(f"direction for {n}: need shape {tuple(w.shape)}, got {got}")
    betas = torch.linspace(-radius, radius, steps, dtype=torch.float64)
    b1, b2 = (b.reshape(-1) for b in torch.meshgrid(betas, betas, indexing="ij"))
    grid = _Grid(theta, *directions, b1, b2)

    with _preserved(model, layer.param_names, train), torch.no_grad(), warnings.catch_warnings():
        # vmap's notice about ops without a batching rule (adaptive pooling): results are exact
        warnings.filterwarnings("ignore", message="There is a performance drop")
        paths = [method] if method != "auto" else ["batched", "prefix", "loop"]
        for i, path in enumerate(paths):
            try:
                losses, center = _EVALUATORS[path](
                    model, layer, loss_fn, inputs, targets, grid, chunk_size
                )
                break
            except Exception as err:  # noqa: BLE001 - fall back, and say why
                if i == len(paths) - 1:
                    raise
                logger.info(
                    "landscape of %s: %s path failed (%s); falling back", layer.name, path, err
                )
    loss = torch.stack(losses).double().cpu().reshape(steps, steps)
    return Landscape(layer.name, betas, loss, center, path)


def _batched(model, layer, loss_fn, inputs, targets, grid: _Grid, chunk: int | None):
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

    def one(y):
        return loss_fn(fast(*cached[:at], y, *cached[at + 1 :]), targets)

    chunk = chunk or max(1, 2**22 // y0.numel())  # about 16 MB of float32 per chunk
    out = []
    for lo in range(0, len(grid), chunk):
        coeffs = torch.cat(grid.coords(lo, min(lo + chunk, len(grid)), y0, 1), dim=1)  # (k, 2)
        ys = torch.addmm(y0.reshape(1, -1), coeffs, basis).view(-1, *y0.shape)
        out.extend(torch.vmap(one)(ys))
    return out, float(loss_fn(output, targets))


def _prefix(model, layer, loss_fn, inputs, targets, grid: _Grid, chunk: int):
    gm = torch.fx.symbolic_trace(model)
    rest, needed = _cut(gm, _owner(layer.param_names))
    cached, output = _values(gm, needed, inputs)
    out = []
    for k in range(len(grid)):
        params = {name: v[0] for name, v in grid.params(k, k + 1).items()}
        fresh = tuple(c.clone() if isinstance(c, torch.Tensor) else c for c in cached)
        out.append(loss_fn(functional_call(rest, params, fresh), targets).reshape(()))
    return out, float(loss_fn(output, targets))


def _loop(model, layer, loss_fn, inputs, targets, grid: _Grid, chunk: int):
    """Copy-perturb-forward: the reference path (weights restored by the caller)."""
    center = float(loss_fn(model(inputs), targets))
    out = []
    for k in range(len(grid)):
        for p, v in zip(layer.params, grid.params(k, k + 1).values()):
            p.copy_(v[0])
        out.append(loss_fn(model(inputs), targets).reshape(()))
    return out, center


_EVALUATORS = {"batched": _batched, "prefix": _prefix, "loop": _loop}


def top_eigenvalue(
    model: nn.Module,
    layer,
    loss_fn: Callable,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    iters: int = 20,
    generator: torch.Generator | None = None,
    train: bool = False,
    layers: LayerGroups | None = None,
) -> float:
    """The largest-magnitude eigenvalue of the Hessian of the loss w.r.t. one layer's parameters.

    Power iteration with Hessian-vector products: with
    :math:`H = \\nabla^2_{\\theta_l}\\mathcal{L}`, :math:`v_{k+1} = H v_k / \\|H v_k\\|`
    and :math:`\\lambda_k = v_k^\\top H v_k`. Each product is one
    double-backward through a graph built once. Larger means sharper.

    >>> import torch, torch.nn as nn
    >>> net = nn.Linear(3, 1, bias=False)
    >>> x = torch.eye(3) * torch.tensor([[1.0], [2.0], [3.0]])
    >>> loss = lambda out, y: (out ** 2).sum() / 2        # H = x^T x = diag(1, 4, 9)
    >>> round(top_eigenvalue(nn.Sequential(net), "0", loss, x, None, iters=100), 4)
    9.0
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1; got {iters}")
    layer = layer_params(model, layer, layers)
    # double backward: attention through the math kernel (the fused ones have no second derivative)
    with _preserved(model, (), train), sdpa_kernel(SDPBackend.MATH):
        leaves = {
            n: p.detach().clone().requires_grad_(True)
            for n, p in zip(layer.param_names, layer.params)
        }
        loss = loss_fn(functional_call(model, leaves, (inputs,)), targets)
        grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
        v = [torch.randn(g.shape, generator=generator, dtype=g.dtype).to(g.device) for g in grads]
        eig = float("nan")
        for _ in range(iters):
            norm = torch.sqrt(sum((u * u).sum() for u in v))
            v = [u / norm for u in v]
            hv = torch.autograd.grad(grads, list(leaves.values()), v, retain_graph=True)
            eig = float(sum((a * b).sum() for a, b in zip(v, hv)))
            v = [h.detach() for h in hv]
    return eig
