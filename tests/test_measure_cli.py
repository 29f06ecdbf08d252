"""`depthaware measure` end to end as a user runs it, on a CIFAR ResNet, a width-graded ViT and
timm's own ViT (random weights, a few checkpoints of a short run written here), and each common
mistake answered in one line that names the option."""

import json

import pytest
import timm
import torch

from depthaware.cli import main

MODELS = {
    "cifar-resnet18": ("depthaware.models:cifar_resnet18", {"num_classes": 10, "width": 4}),
    "vit_wg_small": ("vit_wg_deeper_wider_small", {"num_classes": 10, "patch_size": 8}),
    "timm-vit-tiny": (
        "vit_tiny_patch16_224",
        {"num_classes": 10, "img_size": 32, "patch_size": 8, "depth": 3},
    ),
}


def _build(spec, kwargs):
    if ":" in spec:
        import depthaware.models as m

        return getattr(m, spec.split(":")[1])(**kwargs)
    return timm.create_model(spec, **kwargs)


def _run_with_checkpoints(folder, spec, kwargs, n=5):
    """A short real run: one SGD step between checkpoints, steps saved inside the files."""
    torch.manual_seed(0)
    model = _build(spec, kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    folder.mkdir()
    for epoch in range(n):
        torch.save({"model": model.state_dict(), "epoch": epoch}, folder / f"ckpt_{epoch}.pt")
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    torch.save((x, y), folder.parent / "sample.pt")
    return model


@pytest.mark.parametrize("name", MODELS)
def test_measure_checkpoints_and_model_end_to_end(name, tmp_path, capsys):
    spec, kwargs = MODELS[name]
    _run_with_checkpoints(tmp_path / "ckpts", spec, kwargs)
    out = tmp_path / "out"
    common = ["--model", spec, "--kwargs", json.dumps(kwargs), "--out", str(out), "--quiet"]
    assert main(["measure", "checkpoints", str(tmp_path / "ckpts"), *common]) == 0
    printed = capsys.readouterr().out
    assert "Spearman(depth, C)" in printed and "wrote" in printed
    rates = json.loads((out / "convergence.json").read_text())
    windows = [b["t2"] for b in rates["bias"]]
    assert windows and 4 not in windows  # the default windows never end at θ* (step 4)
    first = [r[f"C[0,{windows[0]}]"] for r in rates["rows"]]
    assert len({round(c, 6) for c in first}) > 1, "the default window must tell layers apart"
    assert (out / "convergence.png").stat().st_size > 0
    args = [str(tmp_path / "ckpts" / "ckpt_4.pt"), "--data", str(tmp_path / "sample.pt")]
    assert main(["measure", "model", *args, *common, "--key", "model", "--grid", "3",
                 "--iters", "2"]) == 0  # fmt: skip
    rows = json.loads((out / "layers.json").read_text())
    assert [r["layer"] for r in rows] == [r["layer"] for r in rates["rows"]]
    assert all(r["top_eigenvalue"] is not None for r in rows)
    assert (out / "rates.csv").is_file() and (out / "layers.png").stat().st_size > 0


def test_a_layer_that_never_moves_is_reported_not_fatal(tmp_path, capsys):
    spec, kwargs = MODELS["cifar-resnet18"]
    torch.manual_seed(0)
    model = _build(spec, kwargs)
    model.fc.requires_grad_(False)  # fine-tuning: the head is frozen
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    (tmp_path / "c").mkdir()
    for step in range(4):
        torch.save(model.state_dict(), tmp_path / "c" / f"step_{step}.pt")
        opt.zero_grad()
        model(torch.randn(4, 3, 32, 32)).sum().backward()
        opt.step()
    common = ["--model", spec, "--kwargs", json.dumps(kwargs), "--out", str(tmp_path / "o")]
    assert main(["measure", "checkpoints", str(tmp_path / "c"), *common, "--quiet"]) == 0
    assert "never moved (left out): fc" in capsys.readouterr().out
    rows = json.loads((tmp_path / "o" / "rates.json").read_text())
    assert rows[-1]["layer"] == "fc" and rows[-1]["C[0,1]"] is None


@pytest.fixture
def files(tmp_path):
    spec, kwargs = MODELS["cifar-resnet18"]
    _run_with_checkpoints(tmp_path / "ckpts", spec, kwargs, n=3)
    torch.save((torch.randn(4, 3, 32, 32), torch.randn(4)), tmp_path / "regression.pt")
    return tmp_path


MISTAKES = {
    "bad module": (["--model", "no_such_pkg.models:net"], "--model no_such_pkg.models:net:"),
    "bad function": (["--model", "depthaware.models:resnet9000"], "has no 'resnet9000'"),
    "misspelled kwarg": (["--kwargs", '{"num_clases": 10}'], "takes no argument 'num_clases'"),
    "kwargs not an object": (["--kwargs", "[1, 2]"], "--kwargs: '[1, 2]': must be a JSON object"),
    "kwargs not JSON": (["--kwargs", "{num_classes: 10}"], "invalid JSON"),
    "one-number window": (["--windows", "2"], "--windows: '2': each window is T1:T2"),
    "three-number window": (["--windows", "0:1:2"], "--windows: '0:1:2'"),
    "bad sketch size": (["--sketch", "100"], "--sketch: 100: sketch size k must be 4 times"),
    "absolute pattern": (["--pattern", "/tmp/*.pt"], "pattern '/tmp/*.pt' must be relative"),
}  # fmt: skip


@pytest.mark.parametrize("mistake", MISTAKES)
def test_checkpoint_mistakes_are_one_line_naming_the_option(mistake, files, capsys):
    extra, message = MISTAKES[mistake]
    base = {
        "--model": "depthaware.models:cifar_resnet18",
        "--kwargs": '{"num_classes": 10, "width": 4}',
    }
    for k in extra[::2]:
        base.pop(k, None)
    args = [a for kv in base.items() for a in kv] + extra
    assert main(["measure", "checkpoints", str(files / "ckpts"), *args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("depthaware: ") and message in err, err


@pytest.mark.parametrize(
    "target, data, loss, message",
    [
        ("folder", "sample.pt", "ce", "is a directory"),
        ("file", "ckpts/ckpt_0.pt", "ce", "holds a dict (a checkpoint?)"),
        ("file", "sample.pt", "mse", "--loss mse: the targets"),
        ("file", "regression.pt", "ce", "--loss ce: the targets"),
        ("file", "missing.pt", "ce", "--data"),
    ],
)
def test_model_mistakes_are_one_line_naming_the_option(target, data, loss, message, files, capsys):
    weights = files / "ckpts" if target == "folder" else files / "ckpts" / "ckpt_2.pt"
    args = ["--model", "depthaware.models:cifar_resnet18", "--kwargs",
            '{"num_classes": 10, "width": 4}', "--key", "model"]  # fmt: skip
    code = main(["measure", "model", str(weights), "--data", str(files / data), "--loss", loss,
                 *args, "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_an_internal_error_is_not_dressed_as_a_users_mistake(files, monkeypatch):
    from depthaware.measure import checkpoint_folder

    def bug(*args, **kwargs):
        raise ValueError("'cls_token' is not in list")  # an internal bug, not an input error

    monkeypatch.setattr(checkpoint_folder, "from_checkpoints", bug)
    with pytest.raises(ValueError, match="cls_token"):
        main(["measure", "checkpoints", str(files / "ckpts"), "--model",
              "depthaware.models:cifar_resnet18", "--quiet"])  # fmt: skip


def test_measure_checkpoints_sketched_gives_error_columns(files, capsys):
    out = files / "sketched"
    args = ["--model", "depthaware.models:cifar_resnet18", "--kwargs",
            '{"num_classes": 10, "width": 4}', "--out", str(out), "--quiet"]  # fmt: skip
    assert main(["measure", "checkpoints", str(files / "ckpts"), *args, "--sketch", "256"]) == 0
    rows = json.loads((out / "rates.json").read_text())
    big = [r for r in rows if r["±C[0,1]"]]
    assert big and all(r["±C[0,1]"] >= 0 for r in big)
    assert main(["measure", "checkpoints", str(files / "ckpts"), *args, "--sketch", "100"]) == 2
    assert "4 times a power of two" in capsys.readouterr().err


def test_a_windows_lines_name_uncertain_never_moved_and_diverged_layers(capsys):
    """The lines printed under the table, from a window's bias statistics as the report writes
    them to convergence.json: every left-out layer is named, with the reason."""
    from depthaware.cli_measure import print_bias
    from depthaware.measure.bias import bias_stats

    rates = {"a": 0.5, "b": 0.25, "c": float("nan"), "d": float("nan"), "e": 0.1}
    b = bias_stats((0, 4), rates, [0, 1, 2, 3, 4], {"d": 3})
    print_bias(b.to_dict(), ["e"])
    assert capsys.readouterr().out.splitlines() == [
        "C[0,4] within the sketch's error of 0, not a rate: e",
        "C[0,4]: Spearman(depth, C) = -1 (-1: shallower layers faster); pairs obeying Obs. 2.1: "
        "100% of 3; never moved (left out): c; non-finite, diverged (left out): d from step 3",
    ]
