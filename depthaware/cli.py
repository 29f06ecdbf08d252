"""The depthaware command line: reproduce the paper's findings, measure a model, benchmark.

  depthaware reproduce FINDING|all|acting [--scale paper|small|tiny] [--seeds N] [--jobs N]
  depthaware measure checkpoints DIR --model SPEC [--kwargs JSON] [--windows 0:5,0:50]
  depthaware measure model WEIGHTS --model SPEC --data FILE [--loss ce|mse]
  depthaware bench [--quick] [--json FILE]

A model SPEC is a timm model name (the package's width-graded ViTs included) or module:function
(e.g. depthaware.models:cifar_resnet18), built with --kwargs (a JSON object).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time
from pathlib import Path

import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from ._io import write_json, write_text
from .cli_measure import LOSSES, measure, writable
from .errors import FolderLockedError, InputError, Interrupted
from .measure.tables import DEFAULT, HVP_PASSES, POINT_PASSES, THOROUGH, passes

SCALE_NAMES = ("paper", "small", "tiny")


def _reproduce(args) -> int:
    writable(Path(args.out), "--out")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise InputError(f"--data-dir {args.data_dir}: no such folder")
    if args.finding == "acting":
        from .recipes import freezing

        rep = freezing.compare(
            args.out, scale=args.scale, seeds=args.seeds, progress=not args.quiet
        )
        print(rep["table"])
        print(f"wrote {args.out}/table.md and report.json")
        return 0
    from .recipes.paper import markdown, reproduce

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


def _bench(args) -> int:
    import platform

    from . import bench

    start = time.perf_counter()

    started = set()

    def measured(section, row):  # each row as soon as it is measured, under its section's name
        if section not in started:
            started.add(section)
            print(f"{section}:", flush=True)
        print(bench.table([row]).split("\n", 2)[2], flush=True)

    rows = bench.run(quick=args.quick, sections=args.section, measured=measured)
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {bench.device()}"
    )
    header = f"machine: {machine}; {time.perf_counter() - start:.0f} s" + (
        " (--quick)" if args.quick else ""
    )
    print(f"{header}\n")
    print(bench.table(rows))
    if args.json:
        write_json(
            args.json, {"machine": machine, "quick": args.quick, "rows": bench.to_json(rows)}
        )
        print(f"\nwrote {args.json}")
    if args.md:
        write_text(args.md, f"# depthaware bench\n\n{header}\n\n{bench.table(rows)}\n")
        print(f"wrote {args.md}")
    return 0


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, unless it has none (None, False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depthaware",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    from .recipes.paper import FINDINGS

    rep = sub.add_parser(
        "reproduce",
        formatter_class=Help,
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
        help="paper: the paper's schedules; small: a fifth of them; tiny: a smoke test",
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
    mea = sub.add_parser(
        "measure",
        help="measure a trained model or a folder of checkpoints",
        description="Per-layer convergence rates from a folder of checkpoints, or per-layer "
        "sharpness, gradient predictiveness and response frequency of one trained model.",
    )
    kinds = mea.add_subparsers(dest="source", required=True)
    ckpt = kinds.add_parser(
        "checkpoints",
        formatter_class=Help,
        help="Definition 2.1 per layer over windows of a run's checkpoints",
        description="Each file holds a state_dict (or a dict with one under state_dict, model, "
        "model_state_dict, module); its step comes from an epoch/step/global_step entry, a "
        "named field in its name (epoch_12.pt, epoch=3-val.ckpt), or its name's one number "
        "(checkpoint-500/model.safetensors of a Hugging Face Trainer). "
        "The last checkpoint is theta*.",
    )
    ckpt.add_argument("path", help="the folder of checkpoints")
    ckpt.add_argument(
        "--pattern",
        default=None,
        help="file glob inside the folder (default: the first of *.pt, *.pth, *.ckpt, "
        "checkpoint-*/model.safetensors, checkpoint-*/pytorch_model.bin that matches)",
    )
    ckpt.add_argument(
        "--windows",
        default=None,
        help="step windows T1:T2,... (default: the first sixth and the first half of the run)",
    )
    ckpt.add_argument(
        "--sketch",
        type=int,
        default=None,
        metavar="K",
        help="keep layers larger than K as CountSketches of K numbers (4 times a power of two, "
        "e.g. 4096): memory k floats per layer, rates with 95%% error bars",
    )
    model = kinds.add_parser(
        "model",
        formatter_class=Help,
        help="sharpness, predictiveness and response frequency of each layer of one model",
        description="Per layer: the top Hessian eigenvalue (Lanczos steps of Hessian-vector "
        "products), the mean loss rise over a GRID x GRID landscape of two random directions, "
        "gradient predictiveness (Definition 4.1) and response frequency. Cost, for L layers, "
        f"in forward+backward passes of the model on --data: about L x ({POINT_PASSES} GRID^2 "
        f"+ {HVP_PASSES} ITERS) + 4 (14 layers at the defaults: about "
        f"{passes(14, DEFAULT['steps'], DEFAULT['iters']):.0f} passes); the plan and a time "
        "estimate from one timed pass are printed before any work.",
    )
    model.add_argument("path", help="the trained model's weights (a checkpoint file)")
    model.add_argument(
        "--data",
        required=True,
        help="a .pt file holding (inputs, targets); every measurement runs on all of it, so "
        "its size multiplies the cost",
    )
    model.add_argument("--loss", choices=sorted(LOSSES), default="ce", help="the loss")
    model.add_argument(
        "--grid",
        type=int,
        default=None,
        help=f"landscape points per axis (>= 3): GRID^2 forward passes per layer, about "
        f"{POINT_PASSES} of a forward+backward pass each on average (default {DEFAULT['steps']}; "
        f"--thorough {THOROUGH['steps']})",
    )
    model.add_argument(
        "--iters",
        type=int,
        default=None,
        help=f"Lanczos steps for the top eigenvalue, at most: one Hessian-vector product (about "
        f"{HVP_PASSES} of a forward+backward pass) each, per layer (default {DEFAULT['iters']}; "
        f"--thorough {THOROUGH['iters']})",
    )
    model.add_argument(
        "--tol",
        type=float,
        default=None,
        help="stop the Lanczos steps once the eigenvalue changes by less than this, relatively "
        f"(default {DEFAULT['tol']:g}; --thorough {THOROUGH['tol']:g}: all of them)",
    )
    model.add_argument(
        "--thorough",
        action="store_true",
        help="the paper's 21 x 21 landscape and 100 Lanczos steps, about 5 times the default "
        "cost; --grid, --iters and --tol still override it",
    )
    for p in (ckpt, model):
        p.add_argument("--model", required=True, help="timm name or module:function")
        p.add_argument("--kwargs", default="{}", help="JSON object of the model's arguments")
        p.add_argument("--key", default=None, help="state_dict key inside each file, if nested")
        p.add_argument("--out", default="runs/measure", help="output directory")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=measure)
    ben = sub.add_parser(
        "bench",
        formatter_class=Help,
        help="the performance table, side by side with torch and timm",
    )
    ben.add_argument("--quick", action="store_true", help="fewer rounds, an 11x11 landscape")
    ben.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ben.add_argument("--md", default=None, help="also write the table to this Markdown file")
    ben.add_argument(
        "--section",
        action="append",
        default=None,
        choices=[
            "optimizer",
            "overhead",
            "landscape",
            "freezing",
            "memory",
            "distributed",
            "sketch",
            "measure-model",
            "integrations",
        ],
        help="run only these sections (repeatable)",
    )
    ben.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    with logging_redirect_tqdm():  # log lines go above the progress bars, not through them
        return _run(args)


def _run(args) -> int:
    if getattr(args, "seeds", 1) < 1 or getattr(args, "jobs", 1) < 1:
        print("depthaware: --seeds and --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (InputError, FolderLockedError) as err:  # the user's input; anything else is a bug
        print(f"depthaware: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:  # says what was kept
        print(f"depthaware: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # every result is written atomically as it is done
        print("depthaware: interrupted; every file written so far is whole", file=sys.stderr)
        return 130
    except OSError as err:  # late: the output was checked before the work (a full disk, say)
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
            raise
        print(
            f"depthaware: could not write {err.filename or ''}: {err.strerror or err}; every file "
            "written before it is whole, and finished runs stay cached under --out",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
