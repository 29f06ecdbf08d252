"""The ``depthaware`` command line.

``depthaware reproduce <finding>|all [--scale small|paper] [--seeds N] [--data-dir D] [--out D]``
``depthaware measure checkpoints DIR --model SPEC [--windows 0:5,0:50] [--out DIR]``
``depthaware measure model WEIGHTS --model SPEC --data FILE [--loss ce|mse] [--out DIR]``
``depthaware bench [--quick] [--json FILE]``

A model ``SPEC`` is a timm model name (the package's width-graded ViTs included) or
``module:function`` (e.g. ``depthaware.models:cifar_resnet18``), built with ``--kwargs`` (JSON).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

from ._io import write_json

SCALE_NAMES = ("paper", "small", "tiny")


def _reproduce(args) -> int:
    if args.finding == "acting":
        from .recipes import freezing

        rep = freezing.reproduce(
            args.out, scale=args.scale, seeds=args.seeds, progress=not args.quiet
        )
        print(rep["table"])
        print(f"wrote {args.out}/table.md and report.json")
        return 0
    from .recipes.report import markdown, reproduce

    report = reproduce(
        args.finding,
        scale=args.scale,
        seeds=args.seeds,
        data_dir=args.data_dir,
        out=args.out,
        jobs=args.jobs,
        progress=not args.quiet,
    )
    print(markdown(report))
    print(f"wrote {args.out}/report.md and report.json")
    return 0


def build_model(spec: str, kwargs: dict):
    """A model from a timm name or a ``module:function`` path."""
    if ":" in spec:
        module, _, name = spec.partition(":")
        return getattr(importlib.import_module(module), name)(**kwargs)
    import timm

    if not timm.is_model(spec):
        raise ValueError(f"unknown model {spec!r}: not a timm model name nor module:function")
    return timm.create_model(spec, pretrained=False, **kwargs)


def _windows(text: str | None):
    if not text:
        return None
    try:
        return [tuple(int(v) for v in w.split(":")) for w in text.split(",")]
    except ValueError:
        raise ValueError(f"--windows must look like 0:5,0:50; got {text!r}") from None


def _measure(args) -> int:
    from . import plots
    from .measure import report

    model = build_model(args.model, json.loads(args.kwargs))
    out = Path(args.out)
    if args.source == "checkpoints":
        rep = report.from_checkpoints(
            args.path,
            model,
            pattern=args.pattern,
            key=args.key,
            windows=_windows(args.windows),
            progress=not args.quiet,
        )
        rows = rep.table()
        write_json(out / "report.json", rep.to_dict())
        plots.save(plots.convergence(rep), out / "convergence.png")
        plots.save(plots.weight_variation(rep), out / "weight_variation.png")
    else:
        reference = model.state_dict()
        model.load_state_dict(report.load_state(args.path, reference, args.key))
        inputs, targets = torch.load(args.data, map_location="cpu", weights_only=True)
        loss = {"ce": torch.nn.functional.cross_entropy, "mse": torch.nn.functional.mse_loss}
        rows = report.from_model(model, loss[args.loss], (inputs, targets), progress=not args.quiet)
    for path in report.write_table(rows, out):
        print(f"wrote {path}")
    return 0


def _bench(args) -> int:
    import platform

    from . import bench

    start = time.perf_counter()
    rows = bench.run(quick=args.quick, sections=args.section)
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {bench.device()}"
    )
    print(f"machine: {machine}; {time.perf_counter() - start:.0f} s\n")
    print(bench.table(rows))
    if args.json:
        write_json(
            args.json, {"machine": machine, "quick": args.quick, "rows": bench.to_json(rows)}
        )
        print(f"\nwrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depthaware", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    from .recipes.report import FINDINGS

    rep = sub.add_parser(
        "reproduce",
        help="run recipes that test the paper's findings, and write the report",
        description="Findings: "
        + "; ".join(f"{n} ({f.section}): {f.title}" for n, f in FINDINGS.items())
        + ". 'all' runs them all; 'acting' compares the tools that act on the bias (freezing, "
        "per-layer LRs, LARS, feedback) on three model/data pairs (not a claim of the paper).",
    )
    rep.add_argument("finding", choices=[*FINDINGS, "all", "acting"])
    rep.add_argument(
        "--scale",
        choices=SCALE_NAMES,
        default="small",
        help="paper: the paper's schedules; small: a third of them; tiny: a smoke test",
    )
    rep.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    rep.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="runs in parallel (processes)"
    )
    rep.add_argument(
        "--data-dir",
        default=None,
        help="CIFAR batches or an ImageFolder tree (default: scikit-learn digits)",
    )
    rep.add_argument("--out", default="runs/findings", help="output directory")
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    rep.set_defaults(func=_reproduce)
    mea = sub.add_parser("measure", help="measure a trained model or a folder of checkpoints")
    mea.add_argument("source", choices=["checkpoints", "model"])
    mea.add_argument("path", help="checkpoint folder, or the trained model's weights file")
    mea.add_argument("--model", required=True, help="timm name or module:function")
    mea.add_argument("--kwargs", default="{}", help="JSON keyword arguments for the model")
    mea.add_argument("--key", default=None, help="state_dict key inside each file, if nested")
    mea.add_argument("--pattern", default="*.pt", help="checkpoint file glob")
    mea.add_argument("--windows", default=None, help="step windows, e.g. 0:5,0:50")
    mea.add_argument("--data", help="model: a .pt file holding (inputs, targets)")
    mea.add_argument("--loss", choices=["ce", "mse"], default="ce")
    mea.add_argument("--out", default="runs/measure", help="output directory")
    mea.add_argument("--quiet", action="store_true", help="no progress bars")
    mea.set_defaults(func=_measure)
    ben = sub.add_parser("bench", help="the performance table, side by side with torch and timm")
    ben.add_argument("--quick", action="store_true", help="fewer rounds, an 11x11 landscape")
    ben.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ben.add_argument(
        "--section",
        action="append",
        default=None,
        choices=["optimizer", "overhead", "landscape", "freezing", "memory"],
        help="run only these sections (repeatable)",
    )
    ben.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "source", None) == "model" and not args.data:
        parser.error("measure model needs --data FILE")
    if getattr(args, "seeds", 1) < 1:
        print("depthaware: --seeds must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except ValueError as err:
        print(f"depthaware: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
