"""The report's figures beside the numbers, in the paper's layout (drawn by depthaware.plots).

Each function takes the report's :class:`~depthaware.recipes.findings.Context` and output folder,
draws from the runs of seed 0 (or all seeds, for bars), writes PNGs under ``out/figures/`` and
returns their paths relative to ``out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import plots
from ..measure.landscapes import Landscape
from ..measure.sketch import window_errors
from .factor_claims import FACTORS
from .factor_findings import factor_rates
from .factor_rules import bias_strength
from .frequency_findings import COMPLEXITIES, four_functions
from .images import cnn_config
from .placement_findings import PLACEMENTS
from .runs import RunSpec
from .sine import FREQUENCIES, SKETCH_K
from .sine_findings import FORMS, plain_fcnn, resfcnn, sine_spec

__all__ = ["FIGURES"]

BLOCKS = [f"Res-Block {k}" for k in range(1, 5)]


def _save(fig, out: Path, name: str) -> str:
    plots.save(fig, out / "figures" / name)
    return f"figures/{name}"


def _first(ctx, config) -> Any:
    """Seed 0's :class:`SineResult` of ``config`` (with the extras its finding asked for, so
    read without None checks), or None if it diverged."""
    r = ctx.result(sine_spec(config, 0))
    return None if r.diverged else r


def fig1(ctx, out: Path) -> list[str]:
    fig, axes = plots.panels(2, 2, (9, 6.8))
    for row, (title, config) in zip(
        axes, (("FCNN", plain_fcnn(ctx.scale)), ("residual FCNN", resfcnn(ctx.scale)))
    ):
        r = _first(ctx, config)  # the loop ends with the residual run's (None if it diverged)
        if r is None:
            continue
        hidden = [n for n in r.report.layers if n != "Output layer"]
        plots.grad_magnitude(r.grad_magnitude, ax=row[0], layers=hidden)
        plots.convergence(r.report, ax=row[1], layers=hidden)
        row[0].set_title(f"{title}: gradient magnitude")
        row[1].set_title(f"{title}: convergence")
    paths = [_save(fig, out, "fig1.png")]
    if r is not None and r.resketch:  # fig1-resfcnn-sketched, on its grid
        paths += _sketch(r, 10, "residual FCNN", out, "sketch-resfcnn.png")
    return paths


def _sketch(r, every: int, title: str, out: Path, name: str) -> list[str]:
    """A sketch line's seed 0, sketch seed 0: the sketched distances in their bands, and each
    window's error against the exact rate, between snapshots ``every`` epochs apart."""
    fig, (left, right) = plots.panels(1, 2, (9.5, 3.6))
    plots.convergence(r.resketch[0], ax=left)
    plots.sketch_errors(window_errors(r.report, r.resketch[0], every), ax=right)
    left.set_title(f"{title}: sketched (k = {SKETCH_K}), 95% bands", fontsize="small")
    grid = "every window between epochs" if every == 1 else f"windows {every} epochs apart"
    right.set_title(f"{title}: sketched against exact, {grid}", fontsize="small")
    return [_save(fig, out, name)]


def cnn(ctx, out: Path) -> list[str]:
    """cnn-resnet-sketched's seed 0 over every window between epochs (its judged grid is every
    10th)."""
    r = ctx.result(RunSpec("image", cnn_config("resnet18", ctx.scale, ctx.data_dir), 0))
    if r.unsupported or r.diverged or not r.resketch:
        return []
    return _sketch(r, 1, "ResNet-18", out, "sketch-resnet.png")


def fig34(ctx, out: Path) -> list[str]:
    (fig3, axes3), (fig4, axes4) = plots.panels(2, 2, (9, 6.8)), plots.panels(2, 4, (13, 6.8))
    for row3, row4, form in zip(axes3, axes4, FORMS):
        r = _first(ctx, resfcnn(ctx.scale, block_form=form))
        if r is None:
            continue
        for ax, kind in zip(row3, ("data", "parameters")):
            plots.predictiveness(
                r.predictiveness, kind, ax=ax, layers=["Res-Block 1", "Res-Block 4"]
            )
            ax.set_title(f"{FORMS[form]}: w.r.t. {kind}", fontsize="small")
        for ax, block in zip(row4, BLOCKS):
            s = r.sharpness[block]
            ls = Landscape(
                block, torch.tensor(s["betas"]), torch.tensor(s["loss"]), s["center"], ""
            )
            plots.contour(ls, ax=ax)
            ax.set_title(f"{block} ({form}), rise {s['rise']:.3g}", fontsize="small")
    return [_save(fig3, out, "fig3.png"), _save(fig4, out, "fig4.png")]


def fig68(ctx, out: Path) -> list[str]:
    paths = []
    r = _first(ctx, resfcnn(ctx.scale))
    if r is not None:
        x = r.spectrum["x"]
        parts = four_functions(r.spectrum)
        components = [np.sin(w * np.asarray(x)) / w for w in FREQUENCIES]
        fig, axes = plots.panels(1, 4, (13, 3.2))
        for ax, (name, values), comp, w in zip(axes, parts.items(), components, FREQUENCIES):
            plots.functions(x, {name: values}, ax=ax, reference={name: comp})
            ax.set_title(f"{name} (dashed: sin({w}x)/{w})", fontsize="small")
        paths.append(_save(fig, out, "fig6.png"))
    fig, axes = plots.panels(1, 4, (13, 3.2))
    for ax, c in zip(axes, COMPLEXITIES):
        r = _first(ctx, resfcnn(ctx.scale, complexity=c))
        if r is not None:
            plots.convergence(r.report, ax=ax, layers=BLOCKS)
            ax.set_title(f"Complexity={c}", fontsize="small")
    paths.append(_save(fig, out, "fig8.png"))
    return paths


def _bars(ctx, out, labels, values, ylabel, name) -> list[str]:
    """Mean ± std over seeds per label; labels without a finite value (diverged) are left out."""
    rows = [(lab, [x for x in row if x is not None]) for lab, row in zip(labels, values)]
    rows = [(lab, row) for lab, row in rows if row]
    fig = plots.bars(
        [lab for lab, _ in rows],
        [float(np.mean(r)) for _, r in rows],
        [float(np.std(r)) for _, r in rows],
        ylabel=ylabel,
    )
    return [_save(fig, out, name)]


def factors(ctx, out: Path) -> list[str]:
    values = [[bias_strength(factor_rates(ctx, n, s)) for s in range(ctx.seeds)] for n in FACTORS]
    return _bars(ctx, out, list(FACTORS), values, "Spearman(depth, C[0,5])", "factors.png")


def placement(ctx, out: Path) -> list[str]:
    values = [
        [
            ctx.result(sine_spec(resfcnn(ctx.scale, res_blocks=p), s)).test_mse
            for s in range(ctx.seeds)
        ]
        for p in PLACEMENTS
    ]
    return _bars(ctx, out, [str(p) for p in PLACEMENTS], values, "test MSE", "fig20.png")


FIGURES = {
    "fcnn-bias": fig1,
    "cnn-bias": cnn,
    "predictiveness-sharpness": fig34,
    "frequency": fig68,
    "factors": factors,
    "block-placement": placement,
}
