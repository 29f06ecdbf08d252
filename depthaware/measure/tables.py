"""Measure a model you already trained: from a folder of checkpoints, or from one model and data.

(a) :func:`from_checkpoints`: state_dicts saved over training become a
:class:`~depthaware.measure.Trajectory`, hence the per-layer convergence table (Definition 2.1)
over chosen windows, distance curves, weight variation (A.2) and the bias statistics.

(b) :func:`from_model`: one trained model and a data sample give, per layer, the sharpness of its
loss landscape (top Hessian eigenvalue; mean loss rise within a radius), its gradient
predictiveness (Definition 4.1) and its response frequency (Figure 7).

Both return rows keyed by layer (one row per layer); :func:`write_table` writes them as CSV and
JSON, atomically. ``depthaware measure`` is the command line for both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypedDict

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import checkpoints
from .._io import write_csv, write_json
from ..errors import InputError
from ..layers import LayerGroups, as_layer_groups, layer_groups, model_of
from .distances import streamed
from .frequency import response_frequency
from .gradients import predictiveness
from .rates import ConvergenceReport, check_window
from .sharpness import layer_sharpness
from .sketch import sketch as sketch_of
from .sketch import sketched

__all__ = [
    "DEFAULT",
    "Effort",
    "HVP_PASSES",
    "POINT_PASSES",
    "THOROUGH",
    "default_windows",
    "from_checkpoints",
    "from_model",
    "passes",
    "time_pass",
    "write_report",
    "write_table",
]

log = logging.getLogger(__name__)


def from_checkpoints(
    folder: str | os.PathLike,
    model: nn.Module | None = None,
    *,
    pattern: str | None = None,
    key: str | None = None,
    windows: Iterable[tuple[int, int]] | None = None,
    groups=None,
    sketch: int | None = None,
    progress: bool = True,
) -> ConvergenceReport:
    """The convergence report of a folder of checkpoints of ``model``'s architecture.

    Every checkpoint is checked (keys and shapes, see
    ``depthaware.checkpoints.load_state``) before any is measured; ``model`` itself is not
    changed (its weights are not used). The last checkpoint is :math:`\\theta^*`.

    Args:
        folder, pattern: the checkpoint files; their steps come from inside the files or from
            their names (``depthaware.checkpoints.checkpoint_steps``).
        model: an instance of the architecture (its weights are not used); None for a Hugging
            Face Trainer's folder of a transformers model, which is built from the
            checkpoints' ``config.json`` and each checkpoint loaded as transformers loads it
            (``depthaware.checkpoints.transformers_state``).
        key: where the state_dict sits inside each file, if not at the top.
        windows: the ``(t1, t2)`` step windows the caller will read (default
            :func:`default_windows`), checked against the checkpoints' steps before any file is
            read (``depthaware.measure.rates.check_window``); the report keeps none, so pass
            them to its methods and to :func:`write_report`. A window ending at the last
            checkpoint (:math:`\\theta^*`) gets a warning: there every layer's rate is
            :math:`1/(t_2 - t_1)`.
        groups: passed to :func:`~depthaware.layer_groups`.
        sketch: ``k``: each layer larger than ``k`` is kept as a CountSketch of ``k`` numbers
            (:mod:`~depthaware.measure.sketch`, seed 0), so that θ* and the previous checkpoint
            cost ``k`` floats per layer; the rates then carry error bars. ``None``: exact.

    Memory: besides ``model`` (whose weights are neither copied nor changed), three
    checkpoints' tensors as they are read (:math:`\\theta^*`, the previous one and the current
    one: each memory-mapped where torch's zip format allows, so held in the page cache rather
    than the heap) and one float64 chunk of ``depthaware.measure.distances.CHUNK`` values.
    With ``sketch``, :math:`\\theta^*` and the previous checkpoint are ``k`` floats per sketched
    layer, so the tensors of the checkpoint being read are the only large ones. Whatever the
    number of files (``depthaware bench --section sketch`` measures the peak).
    """
    files = checkpoints.checkpoint_steps(folder, pattern)
    steps = [s for s, _ in files]
    for t1, t2 in list(windows) if windows is not None else default_windows(steps):
        check_window(t1, t2, steps)
        if t2 == steps[-1]:
            log.warning(
                "window %d:%d ends at θ* (the last checkpoint): every layer's C is 1/%d there",
                t1, t2, t2 - t1,
            )  # fmt: skip
    if model is None:  # a Trainer's folder of a transformers model: its config.json builds it
        hf = files[0][1]
        if not (hf.is_dir() and (hf / "config.json").is_file()):
            raise InputError(f"{hf}: no config.json to build the model from; pass the model")
        model = checkpoints.transformers_model(hf)
    reference = model.state_dict()  # the model's keys and shapes (no copy)
    transformers = (files[0][1] / "config.json").is_file() if files[0][1].is_dir() else False
    if transformers:
        read = checkpoints.transformers_state  # transformers' own loading (its key renaming)
    else:
        for _, path in files:  # fail before measuring anything: keys and shapes, no weights read
            checkpoints.load_state(path, reference, key, lazy=True)

        def read(path, reference):
            return checkpoints.load_state(path, reference, key)

    layers = layer_groups(model, groups)

    def weights(path) -> dict:
        """Each layer's parameters as the checkpoint holds them, or their sketch."""
        state = read(path, reference)
        out: dict[str, torch.Tensor | list[torch.Tensor]] = {}
        for layer in layers:
            params = [state[name] for name in layer.param_names]
            if sketch is not None and sketched(layer.numel, sketch):
                acc, offset = None, 0
                for p in params:  # the sketch of the concatenation, one parameter at a time
                    acc = sketch_of(p.reshape(-1), sketch, seed=0, layer=layer.name,
                                    offset=offset, out=acc)  # fmt: skip
                    offset += p.numel()
                assert acc is not None  # a layer has parameters
                out[layer.name] = acc
            elif sketch is not None:  # a copy: a view would keep the whole file mapped
                out[layer.name] = [p.clone() for p in params]
            else:
                out[layer.name] = params
        return out

    target = weights(files[-1][1])  # theta*: held, with two checkpoints at a time
    snapshots = (
        (step, target if path == files[-1][1] else weights(path))  # theta* is not read twice
        for step, path in tqdm(files, disable=not progress, desc="checkpoints")
    )
    return streamed(layers.names, [l.depth for l in layers], snapshots, target)


def default_windows(steps: Iterable[int]) -> list[tuple[int, int]]:
    """The first sixth and the first half of a run: from the first step to the checkpoint steps
    nearest those points, never the last one (:math:`\\theta^*`, where every rate is
    :math:`1/(t_2 - t_1)` and says nothing). Needs three checkpoints or more.

    >>> default_windows([0, 10, 20, 30, 40, 50, 60])
    [(0, 10), (0, 30)]
    """
    steps = sorted(steps)
    if len(steps) < 3:
        raise InputError(
            f"{len(steps)} checkpoints: need 3 or more (with 2 the only window ends at θ*)"
        )
    t0, inner = steps[0], steps[1:-1]

    def nearest(f: float) -> int:
        """The inner step nearest the fraction ``f`` of the run."""
        return min(inner, key=lambda s: abs(s - (t0 + f * (steps[-1] - t0))))

    ends = [nearest(f) for f in (1 / 6, 1 / 2)]
    return [(t0, end) for end in dict.fromkeys(ends)]


class Effort(TypedDict):
    """How hard :func:`from_model` looks: landscape ``steps`` per axis, Lanczos ``iters`` and
    their early-stopping ``tol``."""

    steps: int
    iters: int
    tol: float


#: the default measurement, a 7 x 7 landscape (the rise read within the radius) and at most 20
#: Lanczos steps for the top eigenvalue, stopped at a relative change of 1e-3
DEFAULT: Effort = {"steps": 7, "iters": 20, "tol": 1e-3}
#: the paper's measurement, a 21 x 21 landscape and 100 steps for the eigenvalue, none stopped
#: early
THOROUGH: Effort = {"steps": 21, "iters": 100, "tol": 0.0}
#: forward+backward passes on the whole batch per landscape point and per Hessian-vector
#: product of one layer, on average over the layers (see :func:`passes`)
POINT_PASSES, HVP_PASSES = 0.15, 0.65


def passes(n_layers: int, steps: int, iters: int) -> float:
    """The cost of :func:`from_model` in forward+backward passes of the model on the whole
    batch: per layer a landscape point costs about :data:`POINT_PASSES` of a pass and a
    Hessian-vector product :data:`HVP_PASSES` (both run on half the batch), plus 4 passes for the
    predictiveness and response frequency. The constants are averages over the layers (the
    batched landscape engine reuses the layers before each one, so shallow layers cost more and
    deep ones less) fitted to ``depthaware bench --section measure-model`` on 2 CPU cores, where
    the estimate came within a factor 1.2 and 1.7 of the time measured on two ViTs (the
    eigenvalue's steps stop early where they converge, so the estimate errs high).

    >>> passes(14, 7, 20) == round(14 * (POINT_PASSES * 49 + HVP_PASSES * 20) + 4, 1)
    True
    """
    return round(n_layers * (POINT_PASSES * steps**2 + HVP_PASSES * iters) + 4, 1)


def time_pass(model: nn.Module, loss_fn: Callable, inputs, targets) -> float:
    """Seconds of one forward+backward pass of ``model`` on ``(inputs, targets)`` in eval mode
    (no gradient is left behind): the unit :func:`passes` counts in. A first, untimed pass warms
    the caches and allocator up: a cold first pass can take 20 times a warm one."""
    import time

    from ..mode import in_mode

    with in_mode(model, train=False):
        loss_fn(model(inputs), targets).backward()  # warm-up, not timed
        start = time.perf_counter()
        loss_fn(model(inputs), targets).backward()
        seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds


def from_model(
    model: nn.Module | LayerGroups,
    loss_fn: Callable,
    batch: tuple[torch.Tensor, torch.Tensor],
    other_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    radius: float = 0.5,
    steps: int = DEFAULT["steps"],
    iters: int = DEFAULT["iters"],
    tol: float = DEFAULT["tol"],
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Per-layer sharpness, gradient predictiveness and response frequency of a trained model.

    Columns: ``top_eigenvalue`` (:func:`~depthaware.measure.top_eigenvalue`, at most
    ``iters`` Lanczos steps, stopped at a relative change ``tol``), ``loss_rise`` (mean rise
    within ``radius`` of a ``steps × steps`` landscape), the data and parameter predictiveness
    (Definition 4.1; ``optimizer`` gives the step, default SGD with lr 0.01),
    ``response_frequency`` (NaN for a layer that no module computes alone, such as a ViT's patch
    embedding with its class token and position embedding). Nothing in ``model`` changes.
    The defaults (:data:`DEFAULT`) cost a few hundred forward+backward passes (:func:`passes`);
    :data:`THOROUGH` is the paper's 21 × 21 landscape, about five times as much.

    Args:
        batch, other_batch: ``(inputs, targets)``; without ``other_batch`` the batch is split
            into halves for the data predictiveness.
    """
    layers = as_layer_groups(model)
    model = model_of(layers)
    if other_batch is None:
        n = len(batch[0]) // 2
        if n < 1:
            raise InputError("batch needs at least 2 samples to split; or pass other_batch")
        batch, other_batch = (batch[0][:n], batch[1][:n]), (batch[0][n:], batch[1][n:])
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.01)
    pred = predictiveness(layers, loss_fn, optimizer, batch, other_batch)
    response = response_frequency(layers, batch[0])
    rows = []
    for layer in tqdm(layers, disable=not progress, desc="layers"):
        ls, eig = layer_sharpness(
            layers,
            layer,
            loss_fn,
            *batch,
            seed=seed,
            steps=steps,
            radius=radius,
            iters=iters,
            tol=tol,
        )
        rows.append(
            {
                "layer": layer.name,
                "depth": layer.depth,
                "top_eigenvalue": eig,
                "loss_rise": ls.rise(radius),
                "nonfinite_points": len(ls.nonfinite),
                "predictiveness_data": pred[layer.name]["data"],
                "predictiveness_parameters": pred[layer.name]["parameters"],
                "response_frequency": response[layer.name],
            }
        )
    return rows


def write_table(rows: list[dict], out: str | os.PathLike, name: str = "table") -> list[Path]:
    """``rows`` (one dict per layer) as ``out/name.csv`` and ``out/name.json``, atomically (NaN is
    ``nan`` in the CSV and ``null`` in the JSON)."""
    if not rows:
        raise InputError("no rows to write")
    out = Path(out)
    write_csv(out / f"{name}.csv", rows)
    write_json(out / f"{name}.json", rows)
    return [out / f"{name}.csv", out / f"{name}.json"]


def write_report(
    report: ConvergenceReport,
    out: str | os.PathLike,
    windows: Iterable[tuple[int, int]] | None = None,
    *,
    summary: dict | None = None,
) -> list[Path]:
    """A convergence report as files in ``out``: its table over ``windows`` (default: the whole
    run; ``rates.csv``/``rates.json``), its dict (``convergence.json``) and the distance and
    weight-variation figures; returns them. ``summary``: the report's
    :meth:`~depthaware.measure.ConvergenceReport.to_dict` if already computed (then no
    ``windows``: they are in it)."""
    from .. import plots

    if summary is not None and windows is not None:
        raise InputError("give windows or a summary computed over them, not both")
    out = Path(out)
    if summary is None:
        summary = report.to_dict(windows)
    written = [*write_table(summary["rows"], out, "rates"), out / "convergence.json"]
    write_json(out / "convergence.json", summary)
    for name, fig in (
        ("convergence.png", plots.convergence(report)),
        ("weight_variation.png", plots.weight_variation(report)),
    ):
        plots.save(fig, out / name)
        written.append(out / name)
    return written
