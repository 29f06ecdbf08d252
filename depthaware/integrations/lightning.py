"""PyTorch Lightning callbacks: record a :class:`~depthaware.measure.Trajectory` as the
``Trainer`` trains, and report Definition 2.1 per layer at the end (``pip install lightning``,
or depthaware's ``[lightning]`` extra).

>>> from depthaware.integrations.lightning import LayerConvergence  # doctest: +SKIP
>>> trainer = Trainer(callbacks=[LayerConvergence(windows=[(0, 5)])])  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - the message is the behaviour
    raise ImportError(
        "depthaware.integrations.lightning needs PyTorch Lightning: pip install lightning "
        "(depthaware's [lightning] extra)"
    ) from None

import torch

from ..freeze import Freezer
from ..layers import LayerGroups
from ..measure import GradMagnitude, predictiveness
from ._recording import (
    Recording,
    check_windows,
    input_target,
    network_layers,
    open_trajectory,
    partial_epoch,
    report,
)

__all__ = ["GradientMonitor", "LayerConvergence", "LayerFreezing"]


def _wrapped(layers, pl_module, who: str) -> LayerGroups:
    """``layers``, or those of the network the LightningModule wraps: its single child module
    (:func:`~depthaware.integrations._recording.network_layers`)."""

    def network():
        children = list(pl_module.named_children())
        if len(children) != 1:
            raise ValueError(
                f"the LightningModule has {len(children)} child modules "
                f"({', '.join(n for n, _ in children) or 'none'}), not one network"
            )
        return children[0][1]

    return network_layers(layers, network, who, "da.layer_groups(module.model)")


class LayerConvergence(Recording, pl.Callback):
    """Records each layer's weights over a ``Trainer.fit`` and reports their convergence.

    Snapshots: step 0 when training starts, then after every epoch (step = epochs done) or,
    with ``every_n_steps``, every that many optimizer steps (step = ``trainer.global_step``).
    They go to ``directory`` (default ``<trainer.log_dir>/layer_convergence/trajectory``),
    so a run killed at any point keeps them; the folder is recorded in the callback's state, so
    resuming from a Lightning checkpoint (``fit(ckpt_path=...)``) continues the same trajectory
    from that checkpoint's step (later snapshots, taken after the checkpoint, are re-recorded).

    A resumed run refuses a folder recorded with other settings (every epoch against
    ``every_n_steps``, another sketch), naming them, and weights that are not the ones recorded
    at the checkpoint's snapshot (not restored, or another run's folder), naming the layers
    (:class:`~depthaware.errors.ResumeMismatchError`). When ``max_steps`` ends training inside an
    epoch, that partial epoch gets no snapshot (a warning says so).

    When fitting ends, :math:`\\theta^*` is the last snapshot and, on rank 0 only: every logger
    gets each layer's ``convergence/C[t1,t2]/<layer>`` and the bias statistics of each window
    (:meth:`~depthaware.measure.ConvergenceReport.log_to`, at the trainer's global step), and the
    report is written beside the trajectory (:func:`~depthaware.reports.write_report`:
    ``rates.csv``/``rates.json``, ``convergence.json`` and the figures). ``self.report`` holds it.

    Args:
        layers: the layers to record (:class:`~depthaware.LayerGroups` or a module); ``None``:
            the LightningModule's single child module's (the wrapped network).
        every_n_steps: snapshot every that many optimizer steps instead of every epoch.
        windows: the report's windows ``[(t1, t2), ...]`` in snapshot steps (default: the run).
        directory: where the trajectory is kept (see above).
        sketch, seed: as :class:`~depthaware.measure.Trajectory` (``"auto"`` sketches a model
            above 16.8M parameters).
    """

    def __init__(
        self,
        layers: LayerGroups | None = None,
        *,
        every_n_steps: int | None = None,
        windows: Iterable[tuple[int, int]] | None = None,
        directory: str | os.PathLike | None = None,
        sketch: int | str | None = "auto",
        seed: int = 0,
    ):
        super().__init__(layers, every_n_steps=every_n_steps, windows=windows,
                         directory=directory, sketch=sketch, seed=seed)  # fmt: skip
        self._resumed_at: int | None = None
        self._at: int | None = None  # the global step of the last snapshot

    # state (Lightning saves it in its checkpoints) ----------------------------------------------
    def state_dict(self) -> dict:
        steps = self.trajectory.steps if self.trajectory is not None else []
        return {
            "directory": None if self.directory is None else str(self.directory),
            "last_step": steps[-1] if steps else None,
            "at_global_step": self._at,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict.get("directory"):
            self.directory = Path(state_dict["directory"])
        self._resumed_at = state_dict.get("last_step")
        self._at = state_dict.get("at_global_step")

    # recording --------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        end = _planned_end(trainer, self.every_n_steps is None)
        check_windows(self.windows, end, self.unit, "LayerConvergence")
        if self.directory is None:
            self.directory = Path(trainer.log_dir or trainer.default_root_dir)
            self.directory = self.directory / "layer_convergence" / "trajectory"
        self.trajectory = open_trajectory(
            _wrapped(self.layers, pl_module, "LayerConvergence"),
            self.directory,
            sketch=self.sketch,
            seed=self.seed,
            unit=self.unit,
            resumed_at=self._resumed_at,
            step=self._step(trainer),  # t0, or the checkpoint's weights if not yet recorded
            who="LayerConvergence",
            resume="fit(ckpt_path=...)",
            at_snapshot=self._at == trainer.global_step,  # saved right after that snapshot
        )
        self._at = trainer.global_step

    def _step(self, trainer) -> int:
        return trainer.current_epoch if self.every_n_steps is None else trainer.global_step

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        n, trajectory = self.every_n_steps, self.trajectory
        assert trajectory is not None  # opened in setup()
        if n is not None and trainer.global_step % n == 0:
            step = trainer.global_step
            if step > trajectory.steps[-1]:  # gradient accumulation repeats a step
                trajectory.snapshot(step)
                self._at = step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trajectory = self.trajectory
        assert trajectory is not None  # opened in setup()
        if self.every_n_steps is not None:
            return
        progress = trainer.fit_loop.epoch_loop.batch_progress
        if progress.is_last_batch or progress.current.ready == trainer.num_training_batches:
            trajectory.snapshot(trainer.current_epoch + 1)
            self._at = trainer.global_step
        else:  # max_steps ended the epoch early
            where = f"epoch {trainer.current_epoch + 1}, batch {progress.current.ready}"
            partial_epoch("LayerConvergence", where, trajectory.steps[-1])

    # reporting --------------------------------------------------------------------------------
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.trajectory is None:
            return
        assert self.directory is not None  # set with the trajectory in setup()
        self.report = report(
            self.trajectory,
            self.windows,
            writer=trainer.is_global_zero,
            loggers=[logger.log_metrics for logger in trainer.loggers],
            step=trainer.global_step,
            folder=self.directory.parent,
        )
        if self.report is not None:
            for logger in trainer.loggers:
                logger.save()


class GradientMonitor(pl.Callback):
    """Each layer's mean gradient magnitude :math:`\\mathbb{E}|g|` over the optimizer steps of
    an epoch (:class:`~depthaware.measure.GradMagnitude`, read in ``on_before_optimizer_step``,
    before gradient clipping changes it), sent at the epoch's end as ``grad_magnitude/<layer>`` to
    the Trainer's loggers (rank 0's gradients: under DDP they are already averaged), at the
    epoch's last optimizer step. ``layers``: as :class:`LayerConvergence`'s.

    With ``loss_fn``, also Definition 4.1 (:func:`~depthaware.measure.predictiveness`: the
    cosine of each layer's gradient on the step's batch with that on the previous batch, and
    with that after the other layers' optimizer step), sent as ``predictiveness/data/<layer>``
    and ``predictiveness/parameters/<layer>`` to the Trainer's loggers (rank 0) at the step it
    is measured, before the step's own forward pass; under gradient accumulation, once per
    optimizer step (on its first micro-batch). ``loss_fn(output, target)`` is the training
    loss; a batch is ``(input, target)``, or ``unpack(batch)`` gives that pair (a dict batch:
    ``unpack=lambda b: (b["x"], b["y"])``), checked on the first batch, before any step. One
    measurement costs :math:`L + 2` forward/backward passes against a step's one: measured
    (``depthaware bench --section overhead``) on the CIFAR ResNet-18 (:math:`L = 6`), 9.96
    training steps, 1.25 times the passes' count. So ``"auto"`` (the default) measures every
    :math:`30 (L + 2)` steps, about 4% of training's time on that model.
    """

    def __init__(
        self,
        layers: LayerGroups | None = None,
        *,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        unpack: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
        predictiveness_every: int | str = "auto",
    ):
        if unpack is not None and not callable(unpack):
            raise TypeError(f"unpack must be a callable batch -> (input, target); got {unpack!r}")
        if predictiveness_every != "auto" and (
            not isinstance(predictiveness_every, int) or predictiveness_every < 1
        ):
            raise ValueError(
                f"predictiveness_every must be 'auto' or a positive integer; got "
                f"{predictiveness_every!r}"
            )
        self.layers, self.loss_fn = layers, loss_fn
        self.predictiveness_every = predictiveness_every
        self.every = 0  # steps between measurements, resolved in on_train_start()
        self.unpack = unpack
        self.monitor: GradMagnitude | None = None
        self._previous = None  # the last batch: Definition 4.1's other batch
        self._measured_at: int | None = None  # the optimizer step last measured

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.monitor = GradMagnitude(_wrapped(self.layers, pl_module, "GradientMonitor"))
        every = self.predictiveness_every
        self.every = 30 * (len(self.monitor.layers) + 2) if every == "auto" else int(every)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.loss_fn is None:
            return
        batch = input_target(batch, self.unpack, "GradientMonitor")  # checked before any step
        step = trainer.global_step
        # a step's first micro-batch only: gradient accumulation repeats the step
        if step % self.every == 0 and step != self._measured_at:
            self._measured_at = step
            if self._previous is not None:
                assert self.monitor is not None  # made in on_train_start()
                got = predictiveness(
                    self.monitor.layers, self.loss_fn, trainer.optimizers[0], batch, self._previous
                )
                numbers = {f"predictiveness/{k}/{n}": v[k] for n, v in got.items() for k in v}
                _log(trainer, numbers)
        self._previous = batch

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        assert self.monitor is not None  # made in setup()
        self.monitor.update()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.monitor is not None  # made in setup()
        if self.monitor.count:
            means = self.monitor.compute()
            _log(trainer, {f"grad_magnitude/{name}": value for name, value in means.items()})
        self.monitor.reset()


def _log(trainer: pl.Trainer, numbers: dict[str, float]) -> None:
    """``numbers`` to every logger of the Trainer, at its global step, from rank 0 only."""
    for logger in trainer.loggers if trainer.is_global_zero else ():
        logger.log_metrics(numbers, step=trainer.global_step)


def _planned_end(trainer, epochs: bool) -> int | None:
    """The last epoch (whole epochs) or optimizer step the run will reach, from
    ``estimated_stepping_batches`` (``max_epochs`` and ``max_steps`` both); None if unknown."""
    steps = trainer.estimated_stepping_batches
    if not math.isfinite(steps):
        return None
    if not epochs:
        return int(steps)
    per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
    return int(steps) // per_epoch if math.isfinite(per_epoch) and per_epoch else None


class LayerFreezing(pl.Callback):
    """Freezes the wrapped network's layers as it trains, with a :mod:`depthaware.freeze`
    freezer stepped after every optimizer step.

    ``freezer(optimizer, layers)`` builds it when training starts, from the Trainer's (first)
    optimizer and the layers (``layers=``, or the LightningModule's single child module), e.g.
    ``lambda opt, layers: da.freeze.ConvergenceFreezer(opt, layers, check_every=100)``. Its state
    is the callback's, saved in Lightning's checkpoints: a resumed run freezes the same layers
    before its first step and continues the schedule. A frozen layer's parameters keep their
    param group (Lightning's optimizer checkpoint keeps its layout) with ``requires_grad=False``,
    no gradient and no optimizer state: no ``BaseFinetuning`` moving of param groups.

    FreezeOut is an LR scheduler: returning it from ``configure_optimizers`` with
    ``"interval": "step"`` lets Lightning step and checkpoint it, with no callback.
    """

    def __init__(
        self,
        freezer: Callable[[torch.optim.Optimizer, LayerGroups], Freezer],
        layers: LayerGroups | None = None,
    ):
        if not callable(freezer):
            raise TypeError(
                f"freezer must be a callable (optimizer, layers) -> freezer; got {freezer!r}"
            )
        self.make, self.layers = freezer, layers
        self.freezer: Freezer | None = None
        self._state: dict | None = None
        self._stepped = 0  # the global step the freezer last saw

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        layers = _wrapped(self.layers, pl_module, "LayerFreezing")
        self.freezer = freezer = self.make(trainer.optimizers[0], layers)
        if self._state is not None:  # resumed from a checkpoint
            freezer.load_state_dict(self._state)
        self._stepped = trainer.global_step

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.global_step > self._stepped:  # an optimizer step was taken (accumulation)
            self._stepped = trainer.global_step
            assert self.freezer is not None  # made in on_train_start()
            self.freezer.step()

    def state_dict(self) -> dict:
        return {} if self.freezer is None else {"freezer": self.freezer.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._state = state_dict.get("freezer")
