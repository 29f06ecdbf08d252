"""`depthaware measure` with the models and data users bring: outputs that are tuples, dicts or
a Hugging Face ``ModelOutput`` measured through their logits; a model depthaware does not know
measured with ``--groups``; and every mistake (arguments of the wrong type, a function that
returns no module, a model with nothing to train, 0-dim, sparse or complex data, a grid too
large to allocate) answered in one line before any work; a console that cannot print a
character does not fail the command."""

import io
import re
import sys

import pytest
import torch
from torch import nn

from depthaware.cli import main


class Plain(nn.Module):
    """No layer_map(), not a Sequential: depthaware does not know its layers."""

    def __init__(self, out="tensor", width=8):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(4, int(width)), nn.Linear(int(width), 3), out

    def forward(self, x):
        y = self.b(torch.tanh(self.a(x)))
        if self.out == "tuple":
            return y, x.sum()
        if self.out == "dict":
            return {"logits": y, "hidden": x}
        if self.out == "model_output":
            from transformers.modeling_outputs import SequenceClassifierOutput

            return SequenceClassifierOutput(logits=y)
        return y


def plain(out="tensor", width=8):
    torch.manual_seed(0)
    return Plain(out, width)


def frozen():
    model = plain()
    model.requires_grad_(False)
    return model


def not_a_module():
    return {"a": 1}


GROUPS = '{"θ-early": ["a"], "late": ["b"]}'


@pytest.fixture
def files(tmp_path):
    torch.save(plain().state_dict(), tmp_path / "w.pt")
    torch.save((torch.randn(8, 4), torch.randint(0, 3, (8,))), tmp_path / "d.pt")
    return tmp_path


def measure_model(files, *extra, data="d.pt", model=f"{__name__}:plain"):
    return main(["measure", "model", str(files / "w.pt"), "--data", str(files / data),
                 "--model", model, "--out", str(files / "out"), "--quiet", "--grid", "3",
                 "--iters", "2", "--groups", GROUPS, *extra])  # fmt: skip


@pytest.mark.parametrize("out", ["tuple", "dict", "model_output"])
def test_a_model_returning_a_tuple_a_dict_or_a_model_output_is_measured_on_its_logits(files, out):
    if out == "model_output":
        pytest.importorskip("transformers")
    assert measure_model(files, "--kwargs", f'{{"out": "{out}"}}') == 0
    assert (files / "out" / "layers.csv").read_text(encoding="utf-8").count("\n") == 3


def test_a_model_depthaware_does_not_know_names_groups_and_is_measured_with_them(files, capsys):
    args = ["measure", "model", str(files / "w.pt"), "--data", str(files / "d.pt"),
            "--model", f"{__name__}:plain", "--out", str(files / "out")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "don't know the layers of Plain" in err
    assert "pass --groups" in err and "groups=" not in err
    assert measure_model(files) == 0


@pytest.mark.parametrize(
    "extra, model, message",
    [
        (["--kwargs", '{"width": "eight"}'], "plain", "building the model failed .ValueError"),
        ([], "not_a_module", "returned a dict, not a torch.nn.Module"),
        ([], "frozen", "has no trainable parameters"),
    ],
)
def test_a_model_that_cannot_be_built_is_one_line(files, capsys, extra, model, message):
    assert measure_model(files, *extra, model=f"{__name__}:{model}") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("depthaware: --model")
    assert re.search(message, err), err


@pytest.mark.parametrize(
    "data, message",
    [
        ((torch.tensor(1.0), torch.tensor(0)), "the inputs are one number .0-dim."),
        ((torch.eye(8, 4).to_sparse(), torch.zeros(8, dtype=torch.long)), "sparse tensor"),
        ((torch.randn(8, 4, dtype=torch.complex64), torch.zeros(8, dtype=torch.long)),
         "they are complex"),
    ],
)  # fmt: skip
def test_data_the_model_cannot_take_is_one_line(files, capsys, data, message):
    torch.save(data, files / "bad.pt")
    assert measure_model(files, data="bad.pt") == 2
    ours = [line for line in capsys.readouterr().err.splitlines() if "depthaware:" in line]
    assert len(ours) == 1 and re.search(message, ours[0]) and "integers" not in ours[0]


def test_a_grid_too_large_to_allocate_is_refused_by_argparse(files, capsys):
    assert measure_model(files, "--grid", "100000") == 2
    err = capsys.readouterr().err
    assert "100000: need <= 101" in err and "minutes" not in capsys.readouterr().out


def test_an_ascii_console_prints_what_it_cannot_encode_escaped(files, monkeypatch):
    for step in range(3):
        torch.save({"model": plain(width=8).state_dict(), "epoch": step}, files / f"e_{step}.pt")
    raw = io.BytesIO()
    console = io.TextIOWrapper(raw, encoding="ascii")  # PYTHONIOENCODING=ascii, cp1252, ...
    monkeypatch.setattr(sys, "stdout", console)
    code = main(["measure", "checkpoints", str(files), "--pattern", "e_*.pt", "--model",
                 f"{__name__}:plain", "--groups", GROUPS, "--out", str(files / "c"),
                 "--windows", "0:1", "--quiet"])  # fmt: skip
    console.flush()
    assert code == 0
    assert "\\u03b8-early" in raw.getvalue().decode("ascii")


def regression():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


@pytest.mark.parametrize(
    "model, targets, message",
    [
        ("regression", torch.randn(8, 1), "gives 1 output per sample: a cross-entropy over one"),
        ("plain", torch.randn(8, 3), "floats that are not class probabilities"),
    ],
)
def test_the_default_cross_entropy_on_a_regression_is_refused_not_a_table_of_zeros(
    files, capsys, model, targets, message
):
    torch.save(globals()[model]().state_dict(), files / "r.pt")
    torch.save((torch.randn(8, 4), targets), files / "r_data.pt")
    code = main(["measure", "model", str(files / "r.pt"), "--data", str(files / "r_data.pt"),
                 "--model", f"{__name__}:{model}", "--groups", GROUPS if model == "plain" else
                 '{"in": ["0"], "out": ["2"]}', "--out", str(files / "o"), "--quiet"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--loss ce" in err and message in err
