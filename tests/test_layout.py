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


def _imports() -> dict[str, set[str]]:
    """Each module of depthaware -> the modules of depthaware it imports, anywhere in its body
    (a function-level import is a dependency too). ``from pkg import mod`` is an import of the
    module ``pkg.mod``; ``from pkg import name`` of ``pkg``."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                subs = {f"{base}.{a.name}" for a in node.names} & names.keys()
                edges |= subs or ({base} & names.keys())
        graph[name] = edges - {name}
    return graph


def test_the_import_graph_has_no_cycle():
    """Modules depend one way (measure below plots, plots below reports, the runners below the
    run queue): a cycle, even through a function-level import, fails with its modules."""
    graph, state, path = _imports(), {}, []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for dep in sorted(graph[module]):
            assert state.get(dep) != "open", f"import cycle: {' -> '.join(path + [dep])}"
            if dep not in state:
                visit(dep)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert "depthaware.plots" in graph["depthaware.reports"]  # the walk sees the edges


def test_no_test_file_is_over_350_lines_or_imports_another_test_module():
    """A shared helper lives in conftest.py or a helpers module, not in another test file."""
    long, imports = {}, {}
    for path in Path(__file__).parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 350:
            long[path.name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            if any(m.split(".")[-1].startswith("test_") for m in mods):
                imports[path.name] = mods
    assert not long, f"test files over 350 lines: {long}"
    assert not imports, f"test files importing test modules: {imports}"


def test_dtensor_code_lives_in_distributed_py():
    """Callers ask depthaware.distributed (local shard, whole tensor, shard offsets, sums over
    shards) and hold no DTensor code of their own."""
    holders = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if "torch.distributed.tensor" in p.read_text(encoding="utf-8")
    ]
    assert holders == ["distributed.py"], holders
