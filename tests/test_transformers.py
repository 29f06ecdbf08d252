"""The Hugging Face callbacks in real ``Trainer.train`` runs on CPU: the numbers they log (read
back from ``state.log_history`` and TensorBoard's event files) against a trajectory recorded by
hand, the same keys as the Lightning callback, a run killed and resumed from its checkpoint, and
freezing that survives the resume."""

import numpy as np
import pytest
import torch
from scheduled_freezer import at_3_and_5
from trainer_helpers import Regression

import depthaware as da

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from depthaware.integrations.transformers import (  # noqa: E402
    FREEZER_KEY,
    LayerConvergenceCallback,
    LayerFreezingCallback,
)


class Rows(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x.sum(1, keepdim=True).sin()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class ByHand(transformers.TrainerCallback):
    """A second route: snapshots taken in memory at the same points."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.trajectory = da.measure.Trajectory(da.layer_groups(model.body))
        self.trajectory.snapshot(0)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.trajectory.snapshot(len(self.trajectory))


class Stop(transformers.TrainerCallback):
    """Kills the run at the end of optimizer step ``step`` (after the callbacks added before it),
    later than its last checkpoint: what came after the checkpoint must be redone."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def trainer(folder, epochs=3, momentum=0.0, **kw):
    transformers.set_seed(0)
    model = Regression()
    settings = dict(
        output_dir=str(folder), num_train_epochs=epochs, per_device_train_batch_size=16,
        learning_rate=0.1, lr_scheduler_type="constant", optim="sgd",
        optim_args=f"momentum={momentum}" if momentum else None, max_grad_norm=0.0,
        save_strategy="epoch", logging_strategy="no", report_to="none", use_cpu=True,
        disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    args = transformers.TrainingArguments(**{**settings, **kw})
    return transformers.Trainer(model=model, args=args, train_dataset=Rows())


def logged(t) -> dict[str, float]:
    return {k: v for row in t.state.log_history for k, v in row.items()}


def test_the_logged_rates_are_those_of_a_trajectory_recorded_by_hand(tmp_path):
    t = trainer(tmp_path, report_to=["tensorboard"])
    hand, cb = ByHand(), LayerConvergenceCallback(t, t.model.body, windows=[(0, 1), (1, 2)])
    t.add_callback(hand)
    t.add_callback(cb)
    t.train()
    want, got = da.measure.convergence(hand.trajectory), logged(t)
    assert cb.trajectory.steps == [0, 1, 2, 3]
    for a, b in ((0, 1), (1, 2)):
        for layer, rate in want.rates(a, b).items():
            assert got[f"convergence/C[{a},{b}]/{layer}"] == pytest.approx(rate)
        assert got[f"convergence/spearman[{a},{b}]"] == pytest.approx(want.bias(a, b).spearman)
    # the same keys as the Lightning callback's (both are ConvergenceReport.log_to's)
    assert {k for k in got if k.startswith("convergence/")} == set(
        want.log_to(lambda *a: 0, 0, [(0, 1), (1, 2)])
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = [EventAccumulator(str(p)).Reload() for p in tmp_path.rglob("events.*")]
    tag = f"train/convergence/C[1,2]/{want.layers[0]}"  # HF's TensorBoard adds train/
    values = [s.value for e in events if tag in e.Tags()["scalars"] for s in e.Scalars(tag)]
    assert values == [pytest.approx(want.rates(1, 2)[want.layers[0]])]
    folder = tmp_path / "layer_convergence"
    assert (folder / "rates.csv").is_file() and (folder / "convergence.png").is_file()


def test_a_run_killed_and_resumed_from_its_checkpoint_reports_as_an_uninterrupted_one(tmp_path):
    whole_t = trainer(tmp_path / "whole")
    whole = LayerConvergenceCallback(whole_t, whole_t.model.body, every_n_steps=2)
    whole_t.add_callback(whole)
    whole_t.train()
    first_t = trainer(tmp_path / "run")
    first = LayerConvergenceCallback(first_t, first_t.model.body, every_n_steps=2)
    first_t.add_callback(first)
    first_t.add_callback(Stop(step=6))  # checkpoints at 4, 8, 12 (an epoch); killed at 6
    with pytest.raises(KeyboardInterrupt):
        first_t.train()
    first.trajectory.close()  # as the killed process's end would
    assert first.trajectory.steps == [0, 2, 4, 6]
    resumed_t = trainer(tmp_path / "run")  # a new process
    resumed = LayerConvergenceCallback(resumed_t, resumed_t.model.body, every_n_steps=2)
    resumed_t.add_callback(resumed)
    resumed_t.train(resume_from_checkpoint=True)  # from checkpoint-4: step 6 is recorded anew
    assert resumed.trajectory.steps == whole.trajectory.steps == [0, 2, 4, 6, 8, 10, 12]
    np.testing.assert_allclose(resumed.report.distances, whole.report.distances, rtol=1e-5)
    fresh_t = trainer(tmp_path / "run")  # not resuming: the folder's trajectory is kept
    fresh_t.add_callback(LayerConvergenceCallback(fresh_t, fresh_t.model.body))
    with pytest.raises(ValueError, match="already holds a trajectory .steps up to 12.; resume"):
        fresh_t.train()


def test_a_run_resumed_from_a_checkpoint_in_mid_epoch_redoes_the_epochs_after_it(tmp_path):
    whole_t = trainer(tmp_path / "whole")
    whole = LayerConvergenceCallback(whole_t, whole_t.model.body)
    whole_t.add_callback(whole)
    whole_t.train()
    first_t = trainer(tmp_path / "run", save_strategy="steps", save_steps=6)  # epoch 1.5
    first = LayerConvergenceCallback(first_t, first_t.model.body)
    first_t.add_callback(first)
    first_t.add_callback(Stop(step=9))  # after epoch 2's snapshot, checkpoint-6 the last
    with pytest.raises(KeyboardInterrupt):
        first_t.train()
    first.trajectory.close()
    assert first.trajectory.steps == [0, 1, 2]
    resumed_t = trainer(tmp_path / "run", save_strategy="steps", save_steps=6)
    resumed = LayerConvergenceCallback(resumed_t, resumed_t.model.body)
    resumed_t.add_callback(resumed)
    resumed_t.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-6"))
    assert resumed.trajectory.steps == [0, 1, 2, 3]  # epoch 2 recorded anew
    np.testing.assert_allclose(resumed.report.distances, whole.report.distances, rtol=1e-5)


def test_every_n_steps_and_bad_arguments(tmp_path):
    t = trainer(tmp_path, epochs=2)
    cb = LayerConvergenceCallback(t, t.model.body, every_n_steps=3)
    t.add_callback(cb)
    t.train()
    assert cb.trajectory.steps == [0, 3, 6]  # 4 batches an epoch, 8 steps
    t = trainer(tmp_path / "default", epochs=1)
    t.add_callback(LayerConvergenceCallback(t))  # the Trainer's model: a wrapper it can't group
    with pytest.raises(ValueError, match="LayerConvergenceCallback: don't know the layers of "
                       "Regression.*; pass layers="):  # fmt: skip
        t.train()
    with pytest.raises(ValueError, match="every_n_steps"):
        LayerConvergenceCallback(t, every_n_steps=0)
    with pytest.raises(TypeError, match="trainer must be the transformers.Trainer"):
        LayerConvergenceCallback(t.args)
    with pytest.raises(TypeError, match="freezer must be a callable"):
        LayerFreezingCallback("ConvergenceFreezer")


def freezing(t):  # layer 0 at step 3, layer 2 at 5, whatever any signal
    cb = LayerFreezingCallback(
        at_3_and_5,
        layers=t.model.body,
    )
    t.add_callback(cb)
    return cb


def test_freezing_stops_a_layer_and_survives_a_kill_and_resume(tmp_path):
    whole_t = trainer(tmp_path / "whole", momentum=0.9)
    whole = freezing(whole_t)
    whole_t.train()
    assert whole.freezer.frozen == {"0": 3, "2": 5}  # the head (4) is kept
    first = whole_t.model.body[0]
    assert not first.weight.requires_grad
    state = whole_t.optimizer.optimizer.state
    assert all(p not in state for p in first.parameters())
    assert all(p in state for p in whole_t.model.body[4].parameters())

    run_t = trainer(tmp_path / "run", momentum=0.9)
    run = freezing(run_t)
    run_t.add_callback(Stop(step=6))  # killed at 6: the checkpoint at 4 had layer 0 frozen
    with pytest.raises(KeyboardInterrupt):
        run_t.train()
    assert run.freezer.frozen == {"0": 3, "2": 5}
    saved = torch.load(tmp_path / "run" / "checkpoint-4" / "optimizer.pt", weights_only=True)
    assert saved["param_groups"][0][FREEZER_KEY]["frozen"] == {"0": 3}
    resumed_t = trainer(tmp_path / "run", momentum=0.9)
    resumed = freezing(resumed_t)
    resumed_t.train(resume_from_checkpoint=True)  # from 4: layer 0 frozen first, layer 2 at 5
    assert resumed.freezer.frozen == {"0": 3, "2": 5}
    for p, q in zip(whole_t.model.parameters(), resumed_t.model.parameters(), strict=True):
        torch.testing.assert_close(p, q)

    path = tmp_path / "run" / "checkpoint-8" / "optimizer.pt"
    saved = torch.load(path, weights_only=True)
    del saved["param_groups"][0][FREEZER_KEY]  # as a checkpoint saved without the callback
    torch.save(saved, path)
    again_t = trainer(tmp_path / "run", momentum=0.9)
    freezing(again_t)
    with pytest.raises(ValueError, match="resumed at step 8 from a checkpoint whose optimizer "
                       "state holds no freezer state"):  # fmt: skip
        again_t.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-8"))


DDP = """
import json, sys, torch
sys.path.insert(0, {tests!r})
from test_transformers import trainer
from depthaware.integrations.transformers import LayerConvergenceCallback

t = trainer(sys.argv[1], save_strategy="no", per_device_train_batch_size=32)
cb = LayerConvergenceCallback(t, t.model.body)
t.add_callback(cb)
t.train()
# one file per process: two processes printing to one pipe can interleave a long line
with open(f"{{sys.argv[1]}}.rank{{t.args.process_index}}.json", "w") as f:
    json.dump(None if cb.report is None else cb.report.arrays(), f)
"""


@pytest.mark.processes
def test_under_ddp_only_the_main_process_reports_and_the_numbers_are_one_process_s(tmp_path):
    """torchrun, 2 gloo processes of 32 samples each take the full-batch steps one process takes
    with 64: the same trajectory (up to float32 reduction order), reported once."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp.py"
    script.write_text(DDP.format(tests=str(Path(__file__).parent)))
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = {r: (tmp_path / f"ddp.rank{r}.json").read_text() for r in "01"}
    assert ranks["1"] == "null"  # the other process computes no report and writes nothing
    one_t = trainer(tmp_path / "one", save_strategy="no", per_device_train_batch_size=64)
    one = LayerConvergenceCallback(one_t, one_t.model.body)
    one_t.add_callback(one)
    one_t.train()
    got = json.loads(ranks["0"])
    assert got["steps"] == [0, 1, 2, 3]
    np.testing.assert_allclose(got["distances"], one.report.distances, rtol=1e-5)
    assert (tmp_path / "ddp" / "layer_convergence" / "rates.csv").is_file()
