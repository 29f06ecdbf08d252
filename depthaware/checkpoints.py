"""Checkpoint I/O: read a saved file, find a folder's checkpoints and their steps, load a state
dict into a model's keys.

* :func:`read_checkpoint`: one file, weights only (``torch.load`` memory-mapped, or safetensors).
* :func:`checkpoint_steps`: a folder's checkpoints in step order; the step comes from the file's
  step entry (``epoch``, ``step``, ``global_step``), a Trainer's ``trainer_state.json``, or a
  named field of the file or folder name (``epoch_3``, ``checkpoint-500``).
* :func:`load_state`: the state dict of one file for a model's keys and shapes, a wrapper's
  prefix (``module.``, ``model.``, ``_orig_mod.``) stripped when that gives exactly the model's
  keys; anything else is an :class:`~depthaware.errors.InputError` that names the file and key.

:mod:`depthaware.measure.tables` measures what these read.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path

import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from .errors import InputError

__all__ = [
    "PATTERNS",
    "STATE_KEYS",
    "STEP_KEYS",
    "checkpoint_steps",
    "load_state",
    "read_checkpoint",
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
        raise InputError(f"pattern {pattern!r} must be relative to the folder, e.g. '*.pt'")
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
