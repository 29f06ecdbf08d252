"""The ``depthaware`` command line.

``depthaware reproduce <finding>|all [--epochs N] [--seeds N] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .recipes import FINDINGS


def _reproduce(args) -> int:
    names = list(FINDINGS) if args.finding == "all" else [args.finding]
    for name in names:
        out = args.out if len(names) == 1 else f"{args.out}/{name}"
        kwargs = {"seeds": args.seeds, "progress": not args.quiet}
        if args.epochs is not None:
            kwargs["epochs"] = args.epochs
        report = FINDINGS[name](out, **kwargs)
        print(report["table"] if "table" in report else json.dumps(_headline(report), indent=2))
        print(f"wrote {out}/report.json")
    return 0


def _headline(report: dict) -> dict:
    """The lines of a report a person reads first."""
    lines = {"finding": report["finding"], "elapsed_s": round(report["elapsed_s"], 1)}
    for model, summary in report.get("models", {}).items():
        lines[model] = {
            "window": summary["window"],
            "mean_rates": {k: round(v, 5) for k, v in summary["mean_rates"].items()},
            "ordered_in_every_seed": summary["ordered_in_every_seed"],
        }
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depthaware", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "reproduce", help="run a recipe that reproduces one of the paper's findings"
    )
    rep.add_argument("finding", choices=[*FINDINGS, "all"])
    rep.add_argument("--epochs", type=int, default=None, help="override the paper's epoch count")
    rep.add_argument("--seeds", type=int, default=1, help="number of seeds (0, 1, ...)")
    rep.add_argument("--out", default="runs/reproduce", help="output directory")
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    rep.set_defaults(func=_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if getattr(args, "seeds", 1) < 1 or (getattr(args, "epochs", None) or 1) < 1:
        print("depthaware: --seeds and --epochs must be at least 1", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
