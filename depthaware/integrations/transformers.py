"""Hugging Face ``Trainer`` callbacks: record a :class:`~depthaware.measure.Trajectory` as the
``Trainer`` trains and report Definition 2.1 per layer through ``Trainer.log``; freeze layers with
a :mod:`depthaware.freeze` freezer (``pip install 'depthaware[transformers]'``).

A ``TrainerCallback`` cannot reach ``Trainer.log`` by itself, so, as TRL's callbacks do, the
convergence callback takes the trainer:

>>> trainer = Trainer(model=model, args=args, train_dataset=data)  # doctest: +SKIP
>>> trainer.add_callback(LayerConvergenceCallback(trainer))  # doctest: +SKIP
>>> trainer.train()  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

try:
    import transformers
except ImportError:  # pragma: no cover - the message is the behaviour
    raise ImportError(
        "depthaware.integrations.transformers needs Hugging Face transformers: pip install "
        "'depthaware[transformers]'"
    ) from None

import torch

from .._io import atomic_open
from ..layers import LayerGroups, as_layer_groups
from ..measure import Trajectory
from ._recording import open_trajectory, report

__all__ = ["FREEZER_FILE", "LayerConvergenceCallback", "LayerFreezingCallback"]

FREEZER_FILE = "depthaware_freezer.pt"


def _layers(layers, model, who: str) -> LayerGroups:
    """``layers`` as LayerGroups, or the Trainer's model's (an error that says to pass
    ``layers=`` for a model :func:`~depthaware.layer_groups` does not know)."""
    if layers is not None:
        return as_layer_groups(layers)
    try:
        return as_layer_groups(model)
    except ValueError as e:
        raise ValueError(f"{who}: {e}; or pass layers= (e.g. da.layer_groups(model.body))") from e


def _epochs(state) -> int:
    """Whole epochs done: ``TrainerState.epoch`` is fractional (1.5 in the middle of the second
    epoch, where a checkpoint may be), so rounded down."""
    return math.floor(state.epoch + 1e-9) if state.epoch is not None else 0


class LayerConvergenceCallback(transformers.TrainerCallback):
    """Records each layer's weights over ``trainer.train()`` and reports their convergence.

    The Hugging Face counterpart of :class:`depthaware.integrations.lightning.LayerConvergence`,
    with the same numbers under the same names. Snapshots: when training starts, then after
    every epoch (step = epochs done) or, with ``every_n_steps``, every that many optimizer steps
    (step = ``state.global_step``). They go to ``directory`` (default
    ``<args.output_dir>/layer_convergence/trajectory``), so a killed run keeps them.

    Resuming (``trainer.train(resume_from_checkpoint=...)``): the run's position is the
    ``TrainerState`` the Trainer restores from the checkpoint; the snapshots taken after it are
    dropped and re-recorded, so the resumed run reports as an uninterrupted one. A fresh run
    refuses a folder that already holds a trajectory.

    When training ends, :math:`\\theta^*` is the last snapshot and, on the main process only,
    each layer's ``convergence/C[t1,t2]/<layer>`` and the bias statistics of each window
    (:meth:`~depthaware.measure.ConvergenceReport.log_to`) go through ``trainer.log``, so to
    every integration in ``report_to`` and to ``state.log_history``; the report's files
    (:func:`~depthaware.measure.tables.write_report`) are written beside the trajectory.
    :attr:`report` holds it.

    Args:
        trainer: the ``transformers.Trainer`` this callback is added to (its ``log`` is used).
        layers: the layers to record: a :class:`~depthaware.LayerGroups` or a module; ``None``
            for the Trainer's model, grouped by :func:`~depthaware.layer_groups` (a model it does
            not know is an error that says to pass ``layers=``).
        every_n_steps: snapshot every that many optimizer steps instead of every epoch.
        windows: the report's windows ``[(t1, t2), ...]`` in snapshot steps (default: the run).
        directory: where the trajectory is kept (see above).
        sketch, seed: as :class:`~depthaware.measure.Trajectory` (``"auto"`` sketches a model
            above 16.8M parameters).
    """

    def __init__(
        self,
        trainer,
        layers: LayerGroups | torch.nn.Module | None = None,
        *,
        every_n_steps: int | None = None,
        windows: Iterable[tuple[int, int]] | None = None,
        directory: str | os.PathLike | None = None,
        sketch: int | str | None = "auto",
        seed: int = 0,
    ):
        if not callable(getattr(trainer, "log", None)):
            raise TypeError(
                f"trainer must be the transformers.Trainer the callback is added to (its log() "
                f"sends the numbers); got {type(trainer).__name__}"
            )
        if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps < 1):
            raise ValueError(f"every_n_steps must be a positive integer; got {every_n_steps!r}")
        self.trainer, self.layers, self.every_n_steps = trainer, layers, every_n_steps
        self.windows = None if windows is None else [tuple(w) for w in windows]
        self.directory = None if directory is None else Path(directory)
        self.sketch, self.seed = sketch, seed
        self.trajectory: Trajectory | None = None
        self.report = None

    def _step(self, state) -> int:
        return _epochs(state) if self.every_n_steps is None else state.global_step

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.directory is None:
            self.directory = Path(args.output_dir) / "layer_convergence" / "trajectory"
        self.trajectory = open_trajectory(
            _layers(self.layers, model, "LayerConvergenceCallback"),
            self.directory,
            sketch=self.sketch,
            seed=self.seed,
            resumed_at=self._step(state) if state.global_step > 0 else None,
            step=self._step(state),
            who="LayerConvergenceCallback",
            resume="trainer.train(resume_from_checkpoint=...)",
        )

    def on_step_end(self, args, state, control, **kwargs):
        n = self.every_n_steps
        if n is not None and state.global_step % n == 0:
            self.trajectory.snapshot(state.global_step)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.every_n_steps is None:
            self.trajectory.snapshot(_epochs(state))

    def on_train_end(self, args, state, control, **kwargs):
        if self.trajectory is None:
            return
        self.report = report(
            self.trajectory,
            self.windows,
            writer=state.is_world_process_zero,
            loggers=[lambda numbers, step: self.trainer.log(dict(numbers))],  # at global_step
            step=state.global_step,
            folder=self.directory.parent,
        )


class LayerFreezingCallback(transformers.TrainerCallback):
    """Freezes the model's layers as the Trainer trains, with a :mod:`depthaware.freeze` freezer
    stepped after every optimizer step.

    ``freezer(optimizer, layers)`` builds it when training starts, from the Trainer's optimizer
    (unwrapped from accelerate's ``AcceleratedOptimizer``) and the layers (``layers=``, or the
    Trainer's model), e.g. ``lambda opt, layers: da.freeze.ConvergenceFreezer(opt, layers,
    check_every=100)``. A frozen layer keeps its param group but gets ``requires_grad=False``, no
    gradient and no optimizer state.

    Resuming: the freezer's state is written into every checkpoint folder the Trainer saves
    (``checkpoint-<step>/depthaware_freezer.pt``, atomically, main process only); a resumed run
    (``trainer.train(resume_from_checkpoint=...)``) reads it from
    ``<args.output_dir>/checkpoint-<step>`` and freezes the same layers before its first step.
    A resume without that file is refused, naming it.

    FreezeOut is an LR scheduler: ``Trainer(optimizers=(opt, da.freeze.FreezeOut(opt, ...)))``
    lets the Trainer step and checkpoint it, with no callback.
    """

    def __init__(self, freezer, layers: LayerGroups | torch.nn.Module | None = None):
        if not callable(freezer):
            raise TypeError(
                f"freezer must be a callable (optimizer, layers) -> freezer; got {freezer!r}"
            )
        self.make, self.layers = freezer, layers
        self.freezer = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        layers = _layers(self.layers, model, "LayerFreezingCallback")
        self.freezer = self.make(getattr(optimizer, "optimizer", optimizer), layers)
        if state.global_step > 0:  # resumed from a checkpoint
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / FREEZER_FILE
            if not path.is_file():
                raise FileNotFoundError(
                    f"LayerFreezingCallback: resumed at step {state.global_step}, but {path} is "
                    "missing: the freezer's state is saved in the checkpoint folders under "
                    "args.output_dir; resume from one of them"
                )
            self.freezer.load_state_dict(torch.load(path, weights_only=True))

    def on_step_end(self, args, state, control, **kwargs):
        self.freezer.step()

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            with atomic_open(folder / FREEZER_FILE, "wb") as f:
                torch.save(self.freezer.state_dict(), f)
