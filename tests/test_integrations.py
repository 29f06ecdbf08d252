"""The integrations stay optional: importing depthaware never imports a framework, and using an
integration without its extra is one line that names the extra."""

import subprocess
import sys


def test_importing_depthaware_imports_no_framework():
    code = (
        "import sys, depthaware\n"
        "print(sorted(m for m in ('lightning', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_integration_without_its_extra_names_it():
    code = (
        "import sys; sys.modules['lightning'] = None\n"  # as if not installed
        "import depthaware.integrations.lightning"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "ImportError: depthaware.integrations.lightning needs PyTorch Lightning: pip install "
        "'depthaware[lightning]'"
    )
