"""Figures for deep models: more than ten layers are coloured by depth from a colormap with a
colorbar (no colour repeats), the key never sits over the curves, and the x-axis names the
trajectory's unit."""

import numpy as np
import pytest

import depthaware as da
from depthaware.measure import ConvergenceReport


def report(layers: int, unit: str | None) -> ConvergenceReport:
    steps = np.arange(6)
    d = np.array([[(1 - k / 5) * (1 + 0.1 * l) for k in steps] for l in range(layers)])
    names = [f"Encoder Block {l + 1}" for l in range(layers)]
    return ConvergenceReport(names, list(range(layers)), steps, d, d + 1, np.abs(np.diff(d)),
                             unit=unit)  # fmt: skip


@pytest.mark.parametrize("draw", [da.plots.convergence, da.plots.weight_variation])
def test_many_layers_get_distinct_colours_and_a_colorbar(draw):
    fig = draw(report(24, "step"))
    ax = fig.axes[0]
    colours = {tuple(np.round(line.get_color(), 6)) for line in ax.get_lines()}
    assert len(colours) == 24 and ax.get_legend() is None
    assert len(fig.axes) == 2  # the colorbar's
    labels = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert labels == ["Encoder Block 1", "Encoder Block 24"]
    assert ax.get_xlabel() == "step"


def test_a_few_layers_get_a_legend_beside_the_axes_and_the_unit_on_the_axis():
    fig = da.plots.convergence(report(6, "epoch"))
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert legend is not None and len(legend.get_texts()) == 6
    assert legend.get_bbox_to_anchor().transformed(ax.transAxes.inverted()).x0 >= 1.0
    assert ax.get_xlabel() == "epoch"
    assert da.plots.convergence(report(6, None)).axes[0].get_xlabel() == "step"
