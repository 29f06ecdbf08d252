"""README.md is the user's door: every python block of it and of the pages under docs/ runs and
gives the values its comments show (``# -> value``), every shown output (the ``pycon`` blocks) is
what the code prints, the measure commands run as written, README stays a door (250 lines at
most), and the findings table is the one the shipped report gives."""

import ast
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
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: (page, index, source) of every python / pycon block of README.md and docs/*.md


def _blocks(kind: str) -> list[tuple[str, int, str]]:
    found = [(page.name, re.findall(rf"```{kind}\n(.*?)```", page.read_text(), flags=re.S))
             for page in PAGES]  # fmt: skip
    return [(name, i, block) for name, blocks in found for i, block in enumerate(blocks)]


PYTHON, PYCON = _blocks("python"), _blocks("pycon")
CHECK = doctest.OutputChecker()


#: a comment that shows a value: ``expression  # [words ->] value`` (``...`` matches anything)
SHOWN = re.compile(r"#(?:[^#]*?)-> (.+)$")


def run_block(source: str, name: str) -> int:
    """Run a python block statement by statement; each top-level expression whose line shows a
    value must give it (its repr, doctest's ELLIPSIS rule). Returns the values checked."""
    lines, namespace, checked = source.splitlines(), {}, 0
    for node in ast.parse(source).body:
        shown = SHOWN.search(lines[node.end_lineno - 1])
        if isinstance(node, ast.Expr) and shown:
            value = eval(compile(ast.Expression(node.value), name, "eval"), namespace)
            want = shown.group(1).strip()
            assert CHECK.check_output(want + "\n", repr(value) + "\n", doctest.ELLIPSIS), (
                f"{name}, line {node.end_lineno}: shows {want}, gives {value!r}"
            )
            checked += 1
        else:
            exec(compile(ast.Module([node], []), name, "exec"), namespace)
    return checked


@pytest.mark.parametrize("page, index, source", PYTHON, ids=[f"{p}-{i}" for p, i, _ in PYTHON])
def test_python_block_runs_shows_what_it_gives_and_runs_again(page, index, source, tmp_path,
                                                             monkeypatch):  # fmt: skip
    """A user runs an example twice in the same folder: each value a comment shows is the one
    the line gives, and the second run must work too."""
    monkeypatch.chdir(tmp_path)
    name = f"{page} python block {index}"
    shown = sum(bool(SHOWN.search(line)) for line in source.splitlines())
    for _ in range(2):
        assert run_block(source, name) == shown, f"{name}: a value shown inside a block"


def test_a_shown_value_that_is_not_given_fails():
    assert run_block("x = 2\nx + 1  # -> 3\n(x, 'a')  # a pair -> (2, ...)", "ok") == 2
    with pytest.raises(AssertionError, match="shows 4, gives 3"):
        run_block("x = 2\nx + 1  # -> 4", "wrong")


@pytest.mark.parametrize("page, index, source", PYCON, ids=[f"{p}-{i}" for p, i, _ in PYCON])
def test_shown_outputs_hold(page, index, source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    test = doctest.DocTestParser().get_doctest(source, {}, f"pycon{index}", page, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_the_measure_commands_run_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (setup,) = [b for p, _, b in PYTHON if p == "README.md" and "ckpts/epoch_" in b]
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


def test_readme_is_a_door_and_every_page_it_links_exists():
    assert len(README.splitlines()) <= 250
    for link in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / link).is_file(), link
    assert {"docs/measure.md", "docs/install.md", "docs/guarantees.md"} <= set(
        re.findall(r"\]\((docs/[^)#]+)", README)
    )
