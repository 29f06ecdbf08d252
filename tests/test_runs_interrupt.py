"""The run queue under Ctrl-C and SIGTERM, shared runs' extras, and a damaged cache."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from depthaware.recipes import runs
from depthaware.recipes.results import RESULTS, SineResult

SCRIPT = """
import sys, time
from dataclasses import dataclass
from depthaware.recipes import runs
from depthaware.recipes.results import RESULTS, SineResult
from depthaware.errors import Interrupted

@dataclass(frozen=True)
class Config:
    name: str = "probe"

def slow(config, seed, extras):
    time.sleep(0.2 if seed < 2 else 120)
    return SineResult({}, seed, tuple(extras))

runs.RUNNERS["slow"] = slow  # the spawned workers run this file's top level too
RESULTS["slow"] = SineResult

if __name__ == "__main__":
    specs = [runs.RunSpec("slow", Config(), seed) for seed in range(6)]
    try:
        runs.execute(specs, sys.argv[1], jobs=2, progress=False)
    except Interrupted as e:
        print(e, flush=True)
        sys.exit(130)
"""


def _children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.processes
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_queue_keeps_finished_runs_and_ends_the_workers(tmp_path, sig):
    script = tmp_path / "run_queue.py"
    script.write_text(SCRIPT)
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(cache)], stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while len(list(cache.glob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert len(list(cache.glob("*.json"))) == 2 and workers
    start = time.monotonic()
    proc.send_signal(sig)  # the main process alone, as kill or an IDE's stop button
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - start < 15, "the queued runs were computed"
    assert proc.returncode == 130
    assert "kept the 2 runs finished now" in out and "4 not finished" in out
    time.sleep(0.5)
    assert not [p for p in workers if _alive(p)], "workers left behind"
    assert len(list(cache.glob("*.json"))) == 2


@dataclass(frozen=True)
class Config:
    name: str = "merge"


@pytest.fixture
def fake_kind(monkeypatch):
    """A run kind ``fake`` whose results are SineResults; the test sets ``runs._run``."""
    monkeypatch.setitem(runs.RUNNERS, "fake", "unused:unused")
    monkeypatch.setitem(RESULTS, "fake", SineResult)


def probe(spec, **measured) -> dict:
    return SineResult({}, spec.seed, tuple(sorted(spec.extras)), **measured).to_dict()


def test_a_shared_run_keeps_the_union_of_its_extras(tmp_path, monkeypatch, fake_kind):
    calls = []

    def fake(spec):
        calls.append(sorted(spec.extras))
        return probe(spec)

    monkeypatch.setattr(runs, "_run", fake)
    a, b = (runs.RunSpec("fake", Config(), 0, frozenset(e)) for e in ({"x"}, {"y"}))
    runs.execute([a], tmp_path, progress=False)
    runs.execute([b], tmp_path, progress=False)  # needs y: computes x and y
    runs.execute([a], tmp_path, progress=False)  # x is still cached: nothing to compute
    runs.execute([b], tmp_path, progress=False)
    assert calls == [["x"], ["x", "y"]]


@pytest.mark.parametrize(
    "damage", ["", "{", "[1, 2]", '{"extras": 3}', '{"extras": [], "stray": 1}', "\\xff\\xfe"]
)
def test_a_damaged_cache_file_is_named_and_its_run_computed_again(
    tmp_path, monkeypatch, caplog, damage, fake_kind
):
    monkeypatch.setattr(runs, "_run", lambda spec: probe(spec, test_mse=1.0))
    spec = runs.RunSpec("fake", Config(), 0)
    path = tmp_path / f"{spec.key}.json"
    path.write_bytes(damage.encode("latin1") if "\\x" not in damage else b"\xff\xfe")
    results, computed = runs.execute([spec], tmp_path, progress=False)
    assert computed == 1 and results[spec.key].test_mse == 1.0
    assert f"{path.name} is damaged" in caplog.text
    assert json.loads(path.read_text())["test_mse"] == 1.0


def test_the_bar_names_each_finished_run(tmp_path, monkeypatch, capsys, fake_kind):
    def fake(spec):
        time.sleep(0.2)  # past tqdm's refresh interval: each update is drawn
        return probe(spec)

    monkeypatch.setattr(runs, "_run", fake)
    a, b = (runs.RunSpec("fake", Config(), seed) for seed in (0, 1))
    runs.execute([a, b], tmp_path, names={a.key: "fcnn-bias, factors"})
    err = capsys.readouterr().err
    assert "done fcnn-bias, factors: fake seed 0" in err and "done fake seed 1" in err


@pytest.mark.processes
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_workers_exit_when_their_parent_is_killed_with_sigkill(tmp_path):
    """SIGKILL (the OOM killer, a scheduler's hard kill) lets the parent end nothing: its workers,
    one in a 120 s run and one waiting on the queue, notice their parent is gone and exit."""
    script = tmp_path / "run_queue.py"
    script.write_text(SCRIPT)
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(script), str(cache)], stdout=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(list(cache.glob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert len(list(cache.glob("*.json"))) == 2 and workers
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while [p for p in workers if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], "workers outlived their killed parent"


@pytest.mark.processes
def test_a_worker_that_starts_after_its_parent_was_killed_exits_at_once():
    """The parent's pid comes from the parent: a worker still importing torch when the parent
    was SIGKILLed is already another process's child, and must not take that one for its
    parent (it would then wait forever)."""
    code = "from depthaware.recipes.runs import _worker_init; import time; _worker_init(1); " \
           "time.sleep(30)"  # fmt: skip
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and not done.stderr, done.stderr  # the watcher's exit, no error
    assert time.monotonic() - start < 25  # not the 30 s sleep
