"""``depthaware measure checkpoints | model``: the command line's reading of the user's input.

Every option is checked here before any work starts; a wrong one is an
:class:`~depthaware.errors.InputError` whose one-line message names the option and its value.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import re
from functools import partial
from pathlib import Path

import torch

from ._io import check_writable
from .errors import InputError
from .measure.sketch import check_size

__all__ = [
    "build_model",
    "check_inputs",
    "load_data",
    "measure",
    "model_settings",
    "parse_kwargs",
    "parse_windows",
    "writable",
]

log = logging.getLogger(__name__)
LOSSES = {"ce": torch.nn.functional.cross_entropy, "mse": torch.nn.functional.mse_loss}


def writable(folder: Path, option: str) -> None:
    """Refuse, before any work, an output folder that cannot be written (read-only, below a
    file, no permission)."""
    try:
        check_writable(folder)
    except OSError as e:
        raise InputError(f"{option} {folder}: cannot write there ({e.strerror or e})") from None


def parse_kwargs(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"--kwargs {text!r}: invalid JSON ({e.msg} at {e.pos})") from None
    if not isinstance(value, dict):
        raise InputError(
            f"--kwargs {text!r}: must be a JSON object, e.g. '{{\"num_classes\": 10}}'"
        )
    return value


def build_model(spec: str, kwargs: dict):
    """A model from a timm name or a ``module:function`` path (that code runs: a trusted entry
    point, as any import)."""
    if ":" in spec:
        module, _, name = spec.partition(":")
        try:
            fn = getattr(importlib.import_module(module), name)
        except ImportError as e:
            raise InputError(f"--model {spec}: cannot import {module!r} ({e})") from None
        except AttributeError:
            raise InputError(f"--model {spec}: module {module!r} has no {name!r}") from None
    else:
        import timm

        if not timm.is_model(spec):
            raise InputError(f"--model {spec}: not a timm model name, nor module:function")
        fn = partial(timm.create_model, spec, pretrained=False)
    try:
        return fn(**kwargs)
    except TypeError as e:  # a keyword the model does not take: the user's; any other: a bug
        match = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if not match or match.group(1) not in kwargs:
            raise
        raise InputError(
            f"--kwargs {json.dumps(kwargs)}: {spec} takes no argument {match.group(1)!r}"
        ) from None


def parse_windows(text: str | None) -> list[tuple[int, int]] | None:
    if not text:
        return None
    windows = []
    for part in text.split(","):
        bounds = part.split(":")
        try:
            t1, t2 = (int(v) for v in bounds)
        except ValueError:
            raise InputError(
                f"--windows {text!r}: each window is T1:T2 (two integer steps), e.g. 0:5,0:50; "
                f"got {part!r}"
            ) from None
        if not t1 < t2:
            raise InputError(f"--windows {text!r}: a window needs T1 < T2; got {part!r}")
        windows.append((t1, t2))
    return windows


def load_data(path: str, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` from a ``torch.save``'d pair, checked against the loss."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--data {path}: no such file" + (" (a directory)" if p.is_dir() else ""))
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch's many load errors
        raise InputError(f"--data {path}: not a readable torch file ({type(e).__name__})") from None
    if isinstance(obj, dict):
        raise InputError(
            f"--data {path}: holds a dict (a checkpoint?); save the pair "
            "torch.save((inputs, targets), path)"
        )
    if not (
        isinstance(obj, (tuple, list))
        and len(obj) == 2
        and all(isinstance(t, torch.Tensor) for t in obj)
    ):
        raise InputError(f"--data {path}: must hold (inputs, targets), two tensors")
    inputs, targets = obj
    if len(inputs) != len(targets) or len(inputs) < 2:
        raise InputError(
            f"--data {path}: {len(inputs)} inputs and {len(targets)} targets; need as many, >= 2"
        )
    if loss == "mse" and not targets.is_floating_point():
        raise InputError(
            f"--loss mse: the targets in {path} are integers {tuple(targets.shape)} (class "
            "labels?); use --loss ce"
        )
    if loss == "ce" and targets.is_floating_point() and targets.ndim < 2:
        raise InputError(
            f"--loss ce: the targets in {path} are floats {tuple(targets.shape)}, not class "
            "labels or probabilities; use --loss mse"
        )
    return inputs, targets


def check_inputs(model, inputs: torch.Tensor, targets: torch.Tensor, loss: str, path: str):
    """The inputs as the model takes them, after one forward pass of two samples (in eval mode,
    nothing of the model changes): float64 inputs are cast to the model's floating dtype (said in
    a log line); NaN/inf inputs, inputs the model refuses (a channels-last image layout is named)
    and targets that do not fit the outputs are an :class:`InputError` naming ``--data``."""
    from .mode import in_mode

    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if inputs.is_floating_point():
        bad = int((~torch.isfinite(inputs)).sum())
        if bad:
            raise InputError(f"--data {path}: {bad} of the inputs are NaN or inf")
        if inputs.dtype == torch.float64 and dtype not in (None, torch.float64):
            log.info("--data %s: float64 inputs cast to the model's %s", path, dtype)
            inputs = inputs.to(dtype)
    try:
        with torch.no_grad(), in_mode(model, train=False):
            out = model(inputs[:2])
    except Exception as e:  # noqa: BLE001 - whatever the model raises on a wrong input
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ""
        if inputs.ndim == 4 and inputs.shape[-1] in (1, 3) and inputs.shape[1] not in (1, 3):
            hint = "; they look channels-last (N, H, W, C): save x.permute(0, 3, 1, 2)"
        elif not inputs.is_floating_point():
            hint = "; they are integers: save x.float() (images: x.float() / 255)"
        raise InputError(
            f"--data {path}: the model cannot take inputs of shape {tuple(inputs.shape)} "
            f"({str(inputs.dtype).removeprefix('torch.')}): {first}{hint}"
        ) from None
    if loss == "mse" and tuple(targets.shape[1:]) != tuple(out.shape[1:]):
        raise InputError(
            f"--loss mse: the targets in {path} have shape {tuple(targets.shape)}, the outputs "
            f"({len(targets)}, {', '.join(map(str, out.shape[1:]))}): they would broadcast"
        )
    if loss == "ce" and not targets.is_floating_point() and out.ndim == 2:
        classes = out.shape[1]
        if targets.ndim != 1 or int(targets.min()) < 0 or int(targets.max()) >= classes:
            raise InputError(
                f"--loss ce: the targets in {path} are labels {int(targets.min())}.."
                f"{int(targets.max())} of shape {tuple(targets.shape)}; the model has {classes} "
                "classes (set num_classes in --kwargs?)"
            )
    return inputs


def model_settings(args) -> dict:
    """``steps``, ``iters`` and ``tol`` of ``measure model``: the defaults, or the paper's with
    ``--thorough``, each overridden by its own option; checked before any work."""
    from .measure.tables import DEFAULT, THOROUGH

    base = THOROUGH if args.thorough else DEFAULT
    given = {"steps": args.grid, "iters": args.iters, "tol": args.tol}
    settings = {k: base[k] if v is None else v for k, v in given.items()}
    if settings["steps"] < 3:  # 2 points per axis are the corners: none within the radius
        raise InputError(f"--grid {settings['steps']}: need >= 3 points per axis")
    if settings["iters"] < 1 or not settings["tol"] >= 0:
        raise InputError(
            f"--iters {settings['iters']} / --tol {settings['tol']}: need >= 1 and >= 0"
        )
    return settings


def plan(model, inputs, targets, loss_fn, settings: dict, path: str) -> str:
    """What ``measure model`` will run, and its estimated time from one timed forward+backward
    pass of the model on ``--data`` (:func:`~depthaware.measure.tables.passes`)."""
    from .layers import layer_groups
    from .measure.tables import passes, time_pass

    n, grid, iters = len(layer_groups(model)), settings["steps"], settings["iters"]
    seconds = time_pass(model, loss_fn, inputs, targets)
    cost = passes(n, grid, iters)
    return (
        f"measure model: {n} layers x ({grid}x{grid} landscape points + at most {iters} "
        f"Hessian-vector products) on the {len(inputs)} samples of {path}: about {cost:.0f} "
        f"forward+backward passes of {seconds:.3g} s: about {_duration(cost * seconds)}"
    )


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def print_table(rows: list[dict]) -> None:
    """A compact fixed-width table, one row per layer."""
    keys = list(rows[0])
    cells = [[_fmt(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


def measure(args) -> int:
    from . import checkpoints, plots
    from .measure import tables

    if getattr(args, "sketch", None) is not None:
        try:
            check_size(args.sketch)
        except ValueError as e:
            raise InputError(f"--sketch {args.sketch}: {e}") from None
    model = build_model(args.model, parse_kwargs(args.kwargs))
    out = Path(args.out)
    writable(out, "--out")
    if args.source == "checkpoints":
        rep = tables.from_checkpoints(
            args.path,
            model,
            pattern=args.pattern,
            key=args.key,
            windows=parse_windows(args.windows),
            sketch=args.sketch,
            progress=not args.quiet,
        )
        windows = parse_windows(args.windows) or tables.default_windows(rep.steps.tolist())
        rows = rep.table(windows)
        print_table(rows)
        for t1, t2 in windows:
            b = rep.bias(t1, t2)
            flagged = rep.uncertain(t1, t2)
            if flagged:
                print(
                    f"C[{t1},{t2}] within the sketch's error of 0, not a rate: {', '.join(flagged)}"
                )
            frozen = (
                f"; never moved (left out): {', '.join(b.never_moved)}" if b.never_moved else ""
            )
            if b.diverged:
                frozen += "; non-finite, diverged (left out): " + ", ".join(
                    f"{n} from step {step}" for n, step in b.diverged.items()
                )
            print(
                f"C[{t1},{t2}]: Spearman(depth, C) = {_fmt(b.spearman)} (-1: shallower layers "
                f"faster); pairs obeying Obs. 2.1: {_fmt(100 * b.pairs_obeying)}% of "
                f"{b.n_pairs}{frozen}"
            )
        written = tables.write_report(rep, out, windows)
    else:
        reference = model.state_dict()
        model.load_state_dict(checkpoints.load_state(args.path, reference, args.key))
        inputs, targets = load_data(args.data, args.loss)
        inputs = check_inputs(model, inputs, targets, args.loss, args.data)
        settings = model_settings(args)
        print(plan(model, inputs, targets, LOSSES[args.loss], settings, args.data))
        rows = tables.from_model(
            model, LOSSES[args.loss], (inputs, targets), progress=not args.quiet, **settings
        )
        print_table(rows)
        print(
            "loss_rise: the mean loss rise within the radius over the layer's landscape; below 0 "
            "where the checkpoint is not a minimum along those directions (the loss falls there).\n"
            "response_frequency: R = E|f(x + d) - f(x)| / |d| for a small random d; a residual "
            "block f(x) = x + g(x) (a ViT encoder block) keeps d through its identity, so R is "
            "close to 1 unless g responds strongly: compare R - 1 across such blocks. NaN: no "
            "module computes the layer alone."
        )
        written = tables.write_table(rows, out, "layers")
        plots.save(plots.layer_table(rows), out / "layers.png")
        written.append(out / "layers.png")
    for path in written:
        print(f"wrote {path}")
    return 0
