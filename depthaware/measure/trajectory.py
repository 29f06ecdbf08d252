"""Trajectory: per-layer snapshots of the weights during training, in memory or on disk.

A snapshot stores each layer's parameters as one flat vector (one copy of the weights, optionally
cast to float16/bfloat16). On disk every snapshot is its own file, written atomically; a killed run
loses at most the snapshot in flight, and a new ``Trajectory`` on the same directory resumes it.

One writer per directory: a ``Trajectory`` on a directory holds its lock (``.writer.lock``) until
:meth:`Trajectory.close` (or ``with``, or garbage collection); a second writer, in this process
or another, gets a :class:`~depthaware.errors.FolderLockedError` naming the holder. The operating
system drops the lock of a killed process, so a crashed run resumes without cleanup. Reading
(:meth:`Trajectory.load`) takes no lock and never touches a writer's files.

>>> import torch, depthaware as da
>>> net = da.models.FCNN((1, 8, 1))
>>> traj = da.measure.Trajectory(da.layer_groups(net))
>>> traj.snapshot(0)
>>> with torch.no_grad():
...     _ = net.fcs[0].weight.add_(1.0)
>>> traj.snapshot(1)
>>> traj.steps, sorted(traj[1])
([0, 1], ['Layer 1', 'Output layer'])
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .._io import FolderLock, atomic_open
from ..distributed import agree, is_writer, refuse_flat
from ..errors import InputError
from ..layers import LayerGroups, as_layer_groups, flatten_into
from .sketch import check_size, sketch_layers, sketched
from .sketch import sketch as _sketch
from .trajectory_files import (
    DTYPES,
    META,
    UNITS,
    as_seed,
    as_step,
    meta_of,
    open_folder,
    read_meta,
    read_snapshot,
    scan_steps,
    step_file,
)

__all__ = ["Trajectory"]

log = logging.getLogger(__name__)

#: above this many parameters a trajectory is sketched unless told otherwise (``sketch="auto"``)
AUTO_LIMIT = 1 << 24
AUTO_K = 4096


class Trajectory(Mapping[int, dict]):
    """Snapshots of each layer's weights over training, keyed by step (epoch, iteration, ...).

    Args:
        layers: the model's :class:`~depthaware.LayerGroups`.
        directory: where to keep snapshots; ``None`` keeps them in memory. If the directory already
            holds a trajectory of the same layers, this one resumes it.
        dtype: storage dtype (``torch.float16``/``torch.bfloat16`` halve the memory); ``None``
            keeps the parameters' own dtype.
        device: where snapshots live in memory (default CPU, whatever the model's device).
        sketch: ``k``, to keep a CountSketch of ``k`` float32 numbers per layer instead of its
            weights, for each layer larger than ``k`` (a smaller one is kept exactly: no larger,
            and exact) (:mod:`~depthaware.measure.sketch`; ``k`` is 4 times a power of two, 4096
            gives distances within about 1%, each rate with a 95% error band); ``None`` keeps
            exact copies. ``"auto"`` (default) keeps exact copies up to ``AUTO_LIMIT`` (16.8M)
            parameters and sketches at ``k = 4096`` above: an exact snapshot of a ResNet-50
            (25.6M parameters) is 100 MB, 120 of them 12 GB, where the sketches take 0.4 MB
            in all; below the limit exact copies fit and cost no error.
        seed: the sketch's hash seed, an integer in ``[0, 2**63)``, stored with the trajectory (a
            resumed run sketches alike). A sketched trajectory stores float32 whatever ``dtype``
            says (a sketch sums many weights: half precision would lose the distances).
        unit: what a step counts, ``"step"`` (optimizer steps, default) or ``"epoch"``: kept in
            the folder (a resume in the other unit is refused), and the plots' x-axis.

    In a distributed run (DDP, FSDP2) create and snapshot it on every rank: a sharded parameter
    is gathered one at a time (``full_tensor``, a collective every rank takes part in, so the
    extra memory is one parameter), and only rank 0 takes the directory's lock and writes; the
    other ranks record the steps and read rank 0's files. Construction and every snapshot end
    with one ``all_reduce`` of rank 0's outcome, so that no rank reads a step before rank 0 has
    written it, and a folder rank 0 refuses, or a write that fails there, raises on every rank.
    FSDP1's flat parameters are refused.

    Steps are non-negative integers and must increase. To re-record from an earlier step after
    restoring a checkpoint, call :meth:`truncate` first; nothing is overwritten implicitly.
    """

    def __init__(
        self,
        layers: nn.Module | LayerGroups,
        directory: str | os.PathLike | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
        sketch: int | str | None = "auto",
        seed: int = 0,
        unit: str = "step",
    ):
        seed = as_seed(seed)
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}; got {unit!r}")
        # the recorded layers; None for a trajectory read from disk with load()
        self.layers: LayerGroups | None = as_layer_groups(layers)
        layers = self.layers
        refuse_flat(list(layers.parameters()), "Trajectory")
        dtype = dtype or next(layers.parameters()).dtype
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype must be a floating type in {list(DTYPES)}; got {dtype}")
        if isinstance(sketch, str):
            if sketch != "auto":
                raise ValueError(f"sketch must be an int, None or 'auto'; got {sketch!r}")
            sketch = AUTO_K if layers.numel() > AUTO_LIMIT else None
            if sketch:
                log.info("sketching snapshots (k=%d): %d parameters", sketch, layers.numel())
        if sketch is not None:
            dtype = torch.float32  # sums of many weights: half precision would lose the distances
        self.meta = meta_of(layers, dtype, sketch, seed, unit)
        if sketch is not None:
            check_size(sketch)
        self.device = torch.device(device)
        self.directory = None if directory is None else Path(directory)
        self._mem: dict[int, dict[str, torch.Tensor]] = {}
        self._disk_steps: list[int] = []
        self._lock: FolderLock | None = None
        self._writer = is_writer()
        if self.directory is None:
            return
        opened = False
        try:
            if self._writer:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._lock = FolderLock(self.directory)
                self._disk_steps = open_folder(self.directory, self.meta)
            opened = True
        finally:
            if not agree(opened):  # every rank learns whether rank 0 opened the folder
                self.close()
                if opened:
                    raise RuntimeError(f"rank 0 could not open {self.directory} (see its error)")
        if not self._writer:  # rank 0 has opened the folder: its steps are on disk
            self._disk_steps = scan_steps(self.directory)

    # construction from disk ---------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | os.PathLike) -> Trajectory:
        """A read-only view of a trajectory saved in ``directory`` (no model needed)."""
        directory = Path(directory)
        meta_path = directory / META
        if not meta_path.is_file():
            raise InputError(f"{directory} holds no trajectory: {META} is missing")
        self = cls.__new__(cls)
        self.layers = None
        self.meta = read_meta(meta_path)
        self.device = torch.device("cpu")
        self.directory = directory
        self._mem = {}
        self._lock = None
        self._writer = True
        self._disk_steps = scan_steps(directory)
        return self

    def close(self) -> None:
        """Release the directory's writer lock (snapshots can no longer be taken)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Trajectory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # recording ------------------------------------------------------------------------------
    def snapshot(self, step: int) -> None:
        """Record every layer's current weights as step ``step``.

        Raises:
            ValueError: ``step`` is not a non-negative integer or not after the last snapshot, a
                layer's parameter shapes changed since the trajectory began, or the directory's
                lock was released (:meth:`close`).
            OSError: the snapshot could not be written (e.g. the disk is full); nothing of it is
                left behind and the trajectory stays as it was.
        """
        layers = self._check_writable("take snapshots")
        step = as_step(step)
        if self.steps and step <= self.steps[-1]:
            raise ValueError(
                f"step {step} is not after the last snapshot {self.steps[-1]}; "
                f"call truncate({step}) first to re-record from there"
            )
        dtype = DTYPES[self.meta["dtype"]]
        model = layers.model
        current = None if model is None else dict(model.named_parameters())
        for layer, meta in zip(layers, self.meta["layers"], strict=True):
            shapes = [list(p.shape) for p in _current_params(layer, current)]
            if shapes != meta["shapes"]:
                raise ValueError(
                    f"layer {layer.name!r} changed shape: {meta['shapes']} at the "
                    f"start, {shapes} now"
                )
        snap = {}
        if self.sketch_size:  # the layers larger than a sketch
            sketches = sketch_layers(
                layers,
                lambda layer: _current_params(layer, current),
                self.sketch_size,
                seed=self.meta["sketch"]["seed"],
            )
            snap = {n: v.to(self.device, dtype) for n, v in sketches.items()}
        for layer in layers:
            if layer.name not in snap:
                params = _current_params(layer, current)
                snap[layer.name] = _flat_copy(params, dtype, self.device)
        snap = {layer.name: snap[layer.name] for layer in layers}
        if self.directory is None:
            self._mem[step] = snap
            return
        path, error = self.directory / step_file(step), None
        if self._writer:
            try:
                with atomic_open(path, "wb") as f:
                    torch.save(snap, f)
            except (OSError, RuntimeError) as e:  # torch.save reports a full disk as RuntimeError
                error = e
        if not agree(error is None):  # the other ranks wait for rank 0's file, and its outcome
            last = self.steps[-1] if self.steps else None
            raise OSError(
                f"could not write snapshot {path} (disk full or not writable?): "
                f"{error or 'see rank 0'}; the trajectory still ends at step {last}"
            ) from error
        self._disk_steps.append(step)

    def truncate(self, step: int) -> list[int]:
        """Forget snapshots at ``step`` and later (e.g. before re-recording from a checkpoint).

        Raises:
            ValueError: the trajectory is a read-only view (:meth:`load`) or was closed: only the
                holder of the directory's lock deletes its files.
        """
        self._check_writable("truncate")
        step = as_step(step)
        dropped = [s for s in self.steps if s >= step]
        for s in dropped:
            if self.directory is None:
                del self._mem[s]
            else:
                if self._writer:
                    (self.directory / step_file(s)).unlink()
                self._disk_steps.remove(s)
        return dropped

    def _check_writable(self, what: str) -> LayerGroups:
        """The recorded layers, when this trajectory can still ``what``."""
        if self.layers is None:
            raise ValueError(f"this trajectory was loaded read-only; it cannot {what}")
        if self.directory is not None and self._lock is None and self._writer:
            raise ValueError(f"this trajectory was closed; open {self.directory} again to {what}")
        return self.layers

    # reading --------------------------------------------------------------------------------
    @property
    def steps(self) -> list[int]:
        return sorted(self._mem) if self.directory is None else list(self._disk_steps)

    @property
    def sketch_size(self) -> int | None:
        """``k`` of a sketched trajectory (snapshots are ``(ROWS, k / ROWS)`` CountSketches of
        each layer, :mod:`~depthaware.measure.sketch`); None for exact snapshots."""
        return (self.meta.get("sketch") or {}).get("k")

    def encode(self, name: str, flat: torch.Tensor) -> torch.Tensor:
        """Layer ``name``'s flat weights in this trajectory's stored form (its sketch, or the
        flat vector itself), e.g. for a :math:`\\theta^*` given from outside."""
        sk = self.meta.get("sketch") or {}
        if not sketched(flat.numel(), sk.get("k")):
            return flat
        return _sketch(flat, sk["k"], seed=sk["seed"], layer=name)

    @property
    def layer_names(self) -> list[str]:
        return [m["name"] for m in self.meta["layers"]]

    @property
    def depths(self) -> list[int]:
        return [m["depth"] for m in self.meta["layers"]]

    @property
    def numels(self) -> dict[str, int]:
        return {m["name"]: sum(math.prod(s) for s in m["shapes"]) for m in self.meta["layers"]}

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        """``{layer name: flat weights}`` at ``step``, in the storage dtype."""
        if self.directory is None:
            if step not in self._mem:
                raise KeyError(f"no snapshot at step {step}; steps are {self.steps}")
            return self._mem[step]
        if step not in self._disk_steps:
            raise KeyError(f"no snapshot at step {step}; steps are {self.steps}")
        return read_snapshot(self.directory / step_file(step), self.meta, self.device)

    @property
    def unit(self) -> str | None:
        """What a step counts, ``"epoch"`` or ``"step"`` (None for a folder that did not say)."""
        return self.meta.get("unit")

    def nbytes(self) -> int:
        """Bytes of the snapshots held in memory."""
        return sum(t.numel() * t.element_size() for s in self._mem.values() for t in s.values())


def _current_params(layer, current: dict | None) -> list[torch.Tensor]:
    """The layer's parameters as the model holds them now, so a replaced parameter is seen."""
    if current is None:
        return list(layer.params)
    missing = [n for n in layer.param_names if n not in current]
    if missing:
        raise ValueError(f"layer {layer.name!r}: parameters {missing} are gone from the model")
    return [current[n] for n in layer.param_names]


def _flat_copy(params, dtype, device) -> torch.Tensor:
    """One copy: each parameter is copied (and cast) straight into its slice of one buffer."""
    return flatten_into(
        params, torch.empty(sum(p.numel() for p in params), dtype=dtype, device=device)
    )
