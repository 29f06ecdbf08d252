"""The public API is annotated (what ``depthaware.__all__`` and each public subpackage's
``__all__`` export): every parameter and return of its functions, classes' public methods and
constructors. ``py.typed`` ships, so users' type checkers read these annotations."""

import importlib
import inspect
from pathlib import Path

import pytest

import depthaware

PUBLIC = [
    "depthaware",
    "depthaware.freeze",
    "depthaware.measure",
    "depthaware.models",
    "depthaware.optim",
    "depthaware.plots",
    "depthaware.recipes.paper",
    "depthaware.recipes.acting",
    "depthaware.integrations.lightning",
    "depthaware.integrations.transformers",
]


def _unannotated(fn, where: str) -> list[str]:
    sig = inspect.signature(fn)
    missing = [
        f"{where}({name})"
        for name, p in sig.parameters.items()
        if name not in ("self", "cls") and p.annotation is inspect.Parameter.empty
    ]
    if sig.return_annotation is inspect.Signature.empty and fn.__name__ != "__init__":
        missing.append(f"{where} -> ?")
    return missing


def _exported(module_name: str):
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if not inspect.isfunction(value):
                    continue
                own = value.__qualname__.startswith(f"{obj.__name__}.")  # not inherited
                if own and (attr == "__init__" or not attr.startswith("_")):
                    yield value, f"{module_name}.{name}.{attr}"
        elif inspect.isfunction(obj):
            yield obj, f"{module_name}.{name}"


@pytest.mark.parametrize("module_name", PUBLIC)
def test_every_public_function_is_annotated(module_name):
    missing = [m for fn, where in _exported(module_name) for m in _unannotated(fn, where)]
    assert not missing, f"unannotated: {missing}"


def test_the_typed_marker_ships_with_the_package():
    assert (Path(depthaware.__file__).parent / "py.typed").is_file()
