"""What the framework callbacks share: the layers they watch, a recording callback's settings
(checked once), opening a run's trajectory (fresh or resumed) and its report at the end. Each
framework module says only when its hooks call these."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from torch import nn

from ..errors import ResumeMismatchError
from ..layers import LayerGroups, as_layer_groups
from ..measure import ConvergenceReport, Trajectory, convergence
from ..measure.trajectory_files import DTYPES, META
from ..reports import write_report

log = logging.getLogger(__name__)


def network_layers(layers, network: Callable[[], nn.Module], who: str, hint: str) -> LayerGroups:
    """The one rule for the layers a callback watches: ``layers=`` when given, else
    :func:`~depthaware.layer_groups` of the network being trained (the Trainer's model; in
    Lightning the LightningModule's single child, the network it wraps), or an error that names
    the callback and says to pass ``layers=`` (``hint``: e.g. ``da.layer_groups(model.body)``).
    ``network()`` gives that network; it is asked only without ``layers``."""
    if layers is not None:
        return as_layer_groups(layers)
    try:
        return as_layer_groups(network())
    except ValueError as e:
        raise ValueError(f"{who}: {e}; pass layers= (e.g. {hint})") from e


def input_target(batch, unpack: Callable | None, who: str) -> tuple:
    """``(input, target)`` of a training batch: the batch itself when it is such a pair, else
    ``unpack(batch)``; a ``TypeError`` that says how to pass them otherwise (for a dict batch,
    an ``unpack`` that reads its keys)."""
    if unpack is not None:
        pair = unpack(batch)
        if isinstance(pair, (tuple, list)) and len(pair) == 2:
            return tuple(pair)
        raise TypeError(f"{who}: unpack(batch) gave {_kind(pair)}, not (input, target)")
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return tuple(batch)
    hint = (
        f"unpack=lambda batch: (batch[{list(batch)[0]!r}], batch[{list(batch)[-1]!r}])"
        if isinstance(batch, dict) and len(batch) >= 2
        else "unpack=lambda batch: (input, target)"
    )
    raise TypeError(
        f"{who}(loss_fn=...): a batch is {_kind(batch)}, not (input, target); pass {hint}"
    )


def _kind(value) -> str:
    if isinstance(value, dict):
        return f"a dict with keys {list(value)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


class Recording:
    """The settings of a callback that records a trajectory (Lightning's ``LayerConvergence``,
    transformers' ``LayerConvergenceCallback``), checked when it is made: snapshots every epoch,
    or every ``every_n_steps`` optimizer steps; the report's ``windows``; the trajectory's
    ``directory`` (None: the framework's log folder), ``sketch`` and ``seed``."""

    def __init__(
        self,
        layers,
        *,
        every_n_steps: int | None,
        windows: Iterable[tuple[int, int]] | None,
        directory: str | os.PathLike | None,
        sketch: int | str | None,
        seed: int,
    ):
        if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps < 1):
            raise ValueError(f"every_n_steps must be a positive integer; got {every_n_steps!r}")
        self.layers, self.every_n_steps = layers, every_n_steps
        self.windows = None if windows is None else [tuple(w) for w in windows]
        self.directory = None if directory is None else Path(directory)
        self.sketch, self.seed = sketch, seed
        self.trajectory: Trajectory | None = None
        self.report: ConvergenceReport | None = None

    @property
    def unit(self) -> str:
        """What the trajectory's steps count: ``"epoch"`` or ``"step"`` (optimizer steps)."""
        return "epoch" if self.every_n_steps is None else "step"


def open_trajectory(
    layers: LayerGroups,
    directory: Path,
    *,
    sketch,
    seed: int,
    unit: str,
    resumed_at: int | None,
    step: int,
    who: str,
    resume: str,
    at_snapshot: bool = True,
) -> Trajectory:
    """The trajectory in ``directory``: a resumed run (``resumed_at``: the checkpoint's step)
    drops the snapshots taken after its checkpoint; a fresh run refuses a folder that already
    holds one (``resume`` says how to resume instead), and a resumed one a folder recorded with
    other settings (another ``unit``, sketch or seed: the Trajectory names it). The weights at
    ``step`` are recorded unless they already are; where they are, and the run resumes from
    that very point (``at_snapshot``: not from inside an epoch recorded by epochs), they must be
    the recorded ones (:func:`check_resumed`)."""
    if resumed_at is None and (directory / META).is_file():
        recorded = Trajectory.load(directory).steps
        if recorded:
            raise ValueError(
                f"{who}: {directory} already holds a trajectory (steps up to {recorded[-1]}); "
                f"resume with {resume} or record to another directory"
            )
    trajectory = Trajectory(layers, directory, sketch=sketch, seed=seed, unit=unit)
    if resumed_at is not None:
        trajectory.truncate(resumed_at + 1)
    if not trajectory.steps or trajectory.steps[-1] < step:
        trajectory.snapshot(step)
    elif resumed_at is not None and at_snapshot and trajectory.steps[-1] == step:
        try:
            check_resumed(trajectory, step, who)
        except BaseException:
            trajectory.close()
            raise
    return trajectory


def check_resumed(trajectory: Trajectory, step: int, who: str) -> None:
    """The model's weights now against ``trajectory``'s snapshot at ``step``, encoded alike (its
    sketch, seed and dtype): a layer more than 1e-5 off (relatively) raises a
    :class:`~depthaware.errors.ResumeMismatchError` naming it. A resume that did not restore
    the weights (transformers' "missing keys" warning on a key renaming, a checkpoint of another
    run) would otherwise join two runs into one trajectory without a word."""
    assert trajectory.layers is not None  # a recording, not a trajectory read from disk
    sketch = trajectory.meta.get("sketch") or {}
    probe = Trajectory(trajectory.layers, sketch=sketch.get("k"), seed=sketch.get("seed", 0),
                       dtype=DTYPES[trajectory.meta["dtype"]])  # fmt: skip
    probe.snapshot(step)
    now, then = probe[step], trajectory[step]
    differ = {}
    for name, value in then.items():
        off = (now[name].double() - value.double()).norm() / value.double().norm().clamp_min(1e-30)
        if off > 1e-5:
            differ[name] = float(off)
    if differ:
        listed = ", ".join(f"{n} ({v:.2g})" for n, v in differ.items())
        raise ResumeMismatchError(
            f"{who}: the model's weights at step {step} are not the ones the trajectory "
            f"recorded there; layers that differ (relative difference): {listed}. The "
            "checkpoint's weights were not restored (a warning of missing or unexpected keys "
            "while loading it?), or the trajectory folder belongs to another run: resume from "
            "the checkpoint of this trajectory's run, or record to another directory"
        )


def check_windows(windows, end: int | None, unit: str, who: str) -> None:
    """Each report window ``(t1, t2)`` against the run's plan, when training starts: ``0 <= t1 <
    t2 <= end``, ``end`` the last step (in ``unit``) the run will record (None where the Trainer
    cannot tell: the order alone is checked). A window past the end would otherwise be refused
    only when training ends, with no report written."""
    for t1, t2 in windows or ():
        if not 0 <= t1 < t2:
            raise ValueError(f"{who}: window ({t1}, {t2}) needs 0 <= t1 < t2")
        if end is not None and t2 > end:
            raise ValueError(
                f"{who}: window ({t1}, {t2}) ends after the run's last {unit} to be recorded, "
                f"{end}: the report could not be written when training ends; choose windows "
                "within the run"
            )


def partial_epoch(who: str, where: str, last: int | None) -> None:
    """Warns, once per run, that training stopped inside an epoch (``max_steps``): that epoch's
    weights are not a whole epoch's, so no snapshot numbers them."""
    log.warning(
        "%s: training stopped inside an epoch (%s): a partial epoch is not recorded, so theta* "
        "is the last whole epoch's weights (epoch %s); record with every_n_steps to include "
        "the last steps",
        who,
        where,
        last,
    )


def report(
    trajectory: Trajectory,
    windows,
    *,
    writer: bool,
    loggers: list[Callable[[dict, int], None]],
    step: int,
    folder: Path,
) -> ConvergenceReport | None:
    """Closes ``trajectory`` and, on the ``writer`` rank with two or more snapshots, sends the
    report to each ``log(numbers, step)`` and writes its files to ``folder``."""
    trajectory.close()
    if not writer or len(trajectory.steps) < 2:
        return None
    result = convergence(trajectory)
    for log in loggers:
        result.log_to(log, step, windows)
    write_report(result, folder, windows)
    return result
