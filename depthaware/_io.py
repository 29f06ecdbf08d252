"""Atomic file writes: a file appears whole or not at all (temp file in the same folder, fsync,
``os.replace``), so a run killed mid-write never leaves a truncated result behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

TMP_MARK = ".tmp-"


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs):
    """Open a temp file beside ``path``; on a clean exit it replaces ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=True)
        f.write("\n")


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete temp files that a killed writer left in ``directory``; returns what was removed."""
    stale = [p for p in Path(directory).glob(f".*{TMP_MARK}*") if p.is_file()]
    for p in stale:
        p.unlink()
    return stale
