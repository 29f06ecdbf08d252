"""What a run of the findings' queue gives: one dataclass per run kind, each with ``to_dict`` (the
JSON-ready dict cached in ``<key>.json``) and ``from_dict`` (its inverse, for a cached file).

A run that trained has its distance curves as a :class:`~depthaware.measure.ConvergenceReport`
(``report``; in the dict, its :meth:`~depthaware.measure.ConvergenceReport.arrays` at the top
level); one that did not says why (``diverged``, ``unsupported``) and has no report. Fields a run
did not measure (an extra not asked for) are None and left out of the dict.

>>> r = SineResult({"epochs": 2}, 0, diverged="loss is nan at epoch 1")
>>> r.to_dict()
{'config': {'epochs': 2}, 'seed': 0, 'extras': [], 'diverged': 'loss is nan at epoch 1'}
>>> SineResult.from_dict(r.to_dict()) == r
True
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..measure.rates import ConvergenceReport

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Result = TypeVar("_Result", bound="CachedResult")

__all__ = ["RESULTS", "ActingResult", "CachedResult", "ImageResult", "SineResult", "check_extras"]

_CURVES = (
    "layers",
    "depths",
    "steps",
    "distances",
    "norms",
    "steps_moved",
    "distance_rows",
    "unit",
)


def check_extras(extras, known: tuple[str, ...]) -> tuple[str, ...]:
    """``extras`` sorted, as a result records them; ``ValueError`` naming any not in ``known``
    (what the run kind can measure) before the run starts."""
    unknown = set(extras) - set(known)
    if unknown:
        raise ValueError(f"unknown extras {sorted(unknown)}; choose from {known}")
    return tuple(sorted(extras))


class CachedResult:
    """``to_dict``/``from_dict`` over the dataclass's fields: ``report`` is spread into the dict's
    top level, another report (``sketch``) nested as its arrays, None fields left out."""

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        for f in fields(cast("DataclassInstance", self)):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "report":
                out.update(value.arrays())
            elif isinstance(value, ConvergenceReport):
                out[f.name] = value.arrays()
            elif f.name in self._reports and isinstance(value, (list, tuple)):
                out[f.name] = [r.arrays() for r in value]
            else:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls: type[_Result], data: dict) -> _Result:
        names = {f.name for f in fields(cast("type[DataclassInstance]", cls))}
        unknown = sorted(set(data) - names - set(_CURVES))
        if unknown:
            raise ValueError(f"not a {cls.__name__}: unknown entries {unknown}")
        kwargs = {k: v for k, v in data.items() if k in names}
        if "report" in names and "distances" in data:
            kwargs["report"] = ConvergenceReport.from_arrays(data)
        for name, value in kwargs.items():
            if name in cls._reports and isinstance(value, list):  # a report per sketch seed
                kwargs[name] = [ConvergenceReport.from_arrays(v) for v in value]
            elif name in cls._reports and value is not None:
                kwargs[name] = ConvergenceReport.from_arrays(value)
        if "extras" in kwargs:
            kwargs["extras"] = tuple(kwargs["extras"])
        return cls(**kwargs)

    _reports: tuple[str, ...] = ()


@dataclass(frozen=True)
class SineResult(CachedResult):
    """A sine run (:func:`~depthaware.recipes.sine.sine_run`): its config and seed, the extras
    measured, and unless it diverged its curves, training loss per epoch and final test MSE;
    each extra asked for (``grad_magnitude``, ``predictiveness``, ``sharpness``, ``sketch``: the
    sketched curves, ``resketch``: the exact snapshots sketched anew with each of
    :data:`~depthaware.recipes.sine.RESKETCHES` sketch seeds, ``spectrum``) as that function
    documents it."""

    config: dict
    seed: int
    extras: tuple[str, ...] = ()
    diverged: str | None = None
    report: ConvergenceReport | None = field(default=None, compare=False)
    train_loss: list[float] | None = None
    test_mse: float | None = None
    grad_magnitude: dict | None = None
    predictiveness: dict | None = None
    sharpness: dict | None = None
    sketch: ConvergenceReport | None = field(default=None, compare=False)
    resketch: list | None = field(default=None, compare=False)
    spectrum: dict | None = None
    _reports = ("sketch", "resketch")


@dataclass(frozen=True)
class ImageResult(CachedResult):
    """An image run (:func:`~depthaware.recipes.images.image_run`): its config, seed and data
    source; unless unsupported or diverged its curves, training loss per epoch, final train and
    test accuracy (%), training wall time (``train_seconds``) and, if asked for, the sketched
    curves of the same run (``sketch``) and its exact snapshots sketched anew with each of
    :data:`~depthaware.recipes.sine.RESKETCHES` sketch seeds (``resketch``)."""

    config: dict
    seed: int
    extras: tuple[str, ...] = ()
    data: str | None = None
    unsupported: str | None = None
    diverged: str | None = None
    report: ConvergenceReport | None = field(default=None, compare=False)
    train_loss: list[float] | None = None
    train_accuracy: float | None = None
    test_accuracy: float | None = None
    train_seconds: float | None = None
    sketch: ConvergenceReport | None = field(default=None, compare=False)
    resketch: list | None = field(default=None, compare=False)
    _reports = ("sketch", "resketch")


@dataclass(frozen=True)
class ActingResult(CachedResult):
    """One run of the acting comparison (:func:`~depthaware.recipes.acting_run.acting_run`): the
    task, method, seed and setting (its LR and knob); unless it diverged, its final validation and
    test score, training wall and CPU seconds and backward FLOPs (and those of the same run with
    nothing frozen), the validation score, training wall and CPU seconds, steps and backward FLOPs
    after every epoch, and when each layer froze (in epochs)."""

    task: str
    method: str
    seed: int
    metric: str
    setting: dict
    epochs: int
    diverged: str | None = None
    val_score: float | None = None
    test_score: float | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    backward_flops: int | None = None
    backward_flops_unfrozen: int | None = None
    val_curve: list | None = None
    seconds_curve: list | None = None
    cpu_curve: list | None = None
    steps_curve: list | None = None
    flops_curve: list | None = None
    frozen_at_epoch: dict = field(default_factory=dict)
    extras: tuple[str, ...] = ()  # it measures none; the queue asks every result


#: run kind -> its result's class
RESULTS: dict[str, type[CachedResult]] = {
    "sine": SineResult,
    "image": ImageResult,
    "acting": ActingResult,
}
