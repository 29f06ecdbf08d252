"""Where :meth:`~depthaware.measure.ConvergenceReport.log_to` sends its numbers: a
TensorBoard-like writer (``add_scalar``) or a callable ``log(numbers, step)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

__all__ = ["Logger", "ScalarWriter", "send"]


class ScalarWriter(Protocol):
    """What :meth:`ConvergenceReport.log_to` calls on a TensorBoard-like logger
    (``torch.utils.tensorboard.SummaryWriter``'s methods)."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> object: ...


#: a :class:`ScalarWriter`, or a callable ``log(numbers, step)`` (``wandb.log``, ...)
Logger = ScalarWriter | Callable[[dict[str, float], int], object]


def send(logger: Logger, numbers: dict[str, float], step: int) -> None:
    """Each number to ``logger.add_scalar(tag, value, step)``, or all at once to
    ``logger(numbers, step)``; a ``TypeError`` naming the type of anything else."""
    if hasattr(logger, "add_scalar"):
        writer = cast(ScalarWriter, logger)
        for tag, value in numbers.items():
            writer.add_scalar(tag, value, step)
    elif callable(logger):
        logger(numbers, step)
    else:
        raise TypeError(
            f"logger must have add_scalar (a SummaryWriter) or be a callable log(numbers, "
            f"step); got {type(logger).__name__}"
        )
