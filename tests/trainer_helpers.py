"""What the framework callback tests share: a regression module as Hugging Face's Trainer takes
it, its rows, a Trainer over them, and the same network as a LightningModule."""

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
pl = pytest.importorskip("lightning.pytorch")


class Regression(nn.Module):
    """A plain module as the Trainer accepts it: keyword inputs, a dict with the loss. ``hidden``
    hidden layers of 16 units."""

    def __init__(self, hidden: int = 2):
        super().__init__()
        layers = [nn.Linear(4, 16), nn.Tanh()]
        for _ in range(hidden - 1):
            layers += [nn.Linear(16, 16), nn.Tanh()]
        self.body = nn.Sequential(*layers, nn.Linear(16, 1))

    def forward(self, x, labels=None):
        out = self.body(x)
        return {"loss": nn.functional.mse_loss(out, labels), "logits": out}


def rows():
    """64 rows, 4 batches of 16 an epoch: ``{"x", "labels"}`` with labels sin(sum(x))."""
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    return [{"x": a, "labels": a.sum(0, keepdim=True).sin()} for a in x]


def hf_trainer(folder, hidden: int = 2, **kw):
    """A Trainer of :class:`Regression` on :func:`rows`: plain SGD at lr 0.1, 2 epochs, a
    checkpoint every 2 steps; ``kw`` overrides its TrainingArguments."""
    transformers.set_seed(0)
    settings = dict(
        output_dir=str(folder), num_train_epochs=2, per_device_train_batch_size=16,
        learning_rate=0.1, lr_scheduler_type="constant", optim="sgd", max_grad_norm=0.0,
        save_strategy="steps", save_steps=2, logging_strategy="no", report_to="none",
        use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    args = transformers.TrainingArguments(**{**settings, **kw})
    return transformers.Trainer(model=Regression(hidden), args=args, train_dataset=rows())


class Module(pl.LightningModule):
    """:class:`Regression`'s network as a LightningModule; batches are ``(x, y)`` or, with
    ``dict_batches``, ``{"x", "y"}``."""

    def __init__(self, hidden: int = 2, dict_batches: bool = False):
        super().__init__()
        self.model = Regression(hidden).body
        self.dict_batches = dict_batches

    def training_step(self, batch, _):
        x, y = (batch["x"], batch["y"]) if self.dict_batches else batch
        return nn.functional.mse_loss(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
