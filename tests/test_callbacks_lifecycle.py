"""The callbacks survive every way a real Trainer run starts, stops and resumes: ``max_steps``
that ends training inside an epoch, a resume from any checkpoint folder (a non-latest one, a
copy outside ``output_dir``) whatever else ``output_dir`` holds, changed recording settings on
resume (refused by name, before a step), and dict batches (checked on the first batch)."""

import logging
import shutil

import pytest
import torch
import trainer_helpers
from scheduled_freezer import Scheduled
from torch import nn
from trainer_helpers import Module, rows

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pl = pytest.importorskip("lightning.pytorch")
from depthaware.integrations.lightning import GradientMonitor, LayerConvergence  # noqa: E402
from depthaware.integrations.transformers import (  # noqa: E402
    LayerConvergenceCallback,
    LayerFreezingCallback,
)


def hf_trainer(folder, **kw):
    return trainer_helpers.hf_trainer(folder, **{"num_train_epochs": 3, **kw})


def test_hf_max_steps_inside_an_epoch_ends_with_a_report_not_an_error(tmp_path, caplog):
    t = hf_trainer(tmp_path, max_steps=6, save_strategy="no")  # epoch 2 stops at step 2 of 4
    cb = LayerConvergenceCallback(t, t.model.body)
    t.add_callback(cb)
    with caplog.at_level(logging.WARNING, logger="depthaware"):
        t.train()
    assert cb.trajectory.steps == [0, 1]  # the partial epoch 1.5 is not called epoch 1 or 2
    assert cb.report is not None and (tmp_path / "layer_convergence" / "rates.csv").is_file()
    assert "training stopped inside an epoch (state.epoch 1.5)" in caplog.text


def freezer_at(step):
    """Freezes layer '0' at ``step`` and layer '2' two steps later (the head trains)."""
    return lambda opt, layers: Scheduled(opt, layers, {"0": step, "2": step + 2})


def freeze_run(folder, step, resume=None, **kw):
    t = hf_trainer(folder, **kw)
    cb = LayerFreezingCallback(freezer_at(step), layers=t.model.body)
    t.add_callback(cb)
    t.train(resume_from_checkpoint=resume)
    return t, cb


def test_hf_freezing_resumes_from_the_folder_given_wherever_it_is(tmp_path):
    whole_t, whole = freeze_run(tmp_path / "whole", step=3)
    assert whole.freezer.frozen == {"0": 3, "2": 5}  # the copy below holds only layer 0
    # another run in the output_dir, with checkpoints at the same steps and other frozen layers
    freeze_run(tmp_path / "out", step=1)
    away = tmp_path / "elsewhere" / "copy-of-checkpoint-4"  # a non-latest checkpoint, copied out
    shutil.copytree(tmp_path / "whole" / "checkpoint-4", away)
    t, cb = freeze_run(tmp_path / "out", step=3, resume=str(away))
    assert cb.freezer.frozen == whole.freezer.frozen  # the copy's state, not out/checkpoint-4's
    for p, q in zip(whole_t.model.parameters(), t.model.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_hf_resume_with_other_recording_settings_is_refused_by_name(tmp_path):
    t = hf_trainer(tmp_path, num_train_epochs=2)
    t.add_callback(LayerConvergenceCallback(t, t.model.body))  # every epoch
    t.train()
    resumed = hf_trainer(tmp_path, num_train_epochs=2)
    resumed.add_callback(LayerConvergenceCallback(resumed, resumed.model.body, every_n_steps=2))
    with pytest.raises(ValueError, match="counts its steps in epochs, this trajectory in steps"):
        resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))
    assert resumed.state.global_step == 6  # refused before any step


def loader(dict_batches=False):
    x = torch.stack([r["x"] for r in rows()])
    y = x.sum(1, keepdim=True).sin()
    if dict_batches:
        data = [{"x": a, "y": b} for a, b in zip(x, y)]
    else:
        data = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(data, batch_size=16)


def fit(tmp_path, *callbacks, dict_batches=False, ckpt_path=None, **kw):
    pl.seed_everything(0, verbose=False)
    kw = {"max_epochs": 3, "logger": False, **kw}
    trainer = pl.Trainer(accelerator="cpu", devices=1, default_root_dir=tmp_path,
                         callbacks=list(callbacks), enable_progress_bar=False,
                         enable_model_summary=False, **kw)  # fmt: skip
    trainer.fit(Module(dict_batches=dict_batches), loader(dict_batches), ckpt_path=ckpt_path)
    return trainer


def test_lightning_max_steps_inside_an_epoch_records_whole_epochs_only(tmp_path, caplog):
    cb = LayerConvergence(directory=tmp_path / "traj")
    with caplog.at_level(logging.WARNING, logger="depthaware"):
        fit(tmp_path, cb, max_steps=6, enable_checkpointing=False)
    assert cb.trajectory.steps == [0, 1]
    assert "training stopped inside an epoch (epoch 2, batch 2)" in caplog.text


def test_lightning_resume_with_other_recording_settings_is_refused_by_name(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    fit(tmp_path, LayerConvergence(directory=tmp_path / "traj"), ckpt, max_epochs=2)
    again = LayerConvergence(every_n_steps=2)  # the folder comes from the checkpoint
    with pytest.raises(ValueError, match="counts its steps in epochs, this trajectory in steps"):
        fit(tmp_path, again, ckpt_path=tmp_path / "ckpt" / "epoch=0-step=4.ckpt", max_epochs=2)


def test_gradient_monitor_checks_dict_batches_on_the_first_batch_and_takes_an_unpack(tmp_path):
    monitor = GradientMonitor(loss_fn=nn.functional.mse_loss, predictiveness_every=2)
    with pytest.raises(
        TypeError,
        match=r"a batch is a dict with keys \['x', 'y'\], not \(input, "
        r"target\); pass unpack=lambda batch: \(batch\['x'\], batch\['y'\]\)",
    ):
        fit(tmp_path, monitor, dict_batches=True, enable_checkpointing=False)

    class Logged(pl.loggers.Logger):
        name, version, seen = "mem", 0, []

        def log_metrics(self, metrics, step=None):
            self.seen.append((step, metrics))

        def log_hyperparams(self, *args, **kwargs):
            pass

    monitor = GradientMonitor(loss_fn=nn.functional.mse_loss, predictiveness_every=2,
                              unpack=lambda b: (b["x"], b["y"]))  # fmt: skip
    logger = Logged()
    fit(tmp_path, monitor, dict_batches=True, logger=logger, max_epochs=1,
        enable_checkpointing=False)  # fmt: skip
    steps = sorted({s for s, m in logger.seen if any(k.startswith("predictiveness/") for k in m)})
    assert steps == [2]  # step 0 has no previous batch; 4 steps an epoch
