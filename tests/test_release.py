"""What a user installs: the built wheel and sdist, outside the checkout; the version they see
and the changelog that says what it holds; the API reference, built strict and opened in a
browser."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import depthaware
import depthaware_cli
from depthaware.version import __version__

ROOT = Path(__file__).resolve().parents[1]
CHANGELOG = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


def test_the_changelog_first_release_is_the_packages_version():
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", CHANGELOG, re.M)
    assert releases, "no '## [X.Y.Z] - YYYY-MM-DD' entry"
    assert releases[0][0] == __version__ == depthaware.__version__
    assert CHANGELOG.index("## [Unreleased]") < CHANGELOG.index(f"## [{__version__}]")
    for section in re.findall(r"^### (\w+)$", CHANGELOG, re.M):  # Keep a Changelog's kinds
        assert section in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_version_prints_the_version(capsys):
    assert depthaware_cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"depthaware {__version__}"


def _run(args, cwd, env=None, timeout=600):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.processes
def test_the_wheel_works_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    # the current environment's setuptools (the dev extra's), no download
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)], ROOT)
    wheel = dist / f"depthaware-{__version__}-py3-none-any.whl"
    sdist = dist / f"depthaware-{__version__}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in dist.iterdir())
    _run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)], ROOT)
    names = zipfile.ZipFile(wheel).namelist()
    assert "depthaware/py.typed" in names and "depthaware_cli.py" in names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]

    # a fresh venv with the wheel alone; then the current environment's packages behind it (its
    # .pth files, among them the checkout's editable install, are not read from there)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    _run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp_path
    )
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     tmp_path).strip())  # fmt: skip
    (site / "zz_current_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    work = tmp_path / "user"
    work.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    clean["PATH"] = f"{bindir}{os.pathsep}{clean.get('PATH', '')}"

    where = _run([str(python), "-c", "import depthaware; print(depthaware.__file__)"], work, clean)
    assert Path(where.strip()).is_relative_to(site), where  # the wheel's, not the checkout's
    assert _run(["depthaware", "--version"], work, clean).strip() == f"depthaware {__version__}"

    modules = (
        "import importlib, pkgutil, depthaware\n"
        "names = [m.name for m in pkgutil.walk_packages(depthaware.__path__, 'depthaware.')]\n"
        "for n in names: importlib.import_module(n)\n"
        "print(len(names))\n"
    )
    assert int(_run([str(python), "-c", modules], work, clean)) > 40

    # README's main job at its smallest scale
    _run(["depthaware", "reproduce", "fcnn-bias", "--scale", "tiny", "--seeds", "1",
          "--out", "runs/fcnn", "--quiet"], work, clean)  # fmt: skip
    assert "fcnn-bias" in (work / "runs/fcnn/report.md").read_text(encoding="utf-8")

    # measure model on a tiny trained model, as README shows it
    setup = (
        "import torch, depthaware as da\n"
        "torch.manual_seed(0)\n"
        "net = da.models.FCNN((1, 8, 8, 1))\n"
        "torch.save(net.state_dict(), 'net.pt')\n"
        "x = torch.linspace(-2, 2, 64).unsqueeze(1)\n"
        "torch.save((x, torch.sin(x)), 'data.pt')\n"
    )
    _run([str(python), "-c", setup], work, clean)
    out = _run(["depthaware", "measure", "model", "net.pt", "--model", "depthaware.models:FCNN",
                "--kwargs", '{"widths": [1, 8, 8, 1]}', "--data", "data.pt", "--loss", "mse",
                "--grid", "3", "--iters", "2", "--out", "measured", "--quiet"],
               work, clean)  # fmt: skip
    assert "Output layer" in out and (work / "measured" / "layers.json").is_file()


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
# the flags a sandboxed, offline machine needs (no background connections, no GPU)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


@pytest.mark.processes
def test_the_api_reference_builds_strict_and_renders_lars(tmp_path):
    site = tmp_path / "site"
    # -W: a warning (a broken cross-reference, a broken link, bad reST) fails; -n: every reference
    _run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html",
          str(ROOT / "docs"), str(site)], ROOT)  # fmt: skip
    if BROWSER is None:
        if os.environ.get("DEPTHAWARE_REQUIRE_BROWSER"):
            pytest.fail("no chromium on PATH, and DEPTHAWARE_REQUIRE_BROWSER is set (CI)")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=BROWSER, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto((site / "api" / "optim.html").as_uri() + "#depthaware.optim.LARS")
        signature = page.locator('dt[id="depthaware.optim.LARS"]').inner_text()
        maths = page.locator('dt[id="depthaware.optim.LARS"] + dd math')
        shown = [
            (maths.nth(i).text_content(), maths.nth(i).bounding_box()) for i in range(maths.count())
        ]
        display = maths.first.evaluate("e => getComputedStyle(e).display")
        browser.close()
    assert signature.startswith("class depthaware.optim.LARS(")
    for argument in ("lr: float = 0.1", "trust_coefficient: float = 0.001", "trust_clip: bool"):
        assert argument in signature
    # the docstring's math (η, γ, LARC's clip) laid out by the browser's MathML engine
    texts = [t for t, _ in shown]
    assert "η" in texts and any("min" in t for t in texts), texts
    assert all(box is not None and box["width"] > 0 and box["height"] > 0 for _, box in shown)
    assert display == "math"


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("Run the tests") :]
    command = re.search(r"```bash\n(.*?)\n```", section, re.S).group(1)
    assert (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1] == command
