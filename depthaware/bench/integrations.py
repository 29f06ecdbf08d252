"""Section (9) of `depthaware bench`: what the training-loop callbacks cost inside a real
``Trainer.fit`` (Lightning) and ``Trainer.train`` (Hugging Face); each framework is skipped when
it is not installed.

A CIFAR ResNet-18 of width 16 (a quarter of the channels: its step is cheap, so the callbacks'
share is larger than on the full model) at batch 128 trains 2 epochs of 20 steps with
``LayerConvergence`` (a snapshot to disk every epoch) and ``GradientMonitor`` (every step), or
with ``LayerConvergenceCallback``; each of their hooks is timed where the framework calls it.
Their time per epoch, without the one-off report at the end, is set against a CIFAR-10 epoch
(391 steps of the plain run's step, target <= 2%); the report (rates, tables, figure) is a row
of its own.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator

import torch

from .. import models
from .timing import Row, compared

__all__ = ["integration_rows"]

STEPS, EPOCHS = 20, 2
LIGHTNING_HOOKS = (
    "on_train_start",
    "on_train_batch_end",
    "on_before_optimizer_step",
    "on_train_epoch_end",
)
TRANSFORMERS_HOOKS = ("on_train_begin", "on_step_end", "on_epoch_end")
EPOCH = "a CIFAR-10 epoch (391 steps)"


class _Hooks:
    """Times a callback's hooks where the framework calls them: ``spent["hooks"]`` for the
    recording hooks, ``spent["report"]`` for the one at the end."""

    def __init__(self):
        self.spent = {"hooks": 0.0, "report": 0.0}

    def wrap(self, callback, hooks: tuple[str, ...], end: str) -> None:
        for hook, bucket in [(h, "hooks") for h in hooks] + [(end, "report")]:
            setattr(callback, hook, self._timed(getattr(callback, hook), bucket))

    def _timed(self, method, bucket):
        def call(*args, **kwargs):
            start = time.perf_counter()
            out = method(*args, **kwargs)
            self.spent[bucket] += time.perf_counter() - start
            return out

        return call


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(128 * STEPS, 3, 32, 32, generator=g), torch.randint(0, 10, (128 * STEPS,))


def integration_rows(dev: torch.device, quick: bool) -> Iterator[Row]:
    yield from _lightning_rows(dev)
    yield from _transformers_rows(dev)


def _lightning_rows(dev: torch.device) -> Iterator[Row]:
    try:
        import lightning.pytorch as pl
    except ImportError:
        print("integrations: Lightning skipped (pip install lightning)")
        return
    from ..integrations.lightning import GradientMonitor, LayerConvergence

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = models.cifar_resnet18(num_classes=10, width=16)

        def training_step(self, batch, _):
            return torch.nn.functional.cross_entropy(self.model(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*_data()), batch_size=128)

    def fit(callbacks, folder) -> float:
        torch.manual_seed(0)
        trainer = pl.Trainer(max_epochs=EPOCHS, accelerator=dev.type, devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=callbacks,
                             default_root_dir=folder)  # fmt: skip
        start = time.perf_counter()
        trainer.fit(Classifier(), data)
        return (time.perf_counter() - start) / (EPOCHS * STEPS)

    timer = _Hooks()
    with tempfile.TemporaryDirectory() as folder:
        fit([], folder)  # warm-up
        step = fit([], folder)
        yield Row("Lightning fit, CIFAR ResNet-18 (width 16) batch 128, per step", step)
        callbacks = [LayerConvergence(directory=f"{folder}/t"), GradientMonitor()]
        for cb in callbacks:
            timer.wrap(cb, LIGHTNING_HOOKS, "on_fit_end")
        fit(callbacks, folder)
    yield compared("LayerConvergence + GradientMonitor hooks, per epoch",
                   timer.spent["hooks"] / EPOCHS, EPOCH, 391 * step, "<= 0.02", 0.02)  # fmt: skip
    yield Row("LayerConvergence's report at the end of the fit (once)", timer.spent["report"])


def _transformers_rows(dev: torch.device) -> Iterator[Row]:
    try:
        import transformers
    except ImportError:
        print("integrations: transformers skipped (pip install transformers accelerate)")
        return
    from ..integrations.transformers import LayerConvergenceCallback

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = models.cifar_resnet18(num_classes=10, width=16)

        def forward(self, x, labels):
            return {"loss": torch.nn.functional.cross_entropy(self.model(x), labels)}

    data = [{"x": a, "labels": b} for a, b in zip(*_data(), strict=True)]
    timer = _Hooks()

    def fit(folder, record: bool) -> float:
        torch.manual_seed(0)
        args = transformers.TrainingArguments(
            folder, num_train_epochs=EPOCHS, per_device_train_batch_size=128, learning_rate=0.01,
            optim="sgd", optim_args="momentum=0.9", lr_scheduler_type="constant",
            save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
            use_cpu=dev.type != "cuda",
        )  # fmt: skip
        model = Classifier()
        trainer = transformers.Trainer(model=model, args=args, train_dataset=data)
        if record:
            cb = LayerConvergenceCallback(trainer, model.model, directory=f"{folder}/t")
            timer.wrap(cb, TRANSFORMERS_HOOKS, "on_train_end")
            trainer.add_callback(cb)
        start = time.perf_counter()
        trainer.train()
        return (time.perf_counter() - start) / (EPOCHS * STEPS)

    with tempfile.TemporaryDirectory() as folder:
        fit(folder, False)  # warm-up
        step = fit(folder, False)
        yield Row("Hugging Face Trainer, the same network and batch, per step", step)
        fit(folder, True)
    yield compared("LayerConvergenceCallback hooks, per epoch", timer.spent["hooks"] / EPOCHS,
                   EPOCH, 391 * step, "<= 0.02", 0.02)  # fmt: skip
    yield Row("LayerConvergenceCallback's report at the end of train (once)",
              timer.spent["report"])  # fmt: skip
