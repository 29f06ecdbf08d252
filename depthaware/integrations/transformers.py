"""Hugging Face ``Trainer`` callbacks: record a :class:`~depthaware.measure.Trajectory` as the
``Trainer`` trains and report Definition 2.1 per layer through ``Trainer.log``; freeze layers with
a :mod:`depthaware.freeze` freezer (``pip install transformers accelerate``, or depthaware's
``[transformers]`` extra).

A ``TrainerCallback`` cannot reach ``Trainer.log`` by itself, so, as TRL's callbacks do, the
convergence callback takes the trainer:

>>> trainer = Trainer(model=model, args=args, train_dataset=data)  # doctest: +SKIP
>>> trainer.add_callback(LayerConvergenceCallback(trainer))  # doctest: +SKIP
>>> trainer.train()  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

try:
    import transformers
except ImportError:  # pragma: no cover - the message is the behaviour
    raise ImportError(
        "depthaware.integrations.transformers needs Hugging Face transformers: pip install "
        "transformers accelerate (depthaware's [transformers] extra)"
    ) from None

import torch
from torch.utils.hooks import RemovableHandle

from ..freeze import Freezer
from ..layers import LayerGroups
from ._recording import (
    Recording,
    check_windows,
    network_layers,
    open_trajectory,
    partial_epoch,
    report,
)

__all__ = ["FREEZER_KEY", "LayerConvergenceCallback", "LayerFreezingCallback"]

#: the key of the optimizer state_dict's first param group under which the freezer's state travels
FREEZER_KEY = "depthaware_freezer"


def _layers(layers, model, who: str) -> LayerGroups:
    """``layers``, or the Trainer's model's
    (:func:`~depthaware.integrations._recording.network_layers`)."""
    return network_layers(layers, lambda: model, who, "da.layer_groups(model.body)")


def _epochs(state) -> int:
    """Whole epochs done: ``TrainerState.epoch`` is fractional (1.5 in the middle of the second
    epoch, where a checkpoint may be), so rounded down."""
    return math.floor(state.epoch + 1e-9) if state.epoch is not None else 0


def _whole(state) -> bool:
    """Whether the Trainer stands at the end of a whole epoch (``max_steps`` can end training
    inside one, and the Trainer still calls ``on_epoch_end`` for it)."""
    return state.epoch is None or abs(state.epoch - round(state.epoch)) < 1e-6


class LayerConvergenceCallback(Recording, transformers.TrainerCallback):
    """Records each layer's weights over ``trainer.train()`` and reports their convergence.

    The Hugging Face counterpart of :class:`depthaware.integrations.lightning.LayerConvergence`,
    with the same numbers under the same names. Snapshots: when training starts, then after
    every epoch (step = epochs done) or, with ``every_n_steps``, every that many optimizer steps
    (step = ``state.global_step``). They go to ``directory`` (default
    ``<args.output_dir>/layer_convergence/trajectory``), so a killed run keeps them.

    Resuming (``trainer.train(resume_from_checkpoint=...)``): the run's position is the
    ``TrainerState`` the Trainer restores from the checkpoint; the snapshots taken after it are
    dropped and re-recorded, so the resumed run reports as an uninterrupted one. A fresh run
    refuses a folder that already holds a trajectory, and a resumed one a folder recorded with
    other settings (every epoch against ``every_n_steps``, another sketch), naming them. When
    ``max_steps`` ends training inside an epoch, that partial epoch gets no snapshot (a warning
    says so): :math:`\\theta^*` is the last whole epoch's weights. A resumed run whose weights
    are not the ones recorded at the checkpoint's snapshot (not restored: transformers' "missing
    keys" warning; another run's folder) is refused, naming the layers
    (:class:`~depthaware.errors.ResumeMismatchError`).

    When training ends, :math:`\\theta^*` is the last snapshot and, on the main process only,
    each layer's ``convergence/C[t1,t2]/<layer>`` and the bias statistics of each window
    (:meth:`~depthaware.measure.ConvergenceReport.log_to`) go through ``trainer.log``, so to
    every integration in ``report_to`` and to ``state.log_history``; the report's files
    (:func:`~depthaware.reports.write_report`) are written beside the trajectory.
    ``self.report`` holds it.

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
        trainer: transformers.Trainer,
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
        super().__init__(layers, every_n_steps=every_n_steps, windows=windows,
                         directory=directory, sketch=sketch, seed=seed)  # fmt: skip
        self.trainer = trainer

    def _step(self, state: transformers.TrainerState) -> int:
        return _epochs(state) if self.every_n_steps is None else state.global_step

    def on_train_begin(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        model: torch.nn.Module | None = None,
        train_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        end: int | None = state.max_steps
        if self.every_n_steps is None:  # whole epochs: a partial last one is not recorded
            per_epoch = len(train_dataloader) // args.gradient_accumulation_steps
            end = state.max_steps // per_epoch if per_epoch else None
        check_windows(self.windows, end, self.unit, "LayerConvergenceCallback")
        if self.directory is None:
            self.directory = Path(args.output_dir or ".") / "layer_convergence" / "trajectory"
        self.trajectory = open_trajectory(
            _layers(self.layers, model, "LayerConvergenceCallback"),
            self.directory,
            sketch=self.sketch,
            seed=self.seed,
            unit=self.unit,
            resumed_at=self._step(state) if state.global_step > 0 else None,
            step=self._step(state),
            who="LayerConvergenceCallback",
            resume="trainer.train(resume_from_checkpoint=...)",
            at_snapshot=self.every_n_steps is not None or _whole(state),
        )

    def on_step_end(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        **kwargs: Any,
    ) -> None:
        n = self.every_n_steps
        if n is not None and state.global_step % n == 0:
            assert self.trajectory is not None  # opened in on_train_begin()
            self.trajectory.snapshot(state.global_step)

    def on_epoch_end(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        **kwargs: Any,
    ) -> None:
        if self.every_n_steps is not None:
            return
        assert self.trajectory is not None  # opened in on_train_begin()
        if _whole(state):
            self.trajectory.snapshot(_epochs(state))
        else:
            steps = self.trajectory.steps
            partial_epoch("LayerConvergenceCallback", f"state.epoch {state.epoch:.4g}", steps[-1])

    def on_train_end(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        **kwargs: Any,
    ) -> None:
        if self.trajectory is None:
            return
        assert self.directory is not None  # set with the trajectory in on_train_begin()
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

    Resuming: the freezer's state travels inside the optimizer's state_dict (under
    :data:`FREEZER_KEY` in its first param group, added by a ``register_state_dict_post_hook``),
    which the Trainer saves in every checkpoint (``optimizer.pt``) and restores from the very
    folder ``trainer.train(resume_from_checkpoint=...)`` resumes from, wherever it is. So a
    resumed run freezes the same layers as the checkpoint's run before its first step; a resume
    from a checkpoint that holds no freezer state (saved without this callback, or with
    ``save_only_model=True``) is refused.

    FreezeOut is an LR scheduler: ``Trainer(optimizers=(opt, da.freeze.FreezeOut(opt, ...)))``
    lets the Trainer step and checkpoint it, with no callback.
    """

    def __init__(
        self,
        freezer: Callable[[torch.optim.Optimizer, LayerGroups], Freezer],
        layers: LayerGroups | torch.nn.Module | None = None,
    ):
        if not callable(freezer):
            raise TypeError(
                f"freezer must be a callable (optimizer, layers) -> freezer; got {freezer!r}"
            )
        self.make, self.layers = freezer, layers
        self.freezer: Freezer | None = None
        self._hook: RemovableHandle | None = None

    def on_train_begin(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        model: torch.nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        **kwargs: Any,
    ) -> None:
        layers = _layers(self.layers, model, "LayerFreezingCallback")
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
        if optimizer is None:
            raise ValueError("LayerFreezingCallback: the Trainer passed no optimizer to freeze in")
        saved = optimizer.param_groups[0].pop(FREEZER_KEY, None)  # restored with the optimizer
        self.freezer = freezer = self.make(optimizer, layers)
        if state.global_step > 0:  # resumed from a checkpoint
            if saved is None:
                raise ValueError(
                    f"LayerFreezingCallback: resumed at step {state.global_step} from a checkpoint "
                    "whose optimizer state holds no freezer state (saved without this callback, or "
                    "with save_only_model=True): resume from a checkpoint saved with it"
                )
            freezer.load_state_dict(saved)
        if self._hook is not None:  # a second train() on the same optimizer
            self._hook.remove()
        self._hook = optimizer.register_state_dict_post_hook(self._with_freezer)

    def _with_freezer(self, optimizer, state_dict: dict) -> dict:
        """The optimizer's state_dict, with the freezer's state (a copy) in its first group."""
        assert self.freezer is not None  # made in on_train_begin(), before this hook
        state_dict["param_groups"][0][FREEZER_KEY] = copy.deepcopy(self.freezer.state_dict())
        return state_dict

    def on_step_end(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        **kwargs: Any,
    ) -> None:
        assert self.freezer is not None  # made in on_train_begin()
        self.freezer.step()
