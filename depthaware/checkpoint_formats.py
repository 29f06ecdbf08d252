"""Reading one checkpoint, whatever its format; nothing in any of them runs code.

A checkpoint is a file or a folder:

* a torch file (``*.pt``, ``*.pth``, Lightning's ``*.ckpt``, ``pytorch_model.bin``):
  ``torch.load(weights_only=True)``, memory-mapped in torch's zip format;
* a safetensors file;
* a Hugging Face Trainer's ``checkpoint-<step>/`` folder: its model file (``model.safetensors``
  or ``pytorch_model.bin``), or the shards its index (``*.index.json``) lists, every shard path
  checked to stay inside the folder;
* a ``torch.distributed.checkpoint`` folder (``.metadata`` and ``*.distcp`` shards, as an
  FSDP2 run saves them with ``dcp.save``): read in this process for the model's keys only,
  whatever the number of ranks that wrote it;
* a Trainer folder of a transformers model (its ``config.json`` beside the weights): the model
  built from that config, locally, and each checkpoint loaded the way transformers loads it
  (:func:`transformers_model`, :func:`transformers_state`: its key renaming, safetensors,
  sharded index), since transformers' saved keys need not be its modules' names.

:func:`read_state` gives a checkpoint's tensors (the whole file, or, for a DCP folder, the ones
a model needs); :func:`kind` tells the formats apart.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import torch

from .errors import InputError

__all__ = [
    "HF_MODEL_FILES",
    "dcp_keys",
    "kind",
    "read_checkpoint",
    "read_dcp",
    "read_hf_folder",
    "transformers_model",
    "transformers_state",
]

#: a Trainer checkpoint folder's model file, by preference: one file, or an index of shards
HF_MODEL_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
DCP_METADATA = ".metadata"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def kind(path: Path) -> str:
    """``"file"``, ``"hf"`` (a folder holding one of :data:`HF_MODEL_FILES`) or ``"dcp"`` (a
    folder holding ``.metadata``); anything else is an :class:`InputError` naming it."""
    if path.is_file():
        return "file"
    if not path.is_dir():
        raise InputError(f"{path}: not a file or a folder (a broken link? a special file?)")
    if (path / DCP_METADATA).exists():
        return "dcp"
    present = [name for name in HF_MODEL_FILES if (path / name).exists()]
    if not present:
        raise InputError(
            f"{path} is a directory with no model file ({', '.join(HF_MODEL_FILES)}) and no "
            f"torch.distributed.checkpoint {DCP_METADATA}"
        )
    for name in present:
        if not (path / name).is_file():
            raise InputError(f"{path / name}: not a regular file (a folder, a broken link?)")
    return "hf"


def read_checkpoint(path: str | os.PathLike, *, lazy: bool = False):
    """One file's content: ``torch.load`` weights only (nothing in it runs), memory-mapped in
    torch's zip format, whole in the old (pre-1.6) format; a ``.safetensors`` file through
    safetensors (``lazy``: its header alone, as tensors on the meta device, for the keys and
    shapes). A file that cannot be read is an :class:`InputError` naming it and why."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a checkpoint file")
    if path.suffix == ".safetensors":  # Hugging Face's format: tensors only, nothing runs
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            if not lazy:
                return load_file(path, device="cpu")
            with safe_open(path, framework="pt") as f:
                return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        except (SafetensorError, OSError) as e:
            raise InputError(f"{path}: not a readable safetensors file: {e}") from None
    try:
        return torch.load(
            path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path)
        )
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except pickle.UnpicklingError as e:  # the weights-only unpickler refused a type in it
        cause = _ANSI.sub("", str(e)).strip().splitlines()
        found = next((line for line in cause if "GLOBAL" in line or "global" in line), cause[0])
        raise InputError(
            f"{path}: holds an object that loading weights only refuses ({found.strip()}), e.g. "
            "a pathlib.Path in Lightning's save_hyperparameters(); nothing in it was run. If you "
            "trust the file, save its weights alone: torch.save(torch.load(path, weights_only="
            "False)['state_dict'], 'weights.pt'), and measure that"
        ) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, ... on a damaged file
        first = _ANSI.sub("", str(e)).strip().splitlines()
        raise InputError(
            f"{path}: not a readable torch checkpoint (truncated or corrupt?): "
            f"{type(e).__name__}: {first[0] if first else ''}"
        ) from e


def read_hf_folder(folder: Path, *, lazy: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a Trainer ``checkpoint-<step>/`` folder: its one model file, or every shard
    its index lists (each shard path must stay inside the folder); ``lazy`` as
    :func:`read_checkpoint`."""
    name = next(n for n in HF_MODEL_FILES if (folder / n).is_file())
    if not name.endswith(".index.json"):
        return read_checkpoint(folder / name, lazy=lazy)
    index = folder / name
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{index}: not a shard index ({e})") from None
    inside = folder.resolve()
    state: dict[str, torch.Tensor] = {}
    for shard in dict.fromkeys(weight_map.values()):
        path = (folder / str(shard)).resolve()
        if path.parent != inside or not path.is_file():
            raise InputError(
                f"{index}: shard {shard!r} is not a file inside {folder} (an index may only "
                "name files of its own folder)"
            )
        part = read_checkpoint(path, lazy=lazy)
        if not isinstance(part, dict):
            raise InputError(f"{path}: holds a {type(part).__name__}, not tensors")
        state.update(part)
    missing = [k for k in weight_map if k not in state]
    if missing:
        raise InputError(f"{index}: names {missing[0]!r}, which no shard holds")
    return state


def _dcp_reader(folder: Path):
    from torch.distributed.checkpoint import FileSystemReader

    return FileSystemReader(str(folder))


def dcp_keys(folder: Path) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Every tensor of a ``torch.distributed.checkpoint`` folder: its flat key (a nested
    ``{"model": ...}`` saves as ``model.<name>``), whole shape and dtype; read from
    ``.metadata`` alone."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    try:
        metadata = _dcp_reader(folder).read_metadata()
    except Exception as e:  # noqa: BLE001 - whatever a damaged metadata file raises
        raise InputError(f"{folder / DCP_METADATA}: not readable ({type(e).__name__}: {e})") from e
    return {
        k: (v.size, v.properties.dtype)
        for k, v in metadata.state_dict_metadata.items()
        if isinstance(v, TensorStorageMetadata)
    }


def read_dcp(folder: Path, keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """The tensors ``keys`` of a ``torch.distributed.checkpoint`` folder, read in this process
    (``no_dist``: the shards of every rank assembled into whole tensors); nothing else in the
    folder (an optimizer's state) is allocated."""
    import torch.distributed.checkpoint as dcp

    known = dcp_keys(folder)
    state = {k: torch.empty(known[k][0], dtype=known[k][1]) for k in keys}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            dcp.load(state, storage_reader=_dcp_reader(folder), no_dist=True)
    except Exception as e:  # noqa: BLE001 - a missing or truncated shard file
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(
            f"{folder}: a torch.distributed.checkpoint shard is not readable "
            f"({type(e).__name__}: {first})"
        ) from e
    return state


def _architecture(folder: Path):
    """``(config, model class)`` of a Trainer checkpoint folder's ``config.json`` (no hub)."""
    try:
        import transformers
    except ImportError:
        raise InputError(
            f"{folder} holds a transformers model (config.json): pip install transformers to "
            "read it, or pass the model (--model)"
        ) from None
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise InputError(
            f"{folder / 'config.json'}: not a readable transformers config ({e})"
        ) from None
    names = getattr(config, "architectures", None) or []
    cls = getattr(transformers, names[0], None) if names else None
    if cls is None:
        raise InputError(
            f"{folder / 'config.json'}: names no architecture this transformers knows "
            f"({names or 'none'}); pass the model (--model)"
        )
    return config, cls


def transformers_model(folder: Path):
    """The model a Trainer checkpoint folder's ``config.json`` describes, built locally with
    random weights (its keys, shapes and layers; the checkpoints hold the weights)."""
    config, cls = _architecture(folder)
    return cls(config)


def transformers_state(folder: Path, reference: dict) -> dict[str, torch.Tensor]:
    """A Trainer checkpoint folder's weights as transformers loads them (``from_pretrained``,
    local files only), as the state dict of the model :func:`transformers_model` builds: a
    missing or unexpected key, or another architecture, is an :class:`InputError` naming it."""
    config, cls = _architecture(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, info = cls.from_pretrained(
            folder, local_files_only=True, output_loading_info=True, dtype=torch.float32
        )
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise InputError(
            f"{folder}: transformers could not restore {missing[0]!r} ({len(missing)} weights "
            "in all) from this checkpoint: a checkpoint of another model?"
        )
    state = model.state_dict()
    other = [k for k in reference if k not in state or state[k].shape != reference[k].shape]
    if other or len(state) != len(reference):
        raise InputError(f"{folder}: another model than the folder's first ({other[:1]})")
    return state
