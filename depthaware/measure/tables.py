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

import copy
import logging
import os
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present
from tqdm.auto import tqdm

from .._io import write_csv, write_json
from ..errors import InputError
from ..layers import LayerGroups, as_layer_groups, flatten_into, layer_groups, model_of
from .convergence import ConvergenceReport, streamed
from .frequency import response_frequency
from .gradients import predictiveness
from .landscapes import landscape
from .sharpness import top_eigenvalue
from .sketch import sketch as sketch_of
from .sketch import sketched

__all__ = [
    "DEFAULT",
    "HVP_PASSES",
    "POINT_PASSES",
    "THOROUGH",
    "checkpoint_steps",
    "default_windows",
    "from_checkpoints",
    "from_model",
    "load_state",
    "passes",
    "read_checkpoint",
    "time_pass",
    "write_report",
    "write_table",
]

log = logging.getLogger(__name__)
STATE_KEYS = ("state_dict", "model", "model_state_dict", "module")


STEP_KEYS = ("epoch", "step", "global_step")
#: what a folder of checkpoints holds, tried in turn when no pattern is given
PATTERNS = (
    "*.pt",
    "*.pth",
    "*.ckpt",
    "checkpoint-*/model.safetensors",
    "checkpoint-*/pytorch_model.bin",
)
_NAMED = re.compile(r"(?<![a-z])(epoch|step)[=_-]?(\d+)", re.IGNORECASE)


def read_checkpoint(path: str | os.PathLike):
    """``torch.load`` of one file, weights only (nothing in it runs), memory-mapped when the file
    is in torch's zip format, loaded whole when it is in the old (pre-1.6) format; a
    ``.safetensors`` file (a Hugging Face Trainer's ``model.safetensors``) through safetensors. A
    file that cannot be read is a ``ValueError`` naming it."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a checkpoint file")
    if path.suffix == ".safetensors":  # Hugging Face's format: tensors only, nothing runs
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError) as e:
            raise InputError(f"{path}: not a readable safetensors file: {e}") from None
    try:
        return torch.load(
            path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path)
        )
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise InputError(
            f"{path}: not a readable torch checkpoint (truncated or corrupt?): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e


def checkpoint_steps(
    folder: str | os.PathLike, pattern: str | None = None
) -> list[tuple[int, Path]]:
    """``(step, path)`` for every file matching ``pattern``, sorted by step.

    ``pattern`` defaults to the first of :data:`PATTERNS` that matches a file: ``*.pt``,
    ``*.pth``, Lightning's ``*.ckpt``, a Hugging Face Trainer's ``checkpoint-*/model.safetensors``
    or ``checkpoint-*/pytorch_model.bin``. A file's name, for the rules below, is its path inside
    ``folder`` (``checkpoint-500/model``).

    The step comes from, in this order:

    1. an integer entry inside every file: the first of ``epoch``, ``step``, ``global_step``
       present in all of them with distinct values (a dict checkpoint, as Lightning saves);
    2. a named field in every file name: ``epoch`` or ``step`` followed by an optional ``=``,
       ``_`` or ``-`` and digits (``epoch_012.pt``, ``epoch=3-val_loss=0.30.ckpt``,
       ``net_epoch1_acc0.91.pt``), distinct across files;
    3. the one number of every file name (``ckpt_012.pt``, ``12.pt``).

    Anything else (``net_v2_12.pt``: which number is the step?) is a ``ValueError`` that says how
    to name the files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a directory")
    if pattern is None:
        pattern = next((p for p in PATTERNS if any(folder.glob(p))), PATTERNS[0])
    if Path(pattern).is_absolute():
        raise InputError(f"--pattern {pattern!r} must be relative to the folder, e.g. '*.pt'")
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    if len(files) < 2:
        raise InputError(
            f"{folder} holds {len(files)} files matching {pattern!r}; need two or more (three "
            "for the default windows, which never end at the last one)"
        )
    # only the step entries are kept: a folder of 200 checkpoints is never held at once
    entries = {p: _step_entries(read_checkpoint(p)) for p in files}
    for key in STEP_KEYS:
        steps = [entries[p][key] for p in files]
        if None not in steps and len(set(steps)) == len(steps):
            log.info("checkpoint steps from the %r entry inside each file", key)
            return sorted(zip(steps, files))
    for field in ("epoch", "step"):
        steps = [_named_field(_name(p, folder), field) for p in files]
        if None not in steps and len(set(steps)) == len(steps):
            return sorted(zip(steps, files))
    steps = []
    for p in files:
        numbers = re.findall(r"\d+", _name(p, folder))
        if len(numbers) != 1:
            found = f"numbers {', '.join(numbers)}" if numbers else "no number"
            raise InputError(
                f"{p}: cannot tell its step ({found} in the name). Name the files like "
                f"epoch_012.pt or step_300.pt, or save the step inside each file "
                f"(torch.save({{'model': model.state_dict(), 'epoch': 12}}, ...))"
            )
        steps.append(int(numbers[0]))
    dupes = sorted({s for s in steps if steps.count(s) > 1})
    if dupes:
        raise InputError(f"{folder}: several files for steps {dupes}")
    return sorted(zip(steps, files))


def _name(path: Path, folder: Path) -> str:
    """The file's path inside the folder, without its suffix: ``checkpoint-500/model``."""
    return path.relative_to(folder).with_suffix("").as_posix()


def _step_entries(obj) -> dict[str, int | None]:
    return {key: _int_entry(obj, key) for key in STEP_KEYS}


def _int_entry(obj, key: str) -> int | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _named_field(name: str, field: str) -> int | None:
    values = {int(m.group(2)) for m in _NAMED.finditer(name) if m.group(1).lower() == field}
    return values.pop() if len(values) == 1 else None


def load_state(path: str | os.PathLike, reference: dict, key: str | None = None) -> dict:
    """The state_dict in ``path``, checked against ``reference`` (a model's ``state_dict()``).

    The file holds a state_dict, or a dict holding it under ``key`` (default: the first of
    ``state_dict``, ``model``, ``model_state_dict``, ``module`` present). A ``module.`` prefix
    (DataParallel/DDP) is removed. Raises ``ValueError`` naming the file and the key that is
    missing, unexpected, or of the wrong shape.
    """
    obj = read_checkpoint(path)
    if not isinstance(obj, dict):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    if key is not None or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = [key] if key is not None else [k for k in STATE_KEYS if k in obj]
        if not keys or keys[0] not in obj:
            raise InputError(f"{path}: no state_dict under {keys or list(STATE_KEYS)}")
        obj = obj[keys[0]]
    if not isinstance(obj, dict):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    prefix = _wrapper_prefix(obj, reference)
    if prefix:
        log.info("%s: keys prefixed with %r (a wrapper's attribute); stripped", path, prefix)
        consume_prefix_in_state_dict_if_present(obj, prefix)
    missing = [k for k in reference if k not in obj]
    if missing:
        shared = _common_prefix(obj)
        hint = (
            f"; every key in the file starts with {shared!r}, which no prefix of the model's "
            "keys explains (the network under another attribute name? pass --key, or save "
            "model.state_dict() of the network itself)"
            if shared
            else ""
        )
        raise InputError(
            f"{path}: missing key {missing[0]!r} ({len(missing)} missing in all){hint}"
        )
    unexpected = [k for k in obj if k not in reference]
    if unexpected:
        raise InputError(f"{path}: unexpected key {unexpected[0]!r} not in the model")
    for k, v in obj.items():
        if tuple(v.shape) != tuple(reference[k].shape):
            want = tuple(reference[k].shape)
            hint = (
                " (the model was built with other arguments: a different num_classes?)"
                if v.ndim >= 1 and v.shape[1:] == reference[k].shape[1:]
                else ""
            )
            raise InputError(
                f"{path}: key {k!r} has shape {tuple(v.shape)}, the model {want}{hint}"
            )
    return obj


def _common_prefix(state: dict) -> str:
    """The dotted prefix every key of ``state`` shares (``"model."``, ``"model._orig_mod."``)."""
    parts = [k.split(".") for k in state]
    shared = []
    for names in zip(*[p[:-1] for p in parts]):
        if len(set(names)) != 1:
            break
        shared.append(names[0])
    return "".join(f"{n}." for n in shared)


def _wrapper_prefix(state: dict, reference: dict) -> str:
    """The prefix a wrapper put before every key of the network's own (``module.`` of DDP,
    ``model.`` or ``net.`` of a LightningModule's attribute, ``_orig_mod.`` of torch.compile,
    or several): the shortest common prefix whose removal gives the reference's keys, else ""."""
    if set(state) == set(reference):
        return ""
    shared = _common_prefix(state)
    for end in range(1, shared.count(".") + 1):
        prefix = "".join(f"{n}." for n in shared.split(".")[:end])
        if {k[len(prefix) :] for k in state} == set(reference):
            return prefix
    return ""


def from_checkpoints(
    folder: str | os.PathLike,
    model: nn.Module,
    *,
    pattern: str | None = None,
    key: str | None = None,
    windows: Iterable[tuple[int, int]] | None = None,
    groups=None,
    sketch: int | None = None,
    progress: bool = True,
) -> ConvergenceReport:
    """The convergence report of a folder of checkpoints of ``model``'s architecture.

    Every file is checked (keys and shapes, see :func:`load_state`) before any is measured;
    ``model`` itself is not changed (a copy is loaded). The last checkpoint is
    :math:`\\theta^*`.

    Args:
        folder, pattern: the checkpoint files; their steps come from inside the files or from
            their names (:func:`checkpoint_steps`).
        model: an instance of the architecture (its weights are not used).
        key: where the state_dict sits inside each file, if not at the top.
        windows: ``(t1, t2)`` step windows for the table; default :func:`default_windows`. A
            window ending at the last checkpoint (:math:`\theta^*`) is measured with a warning:
            there every layer's rate is :math:`1/(t_2 - t_1)`.
        groups: passed to :func:`~depthaware.layer_groups`.
        sketch: ``k``: each layer larger than ``k`` is kept as a CountSketch of ``k`` numbers
            (:mod:`~depthaware.measure.sketch`, seed 0), so that θ* and the previous checkpoint
            cost ``k`` floats per layer; the rates then carry error bars. ``None``: exact.

    Memory: the model, the file being read (memory-mapped where torch's format allows), θ* and
    the previous checkpoint's layer vectors (or sketches), whatever the number of files.
    """
    files = checkpoint_steps(folder, pattern)
    steps = [s for s, _ in files]
    windows = list(windows) if windows is not None else default_windows(steps)
    for t1, t2 in windows:
        if t1 not in steps or t2 not in steps or not t1 < t2:
            raise InputError(
                f"window {t1}:{t2} needs two checkpoint steps t1 < t2; the steps are {steps}"
            )
        if t2 == steps[-1]:
            log.warning(
                "window %d:%d ends at θ* (the last checkpoint): every layer's C is 1/%d there",
                t1, t2, t2 - t1,
            )  # fmt: skip
    net = copy.deepcopy(model)
    reference = net.state_dict()
    for _, path in files:  # fail before measuring anything (one file in memory at a time)
        load_state(path, reference, key)
    layers = layer_groups(net, groups)

    buffers = [{l.name: torch.empty(l.numel, dtype=torch.float64) for l in layers} for _ in "abc"]

    def weights(path, bufs: dict) -> dict[str, torch.Tensor]:
        """The checkpoint's layer vectors in ``bufs`` (reused: no large allocation per file)."""
        net.load_state_dict(load_state(path, reference, key))
        out = {}
        for layer in layers:
            flat = flatten_into(layer.params, bufs[layer.name])
            out[layer.name] = (
                sketch_of(flat, sketch, seed=0, layer=layer.name)
                if sketched(layer.numel, sketch)
                else flat
            )
        return out

    target = weights(files[-1][1], buffers[2])  # theta*: held, with one checkpoint at a time
    snapshots = (  # two buffers in turn: streamed() holds the previous snapshot only
        (step, weights(path, buffers[i % 2]))
        for i, (step, path) in enumerate(tqdm(files, disable=not progress, desc="checkpoints"))
    )
    return streamed(layers.names, [l.depth for l in layers], snapshots, target, windows)


def default_windows(steps: Iterable[int]) -> list[tuple[int, int]]:
    """The first sixth and the first half of a run: from the first step to the checkpoint steps
    nearest those points, never the last one (:math:`\theta^*`, where every rate is
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
    ends = [
        min(inner, key=lambda s, f=f: abs(s - (t0 + f * (steps[-1] - t0)))) for f in (1 / 6, 1 / 2)
    ]
    return [(t0, end) for end in dict.fromkeys(ends)]


#: the default measurement: a 7 x 7 landscape (the rise read within the radius) and at most 20
#: Lanczos steps for the top eigenvalue, stopped at a relative change of 1e-3
DEFAULT = {"steps": 7, "iters": 20, "tol": 1e-3}
#: the paper's: a 21 x 21 landscape, and 100 steps for the eigenvalue, none stopped early
THOROUGH = {"steps": 21, "iters": 100, "tol": 0.0}
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
    (no gradient is left behind): the unit :func:`passes` counts in."""
    import time

    from ..mode import in_mode

    with in_mode(model, train=False):
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

    Columns: ``top_eigenvalue`` (:func:`~depthaware.measure.sharpness.top_eigenvalue`, at most
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
    pred = predictiveness(layers, loss_fn, batch, other_batch, optimizer)
    response = response_frequency(layers, batch[0])
    rows = []
    for layer in tqdm(layers, disable=not progress, desc="layers"):
        g = torch.Generator().manual_seed(seed)
        ls = landscape(layers, layer, loss_fn, *batch, steps=steps, radius=radius, generator=g)
        eig = top_eigenvalue(layers, layer, loss_fn, *batch, iters=iters, tol=tol, generator=g)
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


def write_report(report: ConvergenceReport, out: str | os.PathLike) -> list[Path]:
    """A convergence report as files in ``out``: its table (``rates.csv``/``rates.json``), its
    dict (``convergence.json``) and the distance and weight-variation figures; returns them."""
    from .. import plots

    out = Path(out)
    written = [*write_table(report.table(), out, "rates"), out / "convergence.json"]
    write_json(out / "convergence.json", report.to_dict())
    for name, fig in (
        ("convergence.png", plots.convergence(report)),
        ("weight_variation.png", plots.weight_variation(report)),
    ):
        plots.save(fig, out / name)
        written.append(out / name)
    return written
