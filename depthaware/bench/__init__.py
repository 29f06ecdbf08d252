"""`depthaware bench`: the performance table, ours side by side with torch and timm, in one run.

Each row: a name, its median seconds, the peer it is compared with, the ratio (ours / peer, or a
share of a training step), the target and whether it is met. The same setups back the
pytest-benchmark suite in ``benchmarks/``. CUDA is used when present (timings synchronize).

Sections: (1) an optimizer step on a resnet50-shaped parameter set, the optimizers timed in turn
round after round, with the bandwidth floor (the bytes a momentum step must move over this
machine's measured in-place update bandwidth) and the time of the extra passes LARS (norms) and
FeedbackSGD (gradient norm, inner product with the previous gradient, copy) make;
(2) the measurements' overhead as a share of training a CIFAR-sized ResNet-18 at batch 128;
(3) landscape grids vs the copy-perturb-forward loop; (4) an epoch with the shallowest half
frozen; (5) the memory of a Trajectory snapshot; (6) SGD and LARS steps under FSDP2
(``fully_shard``) on 2 ranks, and the one collective LARS adds; (7) sketched trajectories:
bytes against exact, a snapshot against a training step, a checkpoint folder's peak memory;
(8) ``measure model`` in forward+backward passes of the measured ViT, its estimate and its
agreement with ``--thorough``; (9) the Lightning callbacks inside ``Trainer.fit``; (10) the
command's ``--help`` and ``--version`` in a fresh process.
"""

from __future__ import annotations

from dataclasses import asdict

from .cli import cli_rows
from .distributed import distributed_rows
from .integrations import integration_rows
from .measure_model import measure_model_rows
from .measurements import freezing_rows, landscape_rows, memory_rows, overhead_rows
from .optimizers import OPTIMIZERS, optimizer_rows, resnet50_with_grads
from .sketches import sketch_rows
from .timing import Row, device, median_time, median_times

__all__ = [
    "OPTIMIZERS",
    "SECTIONS",
    "Row",
    "device",
    "median_time",
    "median_times",
    "resnet50_with_grads",
    "run",
    "table",
    "to_json",
]


SECTIONS = {
    "optimizer": optimizer_rows,
    "overhead": overhead_rows,
    "landscape": landscape_rows,
    "freezing": freezing_rows,
    "memory": memory_rows,
    "distributed": distributed_rows,
    "sketch": sketch_rows,
    "measure-model": measure_model_rows,
    "integrations": integration_rows,
    "cli": cli_rows,
}


def run(quick: bool = False, sections=None, measured=None) -> list[Row]:
    """Measure every section (or ``sections``) and return the rows; ``measured(section, row)``
    is called as each row is measured (the command line prints it then: a section such as
    ``measure-model`` runs for minutes, and its first rows come long before its last)."""
    dev = device()
    rows = []
    for name in sections or SECTIONS:
        for row in SECTIONS[name](dev, quick):  # each section is a generator of its rows
            rows.append(row)
            if measured is not None:
                measured(name, row)
    return rows


def table(rows: list[Row]) -> str:
    """Markdown table; byte rows in MB, time rows in ms."""
    lines = [
        "| measurement | median | compared with | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        value = {
            "bytes": f"{r.value / 1e6:.1f} MB",
            "s": f"{1e3 * r.value:.2f} ms",
        }.get(r.unit, f"{r.value:g} {r.unit}")
        ratio = "" if r.ratio is None else f"{r.ratio:.3g}"
        met = {True: "yes", False: "**missed**", None: ""}[r.met]
        lines.append(
            f"| {r.name} | {value} | {r.peer or ''} | {ratio} | {r.target or ''} | {met} |"
        )
    return "\n".join(lines)


def to_json(rows: list[Row]) -> list[dict]:
    """The rows as JSON-ready dicts."""
    return [asdict(r) for r in rows]
