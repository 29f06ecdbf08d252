"""What the framework callbacks share: opening a run's trajectory (fresh or resumed) and its
report at the end. Each framework module says only when its hooks call these."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ..layers import LayerGroups
from ..measure import ConvergenceReport, Trajectory, convergence
from ..measure.tables import write_report
from ..measure.trajectory_files import META

log = logging.getLogger(__name__)


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
) -> Trajectory:
    """The trajectory in ``directory``: a resumed run (``resumed_at``: the checkpoint's step)
    drops the snapshots taken after its checkpoint; a fresh run refuses a folder that already
    holds one (``resume`` says how to resume instead), and a resumed one a folder recorded with
    other settings (another ``unit``, sketch or seed: the Trajectory names it). The weights at
    ``step`` are recorded unless they already are."""
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
    return trajectory


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
