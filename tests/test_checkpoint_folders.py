"""Checkpoint folders as users have them, measured whole or refused, never in part: a Trainer's
``checkpoint-N/`` folders in mixed formats (safetensors, ``.bin``, sharded with an index), a
``torch.distributed.checkpoint`` folder per step (one process, and two FSDP2 ranks), a
Lightning checkpoint the weights-only unpickler refuses; every reading's rates equal those
computed by hand from the same weights."""

import json
import pathlib

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from process_helpers import end_worker
from safetensors.torch import save_file
from torch import nn

from depthaware import checkpoints
from depthaware.cli import main
from depthaware.errors import InputError
from depthaware.measure import from_checkpoints


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))


def states(n=4):
    """``n`` state dicts of a short walk."""
    model, out = net(), []
    for _ in range(n):
        out.append({k: v.clone() for k, v in model.state_dict().items()})
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.8)
    return out


def by_hand(sds, t1, t2, layer="0"):
    def flat(sd):
        return torch.cat([sd[f"{layer}.weight"].reshape(-1), sd[f"{layer}.bias"]]).double()

    d = [torch.linalg.vector_norm(flat(sd) - flat(sds[-1])).item() for sd in sds]
    return (d[t1] - d[t2]) / ((t2 - t1) * d[0])


def save_hf(folder, sd, form):
    folder.mkdir(parents=True)
    if form == "safetensors":
        save_file(sd, folder / "model.safetensors")
    elif form == "bin":
        torch.save(sd, folder / "pytorch_model.bin")
    else:  # sharded safetensors with an index, as transformers writes them
        keys = sorted(sd)
        shards = {"model-00001-of-00002.safetensors": keys[:2],
                  "model-00002-of-00002.safetensors": keys[2:]}  # fmt: skip
        for name, ks in shards.items():
            save_file({k: sd[k] for k in ks}, folder / name)
        weight_map = {k: name for name, ks in shards.items() for k in ks}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": int(folder.name[11:])}))


def test_a_trainer_folder_in_mixed_and_sharded_formats_is_read_whole(tmp_path):
    sds = states()
    for step, (sd, form) in enumerate(zip(sds, ["safetensors", "bin", "sharded", "bin"])):
        save_hf(tmp_path / f"checkpoint-{10 * step}", sd, form)
    rep = from_checkpoints(tmp_path, net(), windows=[(0, 10)], progress=False)
    assert rep.steps.tolist() == [0, 10, 20, 30]  # theta* is checkpoint-30, not checkpoint-10
    assert rep.rates(0, 10)["0"] == pytest.approx(by_hand(sds, 0, 1) / 10, rel=1e-12)


def test_a_trainer_folder_whose_model_file_is_not_a_regular_file_is_named(tmp_path):
    for step, sd in enumerate(states(3)):
        save_hf(tmp_path / f"checkpoint-{step}", sd, "safetensors")
    bad = tmp_path / "checkpoint-1" / "model.safetensors"
    bad.unlink()
    bad.mkdir()  # a folder where the file should be
    with pytest.raises(InputError, match="checkpoint-1/model.safetensors: not a regular file"):
        checkpoints.checkpoint_steps(tmp_path)
    (tmp_path / "checkpoint-1" / "model.safetensors").rmdir()
    with pytest.raises(InputError, match="checkpoint-1 is a directory with no model file"):
        checkpoints.checkpoint_steps(tmp_path)


def test_a_shard_index_naming_a_file_outside_its_folder_is_refused(tmp_path):
    sds = states(3)
    for step, sd in enumerate(sds):
        save_hf(tmp_path / f"checkpoint-{step}", sd, "sharded")
    save_file(sds[0], tmp_path / "outside.safetensors")
    index = tmp_path / "checkpoint-2" / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": dict.fromkeys(sds[0], "../outside.safetensors")}))
    with pytest.raises(InputError, match="shard '../outside.safetensors' is not a file inside"):
        from_checkpoints(tmp_path, net(), windows=[(0, 1)], progress=False)


def test_a_folder_of_several_kinds_of_checkpoints_is_refused_not_read_in_part(tmp_path):
    for step, sd in enumerate(states(3)):
        torch.save(sd, tmp_path / f"epoch_{step}.pt")
    torch.save(states(1)[0], tmp_path / "epoch_9.pth")
    with pytest.raises(InputError, match=r"several kinds \(3 \*.pt, 1 \*.pth\).*--pattern"):
        checkpoints.checkpoint_steps(tmp_path)
    assert [s for s, _ in checkpoints.checkpoint_steps(tmp_path, "*.pt")] == [0, 1, 2]


def test_a_dcp_folder_per_step_is_read_for_the_models_keys(tmp_path):
    import torch.distributed.checkpoint as dcp

    sds = states()
    for step, sd in enumerate(sds):  # as a training script saves: model, optimizer and epoch
        state = {"model": sd, "optim": {"x": torch.ones(1000)}, "epoch": step}
        dcp.save(state, checkpoint_id=tmp_path / f"step_{step}", no_dist=True)
    rep = from_checkpoints(tmp_path, net(), windows=[(0, 2)], progress=False)
    assert rep.rates(0, 2)["0"] == pytest.approx(by_hand(sds, 0, 2), rel=1e-12)
    assert main(["measure", "checkpoints", str(tmp_path), "--model", f"{__name__}:net",
                 "--windows", "0:1", "--out", str(tmp_path / "out"), "--quiet"]) == 0  # fmt: skip


def _fsdp_worker(rank, folder):
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank, world_size=2)
    import torch.distributed.checkpoint as dcp

    model = fully_shard(net(), mesh=init_device_mesh("cpu", (2,)))
    for step in range(3):
        dcp.save({"model": get_model_state_dict(model)}, checkpoint_id=f"{folder}/run/step_{step}")
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.8)
    end_worker()


@pytest.mark.processes
def test_an_fsdp2_runs_dcp_checkpoints_read_in_one_process_equal_the_unsharded_walk(tmp_path):
    mp.spawn(_fsdp_worker, args=(str(tmp_path),), nprocs=2, join=True)
    assert len(list((tmp_path / "run" / "step_0").glob("*.distcp"))) == 2  # one file per rank
    rep = from_checkpoints(tmp_path / "run", net(), windows=[(0, 1)], progress=False)
    assert rep.rates(0, 1)["0"] == pytest.approx(by_hand(states(3), 0, 1), rel=1e-6)


def test_a_lightning_checkpoint_with_a_path_in_its_hyperparameters_names_the_cause(tmp_path):
    for step, sd in enumerate(states(3)):
        hparams = {"data_dir": pathlib.Path("/data")}  # save_hyperparameters() of a Path
        torch.save({"state_dict": sd, "epoch": step, "hyper_parameters": hparams},
                   tmp_path / f"epoch={step}.ckpt")  # fmt: skip
    with pytest.raises(InputError) as err:
        from_checkpoints(tmp_path, net(), windows=[(0, 1)], progress=False)
    message = str(err.value)
    assert "refuses (" in message and "PosixPath" in message and "\x1b[" not in message
    assert "truncated or corrupt" not in message and "save its weights alone" in message
