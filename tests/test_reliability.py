"""Untrusted files, concurrent writers and bad input: each test is a reproducer, made small."""

import json
import math
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

import depthaware as da
from depthaware import checkpoints
from depthaware._io import atomic_open, write_json
from depthaware.errors import FolderLockedError
from depthaware.measure import from_checkpoints


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))


# ---------------------------------------------------------------------------------------------
# 2-3. one writer per trajectory folder; readers never disturb it
# ---------------------------------------------------------------------------------------------
HOLD = """
import sys, time, torch, depthaware as da
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
traj = da.measure.Trajectory(da.layer_groups(net), sys.argv[1])
traj.snapshot(0)
print("holding", flush=True)
time.sleep(120)
"""


def _holder(directory):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "holding"
    return proc


@pytest.mark.processes
def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(
    tmp_path,
):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(FolderLockedError, match=rf"another process \(pid {proc.pid} on "):
            da.measure.Trajectory(da.layer_groups(_net()), tmp_path)
        assert da.measure.Trajectory.load(tmp_path).steps == [0]  # reading is always allowed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed = da.measure.Trajectory(da.layer_groups(_net()), tmp_path)  # stale lock: taken over
    resumed.snapshot(1)
    assert resumed.steps == [0, 1]


def test_one_writer_per_folder_within_a_process_too(tmp_path):
    layers = da.layer_groups(_net())
    with da.measure.Trajectory(layers, tmp_path) as traj:
        traj.snapshot(0)
        with pytest.raises(FolderLockedError, match="one writer per folder"):
            da.measure.Trajectory(layers, tmp_path)
    again = da.measure.Trajectory(layers, tmp_path)  # closed: free again
    again.snapshot(1)
    with pytest.raises(ValueError, match="closed"):
        traj.snapshot(2)


def test_opening_a_folder_never_deletes_a_writers_temp_file(tmp_path):
    layers = da.layer_groups(_net())
    writer = da.measure.Trajectory(layers, tmp_path)
    writer.snapshot(0)
    with atomic_open(tmp_path / "step_0000000001.pt", "wb") as f:  # a write in flight
        torch.save({"x": torch.zeros(1)}, f)
        temp = [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
        with pytest.raises(FolderLockedError):
            da.measure.Trajectory(layers, tmp_path)
        da.measure.Trajectory.load(tmp_path)
        assert all(p.exists() for p in temp) and len(temp) == 1
    writer.snapshot(2)


# ---------------------------------------------------------------------------------------------
# 4. a checkpoint's step
# ---------------------------------------------------------------------------------------------
def _save_run(folder, names, inside=None):
    folder.mkdir(exist_ok=True)
    net = _net()
    for i, name in enumerate(names):
        with torch.no_grad():
            net[0].weight.mul_(0.9)
        obj = {"model": net.state_dict(), **({inside: i * 10} if inside else {})}
        torch.save(obj, folder / name)


def test_steps_from_named_fields_not_the_last_number(tmp_path):
    names = ["net_epoch2_acc0.85.pt", "net_epoch10_acc0.91.pt", "net_epoch1_acc0.95.pt"]
    _save_run(tmp_path, names)
    got = checkpoints.checkpoint_steps(tmp_path)
    assert [(s, p.name) for s, p in got] == [(1, names[2]), (2, names[0]), (10, names[1])]
    lightning = tmp_path / "lightning"
    _save_run(lightning, ["epoch=0-val_loss=0.90.ckpt", "epoch=1-val_loss=0.30.ckpt"])
    assert [s for s, _ in checkpoints.checkpoint_steps(lightning, "*.ckpt")] == [0, 1]


def test_a_step_saved_inside_the_file_comes_first(tmp_path):
    _save_run(tmp_path, ["b_7.pt", "a_9.pt", "c_3.pt"], inside="global_step")
    got = checkpoints.checkpoint_steps(tmp_path)
    assert [(s, p.name) for s, p in got] == [(0, "b_7.pt"), (10, "a_9.pt"), (20, "c_3.pt")]


def test_an_ambiguous_name_is_refused_with_how_to_name_it(tmp_path):
    _save_run(tmp_path, ["net_v2_10.pt", "net_v2_20.pt"])
    with pytest.raises(ValueError, match=r"net_v2_10\.pt: cannot tell its step \(numbers 2, 10"):
        checkpoints.checkpoint_steps(tmp_path)
    with pytest.raises(ValueError, match="must be relative"):
        checkpoints.checkpoint_steps(tmp_path, str(tmp_path / "*.pt"))


# ---------------------------------------------------------------------------------------------
# 5. the convergence freezer with a layer that does not move
# ---------------------------------------------------------------------------------------------
def _freezer_run(model, opt, steps, lr_at=lambda t: 0.1):
    layers = da.layer_groups(model)
    freezer = da.freeze.ConvergenceFreezer(opt, layers, check_every=5, threshold=0.9)
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
    for t in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(t)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        freezer.step()
    return freezer


def test_a_layer_frozen_before_the_freezer_does_not_block_the_others():
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
    model[0].requires_grad_(False)  # fine-tuning: the first layer is frozen already
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = _freezer_run(model, opt, 200)
    assert "0" in freezer.frozen and "2" in freezer.frozen


def test_a_warm_up_at_lr_0_sets_no_reference_level():
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    freezer = _freezer_run(model, opt, 200, lr_at=lambda t: 0.0 if t < 20 else 0.1)
    assert freezer.history["0"][:3] == [0.0, 0.0, 0.0]
    assert freezer.peak["0"] > 0 and "0" in freezer.frozen


def test_a_warm_up_does_not_set_a_reference_the_layer_never_falls_below():
    """Variations rise under a warm-up (0.01 -> 0.1), then fall to 0.04: below half the largest
    twice, so the layer freezes; against the first (the reference before), never."""
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    freezer = da.freeze.ConvergenceFreezer(opt, da.layer_groups(model), check_every=1, patience=2)
    weight = model[0].weight
    freezer.step()  # the first check sets the reference weights
    for v in (0.01, 0.05, 0.1, 0.1, 0.04, 0.04):
        with torch.no_grad():
            weight.mul_(1 + v)  # a variation of exactly v
        freezer.step()
    assert freezer.history["0"] == pytest.approx([0.01, 0.05, 0.1, 0.1, 0.04, 0.04], rel=1e-5)
    assert freezer.peak["0"] == pytest.approx(0.1) and freezer.frozen == {"0": 7}


# ---------------------------------------------------------------------------------------------
# 6. predictiveness sees the same dropout masks for the same batch
# ---------------------------------------------------------------------------------------------
def test_predictiveness_with_dropout_at_lr_0_is_exactly_predictive():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 1)).train()
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    got = da.measure.predictiveness(model, nn.functional.mse_loss, opt, (x, y), (x, y))
    for layer in got.values():
        assert layer["parameters"] == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(torch.rand(3), expected_next), "the caller's random stream moved"


# ---------------------------------------------------------------------------------------------
# 7. steps are non-negative integers
# ---------------------------------------------------------------------------------------------
def test_negative_and_fractional_steps_are_refused(tmp_path):
    traj = da.measure.Trajectory(da.layer_groups(_net()), tmp_path)
    with pytest.raises(ValueError, match="non-negative integer; got -1"):
        traj.snapshot(-1)
    with pytest.raises(ValueError, match=r"non-negative integer; got 1\.5"):
        traj.snapshot(1.5)
    traj.snapshot(np.int64(3))
    assert traj.steps == [3] == da.measure.Trajectory.load(tmp_path).steps


# ---------------------------------------------------------------------------------------------
# 9. durability: folder fsync, strict JSON, the user's umask
# ---------------------------------------------------------------------------------------------
def test_atomic_files_are_fsynced_with_their_folder_and_respect_the_umask(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": math.nan, "y": [1.0, math.inf]})
    finally:
        os.umask(old)
    assert synced == [False, True], "the data, then the folder entry"
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644

    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    loaded = json.loads((tmp_path / "a.json").read_text(), parse_constant=no_constants)
    assert loaded == {"x": None, "y": [1.0, None]}


# ---------------------------------------------------------------------------------------------
# 10. errors name the file; old-format checkpoints load
# ---------------------------------------------------------------------------------------------
def test_corrupt_files_are_named(tmp_path):
    _save_run(tmp_path, ["epoch_0.pt", "epoch_1.pt"])
    whole = (tmp_path / "epoch_1.pt").read_bytes()
    (tmp_path / "epoch_1.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"epoch_1\.pt: not a readable torch checkpoint"):
        from_checkpoints(tmp_path, _net(), progress=False)
    traj = tmp_path / "traj"
    da.measure.Trajectory(da.layer_groups(_net()), traj).snapshot(0)
    (traj / "meta.json").write_text("")
    with pytest.raises(ValueError, match=r"meta\.json: not a trajectory's meta file"):
        da.measure.Trajectory.load(traj)


def test_old_format_checkpoints_load(tmp_path):
    net = _net()
    for epoch in range(3):
        with torch.no_grad():
            net[0].weight.mul_(0.9)
        torch.save(
            net.state_dict(), tmp_path / f"epoch_{epoch}.pt", _use_new_zipfile_serialization=False
        )
    rep = from_checkpoints(tmp_path, _net(), progress=False)
    assert list(rep.steps) == [0, 1, 2]


def test_a_full_disk_during_a_snapshot_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    traj = da.measure.Trajectory(da.layer_groups(_net()), tmp_path)
    traj.snapshot(0)

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 768 vs 662")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"could not write snapshot .*step_0000000001\.pt.*disk full"):
        traj.snapshot(1)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".writer.lock",
        "meta.json",
        "step_0000000000.pt",
    ]
    traj.snapshot(1)
    assert da.measure.Trajectory.load(tmp_path).steps == [0, 1]


@pytest.mark.processes
def test_a_killed_holder_leaves_its_record_behind_but_not_its_lock(tmp_path):
    proc = _holder(tmp_path)
    record = json.loads((tmp_path / ".writer.lock").read_text())
    assert record["pid"] == proc.pid
    proc.kill()
    proc.wait()
    time.sleep(0.05)
    with da.measure.Trajectory(da.layer_groups(_net()), tmp_path) as traj:
        assert json.loads((tmp_path / ".writer.lock").read_text())["pid"] == os.getpid()
        traj.snapshot(1)
