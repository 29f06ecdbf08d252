"""Acting on the bias, compared fairly: every method tuned with the same budget on a validation
split, then paired seeds, time to a target, and intervals (``depthaware reproduce acting``).

The protocol (Nado et al. 2021, "A Large Batch Optimizer Reality Check"; MLCommons AlgoPerf):

1. **Tuning.** Every method, the baseline included, runs each of its
   ``acting_tasks.TRIALS`` settings (``acting_tasks.search_space``) from seed 0; the
   setting with the best final *validation* score is selected (:func:`select`: it sees
   validation scores only; a diverged trial is the worst).
2. **Final runs.** Each method at its selected setting from seeds ``0..n-1`` (seed 0's run is its
   tuning trial), paired across methods: the same initialization and data order at a seed. The
   runs go seed by seed, every method of a seed in turn, so that they share the machine's noise.
3. **Target.** The tuned baseline's (``none``) mean final validation score over the seeds where
   it did not diverge (a run whose loss became NaN/inf has no score, is counted as diverged in
   the report, never reaches a target and is left out of the paired differences); for
   LARS and FeedbackSGD on a task whose baseline is AdamW, also their own tuned SGD baseline's.
4. **Reported** per method: the final test score (mean ± 95% t-interval over seeds) and its paired
   difference to the baseline; in how many seeds it reached the target (and the baseline did),
   and the steps, backward FLOPs and training seconds it took (:func:`time_to_target`); the
   training time and backward FLOPs it saved against the baseline's own time to the target,
   paired per seed over the seeds where both reached it. A difference is called only when its
   interval excludes zero; a method that never reaches the target is "not reached", never its
   last step.

Time is the training process's CPU seconds (each worker trains on one thread, so on an idle
machine they equal its wall seconds): other processes on a shared machine stretch a run's wall
time by whatever else runs, not its CPU time. Wall seconds are reported beside them.

Each run's test score is computed at its end and read by the report only for the final runs.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import write_json, write_text
from .acting_run import ActingConfig
from .acting_tasks import METHODS, SGD_FAMILY, TASKS, TRIALS, Task, search_space
from .findings import SCALES
from .results import ActingResult
from .runs import RunSpec, execute

__all__ = ["compare", "interval", "select", "time_to_target"]

#: Student's t quantiles (two-sided 95%) by degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131}  # fmt: skip


def interval(values: list[float]) -> dict:
    """``{"mean", "half", "n"}``: the mean and the half-width of its 95% t-interval (infinite
    for one value: nothing can be called from it). The values are finite (a diverged run's
    are left out by the caller, and counted).

    >>> interval([1.0, 2.0, 3.0])["half"]  # 4.303 * 1 / sqrt(3)
    2.484...
    """
    n = len(values)
    if not all(map(math.isfinite, values)):
        raise ValueError(f"an interval of finite values only; got {values}")
    if n == 0:
        return {"mean": math.nan, "half": math.nan, "n": 0}
    mean = statistics.fmean(values)
    half = _T975.get(n - 1, 1.96) * statistics.stdev(values) / math.sqrt(n) if n > 1 else math.inf
    return {"mean": mean, "half": half, "n": n}


def select(task: Task, val_scores: list[float | None]) -> int:
    """The index of the best final validation score (None, a diverged trial, is the worst; a tie
    goes to the first): the only input of the selection is the validation split.

    >>> select(TASKS["cnn-glyphs"], [80.0, None, 85.5, 85.5])
    2
    """
    best, best_score = 0, None
    for i, score in enumerate(val_scores):
        if score is not None and not math.isnan(score):
            if best_score is None or task.better(score, best_score):
                best, best_score = i, score
    return best


def time_to_target(task: Task, run: ActingResult, target: float) -> dict | None:
    """The first epoch whose validation score meets ``target``, with the steps, backward FLOPs
    and training wall and CPU seconds spent by then; None if no epoch does (a diverged run never
    does)."""
    if run.diverged is not None:
        return None
    curves = (run.val_curve, run.steps_curve, run.flops_curve, run.seconds_curve, run.cpu_curve)
    for i, (score, steps, flops, seconds, cpu) in enumerate(zip(*(c or [] for c in curves))):
        if task.meets(score, target):
            return {"epoch": i + 1, "steps": steps, "flops": flops, "seconds": seconds,
                    "cpu_seconds": cpu}  # fmt: skip
    return None


def _config(task: Task, method: str, setting: dict, epochs: int, tiny: bool) -> ActingConfig:
    knob = METHODS[method]
    return ActingConfig(task.name, method, epochs, setting["lr"],
                        setting[knob[0]] if knob else None, tiny)  # fmt: skip


def _against(task: Task, method: str, runs: dict, baseline: str, seeds: int) -> dict:
    """``method``'s final runs against ``baseline``'s: scores, target, time and FLOPs to it."""
    mine, base = runs[method], runs[baseline]
    ran = [r.val_score for r in base if r.diverged is None]  # a diverged run has no score
    target = statistics.fmean(ran) if ran else math.nan
    reached = [time_to_target(task, r, target) for r in mine]
    base_reached = [time_to_target(task, r, target) for r in base]
    # paired per seed, over the seeds where neither diverged (each count is in the report)
    diffs = [a.test_score - b.test_score for a, b in zip(mine, base)
             if a.diverged is None and b.diverged is None]  # fmt: skip
    both = [(a, b) for a, b in zip(reached, base_reached) if a is not None and b is not None]
    hits = [h for h in reached if h is not None]
    return {
        "baseline": baseline,
        "target": target,
        "baseline_diverged": len(base) - len(ran),
        "test_difference": interval(diffs),
        "reached": len(hits),
        "baseline_reached": sum(b is not None for b in base_reached),
        "seeds": seeds,
        "to_target": [h or "not reached" for h in reached],
        "steps_to_target": interval([h["steps"] for h in hits]),
        "flops_to_target": interval([h["flops"] for h in hits]),
        "seconds_to_target": interval([h["seconds"] for h in hits]),
        "cpu_to_target": interval([h["cpu_seconds"] for h in hits]),
        # paired per seed, over the seeds where both reached the target
        "wall_saved": interval([1 - a["seconds"] / b["seconds"] for a, b in both]),
        "cpu_saved": interval([1 - a["cpu_seconds"] / b["cpu_seconds"] for a, b in both]),
        "flops_saved": interval([1 - a["flops"] / b["flops"] for a, b in both]),
    }


def _verdict(block: dict, higher_is_better: bool) -> dict:
    """Calls on the training (CPU) time (faster/slower/tie/not reached) and the test score
    (better/worse/same), each only outside its interval."""

    def call(iv, up: str, down: str, same: str) -> str:
        if iv["n"] == 0 or math.isnan(iv["mean"]):
            return "n/a"
        if iv["mean"] - iv["half"] > 0:
            return up
        if iv["mean"] + iv["half"] < 0:
            return down
        return same

    time_call = "not reached" if block["reached"] == 0 else call(
        block["cpu_saved"], "faster", "slower", "tie"
    )  # fmt: skip
    if block["reached"] < block["seeds"] and time_call == "faster":
        time_call = f"faster where reached ({block['reached']}/{block['seeds']})"
    up, down = ("better", "worse") if higher_is_better else ("worse", "better")
    return {"time": time_call, "score": call(block["test_difference"], up, down, "same")}


def compare(
    out: str | os.PathLike,
    *,
    scale: str = "paper",
    seeds: int | None = None,
    tasks: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    jobs: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """The protocol of the module docstring on ``tasks`` (default all of
    ``acting_tasks.TASKS``) and ``methods`` (default all of each task's); writes
    ``out/report.json`` and ``out/report.md`` and returns the report.

    ``scale`` shortens every task's epochs (``tiny`` also its data, for a test of the protocol);
    ``seeds`` overrides the tasks' own final seed counts. Every run is cached in ``out/runs/``
    (``depthaware.recipes.runs.execute``): an interrupted comparison resumes run by run."""
    from .acting_report import markdown

    out, t0 = Path(out), time.perf_counter()
    sc, tiny = SCALES[scale], scale == "tiny"
    chosen = [TASKS[n] for n in (tasks or TASKS)]
    plan = {t.name: [m for m in t.methods if methods is None or m in methods] for t in chosen}
    tuning = {
        (t.name, m): [_config(t, m, s, sc.epochs(t.epochs), tiny) for s in search_space(t, m)]
        for t in chosen
        for m in plan[t.name]
    }
    # trial by trial, every method's in turn: their wall times share the machine's noise
    specs = [RunSpec("acting", cs[i], 0) for i in range(TRIALS) for cs in tuning.values()]
    names = {s.key: f"tuning {s.config.task} {s.config.method}" for s in specs}
    done, _ = execute(specs, out / "runs", jobs=jobs, progress=progress, names=names)
    selected: dict[tuple[str, str], dict[str, Any]] = {}
    for key, configs in tuning.items():
        trials = [done[RunSpec("acting", c, 0).key] for c in configs]
        best = select(TASKS[key[0]], [None if r.diverged else r.val_score for r in trials])
        selected[key] = {"config": configs[best], "trials": trials}
    counts = {t.name: seeds or (2 if tiny else t.seeds) for t in chosen}
    finals = [RunSpec("acting", selected[t.name, m]["config"], s)
              for t in chosen for s in range(counts[t.name]) for m in plan[t.name]]  # fmt: skip
    names = {s.key: f"seed {s.seed} {s.config.task} {s.config.method}" for s in finals}
    done, _ = execute(finals, out / "runs", jobs=jobs, progress=progress, names=names)
    report: dict[str, Any] = {"scale": scale, "trials": TRIALS, "jobs": jobs, "tasks": {}}
    for t in chosen:
        runs = {m: [done[RunSpec("acting", selected[t.name, m]["config"], s).key]
                    for s in range(counts[t.name])] for m in plan[t.name]}  # fmt: skip
        per_method = {}
        for m in plan[t.name]:
            tests = [r.test_score for r in runs[m] if r.diverged is None]
            entry: dict[str, Any] = {
                "selected": selected[t.name, m]["config"].setting,
                "search_space": search_space(t, m),
                "tuning_val": [r.val_score for r in selected[t.name, m]["trials"]],
                "tuning_cpu_s": [r.cpu_s for r in selected[t.name, m]["trials"]],
                "test": interval(tests),
                "diverged": sum(r.diverged is not None for r in runs[m]),
                "against": {},
            }
            baselines = ["none"] + (["sgd"] if m in SGD_FAMILY and "sgd" in runs else [])
            for b in baselines:
                if b in runs and b != m:
                    block = _against(t, m, runs, b, counts[t.name])
                    block.update(_verdict(block, t.metric != "mse"))
                    entry["against"][b] = block
            per_method[m] = entry
        report["tasks"][t.name] = {
            "metric": t.metric,
            "epochs": sc.epochs(t.epochs),
            "seeds": counts[t.name],
            "methods": per_method,
            "runs": [r.to_dict() for rs in runs.values() for r in rs],
        }
    report["elapsed_s"] = time.perf_counter() - t0
    report["markdown"] = markdown(report)
    write_json(out / "report.json", report)
    write_text(out / "report.md", report["markdown"] + "\n")
    return report
