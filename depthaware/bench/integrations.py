"""Section (9) of `depthaware bench`: what the Lightning callbacks cost inside a real
``Trainer.fit`` (skipped without Lightning installed).

A CIFAR ResNet-18 of width 16 (a quarter of the channels: its step is cheap, so the callbacks'
share is larger than on the full model) at batch 128 fits 2 epochs of 20 steps with
``LayerConvergence`` (a snapshot to disk every epoch) and ``GradientMonitor`` (every step); each
of their hooks is timed where Lightning calls it. Their time per epoch, without the one-off
report at the end of the fit, is set against a CIFAR-10 epoch (391 steps of the plain fit's
step, target <= 2%); the end-of-fit report (rates, tables, figure) is a row of its own.
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
HOOKS = ("on_train_start", "on_train_batch_end", "on_before_optimizer_step", "on_train_epoch_end")


def integration_rows(dev: torch.device, quick: bool) -> Iterator[Row]:
    try:
        import lightning.pytorch as pl
    except ImportError:
        print("integrations: skipped (pip install 'depthaware[lightning]')")
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

    x, y = torch.randn(128 * STEPS, 3, 32, 32), torch.randint(0, 10, (128 * STEPS,))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=128)

    def fit(callbacks, folder) -> float:
        torch.manual_seed(0)
        trainer = pl.Trainer(max_epochs=EPOCHS, accelerator=dev.type, devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=callbacks,
                             default_root_dir=folder)  # fmt: skip
        start = time.perf_counter()
        trainer.fit(Classifier(), data)
        return (time.perf_counter() - start) / (EPOCHS * STEPS)

    spent = {"hooks": 0.0, "report": 0.0}

    def timed(method, bucket):
        def call(*args, **kwargs):
            start = time.perf_counter()
            method(*args, **kwargs)
            spent[bucket] += time.perf_counter() - start

        return call

    with tempfile.TemporaryDirectory() as folder:
        fit([], folder)  # warm-up
        step = fit([], folder)
        yield Row("Lightning fit, CIFAR ResNet-18 (width 16) batch 128, per step", step)
        callbacks = [LayerConvergence(directory=f"{folder}/t"), GradientMonitor()]
        for cb in callbacks:
            for hook in HOOKS:
                setattr(cb, hook, timed(getattr(cb, hook), "hooks"))
            cb.on_fit_end = timed(cb.on_fit_end, "report")
        fit(callbacks, folder)
    per_epoch = spent["hooks"] / EPOCHS
    yield from [
        compared(
            "LayerConvergence + GradientMonitor hooks, per epoch",
            per_epoch,
            "a CIFAR-10 epoch (391 steps)",
            391 * step,
            "<= 0.02",
            0.02,
        ),  # fmt: skip
        Row("LayerConvergence's report at the end of the fit (once)", spent["report"]),
    ]
