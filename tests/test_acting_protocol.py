"""The acting comparison's protocol at scale tiny: every method gets the same number of trials,
the selection reads the validation split only, the target is the tuned baseline's mean final
validation score, the final runs go seed by seed with every method in turn, and a method that
never reaches the target is reported as "not reached"."""

import json
import math

import pytest

from depthaware.recipes import acting, acting_tasks, runs
from depthaware.recipes.acting import select, time_to_target
from depthaware.recipes.acting_tasks import TASKS, TRIALS, search_space
from depthaware.recipes.results import ActingResult

METHODS = ["none", "freezeout"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("acting")
    order = []
    real = runs.execute

    def recording(specs, *args, **kwargs):
        specs = list(specs)
        order.append([(s.config.method, s.seed) for s in specs])
        return real(specs, *args, **kwargs)

    acting.execute = recording  # the module's own name for the queue
    try:
        report = acting.compare(out, scale="tiny", tasks=["resfcnn-sine"], methods=METHODS,
                                progress=False)  # fmt: skip
    finally:
        acting.execute = real
    return out, report, order


def test_every_method_gets_the_same_number_of_trials_on_every_task():
    for task in TASKS.values():
        for method in task.methods:
            assert len(search_space(task, method)) == TRIALS
    assert TRIALS >= 4


def test_the_tuning_runs_every_trial_and_the_finals_go_seed_by_seed(compared):
    _, report, order = compared
    tuning, finals = order
    assert sorted(tuning) == sorted((m, 0) for m in METHODS for _ in range(TRIALS))
    assert [m for m, _ in tuning[:2]] == METHODS  # trial by trial, the methods in turn
    assert finals == [(m, s) for s in range(2) for m in METHODS]
    for m in METHODS:
        assert len(report["tasks"]["resfcnn-sine"]["methods"][m]["tuning_val"]) == TRIALS


def test_the_selection_reads_the_validation_split_only(compared, tmp_path):
    """The same cached runs with their test scores scrambled select the same settings."""
    out, report, _ = compared
    scrambled = tmp_path / "scrambled"
    (scrambled / "runs").mkdir(parents=True)
    for i, path in enumerate(sorted((out / "runs").glob("*.json"))):
        run = json.loads(path.read_text())
        if run.get("test_score") is not None:
            run["test_score"] = float(-1000 - 7 * i)
        (scrambled / "runs" / path.name).write_text(json.dumps(run))
    again = acting.compare(scrambled, scale="tiny", tasks=["resfcnn-sine"], methods=METHODS,
                           progress=False)  # fmt: skip
    for m in METHODS:
        got, want = (r["tasks"]["resfcnn-sine"]["methods"][m] for r in (again, report))
        assert got["selected"] == want["selected"]
        assert got["test"]["mean"] != want["test"]["mean"]  # the test scores were read after
    trials = [None, 0.3, 0.1, 0.1]  # MSE: the lowest validation score, the first of a tie
    assert select(TASKS["resfcnn-sine"], trials) == 2


def test_the_target_is_the_tuned_baselines_mean_final_validation_score(compared):
    _, report, _ = compared
    task = report["tasks"]["resfcnn-sine"]
    finals = [r for r in task["runs"] if r["method"] == "none"]
    target = sum(r["val_score"] for r in finals) / len(finals)
    assert task["methods"]["freezeout"]["against"]["none"]["target"] == pytest.approx(target)
    assert "target (tuned `none`, mean final validation score)" in report["markdown"]


def _run(val_curve, diverged=None):
    n = len(val_curve)
    return ActingResult("cnn-glyphs", "freezeout", 0, "accuracy", {"lr": 0.1}, n,
                        diverged=diverged, val_curve=val_curve,
                        steps_curve=[10 * (i + 1) for i in range(n)],
                        flops_curve=[100 * (i + 1) for i in range(n)],
                        seconds_curve=[1.5 * (i + 1) for i in range(n)],
                        cpu_curve=[1.25 * (i + 1) for i in range(n)])  # fmt: skip


def test_a_run_that_never_reaches_the_target_is_not_reached_not_its_last_step():
    task = TASKS["cnn-glyphs"]
    assert time_to_target(task, _run([50.0, 70.0, 79.9]), 80.0) is None
    hit = time_to_target(task, _run([50.0, 81.0, 79.0]), 80.0)
    assert hit == {"epoch": 2, "steps": 20, "flops": 200, "seconds": 3.0, "cpu_seconds": 2.5}
    assert time_to_target(task, _run([90.0], diverged="nan in epoch 2"), 80.0) is None
    block = {"reached": 0, "seeds": 3, "cpu_saved": acting.interval([]),
             "test_difference": acting.interval([0.5, -0.5, 0.1])}  # fmt: skip
    assert acting._verdict(block, True) == {"time": "not reached", "score": "same"}


def test_a_call_needs_an_interval_that_excludes_zero():
    one = acting.interval([0.4])
    assert math.isinf(one["half"])  # one seed: nothing can be called
    called = {"reached": 3, "seeds": 3, "cpu_saved": acting.interval([0.3, 0.32, 0.29]),
              "test_difference": acting.interval([-0.1, 0.2, 0.0])}  # fmt: skip
    assert acting._verdict(called, True) == {"time": "faster", "score": "same"}
    noisy = {**called, "cpu_saved": acting.interval([0.4, -0.2, 0.1])}
    assert acting._verdict(noisy, True)["time"] == "tie"
    # the call is on CPU time: a wall time stretched by other processes does not make it
    stretched = {**called, "wall_saved": acting.interval([-0.5, -0.6, -0.55])}
    assert acting._verdict(stretched, True)["time"] == "faster"


def test_the_runs_record_cpu_seconds_beside_wall_seconds(compared):
    _, report, _ = compared
    for run in report["tasks"]["resfcnn-sine"]["runs"]:
        assert len(run["cpu_curve"]) == len(run["seconds_curve"]) == run["epochs"]
        assert run["cpu_s"] == run["cpu_curve"][-1] > 0
        assert run["cpu_curve"] == sorted(run["cpu_curve"])


def test_tasks_choose_the_acting_tasks_and_only_them(tmp_path, capsys):
    from depthaware.cli import main

    assert main(["reproduce", "fcnn-bias", "--tasks", "cnn-glyphs", "--out", str(tmp_path)]) == 2
    assert "--tasks is for 'reproduce acting'" in capsys.readouterr().err
    assert main(["reproduce", "acting", "--tasks", "mnist", "--out", str(tmp_path)]) == 2
    assert "invalid choice: 'mnist'" in capsys.readouterr().err


def test_the_glyph_tasks_data_are_the_calibrated_ones():
    assert acting_tasks.GLYPHS == {"per_class": (120, 40, 40), "size": 16, "difficulty": 0.3}


def test_a_diverged_run_is_counted_and_left_out_of_the_target_and_the_pairs():
    """A selected setting can diverge in a later seed (the baseline's largest LR did on the sine
    task): its run has no score, never reaches the target, and the paired differences are taken
    over the seeds where neither diverged; a NaN never enters an interval."""
    from dataclasses import replace

    task = TASKS["cnn-glyphs"]
    base = [replace(_run([80.0, 90.0]), val_score=90.0, test_score=89.0),
            replace(_run([70.0, 80.0]), val_score=80.0, test_score=81.0),
            _run([], diverged="the training loss became nan in epoch 1")]  # fmt: skip
    mine = [replace(_run([86.0, 88.0]), val_score=88.0, test_score=v) for v in (88.0, 84.0, 86.0)]
    block = acting._against(task, "freezeout", {"none": base, "freezeout": mine}, "none", 3)
    assert block["target"] == 85.0 and block["baseline_diverged"] == 1
    assert block["baseline_reached"] == 1 and block["reached"] == 3
    assert block["test_difference"]["n"] == 2
    assert block["test_difference"]["mean"] == pytest.approx(((88 - 89) + (84 - 81)) / 2)
    with pytest.raises(ValueError, match="finite values only"):
        acting.interval([1.0, math.nan])


def test_the_published_comparison_is_its_json_at_the_paper_scale():
    """docs/acting.md holds acting.json's report as the installed code writes it, at the paper
    scale, with the tuning budget, the search spaces and the selected settings in it."""
    from pathlib import Path

    from depthaware.recipes.acting_report import markdown

    docs = Path(__file__).resolve().parents[1] / "docs"
    report = json.loads((docs / "acting.json").read_text(encoding="utf-8"))
    assert report["scale"] == "paper" and report["trials"] == TRIALS
    assert markdown(report) == report["markdown"]
    assert report["markdown"] in (docs / "acting.md").read_text(encoding="utf-8")
    for name, task in report["tasks"].items():
        for method, m in task["methods"].items():
            assert m["search_space"] == search_space(TASKS[name], method)
            assert m["selected"] in m["search_space"]
