"""The files of a trajectory folder: ``meta.json`` (the layers, their shapes, the stored dtype, the
sketch if any, and the unit of its steps) and one ``step_<step>.pt`` per snapshot; the check that
a folder being resumed holds snapshots of the same form as the trajectory that writes to it, and
the check of each step file read against ``meta.json``."""

from __future__ import annotations

import json
import logging
import math
import operator
import re
from pathlib import Path

import torch

from .._io import remove_stale_temps, write_json
from ..errors import InputError
from ..layers import LayerGroups
from .sketch import ROWS, sketched

__all__ = [
    "DTYPES",
    "META",
    "UNITS",
    "as_seed",
    "as_step",
    "check_same_layout",
    "check_snapshot",
    "meta_of",
    "open_folder",
    "read_meta",
    "read_snapshot",
    "scan_steps",
    "step_file",
]

log = logging.getLogger(__name__)

META = "meta.json"
#: the dtypes a trajectory stores, by the name written in its meta file
DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
#: what a trajectory's steps count: epochs, or optimizer steps
UNITS = ("epoch", "step")
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def meta_of(
    layers: LayerGroups, dtype: torch.dtype, sketch: int | None, seed: int, unit: str
) -> dict:
    """What ``meta.json`` holds: each layer's name, depth, parameter names and shapes, the
    stored dtype, the sketch (``k``, rows, hash seed) or None for exact snapshots, and the unit
    of the steps."""
    return {
        "layers": [
            {
                "name": l.name,
                "depth": l.depth,
                "param_names": list(l.param_names),
                "shapes": [list(s) for s in l.shapes],
            }
            for l in layers
        ],
        "dtype": str(dtype).removeprefix("torch."),
        "sketch": None if sketch is None else {"k": sketch, "rows": ROWS, "seed": seed},
        "unit": unit,
    }


def read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not {"layers", "dtype"} <= set(meta):
            raise ValueError("no 'layers' and 'dtype' entries")
    except ValueError as e:
        raise InputError(f"{path}: not a trajectory's meta file ({e})") from e
    return meta


def as_seed(seed) -> int:
    """The sketch seed, checked before anything is allocated from it."""
    if isinstance(seed, bool) or not hasattr(type(seed), "__index__"):
        raise ValueError(
            f"seed must be an integer in [0, 2**63); got {seed!r} ({type(seed).__name__})"
        )
    value = operator.index(seed)
    if not 0 <= value < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63); got {value}")
    return value


def as_step(step) -> int:
    if isinstance(step, bool):
        raise ValueError(f"a step must be a non-negative integer; got {step!r}")
    try:
        value = operator.index(step)  # ints, numpy and 0-dim integer tensors; never a float
    except TypeError:
        raise ValueError(
            f"a step must be a non-negative integer; got {step!r} ({type(step).__name__})"
        ) from None
    if value < 0:
        raise ValueError(f"a step must be a non-negative integer; got {value}")
    return value


def step_file(step: int) -> str:
    return f"step_{step:010d}.pt"


def scan_steps(directory: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _STEP_FILE.match(p.name)))


def open_folder(folder: Path, meta: dict) -> list[int]:
    """The steps of ``folder``, opened by its writer (who holds its lock) for a trajectory of
    ``meta``: temporary files of a write that did not finish are removed, a folder of another
    form is refused (:func:`check_same_layout`), and so are step files with no ``meta.json``;
    a new folder gets ``meta``."""
    for p in remove_stale_temps(folder):  # the writer holds the lock: no other writer's temp
        log.warning("removed %s, left by a write that did not finish", p)
    meta_path = folder / META
    steps = scan_steps(folder)
    if meta_path.is_file():
        check_same_layout(read_meta(meta_path), meta, where=str(folder))
    elif steps:
        raise InputError(
            f"{folder} holds {len(steps)} step files but no {META}: they cannot be told to be "
            "this model's snapshots (its meta file deleted?); move them away or record to "
            "another folder"
        )
    else:
        write_json(meta_path, meta)
    if steps:
        log.info("resuming trajectory in %s at step %d", folder, steps[-1])
    return steps


def read_snapshot(path: Path, meta: dict, device) -> dict[str, torch.Tensor]:
    """The step file at ``path``, checked against ``meta`` (:func:`check_snapshot`)."""
    try:
        snap = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise InputError(f"{path}: not a readable snapshot ({type(e).__name__}: {e})") from e
    return check_snapshot(snap, meta, path)


def check_same_layout(old: dict, new: dict, where: str) -> None:
    old_layers = {m["name"]: m for m in old["layers"]}
    new_layers = {m["name"]: m for m in new["layers"]}
    if list(old_layers) != list(new_layers):
        raise InputError(
            f"{where} holds a trajectory of layers {list(old_layers)}, not {list(new_layers)}"
        )
    for name, m in new_layers.items():
        if m["shapes"] != old_layers[name]["shapes"]:
            raise InputError(
                f"{where}: layer {name!r} has shapes {old_layers[name]['shapes']} on disk, "
                f"{m['shapes']} in the model"
            )
    if old.get("sketch") != new.get("sketch"):
        raise InputError(
            f"{where} holds {_form(old)} snapshots, this trajectory takes {_form(new)} ones: "
            "one folder never mixes them; pass the folder's own sketch= and seed= (sketch=None "
            "for exact ones) or record to another folder"
        )
    if old["dtype"] != new["dtype"]:
        raise InputError(f"{where} stores {old['dtype']}, this trajectory asks for {new['dtype']}")
    if old.get("unit") != new["unit"]:
        raise InputError(
            f"{where} counts its steps in {old.get('unit') or 'an unrecorded unit'}s, this "
            f"trajectory in {new['unit']}s: one folder never mixes them (a run recorded every "
            "epoch resumed with every_n_steps, or the reverse); resume with the folder's own "
            "setting or record to another folder"
        )


def check_snapshot(snap, meta: dict, path) -> dict:
    """``snap`` (a step file's content) if it is a snapshot of ``meta``'s trajectory: every layer
    and no other, each an exact flat vector of the layer's size or, for a layer larger than a
    sketched trajectory's ``k``, its ``(rows, k / rows)`` sketch, in the stored dtype. Anything
    else (an exact file in a sketched folder, another model's) is an ``InputError`` naming the
    file and the layer."""
    names = [m["name"] for m in meta["layers"]]
    if not isinstance(snap, dict) or sorted(snap) != sorted(names):
        got = sorted(snap) if isinstance(snap, dict) else type(snap).__name__
        raise InputError(f"{path}: holds {got}, not a snapshot of the layers {names} in {META}")
    sk = meta.get("sketch") or {}
    for m in meta["layers"]:
        numel = sum(math.prod(s) for s in m["shapes"])
        want = (sk["rows"], sk["k"] // sk["rows"]) if sketched(numel, sk.get("k")) else (numel,)
        value = snap[m["name"]]
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else None
        dtype = str(value.dtype).removeprefix("torch.") if shape is not None else None
        if shape != want or dtype != meta["dtype"]:
            raise InputError(
                f"{path}: layer {m['name']!r} is {dtype} of shape {shape}; {META} says "
                f"{meta['dtype']} of shape {want} ({_form(meta)} snapshots): a file of another "
                "trajectory?"
            )
    return snap


def _form(meta: dict) -> str:
    sk = meta.get("sketch")
    return "exact" if sk is None else f"sketched (k={sk['k']}, seed={sk['seed']})"
