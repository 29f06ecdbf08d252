"""`depthaware reproduce`: the report's structure at a tiny scale, resume, and the data loaders
(CIFAR python-pickle batches and ImageFolder trees written here in the real formats)."""

import json
import pickle

import numpy as np
import pytest
import torch

from depthaware.cli import main
from depthaware.recipes import data, findings, paper, runs

SEED = {"holds": True, "does not hold": False, "not tested": None}


def test_tiny_reproduce_writes_report_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = ["reproduce", "block-placement", "--scale", "tiny", "--out", str(out), "--quiet"]
    assert main([*args, "--seeds", "2", "--jobs", "1"]) == 0
    rep = json.loads((out / "report.json").read_text())
    (finding,) = rep["findings"]
    assert rep["scale"] == "tiny" and rep["seeds"] == 2
    keys = [v["claim"]["key"] for v in finding["verdicts"]]
    assert keys == ["a6-mse", "a6-slowest"] and finding["figures"] == ["figures/fig20.png"]
    for v in finding["verdicts"]:  # the overall outcome is the seeds' by the stated rule
        assert len(v["per_seed"]) == 2
        assert v["outcome"] == findings.outcome([SEED[o] for o in v["per_seed"]])
        assert v["claim"]["quote"] and v["claim"]["rule"]
    assert len(finding["verdicts"][0]["numbers"]["mse"]["(1, 1, 1, 4)"]) == 2
    md = (out / "report.md").read_text()
    assert "| block-placement (A.6, Fig. 20) | a6-mse |" in md and "Scale tiny:" in md
    assert (out / "figures" / "fig20.png").read_bytes()[:4] == b"\x89PNG"

    def boom(*args):
        raise AssertionError("a finished run was recomputed")

    monkeypatch.setattr(runs, "_run", boom)
    assert rep["runs"] == {"total": 8, "computed": 8}  # 4 block placements, 2 seeds
    again = paper.reproduce("block-placement", scale="tiny", seeds=2, out=out, progress=False)
    assert again["findings"][0]["verdicts"] == finding["verdicts"]  # judged again, same runs
    assert again["runs"] == {"total": 8, "computed": 0}
    assert "0 of 8 runs were computed in this invocation" in (out / "report.md").read_text()
    fewer = paper.reproduce("block-placement", scale="tiny", seeds=1, out=out, progress=False)
    assert fewer["runs"] == {"total": 4, "computed": 0}  # seed 0's runs, all reused
    with pytest.raises(AssertionError, match="recomputed"):  # a seed never run: a new run
        paper.reproduce("block-placement", scale="tiny", seeds=3, out=out, progress=False)


def test_runs_are_shared_between_findings_and_merge_their_extras():
    from depthaware.recipes.sine_findings import resfcnn, sine_spec

    base = resfcnn(findings.SCALES["tiny"])
    specs = [sine_spec(base, 0, "spectrum"), sine_spec(base, 0, "predictiveness")]
    assert specs[0].key == specs[1].key  # one run; the extras differ
    plans = [paper.FINDINGS[n].plan(findings.SCALES["tiny"], 1) for n in paper.FINDINGS]
    keys = [s.key for plan in plans for s in plan]
    assert len(set(keys)) < len(keys)  # the default residual run serves several findings


def test_reproduce_rejects_bad_arguments():
    with pytest.raises(ValueError, match="nope"):
        paper.reproduce("nope")
    with pytest.raises(ValueError, match="scale"):
        paper.reproduce("fcnn-bias", scale="huge")
    with pytest.raises(ValueError, match="jobs"):
        paper.reproduce("fcnn-bias", jobs=0)


def test_cnn_finding_runs_on_cifar_batches(tmp_path):
    _cifar10(tmp_path / "data")
    rep = paper.reproduce(
        "cnn-bias", scale="tiny", seeds=1, data_dir=tmp_path / "data", out=tmp_path / "out",
        jobs=1, progress=False,
    )  # fmt: skip
    resnet, vgg, sketched = rep["findings"][0]["verdicts"]
    for v in (resnet, vgg):  # random images: any outcome, but the seed's, with its numbers
        assert v["outcome"] == findings.outcome([SEED[o] for o in v["per_seed"]])
        assert "Spearman(depth, C[0,1])" in v["measured"]
    # 3 epochs at the tiny scale: no two snapshots 10 epochs apart to judge the sketch on
    assert sketched["outcome"] == "not tested" and "10 epochs apart" in sketched["note"]
    assert sketched["numbers"]["calibration"][0]["windows"] == 0
    every = sketched["numbers"]["every_epoch"][0]
    assert every["windows"] + every["small_windows"] > 0
    runs_done = sorted(p.name for p in (tmp_path / "out" / "runs").iterdir())
    assert len(runs_done) == 2


def test_an_image_run_names_an_unknown_extra_before_it_trains(monkeypatch):
    from depthaware.recipes import images

    monkeypatch.setattr(images, "load_images", None)  # reading the data would fail: not reached
    named = r"unknown extras \['spectrum'\]; choose from \('sketch', 'resketch'\)"
    with pytest.raises(ValueError, match=named):
        images.image_run(images.ImageConfig("resnet18", epochs=1), 0, ["sketch", "spectrum"])


def _cifar10(root, n=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
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


@pytest.mark.processes
def test_a_failing_run_stops_the_pool_and_names_itself(tmp_path, monkeypatch):
    from depthaware.recipes.sine import SineConfig

    monkeypatch.setitem(runs.RUNNERS, "boom", "builtins:divmod")  # raises in the worker
    specs = [runs.RunSpec("boom", SineConfig(epochs=e), 0) for e in range(1, 5)]
    with pytest.raises(RuntimeError, match=r"run boom-0-\w+ failed"):
        runs.execute(specs, tmp_path, jobs=2, progress=False)
    assert not any(tmp_path.iterdir())  # nothing half-done was saved


def test_the_published_report_is_its_json_judged_by_the_installed_rules():
    """docs/findings.md is docs/findings.json's Markdown, with every rule changed after seeing
    results in its list, and the rules it states are the installed ones (README's table is
    checked against the same JSON in test_readme.py)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    report = json.loads((root / "docs/findings.json").read_text(encoding="utf-8"))
    assert report["scale"] == "paper" and report["seeds"] == 3
    published = (root / "docs/findings.md").read_text(encoding="utf-8")
    assert published == paper.markdown(report)
    changed = [
        v["claim"]["key"]
        for f in report["findings"]
        for v in f["verdicts"]
        if v["claim"].get("changed")
    ]
    section = published.split("## Rules changed after seeing results")[1]
    assert changed and all(f"**{key}**" in section for key in changed)
    installed = {c.key: c for f in paper.FINDINGS.values() for c in f.claims}
    for f in report["findings"]:  # the report was judged by the rules installed now
        for v in f["verdicts"]:
            assert v["claim"]["rule"] == installed[v["claim"]["key"]].rule
