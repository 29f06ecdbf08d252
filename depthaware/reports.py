"""A measurement's files: tables as CSV and JSON, a convergence report with its figures.

Measurements (:mod:`depthaware.measure`) return numbers; this module, above
:mod:`depthaware.plots`, writes them and draws the figures, so that nothing in ``measure`` knows
about matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from . import plots
from ._io import write_csv, write_json
from .errors import InputError
from .measure.rates import ConvergenceReport

__all__ = ["write_report", "write_table"]


def write_table(rows: list[dict], out: str | os.PathLike, name: str = "table") -> list[Path]:
    """``rows`` (one dict per layer) as ``out/name.csv`` and ``out/name.json``, atomically (NaN is
    ``nan`` in the CSV and ``null`` in the JSON)."""
    if not rows:
        raise InputError("no rows to write")
    out = Path(out)
    write_csv(out / f"{name}.csv", rows)
    write_json(out / f"{name}.json", rows)
    return [out / f"{name}.csv", out / f"{name}.json"]


def write_report(
    report: ConvergenceReport,
    out: str | os.PathLike,
    windows: Iterable[tuple[int, int]] | None = None,
    *,
    summary: dict | None = None,
) -> list[Path]:
    """A convergence report as files in ``out``: its table over ``windows`` (default: the whole
    run; ``rates.csv``/``rates.json``), its dict (``convergence.json``) and the distance and
    weight-variation figures; returns them. ``summary``: the report's
    :meth:`~depthaware.measure.ConvergenceReport.to_dict` if already computed (then no
    ``windows``: they are in it)."""
    if summary is not None and windows is not None:
        raise InputError("give windows or a summary computed over them, not both")
    out = Path(out)
    if summary is None:
        summary = report.to_dict(windows)
    written = [*write_table(summary["rows"], out, "rates"), out / "convergence.json"]
    write_json(out / "convergence.json", summary)
    for name, fig in (
        ("convergence.png", plots.convergence(report)),
        ("weight_variation.png", plots.weight_variation(report)),
    ):
        plots.save(fig, out / name)
        written.append(out / name)
    return written
