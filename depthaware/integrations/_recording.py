"""What the framework callbacks share: opening a run's trajectory (fresh or resumed) and its
report at the end. Each framework module says only when its hooks call these."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..layers import LayerGroups
from ..measure import ConvergenceReport, Trajectory, convergence
from ..measure.tables import write_report


def open_trajectory(
    layers: LayerGroups,
    directory: Path,
    *,
    sketch,
    seed: int,
    resumed_at: int | None,
    step: int,
    who: str,
    resume: str,
) -> Trajectory:
    """The trajectory in ``directory``: a resumed run (``resumed_at``: the checkpoint's step)
    drops the snapshots taken after its checkpoint; a fresh run refuses a folder that already
    holds one (``resume`` says how to resume instead). The weights at ``step`` are recorded
    unless they already are."""
    trajectory = Trajectory(layers, directory, sketch=sketch, seed=seed)
    if resumed_at is not None:
        trajectory.truncate(resumed_at + 1)
    elif trajectory.steps:
        last = trajectory.steps[-1]
        trajectory.close()
        raise ValueError(
            f"{who}: {directory} already holds a trajectory (steps up to {last}); resume with "
            f"{resume} or record to another directory"
        )
    if not trajectory.steps or trajectory.steps[-1] < step:
        trajectory.snapshot(step)
    return trajectory


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
