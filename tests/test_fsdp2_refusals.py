"""What depthaware refuses or warns about around sharded parameters: FSDP1's flat parameters, an
optimizer built before ``fully_shard``, predictiveness on sharded parameters; and the distributed
examples, which check themselves."""

import pytest
import torch
import torch.distributed as dist
from fsdp_helpers import batch, net, shard
from torch import nn

import depthaware as da
import depthaware.distributed as dd


def test_shard_groups_reduce_over_the_shard_dimension_only():
    """A replicated DTensor needs no reduction; a plain tensor none either."""
    assert dd.shard_groups([torch.zeros(3)]) == []


def test_fsdp1_flat_parameters_are_refused():
    flat = nn.Parameter(torch.zeros(242))
    flat._fsdp_flattened = True  # what FullyShardedDataParallel marks its FlatParameter with
    flat.grad = torch.ones(242)
    for cls in (da.optim.LARS, da.optim.FeedbackSGD):
        with pytest.raises(ValueError, match="FullyShardedDataParallel .FSDP1.*fully_shard"):
            cls([flat]).step()
    holder = nn.Module()
    holder.flat_param = flat
    layers = da.layer_groups(holder, {"all": ["flat_param"]})
    with pytest.raises(ValueError, match="Trajectory got a flat parameter of FullyShardedDataPar"):
        da.measure.Trajectory(layers)


@pytest.mark.processes
@pytest.mark.parametrize("script", ["ddp_lars.py", "fsdp2_lars.py"])
def test_the_distributed_examples_check_themselves_and_pass(script):
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).parent.parent / "examples" / script
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(path)]
    out = subprocess.run(run, capture_output=True, text=True, timeout=300)
    # the whole stderr: a rank's own message comes before the launcher's long traceback
    assert out.returncode == 0, out.stderr
    assert "vs one process: largest difference" in out.stdout


def test_an_optimizer_that_sees_no_gradient_says_it_was_built_too_early(tmp_path):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        model = net(torch.float32)
        opt = da.optim.LARS(model.parameters())  # built before fully_shard: the old parameters
        fully_shard(model, mesh=init_device_mesh("cpu", (1,)))
        x, y = batch(torch.float32)
        nn.functional.mse_loss(model(x), y).backward()
        with pytest.warns(UserWarning, match="built before fully_shard"):
            opt.step()
    finally:
        dist.destroy_process_group()


def test_predictiveness_refuses_sharded_parameters_before_any_work(tmp_path):
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        model = shard(net(torch.float32), init_device_mesh("cpu", (1,)))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with pytest.raises(ValueError, match="does not take sharded .* DistributedDataParallel"):
            da.measure.PredictivenessMonitor(model, nn.functional.mse_loss, opt)
    finally:
        dist.destroy_process_group()
