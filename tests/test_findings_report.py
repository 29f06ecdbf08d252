"""`depthaware reproduce`: the report's structure at a tiny scale, resume, and the data loaders
(CIFAR python-pickle batches and ImageFolder trees written here in the real formats)."""

import json
import pickle

import numpy as np
import pytest
import torch

from depthaware.cli import main
from depthaware.recipes import data, findings, report


def test_tiny_reproduce_writes_report_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert (
        main(
            [
                "reproduce",
                "block-placement",
                "--scale",
                "tiny",
                "--seeds",
                "2",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    rep = json.loads((out / "report.json").read_text())
    (row,) = rep["findings"]
    assert rep["scale"] == "tiny" and rep["seeds"] == 2
    assert {"name", "section", "claim", "paper", "measured", "holds", "elapsed_s"} <= set(row)
    assert row["holds"] in (True, False) and len(row["numbers"]["(1, 1, 1, 4)"]) == 2
    md = (out / "report.md").read_text()
    assert "| block-placement | A.6, Fig. 20 |" in md and "Did not reproduce:" in md

    def boom(*args):
        raise AssertionError("a finished finding was recomputed")

    monkeypatch.setitem(findings.FINDINGS, "block-placement", ("A.6, Fig. 20", boom))
    again = report.reproduce("block-placement", scale="tiny", seeds=2, out=out, progress=False)
    assert again["findings"][0]["measured"] == row["measured"]
    with pytest.raises(AssertionError, match="recomputed"):  # other seeds: a different run
        report.reproduce("block-placement", scale="tiny", seeds=1, out=out, progress=False)


def test_reproduce_rejects_bad_arguments():
    with pytest.raises(ValueError, match="nope"):
        report.reproduce("nope")
    with pytest.raises(ValueError, match="scale"):
        report.reproduce("fcnn-bias", scale="huge")


def _cifar10(root, n=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": list(rng.integers(0, 10, n)),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder


def test_cifar_loader_reads_the_pickle_batches(tmp_path):
    folder = _cifar10(tmp_path)
    x, y, xt, yt = data.cifar(tmp_path)
    assert x.shape == (20, 3, 32, 32) and xt.shape == (4, 3, 32, 32)
    with open(folder / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    # row-major RGB planes: the first image's red plane is the first 1024 bytes
    torch.testing.assert_close(x[4, 0].flatten() * 255, torch.tensor(raw["data"][0, :1024]).float())
    assert y[4].item() == raw["labels"][0] and y.dtype == torch.long
    *_, source = data.load_images(tmp_path)
    assert source.startswith("CIFAR")
    (folder / "test_batch").unlink()
    with pytest.raises(ValueError, match="test_batch"):
        data.cifar(folder)


def test_image_folder_and_errors(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (10, 12), colour).save(tmp_path / split / cls / "a.png")
    x, y, xt, yt, source = data.load_images(tmp_path)
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [0, 1] and source.startswith("ImageFolder")
    assert x[0, 0].mean() == pytest.approx(1.0) and x[1, 2].mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not a directory"):
        data.load_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="train/"):
        data.image_folder(tmp_path / "train")
