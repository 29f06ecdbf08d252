"""Section (7) of `depthaware bench`: what a sketched trajectory saves, what it costs, and a
checkpoint folder measured in bounded memory.

* Bytes of 200 snapshots of a ViT-B-sized model (86M parameters in 14 layers: a random walk, no
  training needed), exact against sketched at k = 4096: one exact and one sketched snapshot are
  written for real, the rest is the same size.
* One sketched snapshot against one training step (forward, backward, SGD) of a ResNet-50-sized
  MLP (25.6M parameters, batch 256), both timed in turn.
* Peak RSS of ``depthaware measure checkpoints`` in a fresh process over 10 and over 1000
  checkpoints of a 5M-parameter MLP (10 distinct files, linked under 1000 names: the reading is
  the same, the disk is not 20 GB); and what it adds to the process once the model is built, in
  units of the model's float32 size, exact (the docstring's three checkpoints as read) and
  sketched (the checkpoint being read, with the sketch's working memory).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..layers import layer_groups
from ..measure import Trajectory
from .timing import Row, compared, median_times

__all__ = ["sketch_rows"]

K = 4096


def _linears(width: int, n: int) -> nn.Sequential:
    return nn.Sequential(*(nn.Linear(width, width) for _ in range(n)))


def _snapshot_bytes(model: nn.Module, sketch: int | None) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        with Trajectory(layer_groups(model), tmp, sketch=sketch) as traj:
            traj.snapshot(0)
        disk = sum(p.stat().st_size for p in Path(tmp).glob("step_*.pt"))
    memory = Trajectory(layer_groups(model), sketch=sketch)
    memory.snapshot(0)
    return disk, memory.nbytes()


STREAM = """
import sys, torch
from depthaware.measure import from_checkpoints
from torch import nn

def status(key):  # kB in /proc/self/status
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))

model = nn.Sequential(*(nn.Linear(1000, 1000) for _ in range(5)))
with open("/proc/self/clear_refs", "w") as f:  # the peak (VmHWM) restarts from here
    f.write("5")
base = status("VmRSS:")
sketch = int(sys.argv[2]) if sys.argv[2] != "exact" else None
from_checkpoints(sys.argv[1], model, windows=[(0, 1)], progress=False, sketch=sketch)
print(status("VmHWM:") - base)
"""
MLP_BYTES = 5 * (1000 * 1000 + 1000) * 4


def _stream_rss(n: int, folder: Path, sketch: str = "exact") -> int:
    """The peak RSS (bytes) that measuring ``n`` checkpoint names of 10 distinct files adds to a
    fresh process once its model is built (Linux: the peak is reset through
    ``/proc/self/clear_refs``, so that the imports' own peak does not hide it)."""
    names = folder / f"n{n}"
    names.mkdir(exist_ok=True)
    for step in range(n):
        if not (names / f"step_{step}.pt").exists():
            os.link(folder / f"distinct_{step % 10}.pt", names / f"step_{step}.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", STREAM, str(names), sketch],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return int(out.stdout.split()[-1])


def sketch_rows(dev: torch.device, quick: bool) -> Iterator[Row]:
    torch.manual_seed(0)
    vit = _linears(2477, 14)  # 14 layers of 6.1M: a ViT-B's stem, 12 blocks and head, 86M
    exact_disk, exact_mem = _snapshot_bytes(vit, None)
    sketch_disk, sketch_mem = _snapshot_bytes(vit, K)
    for what, exact, sketched in (
        ("disk", exact_disk, sketch_disk),
        ("memory", exact_mem, sketch_mem),
    ):
        yield Row(f"200 snapshots of an 86M model, exact, {what}", 200 * exact, unit="bytes")
        row = compared(
            f"200 snapshots of an 86M model, sketched k={K}, {what}",
            200 * sketched,
            "exact",
            200 * exact,
            "<= 1/1000",
            1e-3,
        )
        row.unit = "bytes"
        yield row
    del vit
    mlp = _linears(2260, 5).to(dev)  # 25.5M parameters, as a ResNet-50
    opt = torch.optim.SGD(mlp.parameters(), lr=1e-3)
    x = torch.randn(256, 2260, device=dev)
    traj = Trajectory(layer_groups(mlp), sketch=K)
    step = iter(range(10**9))

    def train_step():
        opt.zero_grad()
        mlp(x).square().mean().backward()
        opt.step()

    t = median_times(
        {"train": train_step, "snapshot": lambda: traj.snapshot(next(step))}, 3 if quick else 10
    )
    yield Row("training step, ResNet-50-sized MLP (25.6M, batch 256)", t["train"])
    yield compared(
        f"sketched snapshot (k={K}) of that MLP",
        t["snapshot"],
        "its training step",
        t["train"],
        "<= 1",
        1.0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = _linears(1000, 5)
        for i in range(10):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.01 * torch.randn_like(p))
            torch.save(model.state_dict(), folder / f"distinct_{i}.pt")
        small, large = _stream_rss(10, folder), _stream_rss(100 if quick else 1000, folder)
        sketched = _stream_rss(10, folder, str(K))
    for what, added, limit in (("exact", small, 3.5), (f"sketched k={K}", sketched, 2.0)):
        name = f"measure checkpoints, {what}: peak RSS added, in model sizes (float32)"
        ratio = added / MLP_BYTES
        yield Row(name, ratio, None, None, f"<= {limit}", ratio <= limit, unit="x")
    yield Row("measure checkpoints, 10 x 5M-parameter files: peak RSS added", small, unit="bytes")
    row = compared(
        f"measure checkpoints, {100 if quick else 1000} files: peak RSS added",
        large,
        "10 files",
        small,
        "<= 1.1",
        1.1,
    )
    row.unit = "bytes"
    yield row
