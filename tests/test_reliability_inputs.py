"""Input that is wrong in a way a user makes: refused at once, naming the bad thing."""

import os
import pickle

import numpy as np
import pytest
import torch

import depthaware as da
from depthaware.errors import InputError
from depthaware.recipes import data


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(total=-10), "total must be a positive"),
        (dict(total=0), "total must be a positive"),
        (dict(total=10, warmup=20), r"warmup must lie in 0..total \(10\); got 20"),
        (dict(total=10, warmup=-2), "got -2"),
        (dict(total=10.5), "whole number"),
    ],
)
def test_a_cosine_that_would_train_at_lr_0_or_start_part_way_is_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        da.optim.CosineDecay(**kw)


def test_a_valid_cosine_warms_up_then_anneals_to_its_floor():
    c = da.optim.CosineDecay(total=10, warmup=2, floor=0.1)
    assert [c(0), c(1), c(2)] == [0.5, 1.0, 1.0]
    assert c(10) == pytest.approx(0.1) and c(6) == pytest.approx(0.1 + 0.9 * 0.5)


def _cifar(tmp_path, data_fn, labels_fn):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": data_fn(name), "labels": labels_fn(name)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


PIXELS = np.zeros((2, 3072), dtype=np.uint8)


@pytest.mark.parametrize(
    "data_fn, labels_fn, match",
    [
        (
            lambda n: PIXELS,
            lambda n: [1, 2, 3] if n == "data_batch_3" else [1, 2],
            "2 images but 3",
        ),
        (lambda n: PIXELS, lambda n: [1] if n == "test_batch" else [1, 2], "2 images but 1"),
        (
            lambda n: PIXELS.astype(np.float32) / 255,
            lambda n: [1, 2],
            "uint8 in 0..255; .* float32",
        ),
        (lambda n: np.zeros((2, 1024), np.uint8), lambda n: [1, 2], r"\(N, 3072\).*\(2, 1024\)"),
        (lambda n: PIXELS, lambda n: [1.5, 2.0], "non-negative integers"),
    ],
)
def test_a_cifar_batch_that_does_not_fit_is_named(tmp_path, data_fn, labels_fn, match):
    _cifar(tmp_path, data_fn, labels_fn)
    with pytest.raises(InputError, match=r"cifar-10-batches-py/\w+: .*" + match):
        data.cifar(tmp_path)


def _fcnn(widths):
    torch.manual_seed(0)
    return da.models.FCNN(widths)


def test_a_freezeout_state_of_a_model_with_fewer_layers_is_refused_at_load():
    def freezer(widths):
        net = _fcnn(widths)
        opt = torch.optim.SGD(da.optim.depth_param_groups(net, lr=0.1), lr=0.1)
        return net, opt, da.freeze.FreezeOut(opt, net, total_steps=10)

    _, _, small = freezer((1, 8, 1))
    net, opt, big = freezer((1, 8, 8, 1))
    with pytest.raises(ValueError, match="covers 4 param groups, the optimizer has 6"):
        big.load_state_dict(small.state_dict())
    assert big.frozen == {} and all(p.requires_grad for p in net.parameters())
    opt.step()
    big.step()


def test_a_convergence_freezer_reference_from_a_wider_model_is_refused_at_load():
    def freezer(widths):
        net = _fcnn(widths)
        f = da.freeze.ConvergenceFreezer(None, net, check_every=1)
        f.step()  # takes the first reference of the candidate layer
        return f

    narrow, wide = freezer((1, 8, 1)), freezer((1, 32, 1))
    with pytest.raises(ValueError, match=r"\(64 values\) are for layer 'Layer 1', which has 16"):
        narrow.load_state_dict(wide.state_dict())
    deeper = freezer((1, 8, 8, 1))
    with pytest.raises(ValueError, match=r"missing from the state: \['Hidden layer 1'\]"):
        deeper.load_state_dict(narrow.state_dict())
    narrow.step()


# ---------------------------------------------------------------------------------------------
# 1. a data folder never runs code
# ---------------------------------------------------------------------------------------------
class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _write_cifar(folder, extra=None, protocol=2, numpy_core=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [1, 2]}
        raw = pickle.dumps({**batch, **(extra or {})}, protocol=protocol)
        if numpy_core:  # how the real (Python 2) files name numpy's rebuilder
            raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (folder / name).write_bytes(raw)


def test_a_crafted_cifar_batch_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_cifar(tmp_path / "evil" / "cifar-10-batches-py", extra={"x": Evil()})
    with pytest.raises(ValueError, match=r"data_batch_1: refused to load, it asks to call posix"):
        data.load_images(tmp_path / "evil")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("protocol, numpy_core", [(2, True), (2, False), (5, False)])
def test_real_format_cifar_batches_still_load(tmp_path, protocol, numpy_core):
    _write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol, numpy_core=numpy_core)
    x, y, xt, yt = data.cifar(tmp_path)
    assert x.shape == (10, 3, 32, 32) and y.tolist() == [1, 2] * 5


def test_a_cifar_batch_without_labels_is_named(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test"):
        batch = {"data": np.zeros((1, 3072), dtype=np.uint8), "coarse_labels": [0]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=r"cifar-100-python/train: a CIFAR batch without 'labels'"):
        data.cifar(tmp_path)


def test_cifar100_batches_load_with_their_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pixels = {}
    for name, n in (("train", 3), ("test", 2)):
        pixels[name] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        batch = {
            "data": pixels[name],
            "fine_labels": [99 - i for i in range(n)],
            "coarse_labels": [0] * n,
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    x, y, xt, yt = data.cifar(folder)
    assert y.tolist() == [99, 98, 97] and yt.tolist() == [99, 98]
    assert torch.equal(x.reshape(3, -1) * 255, torch.from_numpy(pixels["train"]).float())
    assert torch.equal(xt.reshape(2, -1) * 255, torch.from_numpy(pixels["test"]).float())
