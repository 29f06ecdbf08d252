"""A folder of checkpoints: which checkpoints it holds, their steps, and one checkpoint's state
dict for a model's keys.

* :func:`checkpoint_steps`: a folder's checkpoints in step order (files, Hugging Face Trainer
  ``checkpoint-<step>/`` folders, or ``torch.distributed.checkpoint`` folders, read by
  :mod:`depthaware.checkpoint_formats`); the step comes from the checkpoint's step entry
  (``epoch``, ``step``, ``global_step``, a Trainer's ``trainer_state.json``) or a named field of
  its name (``epoch_3``, ``checkpoint-500``). A folder is measured whole or refused, never in part.
* :func:`load_state`: the state dict of one checkpoint for a model's keys and shapes, a wrapper's
  prefix (``module.``, ``model.``, ``_orig_mod.``) stripped when that gives exactly the model's
  keys; anything else is an :class:`~depthaware.errors.InputError` that names the file and key.

:func:`depthaware.measure.from_checkpoints` measures what these read.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from .checkpoint_formats import (
    dcp_keys,
    kind,
    read_checkpoint,
    read_dcp,
    read_hf_folder,
    transformers_model,
    transformers_state,
)
from .errors import InputError

__all__ = [
    "PATTERNS",
    "STATE_KEYS",
    "STEP_KEYS",
    "checkpoint_steps",
    "find_checkpoints",
    "load_state",
    "read_checkpoint",
    "transformers_model",
    "transformers_state",
]

log = logging.getLogger(__name__)

STATE_KEYS = ("state_dict", "model", "model_state_dict", "module")


STEP_KEYS = ("epoch", "step", "global_step")
#: what a folder of checkpoints holds, when no pattern is given: files of one of these kinds, a
#: Hugging Face Trainer's checkpoint folders, or torch.distributed.checkpoint folders
PATTERNS = ("*.pt", "*.pth", "*.ckpt", "checkpoint-*")
DCP_FOLDERS = "torch.distributed.checkpoint folders"
_NAMED = re.compile(r"(?<![a-z])(epoch|step)[=_-]?(\d+)", re.IGNORECASE)


def find_checkpoints(folder: str | os.PathLike, pattern: str | None = None) -> list[Path]:
    """The checkpoints of ``folder``: what ``pattern`` matches (files or checkpoint folders),
    else the one kind of :data:`PATTERNS` it holds (``*.pt``, ``*.pth``, ``*.ckpt`` files, a
    Trainer's ``checkpoint-*/`` folders), or its ``torch.distributed.checkpoint`` folders (any
    subfolder with a ``.metadata``). A folder holding several kinds is refused (which one is the
    run?), and so is any match that is not a readable checkpoint (a ``checkpoint-7/`` with no
    model file, a link to nothing): the folder is measured whole or not at all."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a directory")
    if pattern is not None:
        if Path(pattern).is_absolute():
            raise InputError(f"pattern {pattern!r} must be relative to the folder, e.g. '*.pt'")
        found, what = sorted(folder.glob(pattern)), f"matching {pattern!r}"
    else:
        dcp = sorted(d.parent for d in folder.glob("*/.metadata"))
        kinds = {p: sorted(q for q in folder.glob(p) if not q.is_dir()) for p in PATTERNS[:-1]}
        kinds[PATTERNS[-1]] = [q for q in sorted(folder.glob(PATTERNS[-1])) if q.is_dir()]
        kinds[PATTERNS[-1]] = [q for q in kinds[PATTERNS[-1]] if q not in dcp]
        kinds[DCP_FOLDERS] = dcp
        present = {k: v for k, v in kinds.items() if v}
        if len(present) > 1:
            listed = ", ".join(f"{len(v)} {k}" for k, v in present.items())
            raise InputError(
                f"{folder} holds checkpoints of several kinds ({listed}): which are the run's? "
                "Pass --pattern (pattern=) to choose, e.g. '*.pt'"
            )
        what = f"({', '.join(PATTERNS)} or {DCP_FOLDERS})"
        found = next(iter(present.values()), [])
    for path in found:
        kind(path)  # a file, a Trainer checkpoint folder or a DCP folder, else named
    if len(found) < 2:
        raise InputError(
            f"{folder} holds {len(found)} checkpoints {what}; need two or more (three for the "
            "default windows, which never end at the last one)"
        )
    return found


def checkpoint_steps(
    folder: str | os.PathLike, pattern: str | None = None
) -> list[tuple[int, Path]]:
    """``(step, path)`` for every checkpoint of ``folder`` (:func:`find_checkpoints`), sorted by
    step. A checkpoint's name, for the rules below, is its path inside ``folder`` without its
    suffix (``checkpoint-500``, ``epoch_3``).

    The step comes from, in this order:

    1. an integer entry inside every checkpoint: the first of ``epoch``, ``step``,
       ``global_step`` present in all of them with distinct values (a dict checkpoint, as
       Lightning saves; a Trainer folder's ``trainer_state.json`` gives ``global_step``);
    2. a named field in every name: ``epoch`` or ``step`` followed by an optional ``=``,
       ``_`` or ``-`` and digits (``epoch_012.pt``, ``epoch=3-val_loss=0.30.ckpt``,
       ``net_epoch1_acc0.91.pt``, ``step_300/``), distinct across checkpoints;
    3. the one number of every name (``ckpt_012.pt``, ``12.pt``, ``checkpoint-500``).

    Anything else (``net_v2_12.pt``: which number is the step?) is a ``ValueError`` that says how
    to name the files.
    """
    folder = Path(folder)
    files = find_checkpoints(folder, pattern)
    # only the step entries are kept: a folder of 200 checkpoints is never held at once
    entries = {p: _step_entries(p) for p in files}
    for key in STEP_KEYS:
        if found := _distinct([entries[p][key] for p in files]):
            log.info("checkpoint steps from the %r entry inside each file", key)
            return sorted(zip(found, files))
    for field in ("epoch", "step"):
        if found := _distinct([_named_field(_name(p, folder), field) for p in files]):
            return sorted(zip(found, files))
    steps: list[int] = []
    for p in files:
        numbers = re.findall(r"\d+", _name(p, folder))
        if len(numbers) != 1:
            seen = f"numbers {', '.join(numbers)}" if numbers else "no number"
            raise InputError(
                f"{p}: cannot tell its step ({seen} in the name). Name the files like "
                f"epoch_012.pt or step_300.pt, or save the step inside each file "
                f"(torch.save({{'model': model.state_dict(), 'epoch': 12}}, ...))"
            )
        steps.append(int(numbers[0]))
    dupes = sorted({s for s in steps if steps.count(s) > 1})
    if dupes:
        raise InputError(f"{folder}: several files for steps {dupes}")
    return sorted(zip(steps, files))


def _distinct(steps: list[int | None]) -> list[int] | None:
    """``steps`` when every file has one and no two files share one, else None."""
    known = [s for s in steps if s is not None]
    return known if len(known) == len(steps) and len(set(known)) == len(known) else None


def _name(path: Path, folder: Path) -> str:
    """The file's path inside the folder, without its suffix: ``checkpoint-500/model``."""
    return path.relative_to(folder).with_suffix("").as_posix()


def _step_entries(path: Path) -> dict[str, int | None]:
    """A checkpoint's step entries: a file's own, a Trainer folder's ``trainer_state.json``."""
    found = kind(path)
    if found == "file":
        obj = read_checkpoint(path)
    elif found == "hf" and (path / "trainer_state.json").is_file():
        try:
            state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except ValueError as e:
            raise InputError(f"{path / 'trainer_state.json'}: not JSON ({e})") from None
        obj = {"global_step": state.get("global_step")} if isinstance(state, dict) else {}
    else:
        obj = {}
    return {key: _int_entry(obj, key) for key in STEP_KEYS}


def _int_entry(obj, key: str) -> int | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _named_field(name: str, field: str) -> int | None:
    values = {int(m.group(2)) for m in _NAMED.finditer(name) if m.group(1).lower() == field}
    return values.pop() if len(values) == 1 else None


def load_state(
    path: str | os.PathLike, reference: dict, key: str | None = None, *, lazy: bool = False
) -> dict:
    """The state_dict in ``path``, checked against ``reference`` (a model's ``state_dict()``).

    The checkpoint holds a state_dict, or a dict holding it under ``key`` (default: the first of
    ``state_dict``, ``model``, ``model_state_dict``, ``module`` present); in a
    ``torch.distributed.checkpoint`` folder, its keys under ``key.`` (default: the prefix that
    gives the model's keys), and nothing else of it is read. A wrapper's prefix (``module.``)
    is removed. ``lazy`` reads what the check needs and no more (safetensors headers and DCP
    metadata give tensors on the meta device; torch files are memory-mapped). Raises
    ``ValueError`` naming the file and the key that is missing, unexpected, or of the wrong
    shape.
    """
    path = Path(path)
    found = kind(path)
    if found == "dcp":
        obj = _dcp_state(path, reference, key, lazy)
    else:
        obj = read_hf_folder(path, lazy=lazy) if found == "hf" else read_checkpoint(path, lazy=lazy)
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
            "keys explains (the network under another attribute name? pass key=, or save "
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


def _dcp_state(folder: Path, reference: dict, key: str | None, lazy: bool) -> dict:
    """The model's tensors in a DCP folder, under the prefix that holds all of them (``key.``,
    else the shortest that does: ``""``, ``model.``, ``app.model.``)."""
    known = dcp_keys(folder)
    first = next(iter(reference))
    if key is not None:
        prefixes = [f"{key}."]
    else:
        ends = (k[: len(k) - len(first)] for k in known if k.endswith(first))
        prefixes = sorted((p for p in ends if p == "" or p.endswith(".")), key=len)
    prefix = next((p for p in prefixes if all(p + k in known for k in reference)), None)
    if prefix is None:
        tried = prefixes[0] if prefixes else ""
        missing = [tried + k for k in reference if tried + k not in known]
        raise InputError(
            f"{folder}: missing key {missing[0]!r} ({len(missing)} missing in all) of the "
            f"model's {len(reference)} in this torch.distributed.checkpoint folder (its keys: "
            f"{', '.join(list(known)[:3])}, ...); pass key= (--key) for the model's prefix"
        )
    if lazy:
        return {k: torch.empty(known[prefix + k][0], device="meta") for k in reference}
    state = read_dcp(folder, [prefix + k for k in reference])
    return {k: state[prefix + k] for k in reference}


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
