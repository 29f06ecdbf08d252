"""Section (9) of `depthaware bench`: what the Lightning callbacks cost inside a real
``Trainer.fit`` (skipped without Lightning installed).

A CIFAR ResNet-18 at batch 128 fits 2 epochs of 20 steps with and without ``LayerConvergence``
(a snapshot to disk every epoch) and ``GradientMonitor`` (every step), each fit timed whole: the
time per step with the callbacks over the time without (target <= 1.02). With 20-step epochs the
snapshot weighs 20 times more per step than in a CIFAR-10 epoch of 391 steps: an upper bound.
"""

from __future__ import annotations

import tempfile
import time

import torch

from .. import models
from .timing import Row, compared

__all__ = ["integration_rows"]

STEPS, EPOCHS = 20, 2


def integration_rows(dev: torch.device, quick: bool) -> list[Row]:
    try:
        import lightning.pytorch as pl
    except ImportError:
        print("integrations: skipped (pip install 'depthaware[lightning]')")
        return []
    from ..integrations.lightning import GradientMonitor, LayerConvergence

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = models.cifar_resnet18(num_classes=10)

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

    with tempfile.TemporaryDirectory() as folder:
        fit([], folder)  # warm-up
        rounds = 1 if quick else 3
        plain = min(fit([], folder) for _ in range(rounds))
        both = min(
            fit([LayerConvergence(directory=f"{folder}/t{k}"), GradientMonitor()], folder)
            for k in range(rounds)
        )
    return [
        Row("Lightning fit, CIFAR ResNet-18 batch 128, per step", plain),
        compared(
            "with LayerConvergence (every epoch) + GradientMonitor, per step",
            both,
            "without",
            plain,
            "<= 1.02",
            1.02,
        ),  # fmt: skip
    ]
