"""A resumed run whose weights are not the ones its trajectory recorded at the checkpoint's step
(the weights were not restored, or the folder is another run's) is refused by name, in both
callbacks; a report window past the run's planned end is refused when training starts, not
when it ends."""

import pytest
import torch
import trainer_helpers
from safetensors.torch import load_file, save_file
from trainer_helpers import Module

from depthaware.errors import ResumeMismatchError

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pl = pytest.importorskip("lightning.pytorch")
from depthaware.integrations.lightning import LayerConvergence  # noqa: E402
from depthaware.integrations.transformers import LayerConvergenceCallback  # noqa: E402


def hf(folder, **kw):
    return trainer_helpers.hf_trainer(folder, hidden=1, **kw)


def test_hf_a_resume_whose_weights_were_not_restored_is_refused_naming_the_layers(tmp_path):
    t = hf(tmp_path)
    t.add_callback(LayerConvergenceCallback(t, t.model.body, every_n_steps=2))
    t.train()
    weights = tmp_path / "checkpoint-4" / "model.safetensors"
    state = load_file(weights)
    state["body.2.weight"] = state["body.2.weight"] * 1.1  # as if not restored
    save_file(state, weights)
    again = hf(tmp_path)
    again.add_callback(LayerConvergenceCallback(again, again.model.body, every_n_steps=2))
    with pytest.raises(ResumeMismatchError, match=r"weights at step 4 are not the ones .*"
                       r"differ \(relative difference\): 2 \(0\.\d+\)\."):  # fmt: skip
        again.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))
    fine = hf(tmp_path)  # the untouched checkpoint resumes
    fine.add_callback(LayerConvergenceCallback(fine, fine.model.body, every_n_steps=2))
    fine.train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))


def test_hf_a_window_past_the_planned_run_is_refused_when_training_starts(tmp_path):
    t = hf(tmp_path)
    t.add_callback(LayerConvergenceCallback(t, t.model.body, windows=[(0, 10)]))
    with pytest.raises(ValueError, match=r"window \(0, 10\) ends after the run's last epoch to "
                       r"be recorded, 2"):  # fmt: skip
        t.train()
    assert t.state.global_step == 0


def fit(tmp_path, *callbacks, ckpt_path=None, epochs=2):
    pl.seed_everything(0, verbose=False)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True).sin()), batch_size=16
    )
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                         default_root_dir=tmp_path, callbacks=list(callbacks),
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(Module(hidden=1), data, ckpt_path=ckpt_path)
    return trainer


def test_lightning_a_resume_whose_weights_differ_is_refused_naming_the_layers(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    fit(tmp_path, LayerConvergence(directory=tmp_path / "traj"), ckpt)
    path = tmp_path / "ckpt" / "epoch=0-step=4.ckpt"
    saved = torch.load(path, weights_only=False)
    saved["state_dict"]["model.0.weight"] = saved["state_dict"]["model.0.weight"] * 0.5
    torch.save(saved, path)
    with pytest.raises(ResumeMismatchError, match=r"weights at step 1 are not .*: 0 \(0\.\d+\)\."):
        fit(tmp_path, LayerConvergence(), ckpt_path=path)


def test_lightning_a_window_past_the_planned_run_is_refused_when_training_starts(tmp_path):
    cb = LayerConvergence(windows=[(0, 10)], directory=tmp_path / "traj")
    with pytest.raises(ValueError, match=r"window \(0, 10\) ends after the run's last epoch to "
                       r"be recorded, 3"):  # fmt: skip
        fit(tmp_path, cb, epochs=3)
    assert cb.trajectory is None  # refused before anything was recorded
