"""The sine regression task of Section 3.1 and one run of it with its measurements.

Target:
:math:`f(x) = \\sin x + \\tfrac13 \\sin 3x + \\tfrac1{10} \\sin 10x + \\tfrac1{30} \\sin 30x`
on :math:`[-2, 2]`, 5000 training and 5000 test points (Table 1), MSE loss, SGD with LR 0.1
decayed to 0.01 at epoch 150, batch 128, 300 epochs, no weight decay (Appendix A.1).

A snapshot is taken before training (step 0 = :math:`t_0`) and after every epoch, so the
trajectory's step ``e`` is the end of epoch ``e``, and :math:`\\theta^*` is the last one.
:func:`sine_run` trains one model and returns its measurements as a JSON-ready dict; the findings
(:mod:`.sine_findings`) judge those dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from ..layers import Layer, layer_groups
from ..measure import GradMagnitude, PredictivenessMonitor, Trajectory, convergence
from ..measure.distances import resketched
from ..measure.frequency import block_contributions
from ..measure.sharpness import layer_sharpness, top_eigenvalue
from ..models import FCNN, ResidualFCNN
from .loop import DIVERGE_FACTOR, train
from .results import SineResult, check_extras

__all__ = [
    "EXTRAS",
    "FREQUENCIES",
    "SineConfig",
    "SineRun",
    "sine_data",
    "sine_run",
    "sine_target",
    "train_sine",
]

FREQUENCIES = (1, 3, 10, 30)  # angular frequencies of the target's four components
EXTRAS = ("grad_magnitude", "predictiveness", "sharpness", "sketch", "resketch", "spectrum")
#: the sketch size of the ``sketch`` extra (a residual block's 33K parameters are sketched)
SKETCH_K = 4096
#: the sketch seeds a run's exact snapshots are sketched anew with (``resketch``)
RESKETCHES = 20
_OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


def sine_target(x: torch.Tensor, complexity: int = 4) -> torch.Tensor:
    """The paper's target; ``complexity=k`` keeps its ``k`` lowest components (Figure 8: 1 is
    ``sin x``, 2 adds ``sin(3x)/3``, ...)."""
    if complexity not in range(1, 5):
        raise ValueError(f"complexity must be 1..4; got {complexity}")
    return sum((torch.sin(f * x) / f for f in FREQUENCIES[:complexity]), torch.zeros_like(x))


def sine_data(n: int, seed: int, target: Callable = sine_target, domain=(-2.0, 2.0)):
    """``n`` points drawn uniformly on ``domain`` with their targets, shapes ``(n, 1)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * (domain[1] - domain[0]) + domain[0]
    return x, target(x)


@dataclass(frozen=True)
class SineConfig:
    """Everything a sine run depends on (defaults: the paper's Appendix A.1)."""

    model: str = "fcnn"  # "fcnn" ([1-32-32-32-1], sigmoid) or "resfcnn"
    widths: tuple[int, ...] = (1, 32, 32, 32, 1)
    activation: str = "sigmoid"
    res_width: int = 128
    res_blocks: tuple[int, ...] = (2, 2, 2, 2)
    res_activation: str = "relu"
    block_form: str = "identity"  # see depthaware.models.ResidualFCNN
    norm: str | None = None
    input_init: str = "spread"
    epochs: int = 300
    optimizer: str = "sgd"  # sgd, adam, rmsprop, adagrad
    lr: float = 0.1
    lr_milestones: tuple[int, ...] = (150,)
    lr_gamma: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    complexity: int = 4  # target components kept (Figure 8)
    batch_size: int = 128
    n_train: int = 5000
    n_test: int = 5000

    def build(self) -> nn.Module:
        if self.model == "fcnn":
            return FCNN(self.widths, activation=self.activation)
        if self.model == "resfcnn":
            return ResidualFCNN(
                width=self.res_width,
                blocks=self.res_blocks,
                activation=self.res_activation,
                block_form=self.block_form,
                norm=self.norm,
                input_init=self.input_init,
            )
        raise ValueError(f"unknown sine model {self.model!r}; use 'fcnn' or 'resfcnn'")

    def optimizer_for(self, model: nn.Module) -> torch.optim.Optimizer:
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {sorted(_OPTIMIZERS)}; got {self.optimizer!r}"
            )
        kw = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.optimizer in ("sgd", "rmsprop"):
            kw["momentum"] = self.momentum
        return _OPTIMIZERS[self.optimizer](model.parameters(), **kw)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SineRun:
    """What one seed of a sine run produced (the model is the trained one)."""

    config: SineConfig
    seed: int
    model: nn.Module
    trajectory: Trajectory
    grad_magnitude: dict[str, list[float]]  # per layer, mean |g| of each epoch (if recorded)
    train_loss: list[float]
    test_loss: list[float]


def train_sine(
    config: SineConfig,
    seed: int,
    *,
    grad_magnitude: bool = False,
    callback: Callable | None = None,
) -> SineRun:
    """Train one model on the sine task, recording a trajectory (and gradient magnitudes).

    Args:
        config: the run's settings.
        seed: seeds the model's initialisation, the data and the batch order.
        grad_magnitude: record the mean |gradient| per layer and epoch (Fig. 1, left).
        callback: ``f(epoch, model, optimizer, x, y)`` after every epoch and before training
            (epoch 0); measurements that leave model, optimizer and random state as they were.
    """
    torch.manual_seed(seed)
    model = config.build()
    layers = layer_groups(model)
    target = partial(sine_target, complexity=config.complexity)
    x, y = sine_data(config.n_train, seed, target)
    x_test, y_test = sine_data(config.n_test, seed + 10_000, target)
    opt = config.optimizer_for(model)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(config.lr_milestones), config.lr_gamma)
    traj = Trajectory(layers, unit="epoch")
    grads = GradMagnitude(layers) if grad_magnitude else None
    history: dict[str, list[float]] = {name: [] for name in layers.names}
    test_loss = []

    def after_step() -> None:
        if grads is not None:
            grads.update()  # the step's gradients are still in .grad

    def after_epoch(epoch: int, _loss: float) -> None:
        sched.step()
        traj.snapshot(epoch)
        if grads is not None:
            for name, g in grads.compute().items():
                history[name].append(g)
            grads.reset()
        with torch.no_grad():
            model.eval()
            test_loss.append(nn.functional.mse_loss(model(x_test), y_test).item())
        if callback is not None:
            callback(epoch, model, opt, x, y)

    traj.snapshot(0)
    if callback is not None:
        callback(0, model, opt, x, y)
    losses = train(
        model,
        opt,
        x,
        y,
        epochs=config.epochs,
        batch_size=config.batch_size,
        loss_fn=nn.functional.mse_loss,
        seed=seed + 20_000,
        after_step=after_step,
        after_epoch=after_epoch,
        diverge_factor=DIVERGE_FACTOR,
    )
    return SineRun(config, seed, model, traj, history, losses, test_loss)


def sine_run(config: SineConfig, seed: int, extras=()) -> SineResult:
    """One run and its measurements (the unit the findings report caches).

    Always: each layer's distances to :math:`\\theta^*` at every epoch (``report``: a
    :class:`~depthaware.measure.ConvergenceReport`), the training loss per epoch and the final
    test MSE. A run whose loss becomes NaN/inf says so (``diverged``: at which epoch) and has
    nothing else. ``extras`` (any of :data:`EXTRAS`):

    * ``grad_magnitude``: mean |gradient| per layer and epoch;
    * ``predictiveness``: Definition 4.1 (data and parameters) of every layer on two batches of
      128 at about 30 epochs spread over the run (and before training), with the whole network's
      top Hessian eigenvalue :math:`\\lambda_{\\max}` on 512 training points, to set beside
      :math:`2/\\eta` (the edge of stability of a step of size :math:`\\eta`);
    * ``sharpness``: at :math:`\\theta^*`, each layer's landscape over :math:`[-1, 1]^2`
      (21 × 21, 1024 training points; directions normalized per weight matrix), its mean loss
      rise over the unit disc, and its top Hessian eigenvalue;
    * ``sketch``: the distances of the same run from a CountSketch trajectory (:data:`SKETCH_K`
      numbers per layer larger than that, sketch seed 0) and each sketch row's estimate (a
      :class:`~depthaware.measure.ConvergenceReport`), to check sketched rates against the
      exact ones;
    * ``resketch``: the exact snapshots sketched anew with sketch seeds ``0 ..`` :data:`RESKETCHES`
      ``- 1`` (a :class:`~depthaware.measure.ConvergenceReport` each): the calibration of the
      error bands over sketch seeds, on one run;
    * ``spectrum``: each block's contribution to the output
      (:func:`~depthaware.measure.frequency.block_contributions`) sampled on 801 points of
      :math:`[-2, 2]`, from which the findings read ranges and amplitudes (Fig. 6).
    """
    extras = check_extras(extras, EXTRAS)
    probe = torch.Generator().manual_seed(seed + 30_000)
    series: dict = {"epoch": [], "lambda_max": [], "lr": [], "layers": {}}
    every = max(1, config.epochs // 30)
    monitors: list[PredictivenessMonitor] = []  # made with the run's model and optimizer

    def measure(epoch, model, opt, x, y) -> None:
        if epoch % every:
            return
        if not monitors:
            monitors.append(PredictivenessMonitor(model, nn.functional.mse_loss, opt, every=1))
        i, j = torch.randperm(len(x), generator=probe)[:256].split(128)
        monitors[0].update((x[i], y[i]), (x[j], y[j]))
        sample = torch.randperm(len(x), generator=probe)[:512]
        everything = Layer("network", 0, *zip(*model.named_parameters()))
        lam = top_eigenvalue(  # the findings were measured with the power iteration
            model,
            everything,
            nn.functional.mse_loss,
            x[sample],
            y[sample],
            method="power",
            generator=probe,
        )
        series["epoch"].append(epoch)
        series["lambda_max"].append(lam)
        series["lr"].append(opt.param_groups[0]["lr"])

    sketched: list[Trajectory] = []

    def record(epoch, model, *_) -> None:
        if not sketched:
            sketched.append(Trajectory(layer_groups(model), sketch=SKETCH_K, unit="epoch"))
        sketched[0].snapshot(epoch)

    hooks = [hook for hook, on in ((measure, "predictiveness"), (record, "sketch")) if on in extras]

    def callback(*args) -> None:
        for hook in hooks:
            hook(*args)

    given = {"config": config.to_dict(), "seed": seed, "extras": extras}
    try:
        run = train_sine(
            config,
            seed,
            grad_magnitude="grad_magnitude" in extras,
            callback=callback if hooks else None,
        )
    except FloatingPointError as err:
        return SineResult(**given, diverged=str(err))
    measured: dict[str, Any] = {}
    if "grad_magnitude" in extras:
        measured["grad_magnitude"] = run.grad_magnitude
    if "predictiveness" in extras:
        history = monitors[0].compute() if monitors else {}
        series["layers"] = {
            n: {k: h[k] for k in ("data", "parameters")} for n, h in history.items()
        }
        measured["predictiveness"] = series
    if "sketch" in extras:
        measured["sketch"] = convergence(sketched[0])
    if "resketch" in extras:
        measured["resketch"] = [resketched(run.trajectory, SKETCH_K, s) for s in range(RESKETCHES)]
    x, y = sine_data(config.n_train, seed, partial(sine_target, complexity=config.complexity))
    if "sharpness" in extras:
        measured["sharpness"] = _sharpness(run.model, x[:1024], y[:1024], seed)
    if "spectrum" in extras:
        measured["spectrum"] = _spectrum(run.model)
    return SineResult(
        **given,
        report=convergence(run.trajectory),
        train_loss=run.train_loss,
        test_mse=run.test_loss[-1],
        **measured,
    )


def _sharpness(model, x, y, seed: int) -> dict:
    out, mse = {}, nn.functional.mse_loss
    for layer in layer_groups(model):
        ls, eig = layer_sharpness(model, layer, mse, x, y, seed=seed, method="power")
        out[layer.name] = {
            "rise": ls.rise(1.0),
            "top_eigenvalue": eig,
            "center": ls.center,
            "betas": ls.betas.tolist(),
            "loss": ls.loss.tolist(),
        }
    return out


def _spectrum(model) -> dict:
    x = torch.linspace(-2, 2, 801)
    parts = block_contributions(model, x.unsqueeze(1))
    return {"x": x.tolist(), "values": {name: v[:, 0].tolist() for name, v in parts.items()}}
