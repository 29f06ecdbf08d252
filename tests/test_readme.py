"""README.md is the user's door: every python block runs, every shown output (the ``pycon``
blocks) is what the code prints, the measure commands run as written, and the findings table is
the one the shipped report gives."""

import doctest
import json
import re
import shlex
from pathlib import Path

import pytest

from depthaware.cli import main
from depthaware.recipes.paper import overview

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON = re.findall(r"```python\n(.*?)```", README, flags=re.S)
PYCON = re.findall(r"```pycon\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_block_runs_and_runs_again(index, tmp_path, monkeypatch):
    """A user runs an example twice in the same folder: the second run must work too."""
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        exec(compile(PYTHON[index], f"README.md python block {index}", "exec"), {})


@pytest.mark.parametrize("index", range(len(PYCON)))
def test_shown_outputs_hold(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    test = doctest.DocTestParser().get_doctest(PYCON[index], {}, f"pycon{index}", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_the_measure_commands_run_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (setup,) = [b for b in PYTHON if "ckpts/epoch_" in b]
    exec(compile(setup, "README.md measure setup", "exec"), {})
    (commands,) = [b for b in re.findall(r"```bash\n(.*?)```", README, flags=re.S)
                   if "depthaware measure" in b]  # fmt: skip
    for line in commands.replace("\\\n", " ").splitlines():
        assert main(shlex.split(line)[1:]) == 0, line
    out = capsys.readouterr().out
    assert "Spearman(depth, C)" in out and "top_eigenvalue" in out
    assert (tmp_path / "runs/measured/rates.csv").is_file()
    assert (tmp_path / "runs/measured/layers.csv").is_file()


def test_the_findings_table_is_the_shipped_reports():
    report = json.loads((ROOT / "docs" / "findings.json").read_text())
    assert overview(report) in README
