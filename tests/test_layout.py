"""The package's shape, as the design states it: no function hides a module of its package, no
module imports another's private name, error classes live in errors.py."""

import ast
import importlib
import pkgutil
import types
from pathlib import Path

import depthaware

ROOT = Path(depthaware.__file__).parent


def modules():
    for info in pkgutil.walk_packages([str(ROOT)], "depthaware."):
        if ".integrations." not in info.name:  # they import their framework
            yield info.name


def test_no_attribute_of_a_package_hides_its_module():
    for name in modules():
        parent, _, child = name.rpartition(".")
        importlib.import_module(name)
        value = getattr(importlib.import_module(parent), child)
        assert isinstance(value, types.ModuleType), f"{parent}.{child} is a {type(value).__name__}"


def test_no_module_imports_a_private_name_of_another():
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                private = [a.name for a in node.names if a.name.startswith("_")
                           and not a.name.endswith("__")]  # fmt: skip
                own = node.level == 0 and not (node.module or "").startswith("depthaware")
                assert own or not private, f"{path.relative_to(ROOT)} imports {private}"


def test_every_error_class_is_in_errors_py():
    for path in ROOT.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                assert not any(b.endswith(("Error", "Exception")) for b in bases), (
                    f"{path.relative_to(ROOT)} defines the error class {node.name}"
                )


def test_no_module_is_over_350_lines():
    """A module has one job a reader takes in at once; a longer one is split by its jobs."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 350
    }
    assert not long, f"modules over 350 lines: {long}"
