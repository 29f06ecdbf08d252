"""The integrations stay optional: importing depthaware never imports a framework, and using an
integration without its extra is one line that names the extra."""

import subprocess
import sys

import pytest


@pytest.mark.processes
def test_importing_depthaware_imports_no_framework():
    code = (
        "import sys, depthaware\n"
        "print(sorted(m for m in ('lightning', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "module, framework, extra, packages",
    [("lightning", "lightning", "PyTorch Lightning", "lightning"),
     ("transformers", "transformers", "Hugging Face transformers", "transformers accelerate")],
)  # fmt: skip
@pytest.mark.processes
def test_an_integration_without_its_extra_names_it(module, framework, extra, packages):
    code = (
        f"import sys; sys.modules[{framework!r}] = None\n"  # as if not installed
        f"import depthaware.integrations.{module}"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"ImportError: depthaware.integrations.{module} needs {extra}: pip install "
        f"{packages} (depthaware's [{module}] extra)"
    )
