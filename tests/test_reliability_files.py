"""Files written in a user's folder: locks that follow no link, fork safety, UTF-8 whatever the
locale, and read-only views that delete nothing. Each test is a reproducer, made small."""

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import depthaware as da
from depthaware._io import FolderLock, write_csv, write_text
from depthaware.errors import FolderLockedError


def _layers():
    torch.manual_seed(0)
    return da.layer_groups(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)))


def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "bashrc"
    victim.write_text("export PATH=...\n")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / ".writer.lock").symlink_to(victim)
    with pytest.raises(FolderLockedError, match=r"\.writer\.lock: cannot open the writer lock"):
        da.measure.Trajectory(_layers(), runs)
    assert victim.read_text() == "export PATH=...\n"


def test_a_fifo_in_place_of_the_lock_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / ".writer.lock")
    with pytest.raises(FolderLockedError, match="not a regular file"):
        FolderLock(tmp_path)


def test_atomic_writes_replace_a_planted_link_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "report.md").symlink_to(victim)
    write_text(tmp_path / "report.md", "new")
    assert victim.read_text() == "keep"
    assert not (tmp_path / "report.md").is_symlink()


def test_truncate_refuses_a_read_only_view_and_a_closed_trajectory(tmp_path):
    layers = _layers()
    with da.measure.Trajectory(layers, tmp_path) as traj:
        traj.snapshot(0)
        traj.snapshot(1)
        view = da.measure.Trajectory.load(tmp_path)
        with pytest.raises(ValueError, match="read-only; it cannot truncate"):
            view.truncate(0)
    with pytest.raises(ValueError, match="closed; open .* again to truncate"):
        traj.truncate(0)
    assert da.measure.Trajectory.load(tmp_path).steps == [0, 1]


FORK = """
import os, sys, torch
from torch import nn
import depthaware as da
from depthaware.errors import FolderLockedError
layers = da.layer_groups(nn.Sequential(nn.Linear(2, 2)), {"a": ["0"]})
traj = da.measure.Trajectory(layers, sys.argv[1])
pid = os.fork()
if pid == 0:  # a child of the writer (a DataLoader worker, say) exits normally
    del traj
    import gc; gc.collect()
    os._exit(0)
os.waitpid(pid, 0)
try:
    da.measure.Trajectory(layers, sys.argv[1])
    print("second writer got in")
except FolderLockedError:
    print("still locked")
"""


@pytest.mark.processes
@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_does_not_release_its_parents_lock(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", FORK, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "still locked", out.stderr


@pytest.mark.processes
def test_text_is_utf8_whatever_the_locale(tmp_path):
    code = (
        "import sys; from depthaware._io import write_text, write_csv; "
        "write_text(sys.argv[1] + '/r.md', '\\u03b8* \\u2248 \\u201cx\\u201d'); "
        "write_csv(sys.argv[1] + '/r.csv', [{'layer': 'Bloc \\u00e9', 'C': 1.0}])"
    )
    env = {**os.environ, "LANG": "C", "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, check=True)
    assert (tmp_path / "r.md").read_text(encoding="utf-8") == "θ* ≈ “x”"
    assert "Bloc é" in (tmp_path / "r.csv").read_text(encoding="utf-8")
    write_csv(tmp_path / "s.csv", [{"a": "ü"}])  # and in this process
    assert (tmp_path / "s.csv").read_bytes() == "a\r\nü\r\n".encode()
