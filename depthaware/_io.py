"""The one writer of the package: atomic files, strict JSON, and one writer per folder.

* :func:`atomic_open`: a file appears whole or not at all (temp file in the same folder, fsync,
  ``os.replace``, fsync of the folder), so a run killed mid-write never leaves a truncated result
  behind; it gets the permissions of a plain ``open`` under the user's umask.
* :func:`write_json` / :func:`write_text` / :func:`write_csv`: atomic, and JSON with ``null``
  where a value is NaN or infinite (strict parsers refuse the ``NaN`` literal).
* :class:`FolderLock`: an advisory lock held by the one process writing a folder; a second writer
  gets an error naming the holder. The operating system releases it when the holder dies, so a
  lock left by a killed run is taken over without any cleanup.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import socket
import stat
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import FolderLockedError

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks (FolderLock warns)
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "TMP_MARK",
    "FolderLock",
    "atomic_open",
    "check_writable",
    "finite_or_none",
    "remove_stale_temps",
    "write_csv",
    "write_json",
    "write_text",
]

log = logging.getLogger(__name__)
TMP_MARK = ".tmp-"
LOCK_FILE = ".writer.lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/filesystem can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on a clean exit it replaces ``path`` in one step.

    The data and then the folder entry are fsynced, so after a crash the folder holds either
    the old file or the new one, whole. The file's mode is ``0o666`` minus the umask (a plain
    ``open``'s), not ``mkstemp``'s private ``0o600``. Text is UTF-8 whatever the locale (a report
    holds θ and ≈). The temp file is created anew (``O_EXCL``) and ``os.replace`` swaps the
    folder entry, so a symbolic link planted at ``path`` is replaced, never written through.
    """
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def check_writable(directory: str | os.PathLike) -> None:
    """Create ``directory`` if needed and a file in it, then remove the file: an ``OSError`` here,
    before any work, instead of after it (read-only, below a file, no permission)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory, prefix=f".probe{TMP_MARK}"):
        pass


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN/inf float (also in nested dicts, lists, tuples) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON, atomically; NaN and inf become ``null``."""
    with atomic_open(path, "w") as f:
        json.dump(finite_or_none(obj), f, indent=2, allow_nan=False)
        f.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """``rows`` (dicts with the same keys, in order) as CSV with a header row, atomically."""
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete temp files that a killed writer left in ``directory``; returns what was removed.

    Only the holder of the folder's :class:`FolderLock` may call this: another process's
    in-flight temp file looks exactly like a stale one.
    """
    stale = [p for p in Path(directory).glob(f".*{TMP_MARK}*") if p.is_file()]
    for p in stale:
        p.unlink()
    return stale


class FolderLock:
    """An exclusive advisory lock on ``directory`` (``fcntl.flock`` on ``directory/.writer.lock``;
    POSIX systems only, elsewhere a warning says that nothing is locked).

    Held from construction until :meth:`release` (or garbage collection). The lock file records
    the holder (pid, host, start time, command), which the error of a second writer quotes.
    A second lock on the same folder fails also within one process.
    """

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None
        if fcntl is None:
            warnings.warn(
                f"no advisory locks on this platform: nothing stops a second writer of "
                f"{self.path.parent}",
                stacklevel=2,
            )
            return
        try:  # never through a link: a planted .writer.lock -> ~/.bashrc must not be written
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
        except OSError as e:
            raise FolderLockedError(
                f"{self.path}: cannot open the writer lock ({e.strerror}); it must be a regular "
                "file, not a symbolic link or anything else. Remove it if you did not make it."
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device planted in its place
            os.close(fd)
            raise FolderLockedError(
                f"{self.path}: the writer lock is not a regular file; remove it"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise FolderLockedError(
                f"{self.path.parent} is being written by another process ({holder}); one "
                "writer per folder. Read it with Trajectory.load(), or write elsewhere."
            ) from None
        previous = _read_holder(fd)
        if previous != "no holder recorded":
            log.info("took over %s from a writer that is gone (%s)", self.path.parent, previous)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": " ".join(sys.argv)[:200],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        self._pid = os.getpid()

    def release(self) -> None:
        """Unlock and close. In a process forked from the holder only the inherited descriptor is
        closed: the lock belongs to the open file description that holder and child share, and
        unlocking it from the child would let a second writer in while the holder still writes.
        """
        if self._fd is not None:
            fd, self._fd = self._fd, None
            if os.getpid() == self._pid:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __del__(self):
        self.release()


def _read_holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"null")
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return "no holder recorded"
    return (
        f"pid {record.get('pid')} on {record.get('host')}, since {record.get('started')}: "
        f"{record.get('command')}"
    )
