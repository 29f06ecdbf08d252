"""PyTorch Lightning callbacks: record a :class:`~depthaware.measure.Trajectory` as the
``Trainer`` trains, and report Definition 2.1 per layer at the end (``pip install
'depthaware[lightning]'``).

>>> from depthaware.integrations.lightning import LayerConvergence  # doctest: +SKIP
>>> trainer = Trainer(callbacks=[LayerConvergence(windows=[(0, 5)])])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - the message is the behaviour
    raise ImportError(
        "depthaware.integrations.lightning needs PyTorch Lightning: pip install "
        "'depthaware[lightning]'"
    ) from None

from ..layers import LayerGroups, as_layer_groups
from ..measure import GradMagnitude, Trajectory, convergence
from ..measure.tables import write_report

__all__ = ["GradientMonitor", "LayerConvergence", "LayerFreezing"]


def _wrapped(layers, pl_module, who: str) -> LayerGroups:
    """``layers`` as LayerGroups, or the LightningModule's single child module's."""
    if layers is not None:
        return as_layer_groups(layers)
    children = list(pl_module.named_children())
    if len(children) != 1:
        raise ValueError(
            f"{who}: the LightningModule has {len(children)} child modules "
            f"({', '.join(n for n, _ in children) or 'none'}); pass layers= (e.g. "
            "da.layer_groups(module.model))"
        )
    return as_layer_groups(children[0][1])


class LayerConvergence(pl.Callback):
    """Records each layer's weights over a ``Trainer.fit`` and reports their convergence.

    Snapshots: step 0 when training starts, then after every epoch (step = epochs done) or,
    with ``every_n_steps``, every that many optimizer steps (step = ``trainer.global_step``).
    They go to ``directory`` (default ``<trainer.log_dir>/layer_convergence/trajectory``),
    so a run killed at any point keeps them; the folder is recorded in the callback's state, so
    resuming from a Lightning checkpoint (``fit(ckpt_path=...)``) continues the same trajectory
    from that checkpoint's step (later snapshots, taken after the checkpoint, are re-recorded).

    When fitting ends, :math:`\\theta^*` is the last snapshot and, on rank 0 only: every logger
    gets each layer's ``convergence/C[t1,t2]/<layer>`` and the bias statistics of each window
    (:meth:`~depthaware.measure.ConvergenceReport.log_to`, at the trainer's global step), and the
    report is written beside the trajectory (:func:`~depthaware.measure.tables.write_report`:
    ``rates.csv``/``rates.json``, ``convergence.json`` and the figures). :attr:`report` holds it.

    Args:
        layers: the layers to record: a :class:`~depthaware.LayerGroups`, a module, or ``None``
            for the LightningModule's single child module (the wrapped network).
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
        if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps < 1):
            raise ValueError(f"every_n_steps must be a positive integer; got {every_n_steps!r}")
        self.layers, self.every_n_steps = layers, every_n_steps
        self.windows = None if windows is None else [tuple(w) for w in windows]
        self.directory = None if directory is None else Path(directory)
        self.sketch, self.seed = sketch, seed
        self.trajectory: Trajectory | None = None
        self.report = None
        self._resumed_at: int | None = None

    # state (Lightning saves it in its checkpoints) ----------------------------------------------
    def state_dict(self) -> dict:
        steps = self.trajectory.steps if self.trajectory is not None else []
        return {
            "directory": None if self.directory is None else str(self.directory),
            "last_step": steps[-1] if steps else None,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict.get("directory"):
            self.directory = Path(state_dict["directory"])
        self._resumed_at = state_dict.get("last_step")

    # recording --------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        if self.directory is None:
            self.directory = Path(trainer.log_dir or trainer.default_root_dir)
            self.directory = self.directory / "layer_convergence" / "trajectory"
        self.trajectory = Trajectory(
            _wrapped(self.layers, pl_module, "LayerConvergence"),
            self.directory,
            sketch=self.sketch,
            seed=self.seed,
        )
        if self._resumed_at is not None:  # from a checkpoint: drop what came after it
            self.trajectory.truncate(self._resumed_at + 1)
        elif self.trajectory.steps:
            raise ValueError(
                f"LayerConvergence: {self.directory} already holds a trajectory (steps up to "
                f"{self.trajectory.steps[-1]}); resume with fit(ckpt_path=...) or record to "
                "another directory"
            )
        step = self._step(trainer)
        if not self.trajectory.steps or self.trajectory.steps[-1] < step:
            self.trajectory.snapshot(step)  # t0, or the checkpoint's weights if not yet recorded

    def _step(self, trainer) -> int:
        return trainer.current_epoch if self.every_n_steps is None else trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = self.every_n_steps
        if n is not None and trainer.global_step % n == 0:
            step = trainer.global_step
            if step > self.trajectory.steps[-1]:  # gradient accumulation repeats a step
                self.trajectory.snapshot(step)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every_n_steps is None:
            self.trajectory.snapshot(trainer.current_epoch + 1)

    # reporting --------------------------------------------------------------------------------
    def on_fit_end(self, trainer, pl_module) -> None:
        if self.trajectory is None:
            return
        self.trajectory.close()
        if not trainer.is_global_zero or len(self.trajectory.steps) < 2:
            return
        self.report = convergence(self.trajectory, windows=self.windows)
        for logger in trainer.loggers:
            self.report.log_to(logger.log_metrics, trainer.global_step)
            logger.save()
        write_report(self.report, self.directory.parent)


class GradientMonitor(pl.Callback):
    """Each layer's mean gradient magnitude :math:`\\mathbb{E}|g|` over the optimizer steps of
    an epoch (:class:`~depthaware.measure.GradMagnitude`, read in ``on_before_optimizer_step``,
    before gradient clipping changes it), logged at the epoch's end as
    ``grad_magnitude/<layer>`` through ``pl_module.log_dict`` (rank 0's gradients: under DDP they
    are already averaged). ``layers``: as :class:`LayerConvergence`'s."""

    def __init__(self, layers: LayerGroups | None = None):
        self.layers = layers
        self.monitor: GradMagnitude | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.monitor = GradMagnitude(_wrapped(self.layers, pl_module, "GradientMonitor"))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.monitor.update()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.monitor.count:
            means = self.monitor.compute()
            pl_module.log_dict(
                {f"grad_magnitude/{name}": value for name, value in means.items()},
                rank_zero_only=True,
            )
        self.monitor.reset()


class LayerFreezing(pl.Callback):
    """Freezes the wrapped network's layers as it trains, with a :mod:`depthaware.freeze`
    freezer stepped after every optimizer step.

    ``freezer(optimizer, layers)`` builds it when training starts, from the Trainer's (first)
    optimizer and the layers (``layers=``, or the LightningModule's single child module), e.g.
    ``lambda opt, layers: da.freeze.ConvergenceFreezer(layers, opt, check_every=100)``. Its state
    is the callback's, saved in Lightning's checkpoints: a resumed run freezes the same layers
    before its first step and continues the schedule. A frozen layer's parameters keep their
    param group (so Lightning's optimizer checkpoint keeps its layout) but get
    ``requires_grad=False``, no gradient and no optimizer state: Lightning's own
    ``BaseFinetuning`` protocol, which moves parameters between param groups, is not needed.

    FreezeOut is an LR scheduler: returning it from ``configure_optimizers`` with
    ``"interval": "step"`` lets Lightning step and checkpoint it, with no callback.
    """

    def __init__(self, freezer, layers: LayerGroups | None = None):
        if not callable(freezer):
            raise TypeError(
                f"freezer must be a callable (optimizer, layers) -> freezer; got {freezer!r}"
            )
        self.make, self.layers = freezer, layers
        self.freezer = None
        self._state: dict | None = None
        self._stepped = 0  # the global step the freezer last saw

    def on_train_start(self, trainer, pl_module) -> None:
        layers = _wrapped(self.layers, pl_module, "LayerFreezing")
        self.freezer = self.make(trainer.optimizers[0], layers)
        if self._state is not None:  # resumed from a checkpoint
            self.freezer.load_state_dict(self._state)
        self._stepped = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > self._stepped:  # an optimizer step was taken (accumulation)
            self._stepped = trainer.global_step
            self.freezer.step()

    def state_dict(self) -> dict:
        return {} if self.freezer is None else {"freezer": self.freezer.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._state = state_dict.get("freezer")
