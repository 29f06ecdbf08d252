"""What a Trajectory checks before it wastes work or reads a wrong number: its seed at
construction, its step files against ``meta.json``, a folder with steps but no ``meta.json``, the
unit of its steps on resume; and, on 2 gloo processes, that no rank reads a step before rank 0
has written it, and that rank 0's failure raises on every rank instead of hanging the others."""

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from process_helpers import end_worker
from torch import nn

import depthaware as da
from depthaware.errors import InputError


def net(width=8):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 1))


@pytest.mark.parametrize("seed", ["7", 1.5, None, True, -1, 2**63], ids=repr)
def test_a_seed_that_is_not_an_integer_in_range_is_refused_at_construction(seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*63\)"):
        da.measure.Trajectory(net(), sketch=16, seed=seed)


def test_a_sketch_string_other_than_auto_is_refused():
    with pytest.raises(ValueError, match="sketch must be an int, None or 'auto'; got 'yes'"):
        da.measure.Trajectory(net(), sketch="yes")


def test_numpy_and_tensor_integer_seeds_are_taken():
    import numpy as np

    for seed in (np.int64(7), torch.tensor(7)):
        traj = da.measure.Trajectory(net(), sketch=16, seed=seed)
        assert traj.meta["sketch"]["seed"] == 7


def test_a_step_file_of_another_form_is_named_with_its_layer(tmp_path):
    model = net(width=64)  # 'Layer 1' has 320 weights: sketched at k = 16
    with da.measure.Trajectory(model, tmp_path / "exact", sketch=None) as exact:
        exact.snapshot(0)
    with da.measure.Trajectory(model, tmp_path / "sketched", sketch=16) as sk:
        sk.snapshot(0)
    (tmp_path / "exact" / "step_0000000000.pt").rename(tmp_path / "sketched" / "step_0000000001.pt")
    traj = da.measure.Trajectory.load(tmp_path / "sketched")
    assert traj.steps == [0, 1]
    want = r"layer '0' is float32 of shape \(320,\); meta.json says float32 of shape \(4, 4\)"
    with pytest.raises(InputError, match=r"step_0000000001.pt: " + want + r" \(sketched"):
        da.measure.convergence(traj)
    torch.save({"0": torch.zeros(3)}, tmp_path / "sketched" / "step_0000000001.pt")
    with pytest.raises(InputError, match=r"holds \['0'\], not a snapshot of the layers"):
        traj[1]


def test_step_files_without_meta_json_are_refused_not_adopted(tmp_path):
    with da.measure.Trajectory(net(width=16), tmp_path) as traj:  # another model's steps
        for step in range(3):
            traj.snapshot(step)
    (tmp_path / "meta.json").unlink()
    with pytest.raises(InputError, match="holds 3 step files but no meta.json"):
        da.measure.Trajectory(net(), tmp_path)
    assert not (tmp_path / "meta.json").exists()  # nothing was written


def test_a_resume_in_another_unit_is_refused(tmp_path):
    with da.measure.Trajectory(net(), tmp_path, unit="epoch") as traj:
        traj.snapshot(0)
    with pytest.raises(InputError, match="counts its steps in epochs, this trajectory in steps"):
        da.measure.Trajectory(net(), tmp_path)
    with da.measure.Trajectory(net(), tmp_path, unit="epoch") as traj:
        assert traj.steps == [0] and traj.unit == "epoch"
    assert json.loads((tmp_path / "meta.json").read_text())["unit"] == "epoch"
    with pytest.raises(ValueError, match="unit must be one of"):
        da.measure.Trajectory(net(), unit="epochs")


def _worker(rank, folder, out):
    from depthaware.measure import trajectory

    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank, world_size=2)
    torch.set_num_threads(1)
    results = {}
    real_open = trajectory.atomic_open

    def slow_open(*args, **kwargs):  # rank 0 writes late: a reader that does not wait fails
        import time

        time.sleep(0.3)
        return real_open(*args, **kwargs)

    if rank == 0:
        trajectory.atomic_open = slow_open
    model = net()
    traj = da.measure.Trajectory(model, f"{folder}/traj")
    for step in range(3):
        traj.snapshot(step)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.5)
        results[step] = sorted(traj[step])  # every rank reads right after its snapshot
    results["rates"] = da.measure.convergence(traj).rates(0, 1)

    def failing_open(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if rank == 0:
        trajectory.atomic_open = failing_open
    try:
        traj.snapshot(3)
    except OSError as e:
        results["write error"] = str(e)
    traj.close()
    try:  # rank 0 refuses the folder (another model): the other rank must not go on
        da.measure.Trajectory(net(width=4), f"{folder}/traj")
    except (InputError, RuntimeError) as e:
        results["open error"] = f"{type(e).__name__}: {e}"
    torch.save(results, f"{out}.{rank}")
    end_worker()


@pytest.mark.processes
def test_two_ranks_read_only_written_steps_and_share_rank_0s_failures(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path), str(tmp_path / "out")), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"out.{r}") for r in range(2)]
    for got in ranks:
        assert [got[s] for s in range(3)] == [["0", "2"]] * 3
        assert got["rates"] == ranks[0]["rates"]
        assert "could not write snapshot" in got["write error"]
    assert "No space left on device" in ranks[0]["write error"]
    assert ranks[0]["open error"].startswith("InputError: ")
    assert (
        ranks[1]["open error"]
        == f"RuntimeError: rank 0 could not open {tmp_path}/traj (see its error)"
    )
