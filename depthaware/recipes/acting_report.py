"""The acting comparison's report as Markdown: per task, a decision table (each method's selected
setting, test score, time and backward FLOPs to the tuned baseline's target, the calls), the
search spaces and tuning scores, and one-line recommendations derived from the calls."""

from __future__ import annotations

import math

from .acting_tasks import GLYPHS, GLYPHS_TINY, TRIALS

__all__ = ["markdown", "recommendations"]

#: the goal of the comparison: training time saved to the target on an image task
GOAL = 0.25


def _pm(iv: dict, digits: int = 3, scale: float = 1.0) -> str:
    """``mean ± half``; a report read back from JSON holds an infinite half (one value) as null."""
    if iv["n"] == 0 or iv["mean"] is None or math.isnan(iv["mean"]):
        return "–"
    half = math.inf if iv["half"] is None else iv["half"]
    return f"{scale * iv['mean']:.{digits}g} ± {scale * half:.2g}"


def _setting(setting: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in setting.items())


def _selected(m: dict, seeds: int) -> str:
    """The selected setting, and in how many final seeds it diverged."""
    diverged = f"; **diverged in {m['diverged']}/{seeds} seeds**" if m["diverged"] else ""
    return _setting(m["selected"]) + diverged


def _rows(task: dict, baseline: str) -> list[str]:
    unit = "test MSE" if task["metric"] == "mse" else "test acc %"
    lines = [
        f"| method | selected | {unit} | Δ vs {baseline} | reached | steps to target | "
        f"FLOPs saved | CPU s to target | time saved | wall saved | calls |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = task["methods"][baseline]
    seconds = [r["cpu_s"] for r in task["runs"] if r["method"] == baseline and r.get("cpu_s")]
    lines.append(
        f"| **{baseline}** | {_selected(base, task['seeds'])} | {_pm(base['test'], 4)} | – | – | – "
        f"| – | {sum(seconds) / max(1, len(seconds)):.3g} (whole run) | – | – | baseline |"
    )
    for name, m in task["methods"].items():
        block = m["against"].get(baseline)
        if block is None:
            continue
        lines.append(
            f"| {name} | {_selected(m, task['seeds'])} | {_pm(m['test'], 4)} | "
            f"{_pm(block['test_difference'])} | {block['reached']}/{block['seeds']} "
            f"({block['baseline_reached']}) | "
            f"{_pm(block['steps_to_target'])} | {_pm(block['flops_saved'], 3, 100)}% | "
            f"{_pm(block['cpu_to_target'])} | {_pm(block['cpu_saved'], 3, 100)}% | "
            f"{_pm(block['wall_saved'], 3, 100)}% | "
            f"time {block['time']}, score {block['score']} |"
        )
    return lines


def recommendations(report: dict) -> list[str]:
    """One line per task: the methods whose time to the target is called faster in every seed at
    a score called the same or better, else that none beats the tuned baseline."""
    lines = []
    for name, task in report["tasks"].items():
        wins = []
        for method, m in task["methods"].items():
            block = m["against"].get("none")
            if block and block["time"] == "faster" and block["score"] in ("same", "better"):
                saved = block["cpu_saved"]
                wins.append(
                    f"`{method}` ({_setting(m['selected'])}) reaches the tuned baseline's target "
                    f"in {100 * saved['mean']:.0f} ± {100 * saved['half']:.0f}% less training time "
                    f"at a {block['score']} test score"
                )
        if wins:
            lines.append(f"* **{name}**: " + "; ".join(wins) + ".")
        else:
            lines.append(
                f"* **{name}**: no method reaches the tuned baseline's target faster at the same "
                "test score in every seed: keep the tuned baseline."
            )
    return lines


def _goal(report: dict) -> str:
    """Whether a method on an image task saves at least :data:`GOAL` of the training time to the
    target, called faster (its interval excludes zero) at a test score not called worse."""
    best = []
    for name, task in report["tasks"].items():
        for method, m in task["methods"].items():
            block = m["against"].get("none")
            if "glyphs" in name and block and block["time"].startswith("faster"):
                if block["score"] != "worse":
                    best.append((block["cpu_saved"]["mean"], name, method))
    if not best:
        return (
            "Goal (≥ 25% less training time to the tuned baseline's target on an image task, at "
            "a test score not worse): **not met**: no method is called faster there."
        )
    saved, name, method = max(best)
    met = "met" if saved >= GOAL else "not met"
    return (f"Goal (≥ 25% less training time to the tuned baseline's target on an image task, at a "
            f"test score not worse): **{met}**; the best called faster is `{method}` on {name}, "
            f"{100 * saved:.0f}% on average.")  # fmt: skip


def _cpu_minutes(report: dict) -> float:
    """The training CPU time of every tuning trial and final run, in minutes (seed 0's final run
    is a tuning trial: counted once)."""
    tuning = [s or 0.0 for t in report["tasks"].values() for m in t["methods"].values()
              for s in m["tuning_cpu_s"]]  # fmt: skip
    finals = [r.get("cpu_s") or 0.0 for t in report["tasks"].values() for r in t["runs"]
              if r["seed"] > 0]  # fmt: skip
    return (sum(tuning) + sum(finals)) / 60


def markdown(report: dict) -> str:
    """The whole report: protocol, goal, recommendations, per task its decision table (and the
    SGD-family table against tuned SGD where the baseline is AdamW), then the search spaces."""
    out = [
        f"Scale {report['scale']}; tuning budget {TRIALS} trials per method (seed 0, selected "
        "on the validation split); final runs paired over seeds at the selected setting; "
        f"{report['jobs']} runs at a time, interleaved seed by seed; this invocation "
        f"{report['elapsed_s'] / 60:.0f} minutes, the runs' training "
        f"{_cpu_minutes(report):.0f} CPU-minutes in all (cached runs are read, not run again). "
        "Glyphs: "
        f"{GLYPHS_TINY if report['scale'] == 'tiny' else GLYPHS}.",
        "",
        "Reading the tables: a test score is the mean over the seeds that did not diverge (a "
        "setting that diverged in a seed says so beside it), its Δ paired over the seeds where "
        "neither diverged; *reached* counts the seeds whose validation score met the target "
        "(the tuned baseline's mean final validation score), the baseline's own count in "
        "brackets; steps and seconds to target are over those seeds; *FLOPs saved*, *time saved* "
        "(CPU seconds of the one-thread training process, which other processes on a shared "
        "machine do not stretch) and *wall saved* compare a method's cost to the target with the "
        "baseline's in the same seed, over the seeds where both reached it (mean ± 95% "
        "t-interval); the time call is on *time saved*, and any call is made only when its "
        "interval excludes zero.",
        "",
        _goal(report),
        "",
        "Recommendations:",
        "",
        *recommendations(report),
    ]
    for name, task in report["tasks"].items():
        target = next(iter(task["methods"].values()))["against"].get("none", {}).get("target")
        for m in task["methods"].values():
            target = m["against"].get("none", {}).get("target", target)
        out += ["", f"## {name}", "",
                f"{task['epochs']} epochs, {task['seeds']} seeds; target (tuned `none`, mean "
                f"final validation score): {target:.4g}." if target is not None else "", "",
                *_rows(task, "none")]  # fmt: skip
        if "sgd" in task["methods"]:
            family = {
                k: v for k, v in task["methods"].items() if k == "sgd" or "sgd" in v["against"]
            }
            out += ["", "SGD-family methods against their own tuned baseline, momentum SGD:", "",
                    *_rows({**task, "methods": family}, "sgd")]  # fmt: skip
    out += ["", "## Search spaces and tuning scores (seed 0, validation)", ""]
    for name, task in report["tasks"].items():
        for method, m in task["methods"].items():
            scores = ", ".join("diverged" if v is None else f"{v:.4g}" for v in m["tuning_val"])
            space = "; ".join(_setting(s) for s in m["search_space"])
            out.append(f"* {name} / {method}: {space} → {scores}")
    return "\n".join(out)
