"""`depthaware reproduce`: run findings and write one report (Markdown + JSON + figures).

Each finding's result is saved as ``out/findings/<name>.json`` (atomically) as soon as it is
done; a rerun with the same scale, seeds and data skips it, so an interrupted run resumes where it
stopped. ``out/report.md`` and ``out/report.json`` gather whatever is finished.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from .._io import write_json, write_text
from .findings import FINDINGS

__all__ = ["SCALES", "markdown", "reproduce"]

log = logging.getLogger(__name__)
SCALES = ("tiny", "small", "paper")  # tiny: a smoke test of the machinery, not a measurement


def reproduce(
    findings: Iterable[str] | str = "all",
    *,
    scale: str = "small",
    seeds: int = 3,
    data_dir: str | Path | None = None,
    out: str | Path = "runs/findings",
    progress: bool = True,
) -> dict:
    """Run ``findings`` (names of :data:`~depthaware.recipes.findings.FINDINGS`, or ``"all"``).

    Returns:
        the report: ``{"scale", "seeds", "data_dir", "elapsed_s", "findings": [...]}``.
    """
    names = (
        list(FINDINGS)
        if findings == "all"
        else [findings]
        if isinstance(findings, str)
        else list(findings)
    )
    unknown = [n for n in names if n not in FINDINGS]
    if unknown:
        raise ValueError(f"unknown findings {unknown}; choose from {list(FINDINGS)}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1; got {seeds}")
    out = Path(out)
    key = {"scale": scale, "seeds": seeds, "data_dir": None if data_dir is None else str(data_dir)}
    results = []
    for name in names:
        path = out / "findings" / f"{name}.json"
        if path.is_file():
            done = json.loads(path.read_text())
            if all(done.get(k) == v for k, v in key.items()):
                log.info("%s: already done in %s, not recomputed", name, path)
                results.append(done)
                continue
        section, recipe = FINDINGS[name]
        start = time.perf_counter()
        result = recipe(scale, seeds, out, data_dir, progress)
        result.update(name=name, section=section, elapsed_s=time.perf_counter() - start, **key)
        write_json(path, result)
        results.append(result)
    report = {**key, "elapsed_s": sum(r["elapsed_s"] for r in results), "findings": results}
    write_json(out / "report.json", report)
    write_text(out / "report.md", markdown(report))
    return report


def _holds(value) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[value]


def markdown(report: dict) -> str:
    """The report as a Markdown table, one row per finding."""
    lines = [
        f"# Findings report (scale {report['scale']}, {report['seeds']} seeds, "
        f"{report['elapsed_s'] / 60:.1f} min)",
        "",
        "| finding | paper | claim | paper's number | measured (mean ± std over seeds) | holds |"
        " time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["findings"]:
        cells = [
            r["name"],
            r["section"],
            r["claim"],
            r["paper"],
            r["measured"],
            _holds(r["holds"]),
            f"{r['elapsed_s']:.0f} s",
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    notes = [f"- {r['name']}: {r['scale_note']}" for r in report["findings"] if "scale_note" in r]
    failed = [r["name"] for r in report["findings"] if r["holds"] is False]
    lines += ["", "Did not reproduce: " + (", ".join(failed) if failed else "none") + "."]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"
