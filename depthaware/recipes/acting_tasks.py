"""The acting comparison's tasks, methods and search spaces (what is trained, and how it is tuned).

Tasks (each a fixed data set: seeds change the initialization and the data order, not the data):

* ``resfcnn-sine``: the paper's residual FCNN on the sine target (SGD; test MSE);
* ``cnn-glyphs``: the CIFAR-style ResNet-18 of width 8 on :mod:`.glyphs` (16 px, 26 classes, 120
  training, 40 validation and 40 test images per class, difficulty 0.3; SGD; test accuracy);
* ``vit-glyphs``: a width-graded ViT of 6 encoders (MLP ratio 4, embed dim 64, patch 4) on the
  same glyphs (AdamW with a linear warm-up; test accuracy).

The glyph task's size and difficulty were calibrated once, before any method was compared, with
each task's baseline at its centre setting and seed 0: the CNN reaches 89.4% and the ViT 56.2%
test accuracy in their epoch budgets (12 and 30 epochs; at difficulty 0.35 86.6% and 55.2%, at
0.5 the CNN 74%, at 1.0 with 120 images a class neither learns), neither saturated, and they
differ. The budgets were set by the compute: ``reproduce acting --scale paper`` within about two
hours on 2 cores.

Methods, each acting on the bias one way (:data:`METHODS`: a knob and its values, or none):
``none`` (the task's plain optimizer), ``freezeout`` (:class:`~depthaware.freeze.FreezeOut`,
cubic spacing; knob ``t0``), ``convergence`` (:class:`~depthaware.freeze.ConvergenceFreezer`,
one check per epoch; knob ``threshold``), ``depth-lr`` (a geometric depth scale; knob ``end``, the
deepest layer's factor), ``staggered`` (:class:`~depthaware.optim.DepthStaggered` catching up at
half the run; knob ``start``), ``lars`` (:class:`~depthaware.optim.LARS` with LARC clipping; knob
``trust_coefficient``), ``feedback`` (:class:`~depthaware.optim.FeedbackSGD`; knob ``min_scale``).
Where the task's optimizer is AdamW, LARS and FeedbackSGD are SGD-family steps, so they also face
their own tuned baseline, ``sgd`` (momentum SGD).

Tuning budget: every method gets :data:`TRIALS` trials (:func:`search_space`): the baseline four
LRs on a half-octave grid, from an octave below the task's LR to half an octave above; every other
method two LRs, half an octave either side of the task's LR (both inside the baseline's grid),
times its knob's two values. Final runs: 5 seeds on every task.

Compute, measured as each run's training CPU seconds (one thread per run): a ViT run about 70, a
CNN run about 17, a residual FCNN run about 8 (10-13 with LARS or FeedbackSGD). The whole
comparison, 176 runs, is about 100 CPU-minutes: under an hour on 2 idle cores. (Four trials and
three seeds were first chosen from the wall time of an earlier run on a machine shared with
other work, which suggested three hours for six trials and five seeds; the CPU seconds show
that estimate was the machine's contention, and five seeds fit the budget of about two hours.)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models import ResidualFCNN, cifar_resnet18, width_graded_vit
from .glyphs import glyphs
from .sine import sine_data

__all__ = ["GLYPHS", "METHODS", "SGD_FAMILY", "TASKS", "TRIALS", "Task", "search_space"]

#: the glyph data set of both image tasks (calibrated once; see the module docstring)
GLYPHS: dict[str, Any] = {"per_class": (120, 40, 40), "size": 16, "difficulty": 0.3}
#: its size at scale ``tiny`` (a test of the machinery)
GLYPHS_TINY: dict[str, Any] = {"per_class": (4, 2, 2), "size": 16, "difficulty": 0.3}
#: method -> (its knob, the knob's two values), or None for a method without one
METHODS = {
    "none": None,
    "freezeout": ("t0", (0.7, 0.9)),
    "convergence": ("threshold", (0.3, 0.5)),
    "depth-lr": ("end", (0.25, 0.5)),
    "staggered": ("start", (0.1, 0.3)),
    "lars": ("trust_coefficient", (0.001, 0.01)),
    "feedback": ("min_scale", (0.1, 0.5)),
    "sgd": None,
}
#: methods that step with the SGD family, whatever the task's optimizer
SGD_FAMILY = ("lars", "feedback", "sgd")
TRIALS = 4


@dataclass(frozen=True)
class Task:
    """One model on one data set, with its plain training recipe (the baseline's centre)."""

    name: str
    epochs: int  # at scale paper
    batch_size: int
    lr: float  # the task's optimizer's LR: the centre of its grid
    optimizer: str  # "sgd" or "adamw"
    metric: str  # "mse" (lower is better) or "accuracy" (percent)
    seeds: int  # final seeds at scale paper
    warmup_epochs: int = 0
    sgd_lr: float | None = None  # the SGD family's centre, where the task's optimizer is AdamW

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods compared on this task (``sgd`` only where the baseline is not SGD)."""
        return tuple(m for m in METHODS if m != "sgd" or self.optimizer != "sgd")

    def build(self) -> nn.Module:
        if self.name == "resfcnn-sine":
            return ResidualFCNN()
        if self.name == "cnn-glyphs":
            return cifar_resnet18(num_classes=26, width=8)
        return width_graded_vit(widths=(4, 4, 4), counts=(2, 2, 2), embed_dim=64, num_heads=4,
                                img_size=16, patch_size=4, num_classes=26)  # fmt: skip

    def data(self, tiny: bool = False):
        """``(x, y, x_val, y_val, x_test, y_test)``: the same for every seed and method."""
        if self.name == "resfcnn-sine":
            n = 200 if tiny else 5000
            return (*sine_data(n, 0), *sine_data(n // 5, 20_000), *sine_data(n, 10_000))
        return _glyphs(tiny)

    def loss(self, out, y):
        if self.metric == "mse":
            return nn.functional.mse_loss(out, y)
        return nn.functional.cross_entropy(out, y)

    @torch.no_grad()
    def score(self, model: nn.Module, x, y, batch: int = 1024) -> float:
        """Test MSE or accuracy (%) of ``model`` (in eval mode) on ``(x, y)``."""
        model.eval()
        outs = torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])
        if self.metric == "mse":
            return nn.functional.mse_loss(outs, y).item()
        return 100.0 * (outs.argmax(1) == y).float().mean().item()

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is better than ``b`` (NaN never is)."""
        return a < b if self.metric == "mse" else a > b

    def meets(self, score: float, target: float) -> bool:
        """Whether ``score`` is at least as good as ``target``."""
        return score <= target if self.metric == "mse" else score >= target


@functools.cache
def _glyphs(tiny: bool):
    """The glyph splits, generated once per process (a worker of the run queue trains many)."""
    return glyphs(0, **(GLYPHS_TINY if tiny else GLYPHS))


TASKS = {
    "resfcnn-sine": Task("resfcnn-sine", 60, 128, 0.1, "sgd", "mse", seeds=5),
    "cnn-glyphs": Task("cnn-glyphs", 12, 64, 0.05, "sgd", "accuracy", seeds=5),
    "vit-glyphs": Task(
        "vit-glyphs", 30, 64, 1e-3, "adamw", "accuracy", seeds=5, warmup_epochs=3, sgd_lr=0.05
    ),  # fmt: skip
}


def search_space(task: Task, method: str) -> list[dict]:
    """The :data:`TRIALS` settings tried for ``method`` on ``task``: ``{"lr": ..., knob: ...}``.

    >>> [round(s["lr"], 4) for s in search_space(TASKS["cnn-glyphs"], "none")]
    [0.025, 0.0354, 0.05, 0.0707]
    >>> [(round(s["lr"], 4), s["t0"]) for s in search_space(TASKS["cnn-glyphs"], "freezeout")]
    [(0.0354, 0.7), (0.0354, 0.9), (0.0707, 0.7), (0.0707, 0.9)]
    """
    if method not in task.methods:
        raise ValueError(f"{method!r} is not compared on {task.name}; methods: {task.methods}")
    centre = task.sgd_lr if method in SGD_FAMILY and task.sgd_lr is not None else task.lr
    knob = METHODS[method]
    if knob is None:
        space = [{"lr": centre * 2.0**k} for k in (-1.0, -0.5, 0.0, 0.5)]
    else:
        name, values = knob
        space = [{"lr": centre * 2.0**k, name: v} for k in (-0.5, 0.5) for v in values]
    assert len(space) == TRIALS
    return space
