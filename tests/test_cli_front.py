"""The command's front door answers ``--help``, ``--version`` and a mistyped command at once,
importing nothing heavy, and its commands are the full parser's."""

import subprocess
import sys

import pytest

import depthaware_cli
from depthaware.cli import build_parser
from depthaware.version import __version__


def test_the_front_door_lists_the_full_parsers_commands():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(depthaware_cli.COMMANDS) == list(sub.choices)
    for name, text in depthaware_cli.COMMANDS.items():
        assert sub._choices_actions[list(sub.choices).index(name)].help == text


@pytest.mark.parametrize(
    "argv, code, out, err",
    [
        (["--help"], 0, "commands:", ""),
        (["--version"], 0, f"depthaware {__version__}", ""),
        (["--bogus"], 2, "", "unknown option '--bogus'"),
        (["reproduse"], 2, "", "unknown command 'reproduse'; choose from reproduce"),
        ([], 2, "", "usage: depthaware"),
    ],
)
def test_help_version_and_mistakes_answer_in_the_front_door(capsys, argv, code, out, err):
    assert depthaware_cli.main(argv) == code
    got = capsys.readouterr()
    assert out in got.out and err in got.err


def test_a_command_goes_on_to_the_full_parser(capsys):
    assert depthaware_cli.main(["measure", "--bogus"]) == 2
    assert "depthaware: " in capsys.readouterr().err


@pytest.mark.processes
def test_the_front_door_imports_neither_torch_nor_depthaware():
    code = (
        "import sys, depthaware_cli; depthaware_cli.main(['--help']); "
        "assert not {'torch', 'depthaware'} & set(sys.modules), sorted(sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
