"""The files of a trajectory folder: ``meta.json`` (the layers, their shapes, the stored dtype and
the sketch, if any) and one ``step_<step>.pt`` per snapshot; and the check that a folder being
resumed holds snapshots of the same form as the trajectory that writes to it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..errors import InputError
from ..layers import LayerGroups
from .sketch import ROWS

__all__ = [
    "DTYPES",
    "META",
    "check_same_layout",
    "meta_of",
    "read_meta",
    "scan_steps",
    "step_file",
]

META = "meta.json"
#: the dtypes a trajectory stores, by the name written in its meta file
DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def meta_of(layers: LayerGroups, dtype: torch.dtype, sketch: int | None, seed: int) -> dict:
    """What ``meta.json`` holds: each layer's name, depth, parameter names and shapes, the
    stored dtype, and the sketch (``k``, rows, hash seed) or None for exact snapshots."""
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
    }


def read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not {"layers", "dtype"} <= set(meta):
            raise ValueError("no 'layers' and 'dtype' entries")
    except ValueError as e:
        raise InputError(f"{path}: not a trajectory's meta file ({e})") from e
    return meta


def step_file(step: int) -> str:
    return f"step_{step:010d}.pt"


def scan_steps(directory: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _STEP_FILE.match(p.name)))


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


def _form(meta: dict) -> str:
    sk = meta.get("sketch")
    return "exact" if sk is None else f"sketched (k={sk['k']}, seed={sk['seed']})"
