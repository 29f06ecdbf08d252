"""`depthaware measure` on the inputs users really have: diverged runs, wrapper-prefixed keys,
bad --data and --out, and folders too large to hold."""

import json
import math
import os
import weakref

import pytest
import torch
from torch import nn

import depthaware as da
from depthaware import checkpoints, reports
from depthaware.cli import main
from depthaware.measure import checkpoint_folder, model_table

SPEC = [
    "--model",
    "depthaware.models:cifar_resnet18",
    "--kwargs",
    '{"num_classes": 10, "width": 4}',
]


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))


def _save_run(folder, n, wrap=lambda sd: sd, diverge_at=None):
    folder.mkdir()
    net = _net()
    for step in range(n):
        with torch.no_grad():
            net[0].weight.mul_(0.9)
            net[2].weight.add_(0.1)
            if diverge_at is not None and step >= diverge_at:
                net[2].weight.fill_(math.nan)
        torch.save(wrap(net.state_dict()), folder / f"step_{step}.pt")


def test_a_diverged_layer_is_named_non_finite_from_its_step(tmp_path):
    _save_run(tmp_path / "c", 5, diverge_at=2)
    rep = checkpoint_folder.from_checkpoints(
        tmp_path / "c", _net(), windows=[(0, 1)], progress=False
    )
    b = rep.bias(0, 1)
    assert b.diverged == {"2": 2} and b.never_moved == () and b.excluded == ("2",)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "global_step": 1},
        lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
        lambda sd: {f"model._orig_mod.{k}": v for k, v in sd.items()},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
    ],
    ids=["lightning-model.", "compile", "lightning-compiled", "ddp"],
)
def test_a_wrappers_key_prefix_is_stripped(tmp_path, wrap):
    _save_run(tmp_path / "c", 3, wrap)
    state = checkpoints.load_state(tmp_path / "c" / "step_0.pt", _net().state_dict())
    assert set(state) == set(_net().state_dict())


def test_an_unexplained_prefix_is_named(tmp_path):
    _save_run(tmp_path / "c", 2, lambda sd: {f"backbone.{k}x": v for k, v in sd.items()})
    with pytest.raises(ValueError, match="every key in the file starts with 'backbone.'"):
        checkpoints.load_state(tmp_path / "c" / "step_0.pt", _net().state_dict())


def test_a_checkpoint_folder_is_streamed(tmp_path, monkeypatch):
    """At most three checkpoints are alive at any time (theta*, the one being read and the one
    before it, as read: no copies), however many the folder holds; the rates equal the whole
    folder's."""
    _save_run(tmp_path / "c", 12)
    alive, peak = set(), [0]
    read = checkpoints.read_checkpoint

    def counting(path, **kw):
        obj = read(path, **kw)
        tensor = next(iter((obj.get("state_dict") or obj).values()))
        key = id(tensor)
        alive.add(key)
        weakref.finalize(tensor, alive.discard, key)
        peak[0] = max(peak[0], len(alive))
        return obj

    monkeypatch.setattr(checkpoints, "read_checkpoint", counting)
    rep = checkpoint_folder.from_checkpoints(
        tmp_path / "c", _net(), windows=[(0, 3)], progress=False
    )
    assert peak[0] <= 3, f"{peak[0]} checkpoints alive at once"

    def layer0(step):  # the first Linear's weight and bias, one flat vector
        sd = torch.load(tmp_path / "c" / f"step_{step}.pt")
        return torch.cat([sd["0.weight"].reshape(-1), sd["0.bias"]]).double()

    d0, d3 = (torch.linalg.vector_norm(layer0(s) - layer0(11)).item() for s in (0, 3))
    assert rep.rates(0, 3)["0"] == pytest.approx((d0 - d3) / (3 * d0), rel=1e-12)


@pytest.fixture
def run(tmp_path):
    torch.manual_seed(0)
    from depthaware.models import cifar_resnet18

    model = cifar_resnet18(num_classes=10, width=4)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    return tmp_path


def _measure(folder, x, y, loss="ce", extra=()):
    torch.save((x, y), folder / "d.pt")
    return main(["measure", "model", str(folder / "w.pt"), "--data", str(folder / "d.pt"),
                 "--loss", loss, *SPEC, "--grid", "3", "--iters", "1", "--quiet",
                 "--out", str(folder / "o"), *extra])  # fmt: skip


@pytest.mark.parametrize(
    "x, y, loss, message",
    [
        (torch.randn(4, 32, 32, 3), torch.randint(0, 10, (4,)), "ce", "look channels-last"),
        (torch.randn(4, 3, 16), torch.randint(0, 10, (4,)), "ce", "cannot take inputs of shape"),
        (torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (4,)),
         "ce", "they are integers"),
        (torch.full((4, 3, 32, 32), math.nan), torch.randint(0, 10, (4,)), "ce", "are NaN or inf"),
        (torch.randn(4, 3, 32, 32), torch.randn(4, 3), "mse",
         "have shape (4, 3), the outputs (4, 10)"),
        (torch.randn(4, 3, 32, 32), torch.randn(4), "mse", "have shape (4,), the outputs (4, 10)"),
        (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 10]), "ce", "has 10 classes"),
    ],
    ids=["nhwc", "width", "uint8", "nan", "mse-columns", "mse-broadcast", "label-range"],
)  # fmt: skip
def test_bad_data_is_one_line_before_any_work(run, capsys, x, y, loss, message):
    assert _measure(run, x, y, loss) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--" in err and message in err, err
    assert not (run / "o" / "layers.json").exists()


def test_float64_inputs_are_cast_and_measured(run, caplog):
    caplog.set_level("INFO")
    assert _measure(run, torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.arange(4)) == 0
    assert "float64 inputs cast to the model's torch.float32" in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_out_is_refused_before_any_work(run, capsys):
    (run / "ro").mkdir(mode=0o500)
    assert (
        _measure(run, torch.randn(4, 3, 32, 32), torch.arange(4), extra=["--out", str(run / "ro")])
        == 2
    )
    assert "--out" in capsys.readouterr().err


def test_an_out_below_a_file_is_refused_before_any_work(run, capsys, monkeypatch):
    (run / "file").write_text("")
    called = []
    monkeypatch.setattr(model_table, "from_model", lambda *a, **k: called.append(1))
    code = _measure(
        run, torch.randn(4, 3, 32, 32), torch.arange(4), extra=["--out", str(run / "file" / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("depthaware: --out ") and "cannot write there" in err
    assert not called
    assert main(["reproduce", "fcnn-bias", "--scale", "tiny", "--seeds", "1", "--quiet",
                 "--out", str(run / "file" / "r")]) == 2  # fmt: skip
    assert "--out" in capsys.readouterr().err


def test_a_full_disk_at_the_end_is_one_line(run, capsys, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(run / "o" / "layers.csv"))

    monkeypatch.setattr(reports, "write_table", full)
    assert _measure(run, torch.randn(4, 3, 32, 32), torch.arange(4)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "layers.csv" in err


def test_a_grid_of_two_points_is_refused_before_any_work(run, capsys):
    assert _measure(run, torch.randn(4, 3, 32, 32), torch.arange(4), extra=["--grid", "2"]) == 2
    assert "argument --grid: 2: need >= 3 points per axis" in capsys.readouterr().err


def test_the_plan_and_its_estimate_are_printed_before_the_work(run, capsys, monkeypatch):
    real = model_table.from_model

    def measuring(*args, **kwargs):  # the plan must be out before any measurement starts
        print("measuring")
        return real(*args, **kwargs)

    monkeypatch.setattr(model_table, "from_model", measuring)
    assert _measure(run, torch.randn(4, 3, 32, 32), torch.arange(4), extra=["--grid", "5"]) == 0
    out = capsys.readouterr().out
    layers = len(da.layer_groups(da.models.cifar_resnet18(num_classes=10, width=4)))
    expected = f"{model_table.passes(layers, 5, 1):.0f} forward+backward passes"
    assert out.index(f"measure model: {layers} layers x (5x5 landscape points") < out.index(
        "measuring"
    )
    assert expected in out


@pytest.mark.parametrize(
    "extra, settings",
    [
        ([], {"steps": 7, "iters": 20, "tol": 1e-3}),
        (["--thorough"], {"steps": 21, "iters": 100, "tol": 0.0}),
        (["--thorough", "--grid", "9", "--tol", "0.01"], {"steps": 9, "iters": 100, "tol": 0.01}),
    ],
)
def test_defaults_thorough_and_overrides(extra, settings):
    from depthaware.cli import build_parser
    from depthaware.cli_measure import model_settings

    args = build_parser().parse_args(["measure", "model", "w.pt", "--data", "d", *SPEC, *extra])
    assert model_settings(args) == settings


def test_a_head_of_another_width_hints_at_num_classes(run, capsys):
    torch.save((torch.randn(4, 3, 32, 32), torch.arange(4)), run / "d.pt")
    kwargs = '{"num_classes": 7, "width": 4}'  # the weights were trained with 10 classes
    code = main(["measure", "model", str(run / "w.pt"), "--data", str(run / "d.pt"),
                 "--model", "depthaware.models:cifar_resnet18", "--kwargs", kwargs,
                 "--quiet", "--out", str(run / "o")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "a different num_classes?" in err, err


def test_a_missing_data_dir_is_refused_before_the_pool_starts(tmp_path, capsys):
    nowhere, out = str(tmp_path / "nowhere"), str(tmp_path / "r")
    code = main(["reproduce", "cnn-bias", "--scale", "tiny", "--seeds", "1", "--quiet",
                 "--data-dir", nowhere, "--out", out])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--data-dir" in err and "no such folder" in err


def test_one_checkpoint_says_what_the_default_windows_need(tmp_path):
    _save_run(tmp_path / "c", 1)
    with pytest.raises(ValueError, match="need two or more .three for the default windows"):
        checkpoint_folder.from_checkpoints(tmp_path / "c", _net(), progress=False)


def _fcnn_states(n):
    torch.manual_seed(0)
    net = da.models.FCNN(widths=[1, 8, 1])
    for step in range(n):
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(0.9)
        yield step, net.state_dict()


FCNN = ["--model", "depthaware.models:FCNN", "--kwargs", '{"widths": [1, 8, 1]}']


def test_a_hugging_face_trainer_folder_is_measured_with_no_pattern(tmp_path, capsys):
    from safetensors.torch import save_file

    for step, state in _fcnn_states(4):
        folder = tmp_path / "out" / f"checkpoint-{500 * (step + 1)}"
        folder.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": 500 * (step + 1)}))
    out = tmp_path / "m"
    assert main(["measure", "checkpoints", str(tmp_path / "out"), *FCNN, "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    rows = json.loads((out / "rates.json").read_text())
    assert "C[500,1000]" in rows[0], rows[0]


def test_lightning_ckpt_files_are_measured_with_no_pattern(tmp_path):
    (tmp_path / "ckpts").mkdir()
    for step, state in _fcnn_states(4):
        ckpt = {"state_dict": {f"model.{k}": v for k, v in state.items()},
                "epoch": step, "global_step": 10 * step}  # fmt: skip
        torch.save(ckpt, tmp_path / "ckpts" / f"epoch={step}-step={10 * step}.ckpt")
    out = tmp_path / "m"
    assert main(["measure", "checkpoints", str(tmp_path / "ckpts"), *FCNN, "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    rows = json.loads((out / "rates.json").read_text())
    assert "C[0,1]" in rows[0]
