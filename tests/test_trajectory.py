import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import depthaware as da

EPOCHS, KILL_AT = 6, 4


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))


def train(model, opt, epochs, traj, start=1, checkpoint=None):
    """A user's loop: one snapshot and one checkpoint per epoch."""
    g = torch.Generator().manual_seed(123)
    x, y = torch.randn(64, 3, generator=g), torch.randn(64, 1, generator=g)
    for epoch in range(start, epochs + 1):
        for i in range(0, 64, 16):
            opt.zero_grad()
            nn.functional.mse_loss(model(x[i : i + 16]), y[i : i + 16]).backward()
            opt.step()
        traj.snapshot(epoch)
        if checkpoint:
            torch.save(
                {"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch}, checkpoint
            )


def run_until_killed(directory: str) -> None:
    """Child process: trains, and dies (os._exit) halfway through writing snapshot KILL_AT."""
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    traj = da.measure.Trajectory(da.layer_groups(model), directory)
    real_save = torch.save
    snapshots_saved = []

    def dying_save(obj, f, *args, **kwargs):
        if "epoch" not in obj and len(snapshots_saved) == KILL_AT:  # snapshot KILL_AT
            f.write(b"half a snapshot")
            f.flush()
            os._exit(17)
        if "epoch" not in obj:
            snapshots_saved.append(obj)
        return real_save(obj, f, *args, **kwargs)

    torch.save = dying_save
    traj.snapshot(0)
    train(model, opt, EPOCHS, traj, checkpoint=Path(directory).parent / "ckpt.pt")


@pytest.mark.processes
def test_killed_run_resumes_to_the_uninterrupted_trajectory(tmp_path):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    reference = da.measure.Trajectory(da.layer_groups(model))
    reference.snapshot(0)
    train(model, opt, EPOCHS, reference)

    directory = tmp_path / "traj"
    child = subprocess.run([sys.executable, __file__, str(directory)], capture_output=True)
    assert child.returncode == 17, child.stderr.decode()
    assert any(p.name.startswith(".step_") for p in directory.iterdir()), "a torn temp file"

    ckpt = torch.load(tmp_path / "ckpt.pt")
    assert ckpt["epoch"] == KILL_AT - 1
    model = make_model()
    model.load_state_dict(ckpt["model"])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.load_state_dict(ckpt["opt"])
    resumed = da.measure.Trajectory(da.layer_groups(model), directory)
    assert resumed.steps == list(range(KILL_AT))
    assert not any(p.name.startswith(".step_") for p in directory.iterdir()), "temp removed"
    train(model, opt, EPOCHS, resumed, start=KILL_AT)

    loaded = da.measure.Trajectory.load(directory)
    assert loaded.steps == reference.steps == list(range(EPOCHS + 1))
    for step in reference.steps:
        for name, value in reference[step].items():
            assert torch.equal(loaded[step][name], value), (step, name)


def test_snapshot_is_one_copy_in_storage_dtype():
    model = make_model()
    layers = da.layer_groups(model)
    traj = da.measure.Trajectory(layers)
    traj.snapshot(0)
    with torch.no_grad():
        model[0].weight.add_(1)
    assert not torch.equal(traj[0]["0"], layers.flat("0"))
    assert traj.nbytes() == layers.numel() * 4
    half = da.measure.Trajectory(layers, dtype=torch.bfloat16)
    half.snapshot(0)
    assert half[0]["0"].dtype == torch.bfloat16 and half.nbytes() == layers.numel() * 2
    torch.testing.assert_close(half[0]["0"].float(), layers.flat("0"), rtol=1e-2, atol=1e-2)


def test_steps_must_increase_and_truncate_rerecords(tmp_path):
    model = make_model()
    traj = da.measure.Trajectory(da.layer_groups(model), tmp_path)
    for step in (0, 1, 2):
        traj.snapshot(step)
    with pytest.raises(
        ValueError, match=r"step 1 is not after the last snapshot 2; call truncate\(1\)"
    ):
        traj.snapshot(1)
    assert traj.truncate(1) == [1, 2]
    traj.snapshot(1)
    assert traj.steps == [0, 1] == da.measure.Trajectory.load(tmp_path).steps


def test_changed_shapes_are_named():
    model = make_model()
    layers = da.layer_groups(model)
    traj = da.measure.Trajectory(layers)
    traj.snapshot(0)
    model[2].weight = nn.Parameter(torch.zeros(1, 9))
    with pytest.raises(ValueError, match=r"layer '2' changed shape: \[\[1, 8\], \[1\]\]"):
        traj.snapshot(1)


def test_directory_of_another_model_is_refused(tmp_path):
    da.measure.Trajectory(da.layer_groups(make_model()), tmp_path).snapshot(0)
    other = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
    with pytest.raises(ValueError, match="layer '0' has shapes"):
        da.measure.Trajectory(da.layer_groups(other), tmp_path)
    with pytest.raises(ValueError, match="stores float32"):
        da.measure.Trajectory(da.layer_groups(make_model()), tmp_path, dtype=torch.float16)


def test_load_is_read_only_and_missing_directory_is_named(tmp_path):
    da.measure.Trajectory(da.layer_groups(make_model()), tmp_path).snapshot(0)
    loaded = da.measure.Trajectory.load(tmp_path)
    assert loaded.layer_names == ["0", "2"] and loaded.depths == [0, 1]
    with pytest.raises(ValueError, match="read-only"):
        loaded.snapshot(1)
    with pytest.raises(ValueError, match="meta.json is missing"):
        da.measure.Trajectory.load(tmp_path / "nothing")
    with pytest.raises(KeyError, match="no snapshot at step 3"):
        loaded[3]


if __name__ == "__main__":
    run_until_killed(sys.argv[1])
