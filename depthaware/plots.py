"""Matplotlib figures in the paper's style.

Functions return a :class:`matplotlib.figure.Figure` (built without pyplot, so no display or
backend is needed); save it with :func:`save`, which writes atomically.

>>> import torch, depthaware as da
>>> net = da.models.FCNN((1, 4, 1))
>>> traj = da.measure.Trajectory(da.layer_groups(net))
>>> for step in range(3):
...     traj.snapshot(step)
...     with torch.no_grad():
...         _ = net.fcs[0].weight.mul_(0.5)
>>> fig = da.plots.convergence(da.measure.convergence(traj))
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._io import atomic_open
from .measure.landscapes import Landscape
from .measure.rates import ConvergenceReport

__all__ = [
    "bars",
    "contour",
    "convergence",
    "functions",
    "grad_magnitude",
    "landscape",
    "layer_table",
    "panels",
    "predictiveness",
    "save",
    "sketch_errors",
    "weight_variation",
]


def panels(rows: int, cols: int, figsize: tuple[float, float]) -> tuple[Figure, Any]:
    """A figure of ``rows`` x ``cols`` axes (constrained layout) for the functions below to draw
    into with ``ax=``; returns ``(figure, axes)`` as ``Figure.subplots`` gives them."""
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(rows, cols)


def _axes(ax: Axes | None, figsize: tuple[float, float] = (4.5, 3.5)) -> tuple[Figure, Axes]:
    """``ax`` and the figure that holds it (the whole figure, for an axes in a subfigure), or
    a new figure's one axes."""
    if ax is not None:
        fig = ax.get_figure(root=True)
        if fig is None:
            raise ValueError("ax belongs to no figure: make it with a Figure's subplots()")
        return fig, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots()


#: above this many layers, curves are coloured by depth from a colormap, with a colorbar
MANY = 10


def _colors(names: Sequence[str]) -> list:
    """Each layer's colour: the default cycle for up to ``MANY`` layers, else a sequential
    colormap by depth (the cycle's ten colours would repeat: Block 1 and Block 11 alike)."""
    if len(names) <= MANY:
        return [None] * len(names)
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(k / (len(names) - 1)) for k in range(len(names))]


def _key(ax: Axes, names: Sequence[str]) -> None:
    """The layers' key, beside the axes (never over the curves): a legend for up to
    ``MANY`` layers, else a colorbar from the first layer to the last."""
    if len(names) <= MANY:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
        return
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(Normalize(0, len(names) - 1), colormaps["viridis"])
    bar = ax.figure.colorbar(mappable, ax=ax, label="depth")
    bar.set_ticks([0, len(names) - 1], labels=[names[0], names[-1]], fontsize="small")


def _unit(report: ConvergenceReport, xlabel: str | None) -> str:
    """The x-axis: ``xlabel``, else the trajectory's unit (epoch or step)."""
    return xlabel or report.unit or "step"


def convergence(
    report: ConvergenceReport,
    ax: Axes | None = None,
    layers: Sequence[str] | None = None,
    xlabel: str | None = None,
) -> Figure:
    """Normalized distance to the convergence point, :math:`d_l(t)/d_l(t_0)` (Figures 1-2);
    for a sketched report, each sketched layer's 95% band around its curve
    (:meth:`~depthaware.measure.ConvergenceReport.normalized_errors`). The x-axis is the
    trajectory's unit unless ``xlabel`` says otherwise; more than ``MANY`` layers are
    coloured by depth, with a colorbar."""
    fig, ax = _axes(ax)
    curves, bands = report.normalized(), report.normalized_errors()
    names = list(layers or report.layers)
    for name, color in zip(names, _colors(names)):
        (line,) = ax.plot(report.steps, curves[name], label=name, color=color)
        if np.nan_to_num(bands[name]).any():
            low, high = curves[name] - bands[name], curves[name] + bands[name]
            ax.fill_between(report.steps, low, high, color=line.get_color(), alpha=0.25, lw=0)
    ax.set(
        xlabel=_unit(report, xlabel),
        ylabel=r"$\|\theta_l^{(t)}-\theta_l^*\| / \|\theta_l^{(t_0)}-\theta_l^*\|$",
    )
    _key(ax, names)
    return fig


def weight_variation(
    report: ConvergenceReport,
    ax: Axes | None = None,
    layers: Sequence[str] | None = None,
    xlabel: str | None = None,
) -> Figure:
    """Normalized weight variation between consecutive snapshots (Appendix A.2, Fig. 11); the
    axis and colours as :func:`convergence`'s."""
    fig, ax = _axes(ax)
    wv = report.weight_variation()
    names = list(layers or report.layers)
    for name, color in zip(names, _colors(names)):
        ax.plot(report.steps[1:], wv[name], label=name, color=color)
    ax.set(
        xlabel=_unit(report, xlabel),
        ylabel=r"$\|\theta^{(t_{k+1})}-\theta^{(t_k)}\| / \|\theta^{(t_k)}\|$",
        yscale="log",
    )
    _key(ax, names)
    return fig


def grad_magnitude(
    history: Mapping[str, Sequence[float]],
    ax: Axes | None = None,
    layers: Sequence[str] | None = None,
    xlabel: str = "epoch",
) -> Figure:
    """Mean absolute gradient per layer over training (Fig. 1, left); colours as
    :func:`convergence`'s."""
    fig, ax = _axes(ax)
    names = list(layers or history)
    for name, color in zip(names, _colors(names)):
        values = history[name]
        ax.plot(range(1, len(values) + 1), values, label=name, color=color)
    ax.set(xlabel=xlabel, ylabel="mean |gradient|", yscale="log")
    _key(ax, names)
    return fig


def landscape(ls: Landscape, log: bool = False) -> Figure:
    """Surface and contour of one layer's landscape side by side (Figures 4-5).

    Non-finite grid points are left blank. ``log`` plots :math:`\\log(L)`.
    """
    import numpy as np

    b1, b2 = np.meshgrid(ls.betas.numpy(), ls.betas.numpy(), indexing="ij")
    z = ls.loss.numpy().copy()
    z[~np.isfinite(z)] = np.nan
    z = np.log(z) if log else z
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax3 = fig.add_subplot(1, 2, 1, projection="3d")
    ax3.plot_surface(b1, b2, z, cmap="viridis", linewidth=0)
    ax3.set(xlabel="β1", ylabel="β2", zlabel="log loss" if log else "loss", title=ls.layer)
    ax = fig.add_subplot(1, 2, 2)
    contour = ax.contour(b1, b2, z, levels=15, cmap="viridis")
    ax.clabel(contour, fontsize="x-small")
    ax.set(xlabel="β1", ylabel="β2", aspect="equal", title=f"{ls.layer} (contour)")
    return fig


def contour(ls: Landscape, ax: Axes | None = None) -> Figure:
    """Contour of one layer's landscape around :math:`\\theta^*` (one panel of Figs. 4-5)."""
    import numpy as np

    fig, ax = _axes(ax, figsize=(3.5, 3.5))
    b1, b2 = np.meshgrid(ls.betas.numpy(), ls.betas.numpy(), indexing="ij")
    z = ls.loss.numpy().copy()
    z[~np.isfinite(z)] = np.nan
    lines = ax.contour(b1, b2, z, levels=12, cmap="viridis")
    ax.clabel(lines, fontsize="xx-small")
    ax.set(xlabel="β1", ylabel="β2", aspect="equal", title=ls.layer)
    return fig


def predictiveness(
    series: Mapping, kind: str, ax: Axes | None = None, layers: Sequence[str] | None = None
) -> Figure:
    """Gradient predictiveness over training (Fig. 3): ``series`` holds ``epoch``, ``lr`` and
    ``layers: {name: {"data": [...], "parameters": [...]}}``; ``kind`` is one of those two. The LR
    decay is marked where the recorded LR drops."""
    fig, ax = _axes(ax)
    for name in layers or list(series["layers"]):
        ax.plot(series["epoch"], series["layers"][name][kind], label=name)
    drops = [e for e, a, b in zip(series["epoch"][1:], series["lr"], series["lr"][1:]) if b < a]
    for e in drops:
        ax.axvline(e, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="epoch", ylabel=f"predictiveness w.r.t. {kind}")
    ax.legend(fontsize="small")
    return fig


def functions(
    x: Sequence[float],
    values: Mapping[str, Sequence[float]],
    ax: Axes | None = None,
    reference: Mapping[str, Sequence[float]] | None = None,
) -> Figure:
    """Functions of one input over a domain (Fig. 6), each with an optional dashed reference."""
    fig, ax = _axes(ax)
    for name, v in values.items():
        (line,) = ax.plot(x, v, label=name)
        if reference and name in reference:
            ax.plot(x, reference[name], linestyle="--", color=line.get_color(), linewidth=1)
    ax.set(xlabel="x")
    ax.legend(fontsize="small")
    return fig


def sketch_errors(counted: Sequence[tuple], ax: Axes | None = None) -> Figure:
    """A sketched rate's relative error against the exact one by the window's length, one mark
    per window and layer of :func:`~depthaware.measure.sketch.window_errors`'s
    ``(layer, t1, t2, error, covered)``: a dot where the 95% band covers the exact rate, a red
    cross where it does not; dashed lines at 1% and 5%."""
    fig, ax = _axes(ax)
    for covered, style in ((True, dict(marker=".", alpha=0.5)), (False, dict(marker="x", c="r"))):
        marks = [(t2 - t1, 100 * err) for _, t1, t2, err, c in counted if c is covered]
        if marks:
            length, percent = zip(*marks, strict=True)
            where = "inside" if covered else "outside"
            ax.scatter(length, percent, s=12, label=f"{len(marks)} {where} their band", **style)
    for level in (1, 5):
        ax.axhline(level, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="window length", ylabel="relative error of C (%)", xscale="log", yscale="log")
    if counted:
        ax.legend(fontsize="small")
    return fig


def bars(
    labels: Sequence[str],
    means: Sequence[float],
    sds: Sequence[float],
    ax: Axes | None = None,
    ylabel: str = "",
) -> Figure:
    """Means with ± one standard deviation, one bar per label."""
    fig, ax = _axes(ax, figsize=(max(4.5, 0.6 * len(labels)), 3.5))
    ax.bar(range(len(labels)), means, yerr=sds, capsize=3)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize="small")
    ax.set(ylabel=ylabel)
    return fig


def layer_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> Figure:
    """One bar chart per numeric column of a per-layer table (``depthaware measure model``)."""
    names = [r["layer"] for r in rows]
    columns = columns or [
        k for k, v in rows[0].items() if isinstance(v, float) and k not in ("layer", "depth")
    ]
    fig = Figure(figsize=(4 * min(3, len(columns)), 3.4 * -(-len(columns) // 3)))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(-(-len(columns) // 3), min(3, len(columns)), squeeze=False).ravel()
    for ax, key in zip(axes, columns):
        ax.bar(range(len(names)), [r[key] for r in rows])
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize="x-small")
        ax.set_title(key, fontsize="small")
    for ax in axes[len(columns) :]:
        ax.set_visible(False)
    return fig


def save(fig: Figure, path: str | os.PathLike, **kwargs: Any) -> None:
    """``fig.savefig`` through a temp file, so a half-written image never appears."""
    fmt = kwargs.pop("format", None) or os.fspath(path).rsplit(".", 1)[-1]
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=fmt, **{"dpi": 120, **kwargs})
