"""Section (8) of `depthaware bench`: what ``depthaware measure model`` costs, in forward+backward
passes of the measured model on the same batch (32 images of 32 px, 10 classes).

For ``vit_wg_deeper_wider_small`` and timm's ``vit_tiny_patch16_224`` (patch 8), each briefly
trained (30 SGD steps on the batch) so that the landscape has a minimum to read: the default
measurement (:data:`~depthaware.measure.model_table.DEFAULT`) against one pass (target <= 300x),
the previous default beside it (a 9 x 9 landscape and 20 eigenvalue steps, none stopped early),
the estimate printed before the work against the time measured (target: within a factor 2),
and, on the small ViT, the default against ``--thorough`` (the paper's 21 x 21 landscape and
100 steps): the layers' order by top eigenvalue and the largest relative difference of a rise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import timm
import torch
from torch.nn import functional as F

from ..layers import layer_groups
from ..measure.model_table import DEFAULT, THOROUGH, from_model, passes, time_pass
from .timing import Row, compared

__all__ = ["measure_model_rows"]

MODELS: dict[str, dict[str, Any]] = {
    "vit_wg_deeper_wider_small": {"num_classes": 10},
    "vit_tiny_patch16_224": {"img_size": 32, "patch_size": 8, "num_classes": 10},
}
PREVIOUS = {"steps": 9, "iters": 20, "tol": 0.0}


def _trained(name: str, dev: torch.device):
    torch.manual_seed(0)
    model = timm.create_model(name, **MODELS[name]).to(dev)
    x = torch.randn(32, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (32,), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


def _timed(model, x, y, settings) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    rows = from_model(model, F.cross_entropy, (x, y), progress=False, **settings)
    return time.perf_counter() - start, rows


def measure_model_rows(dev: torch.device, quick: bool) -> Iterator[Row]:
    for name in list(MODELS)[: 1 if quick else None]:
        model, x, y = _trained(name, dev)
        time_pass(model, F.cross_entropy, x, y)  # warm-up
        one = min(time_pass(model, F.cross_entropy, x, y) for _ in range(3))
        yield Row(f"{name}: one forward+backward pass (32 images)", one)
        default, rows = _timed(model, x, y, DEFAULT)
        estimate = passes(len(layer_groups(model)), DEFAULT["steps"], DEFAULT["iters"]) * one
        yield compared(f"{name}: measure model, defaults", default, "one pass", one,
                       "<= 300", 300.0)  # fmt: skip
        row = compared(f"{name}: the printed estimate", estimate, "measured", default, "0.5-2", 2.0)
        row.met = 0.5 <= estimate / default <= 2.0  # off by a factor 2 either way misses
        yield row
        if quick:
            continue
        previous, _ = _timed(model, x, y, PREVIOUS)
        yield Row(f"{name}: measure model, previous defaults (9x9, 20 steps)",
                  previous, "one pass", previous / one)  # fmt: skip
        if name == "vit_wg_deeper_wider_small":
            thorough, deep = _timed(model, x, y, THOROUGH)
            yield Row(f"{name}: measure model --thorough", thorough, "one pass",
                      thorough / one)  # fmt: skip
            order = [sorted(r, key=lambda row: row["top_eigenvalue"]) for r in (rows, deep)]
            same = [row["layer"] for row in order[0]] == [row["layer"] for row in order[1]]
            worst = max(
                abs(a["loss_rise"] - b["loss_rise"]) / abs(b["loss_rise"])
                for a, b in zip(rows, deep)
            )
            yield Row(f"{name}: defaults vs --thorough, largest rise difference", worst,
                      "--thorough", None, "<= 0.1", worst <= 0.1, unit="")  # fmt: skip
            yield Row(f"{name}: defaults vs --thorough, same order by top eigenvalue",
                      float(same), "--thorough", None, "1", same, unit="")  # fmt: skip
