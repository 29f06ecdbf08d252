"""The depthaware command line: reproduce the paper's findings, measure a model, benchmark.

  depthaware reproduce FINDING|all|acting [--scale paper|small|tiny] [--seeds N] [--jobs N]
                       [--tasks TASK ...]  (acting only)
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
from .cli_inputs import writable
from .cli_measure import add_measure_parser
from .errors import FolderLockedError, InputError, Interrupted
from .version import __version__

SCALE_NAMES = ("paper", "small", "tiny")


def _reproduce(args) -> int:
    writable(Path(args.out), "--out")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise InputError(f"--data-dir {args.data_dir}: no such folder")
    if args.tasks is not None and args.finding != "acting":
        raise InputError(f"--tasks is for 'reproduce acting'; {args.finding} has no tasks")
    if args.finding == "acting":
        from .recipes import acting

        rep = acting.compare(args.out, scale=args.scale, seeds=args.seeds, tasks=args.tasks,
                             jobs=args.jobs, progress=not args.quiet)  # fmt: skip
        print(rep["markdown"])
        print(f"wrote {args.out}/report.md and report.json")
        return 0
    from .recipes.paper import markdown, reproduce

    report = reproduce(
        args.finding,
        scale=args.scale,
        seeds=3 if args.seeds is None else args.seeds,
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


class Parser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line, as every other input error of the command
    line: ``depthaware: <what is wrong> (see <command> --help)``, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"depthaware: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="depthaware",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"depthaware {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from .recipes.acting_tasks import TASKS as ACTING_TASKS
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
    rep.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="number of seeds (0, 1, ...); default 3 for the findings, each task's own for acting",
    )
    rep.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="runs in parallel (processes)"
    )
    rep.add_argument(
        "--data-dir",
        default=None,
        help="CIFAR batches or an ImageFolder tree (default: scikit-learn digits)",
    )
    rep.add_argument(
        "--tasks",
        nargs="+",
        choices=ACTING_TASKS,
        default=None,
        help="acting only: the tasks to compare (default all)",
    )
    rep.add_argument("--out", default="runs/findings", help="output directory")
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    rep.set_defaults(func=_reproduce)
    add_measure_parser(sub, Help)
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
            "cli",
        ],
        help="run only these sections (repeatable)",
    )
    ben.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # an ASCII or cp1252 console prints θ as \u03b8,
        if hasattr(stream, "reconfigure"):  # rather than fail after every run was computed
            stream.reconfigure(errors="backslashreplace")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a wrong option (2), already printed
        return done.code if isinstance(done.code, int) else 2
    with logging_redirect_tqdm():  # log lines go above the progress bars, not through them
        return _run(args)


def _run(args) -> int:
    seeds = getattr(args, "seeds", None)  # None: each recipe's own count
    if (seeds is not None and seeds < 1) or getattr(args, "jobs", 1) < 1:
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
