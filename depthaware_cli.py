"""The ``depthaware`` command's front door: ``--help``, ``--version`` and a mistyped command answer
at once, with nothing but the standard library imported; every subcommand goes on to
:func:`depthaware.cli.main`, which imports torch.

It is a module of its own, beside the package, because importing anything inside ``depthaware``
first runs the package's ``__init__`` (torch, timm, and the registration of its ViTs with timm:
the package's import contract), several seconds before a word could be printed.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

__all__ = ["COMMANDS", "main"]

#: each subcommand and its one-line help (:func:`depthaware.cli.build_parser` defines them)
COMMANDS = {
    "reproduce": "run recipes that test the paper's findings, and write the report",
    "measure": "measure a trained model or a folder of checkpoints",
    "bench": "the performance table, side by side with torch and timm",
}
USAGE = "usage: depthaware [-h] [--version] {reproduce,measure,bench} ..."


def _version() -> str:
    try:
        return version("depthaware")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    """``depthaware [--help | --version | COMMAND ...]``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    first = argv[0] if argv else None
    if first in (None, "-h", "--help"):
        lines = [USAGE, "", "Layer-aware training tools: reproduce the paper's findings, measure a "
                 "model, benchmark.", "", "commands:"]  # fmt: skip
        lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
        lines += ["", "options:", "  -h, --help  show this help message and exit",
                  "  --version   show the version and exit", "",
                  "depthaware COMMAND --help shows a command's options."]  # fmt: skip
        print("\n".join(lines), file=sys.stdout if first else sys.stderr)
        return 0 if first else 2
    if first == "--version":
        print(f"depthaware {_version()}")
        return 0
    if first not in COMMANDS:
        known = ", ".join(COMMANDS)
        what = "option" if first.startswith("-") else "command"
        print(f"depthaware: unknown {what} {first!r}; choose from {known} (see depthaware --help)",
              file=sys.stderr)  # fmt: skip
        return 2
    from depthaware.cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
