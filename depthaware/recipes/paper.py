"""`depthaware reproduce`: run findings and write one report (Markdown + JSON + figures).

:func:`reproduce` asks each finding for its runs, runs what is not cached yet (in ``jobs``
processes; every result is saved as it completes, under ``out/runs/``, named by the package's
version, the run's config and seed), then lets each finding judge its claims and draw its figures.
A rerun reuses every finished run, so an interrupted report resumes where it stopped, and the
verdicts are always judged afresh by the installed rules. ``out/report.md`` and
``out/report.json`` hold the findings.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from .._io import write_json, write_text
from . import (
    factor_findings,
    frequency_findings,
    glyph_findings,
    image_findings,
    placement_findings,
    sine_findings,
)
from .figures import FIGURES
from .findings import OUTCOMES, SCALES, Context
from .runs import execute

__all__ = ["FINDINGS", "markdown", "overview", "reproduce"]

#: every finding by name, with the paper's claims, the runs each needs and its judge
FINDINGS = {
    f.name: f
    for f in (
        *sine_findings.FINDINGS,
        *frequency_findings.FINDINGS,
        *factor_findings.FINDINGS,
        *placement_findings.FINDINGS,
        *image_findings.FINDINGS,
        *glyph_findings.FINDINGS,
    )
}


def reproduce(
    findings: Iterable[str] | str = "all",
    *,
    scale: str = "small",
    seeds: int = 3,
    data_dir: str | Path | None = None,
    out: str | Path = "runs/findings",
    jobs: int = 1,
    progress: bool = True,
) -> dict:
    """Run ``findings`` (names of :data:`FINDINGS`, or ``"all"``) and write the report.

    Returns the report, a dict with ``scale``, ``seeds``, ``data_dir``, ``jobs``, ``runs`` (how
    many there are and how many were computed now), ``findings`` (each with its ``verdicts``, one
    per claim, and ``figures``) and ``elapsed_s``.
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
        raise ValueError(f"scale must be one of {list(SCALES)}; got {scale!r}")
    if seeds < 1 or jobs < 1:
        raise ValueError(f"seeds and jobs must be at least 1; got {seeds}, {jobs}")
    out = Path(out)
    data_dir = None if data_dir is None else str(data_dir)
    key = {"scale": scale, "seeds": seeds, "data_dir": data_dir}
    start = time.perf_counter()
    chosen = [FINDINGS[n] for n in names]
    plans = {f.name: f.plan(SCALES[scale], seeds, data_dir) for f in chosen}
    specs = [s for plan in plans.values() for s in plan]
    findings_of: dict[str, list[str]] = {}
    for name, plan in plans.items():
        for s in plan:
            found = findings_of.setdefault(s.key, [])
            if name not in found:
                found.append(name)
    labels = {key: ", ".join(found) for key, found in findings_of.items()}
    results, computed = execute(specs, out / "runs", jobs=jobs, progress=progress, names=labels)
    ctx = Context(SCALES[scale], seeds, results, data_dir)
    report = {
        **key,
        "jobs": jobs,
        "runs": {"total": len(results), "computed": computed},
        "findings": [
            {
                "name": f.name,
                "section": f.section,
                "title": f.title,
                "verdicts": [v.to_dict() for v in f.judge(ctx)],
                "figures": FIGURES[f.name](ctx, out) if f.name in FIGURES else [],
            }
            for f in chosen
        ],
    }
    report["elapsed_s"] = time.perf_counter() - start
    write_json(out / "report.json", report)
    write_text(out / "report.md", markdown(report))
    return report


def _schedule_note(scale) -> str:
    if scale.name == "paper":
        return "Scale paper: the paper's schedules, epochs and windows as quoted."
    return (
        f"Scale {scale.name}: every schedule shortened in proportion ({scale.factor:.3g}×): the "
        f"sine task's 300 epochs are {scale.epochs(300)} (LR decay at {scale.at(150)}), its "
        f"windows [0,50] and [0,5] are [0,{scale.at(50)}] and [0,{scale.at(5)}]; the images' 100 "
        f"epochs are {scale.epochs(100)} with the window [0,20] at [0,{scale.at(20)}]. The "
        "quantities below name the paper's numbers."
    )


def _runs_note(report: dict) -> str:
    runs = report["runs"]
    if runs["computed"] == runs["total"]:
        return "Every run was computed in this invocation."
    return (
        f"{runs['computed']} of {runs['total']} runs were computed in this invocation; the others "
        "were reused from an earlier one, so the time above is not the report's whole cost."
    )


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def overview(report: dict) -> str:
    """A Markdown table with one row per finding: its claims by outcome."""
    lines = ["| finding | holds | does not hold | not tested |", "|---|---|---|---|"]
    for f in report["findings"]:
        by = {o: ", ".join(v["claim"]["key"] for v in f["verdicts"] if v["outcome"] == o)
              for o in ("holds", "does not hold", "not tested")}  # fmt: skip
        cells = " | ".join(by[o] or "–" for o in by)
        lines.append(f"| {f['name']} ({f['section']}) | {cells} |")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """The report as Markdown: a summary table (one row per claim), then each claim in full."""
    lines = [
        f"# Findings report (scale {report['scale']}, {report['seeds']} seeds, "
        f"{report['elapsed_s'] / 60:.1f} min with {report.get('jobs', 1)} process(es))",
        "",
        _runs_note(report),
        "",
        "Each claim is quoted from the paper; its quantity and pass rule were fixed before any "
        "run, except the rules listed under “Rules changed after seeing results” at the end, "
        "each with the earlier rule and the reason. Outcomes: holds (in every seed), does not "
        "hold (fails in a tested seed), not tested (with the reason).",
        "",
        _schedule_note(SCALES[report["scale"]]),
        "",
        "| finding | claim | the paper | measured (mean ± std over seeds) | outcome | per seed |",
        "|---|---|---|---|---|---|",
    ]
    counts = dict.fromkeys(OUTCOMES, 0)
    for f in report["findings"]:
        for v in f["verdicts"]:
            counts[v["outcome"]] += 1
            cells = [
                f"{f['name']} ({f['section']})",
                v["claim"]["key"],
                v["claim"]["paper"],
                v["measured"],
                f"**{v['outcome']}**" if v["outcome"] != "holds" else v["outcome"],
                ", ".join(v["per_seed"]),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "Claims: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + ".", ""]
    for f in report["findings"]:
        lines += [f"## {f['name']} ({f['section']}): {f['title']}", ""]
        for v in f["verdicts"]:
            c = v["claim"]
            lines += [
                f"**{c['key']}**: {v['outcome']}.",
                f"- The paper: “{c['quote']}” ({c['paper']})",
                f"- Quantity: {c['quantity']}",
                f"- Rule: {c['rule']}",
                f"- Measured: {v['measured']}; per seed: {', '.join(v['per_seed'])}",
            ]
            if v["note"]:
                lines.append(f"- Note: {v['note']}")
            if c.get("changed"):
                lines.append(f"- Changed after seeing results: {c['changed']}")
            lines.append("")
        lines += [f"![{f['name']}]({path})" for path in f["figures"]]
        lines.append("")
    changed = [v["claim"] for f in report["findings"] for v in f["verdicts"]]
    changed = [c for c in changed if c.get("changed")]
    if changed:
        lines += ["## Rules changed after seeing results", ""]
        lines += [f"- **{c['key']}**: {c['changed']}" for c in changed]
    return "\n".join(lines).rstrip() + "\n"
