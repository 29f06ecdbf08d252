"""The Lightning callback in real ``Trainer.fit`` runs on CPU: what it logs (read back from the
logger's files), its rates against a trajectory recorded by hand, and a resumed run."""

import csv
import json

import numpy as np
import pytest
import torch
from scheduled_freezer import at_3_and_5
from torch import nn

import depthaware as da

pl = pytest.importorskip("lightning.pytorch")
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from depthaware.integrations.lightning import (  # noqa: E402
    GradientMonitor,
    LayerConvergence,
    LayerFreezing,
)


class Regression(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                                   nn.Linear(16, 1))  # fmt: skip

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.mse_loss(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x.sum(1, keepdim=True).sin()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


class ByHand(pl.Callback):
    """A second route: snapshots taken in memory at the same points."""

    def on_train_start(self, trainer, module):
        self.trajectory = da.measure.Trajectory(da.layer_groups(module.model))
        self.trajectory.snapshot(0)

    def on_train_epoch_end(self, trainer, module):
        self.trajectory.snapshot(trainer.current_epoch + 1)


def fit(tmp_path, name, epochs, *callbacks, ckpt_path=None, **kw):
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=CSVLogger(
        tmp_path, name=name), callbacks=list(callbacks), enable_progress_bar=False,
        enable_model_summary=False, **kw)  # fmt: skip
    trainer.fit(Regression(), data(), ckpt_path=ckpt_path)
    return trainer


def logged(trainer) -> dict[str, float]:
    with open(f"{trainer.logger.log_dir}/metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for row in rows for k, v in row.items() if v and k != "step"}


def test_the_logged_rates_are_those_of_a_trajectory_recorded_by_hand(tmp_path):
    hand, cb = ByHand(), LayerConvergence(windows=[(0, 1), (0, 2)])
    trainer = fit(tmp_path, "run", 3, cb, hand, enable_checkpointing=False)
    want = da.measure.convergence(hand.trajectory)
    got = logged(trainer)  # from the logger's file, not the callback
    for window in ((0, 1), (0, 2)):  # (0, 3) ends at theta*: every rate 1/3, no ordering
        rates = want.rates(*window)
        for layer, rate in rates.items():
            assert got[f"convergence/C[{window[0]},{window[1]}]/{layer}"] == pytest.approx(rate)
        assert got[f"convergence/spearman[{window[0]},{window[1]}]"] == pytest.approx(
            want.bias(*window).spearman
        )
    folder = tmp_path / "run" / "version_0" / "layer_convergence"
    assert (folder / "rates.csv").is_file() and (folder / "convergence.png").is_file()
    assert cb.trajectory.steps == [0, 1, 2, 3]


def test_a_run_resumed_from_its_checkpoint_reports_as_an_uninterrupted_one(tmp_path):
    whole = LayerConvergence()
    fit(tmp_path, "whole", 3, whole, enable_checkpointing=False)
    first = LayerConvergence()
    checkpoint = ModelCheckpoint(tmp_path / "ckpt", save_last=True)
    fit(tmp_path, "first", 1, first, checkpoint)  # stopped after epoch 1
    resumed = LayerConvergence()  # a new process: the folder comes from the checkpoint
    fit(tmp_path, "resumed", 3, resumed, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert resumed.directory == first.directory and resumed.trajectory.steps == [0, 1, 2, 3]
    # every distance, not C[0,3]: over the whole run it is 1/3 for every layer by construction
    np.testing.assert_allclose(resumed.report.distances, whole.report.distances, rtol=1e-5)


def test_every_n_steps_and_which_layers(tmp_path):
    cb = LayerConvergence(every_n_steps=2)
    fit(tmp_path, "steps", 2, cb, enable_checkpointing=False)
    assert cb.trajectory.steps == [0, 2, 4, 6, 8]  # 4 batches an epoch

    class Two(Regression):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(1, 1)

    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                         callbacks=[LayerConvergence()], enable_progress_bar=False)  # fmt: skip
    with pytest.raises(
        ValueError, match="2 child modules .model, head., not one network; pass layers="
    ):
        trainer.fit(Two(), data())
    with pytest.raises(ValueError, match="every_n_steps"):
        LayerConvergence(every_n_steps=0)


class MeanAbsGrad(pl.Callback):
    """A second route: each layer's mean |g| over the epoch's steps, by hand."""

    def on_train_epoch_start(self, trainer, module):
        self.sums, self.n = {}, 0

    def on_before_optimizer_step(self, trainer, module, optimizer):
        for layer in da.layer_groups(module.model):
            g = torch.cat([p.grad.reshape(-1) for p in layer.params]).abs().mean().item()
            self.sums[layer.name] = self.sums.get(layer.name, 0.0) + g
        self.n += 1


def test_gradient_monitor_logs_each_layers_mean_gradient_magnitude(tmp_path):
    hand = MeanAbsGrad()
    trainer = fit(tmp_path, "grads", 2, GradientMonitor(), hand, enable_checkpointing=False)
    with open(f"{trainer.logger.log_dir}/metrics.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row.get("grad_magnitude/0")]
    assert [row["step"] for row in rows] == ["4", "8"]  # each epoch's last optimizer step
    for name, total in hand.sums.items():
        assert float(rows[-1][f"grad_magnitude/{name}"]) == pytest.approx(total / hand.n, rel=1e-5)


def test_gradient_monitor_measures_once_per_optimizer_step_under_accumulation(tmp_path):
    monitor = GradientMonitor(loss_fn=nn.functional.mse_loss, predictiveness_every=1)
    hand = MeanAbsGrad()  # once per optimizer step: Lightning calls it after accumulating
    trainer = fit(tmp_path, "accumulate", 1, monitor, hand, enable_checkpointing=False,
                  accumulate_grad_batches=2, log_every_n_steps=1)  # fmt: skip
    with open(f"{trainer.logger.log_dir}/metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    measured = [int(r["step"]) for r in rows if r.get("predictiveness/data/0")]
    # 4 batches, 2 optimizer steps: step 0 has no earlier batch, step 1 is measured once
    assert measured == [1] and trainer.global_step == 2 and hand.n == 2
    (magnitude,) = [r for r in rows if r.get("grad_magnitude/0")]
    assert float(magnitude["grad_magnitude/0"]) == pytest.approx(hand.sums["0"] / 2, rel=1e-5)


class Predictiveness(pl.Callback):
    """A second route to Definition 4.1 for plain SGD (lr 0.1): gradients by autograd on copies,
    the other layers' step written out, every 2nd step from the batch and the previous one."""

    def __init__(self):
        self.previous, self.got = None, {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.previous is not None and trainer.global_step % 2 == 0:
            layers = da.layer_groups(module.model)

            def grads(net, data):
                net.zero_grad()
                nn.functional.mse_loss(net(data[0]), data[1]).backward()
                return {g.name: torch.cat([p.grad.reshape(-1) for p in g.params]) for g in
                        da.layer_groups(net)}  # fmt: skip

            copy = __import__("copy").deepcopy(module.model)
            g, g_other = grads(copy, batch), grads(copy, self.previous)
            for layer in layers:
                stepped = __import__("copy").deepcopy(module.model)
                with torch.no_grad():
                    for other in da.layer_groups(stepped):
                        if other.name != layer.name:
                            flat = g[other.name]
                            for p in other.params:
                                p -= 0.1 * flat[: p.numel()].view_as(p)
                                flat = flat[p.numel() :]
                g2 = grads(stepped, batch)[layer.name]
                cos = nn.functional.cosine_similarity
                self.got[(trainer.global_step, layer.name)] = (
                    cos(g[layer.name], g_other[layer.name], dim=0).item(),
                    cos(g[layer.name], g2, dim=0).item(),
                )
        self.previous = batch


KINDS = ("data", "parameters")


def test_gradient_monitor_measures_definition_4_1_at_its_cadence(tmp_path):
    hand = Predictiveness()
    monitor = GradientMonitor(loss_fn=nn.functional.mse_loss, predictiveness_every=2)
    auto = GradientMonitor(loss_fn=nn.functional.mse_loss)
    trainer = fit(tmp_path, "pred", 2, monitor, hand, auto, enable_checkpointing=False,
                  log_every_n_steps=1)  # fmt: skip
    assert auto.every == 30 * (3 + 2)  # 3 layers: one measurement in 150 steps (none in 8)
    with open(f"{trainer.logger.log_dir}/metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("predictiveness/data/0")]
    logged = {
        (int(r["step"]), name): tuple(float(r[f"predictiveness/{k}/{name}"]) for k in KINDS)
        for r in rows
        for name in "024"
    }
    assert sorted({step for step, _ in logged}) == [2, 4, 6]  # step 0 has no previous batch
    assert logged.keys() == hand.got.keys()
    for key, want in hand.got.items():
        assert logged[key] == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError, match="predictiveness_every"):
        GradientMonitor(loss_fn=nn.functional.mse_loss, predictiveness_every=0)


class Momentum(Regression):
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def freezing():  # layer 0 at step 3, layer 2 at 5, whatever any signal
    return LayerFreezing(at_3_and_5)


def test_a_frozen_layer_stops_changing_and_loses_its_optimizer_state(tmp_path):
    class Weights(pl.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            if trainer.global_step == 3:
                self.at_freeze = module.model[0].weight.detach().clone()

    cb, weights = freezing(), Weights()
    pl.seed_everything(0, verbose=False)
    module = Momentum()
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                         callbacks=[cb, weights], enable_progress_bar=False)  # fmt: skip
    trainer.fit(module, data())
    assert cb.freezer.frozen == {"0": 3, "2": 5}  # the head (4) is kept
    first = module.model[0]
    assert torch.equal(first.weight, weights.at_freeze) and not first.weight.requires_grad
    state = trainer.optimizers[0].state
    assert all(p not in state for p in first.parameters())
    assert all(p in state for p in module.model[4].parameters())


def test_freezing_resumes_from_the_checkpoint(tmp_path):
    whole, first, resumed = freezing(), freezing(), freezing()

    def run(epochs, cb, *extra, ckpt_path=None):
        pl.seed_everything(0, verbose=False)
        module = Momentum()
        trainer = pl.Trainer(max_epochs=epochs, logger=False, callbacks=[cb, *extra],
                             enable_progress_bar=False, default_root_dir=tmp_path)  # fmt: skip
        trainer.fit(module, data(), ckpt_path=ckpt_path)
        return module

    a = run(3, whole)
    run(1, first, ModelCheckpoint(tmp_path / "ckpt", save_last=True))
    assert first.freezer.frozen == {"0": 3}  # froze in epoch 1, before the checkpoint
    b = run(3, resumed, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert resumed.freezer.frozen == whole.freezer.frozen == {"0": 3, "2": 5}
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


DDP = """
import json, sys, torch
import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger
sys.path.insert(0, {tests!r})
from test_lightning import Regression
from depthaware.integrations.lightning import LayerConvergence

devices, batch = int(sys.argv[1]), int(sys.argv[2])
g = torch.Generator().manual_seed(0)
x = torch.randn(64, 4, generator=g)
data = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True).sin()), batch_size=batch
)
pl.seed_everything(0, verbose=False)
cb = LayerConvergence(directory=sys.argv[3])
trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=devices,
                     strategy="ddp" if devices > 1 else "auto", logger=CSVLogger(sys.argv[4]),
                     callbacks=[cb],
                     enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False)
trainer.fit(Regression(), data)
distances = None if cb.report is None else cb.report.distances.tolist()
# one file per process: two processes printing to one pipe can interleave a line
with open(f"{{sys.argv[3]}}.rank{{trainer.global_rank}}.json", "w") as f:
    json.dump(distances, f)
"""


@pytest.mark.processes
def test_under_ddp_only_rank_0_reports_and_the_rates_are_one_process_s(tmp_path):
    """2 gloo processes with 32 samples each take the full-batch steps one process takes with
    64 (the mean loss's gradients averaged; full batches, as Lightning's distributed sampler
    shuffles): the same trajectory, reported once."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp.py"
    script.write_text(DDP.format(tests=str(Path(__file__).parent)))

    def run(devices, batch, name):
        out = subprocess.run(
            [sys.executable, str(script), str(devices), str(batch), str(tmp_path / name),
             str(tmp_path / f"logs-{name}")],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        return {r: (tmp_path / f"{name}.rank{r}.json").read_text() for r in range(devices)}

    ddp, one = run(2, 32, "ddp"), run(1, 64, "one")
    assert ddp[1] == "null"  # rank 1 computes no report and writes nothing
    # every distance (C[0,2] over the whole run is 1/2 for every layer by construction)
    np.testing.assert_allclose(json.loads(ddp[0]), json.loads(one[0]), rtol=1e-4)
