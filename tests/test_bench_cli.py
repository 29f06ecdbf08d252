"""`depthaware bench`: the JSON rows a script can check (memory section: no timing involved)."""

import json

from depthaware import bench
from depthaware.cli import main


def test_bench_memory_section_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--section", "memory", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    rows = {r["name"]: r for r in doc["rows"]}
    assert set(doc) == {"machine", "quick", "rows"}
    assert {"name", "value", "unit", "peer", "ratio", "target", "met"} <= set(doc["rows"][0])
    fp32 = rows["trajectory per snapshot, memory torch.float32"]["value"]
    bf16 = rows["trajectory per snapshot, memory torch.bfloat16"]["value"]
    assert bf16 == fp32 / 2 and fp32 > 4 * 10e6  # ResNet-18: 11M float32 parameters
    assert rows["trajectory per snapshot, disk"]["unit"] == "bytes"
    assert "| trajectory per snapshot, disk |" in capsys.readouterr().out


def test_table_marks_missed_targets():
    rows = [bench.Row("a", 0.002, "b", 2.0, "<= 1.5", False), bench.Row("c", 0.001)]
    text = bench.table(rows)
    assert "| a | 2.00 ms | b | 2 | <= 1.5 | **missed** |" in text
    assert text.splitlines()[-1] == "| c | 1.00 ms |  |  |  |  |"


def test_median_times_interleaves_the_functions_and_takes_each_ones_median():
    clock, calls = [0.0], []

    def advancing(name, costs):
        def fn():
            calls.append(name)
            clock[0] += costs.pop(0)

        return fn

    a = advancing("a", [9.0, 1.0, 100.0, 1.0])  # warm-up, then an outlier round
    b = advancing("b", [9.0, 3.0, 3.0, 2.0])
    times = bench.median_times({"a": a, "b": b}, rounds=3, clock=lambda: clock[0])
    assert times == {"a": 1.0, "b": 3.0}
    assert calls == ["a", "b"] * 4


def test_bench_prints_each_row_as_it_is_measured(monkeypatch, capsys):
    seen = []  # what had been printed when the section went on to its next row

    def section(dev, quick):
        yield bench.Row("first row", 1.0)
        seen.append(capsys.readouterr().out)
        yield bench.Row("second row", 2.0)

    monkeypatch.setitem(bench.SECTIONS, "memory", section)
    assert main(["bench", "--section", "memory"]) == 0
    assert seen == ["memory:\n| first row | 1000.00 ms |  |  |  |  |\n"]
    out = capsys.readouterr().out
    assert out.startswith("| second row | 2000.00 ms |")  # under the same heading, once
    assert "memory:" not in out.split("\n\n")[0] and "| first row |" in out  # and the table
