"""Measure a run from its folder of checkpoints: state_dicts saved over training become a
:class:`~depthaware.measure.ConvergenceReport` (Definition 2.1 over chosen windows, distance curves,
weight variation (A.2), the bias statistics). ``depthaware measure checkpoints`` is its command
line; :func:`depthaware.reports.write_report` writes the report's files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import checkpoints
from ..errors import InputError
from ..layers import GroupSpec, layer_groups
from .distances import streamed
from .rates import ConvergenceReport, check_window
from .sketch import sketch as sketch_of
from .sketch import sketched

__all__ = ["default_windows", "from_checkpoints"]

log = logging.getLogger(__name__)


def from_checkpoints(
    folder: str | os.PathLike,
    model: nn.Module | None = None,
    *,
    pattern: str | None = None,
    key: str | None = None,
    windows: Iterable[tuple[int, int]] | None = None,
    groups: GroupSpec | None = None,
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
            them to its methods and to :func:`~depthaware.reports.write_report`. A window
            ending at the last checkpoint (:math:`\\theta^*`) gets a warning: there every
            layer's rate is :math:`1/(t_2 - t_1)`.
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
