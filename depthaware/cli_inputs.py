"""The command line's reading of the user's input to ``depthaware measure``: argparse types of
its options, the model it names and the data it is given, each checked before any work starts.
A wrong one is an argparse error or an :class:`~depthaware.errors.InputError` whose one-line
message names the option and its value.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from argparse import ArgumentTypeError
from functools import partial
from pathlib import Path

import torch

from ._io import check_writable
from .errors import InputError
from .measure.sketch import check_size

__all__ = [
    "at_least",
    "build_model",
    "check_inputs",
    "groups_arg",
    "kwargs_arg",
    "load_data",
    "logits_of",
    "model_layers",
    "sketch_arg",
    "windows_arg",
    "writable",
]

log = logging.getLogger(__name__)


def writable(folder: Path, option: str) -> None:
    """Refuse, before any work, an output folder that cannot be written (read-only, below a
    file, no permission)."""
    try:
        check_writable(folder)
    except OSError as e:
        raise InputError(f"{option} {folder}: cannot write there ({e.strerror or e})") from None


def kwargs_arg(text: str) -> dict:
    """``--kwargs``: a JSON object of the model's arguments."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArgumentTypeError(f"{text!r}: invalid JSON ({e.msg} at {e.pos})") from None
    if not isinstance(value, dict):
        raise ArgumentTypeError(f"{text!r}: must be a JSON object, e.g. '{{\"num_classes\": 10}}'")
    return value


def groups_arg(text: str) -> dict:
    """``--groups``: a JSON object ``{layer name: module-name prefix(es) or glob(s)}``, shallowest
    first (:func:`~depthaware.layer_groups`' ``groups``)."""
    value = kwargs_arg(text)
    bad = [k for k, v in value.items() if not isinstance(v, (str, list))]
    if not value or bad:
        raise ArgumentTypeError(
            f"{text!r}: each layer name maps to a module prefix or a list of them, e.g. "
            '\'{"early": ["conv1", "layer1"], "late": ["layer[234].*", "fc"]}\''
        )
    return value


def build_model(spec: str, kwargs: dict):
    """A model from a timm name or a ``module:function`` path (that code runs: a trusted entry
    point, as any import); whatever that call raises on the user's ``--kwargs``, or a result that
    is not a module with trainable parameters, is an :class:`InputError` naming both."""
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
        model = fn(**kwargs)
    except Exception as e:  # noqa: BLE001 - the user's entry point and arguments, whatever fails
        match = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if isinstance(e, TypeError) and match and match.group(1) in kwargs:
            raise InputError(
                f"--kwargs {json.dumps(kwargs)}: {spec} takes no argument {match.group(1)!r}"
            ) from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(
            f"--model {spec} --kwargs {json.dumps(kwargs)}: building the model failed "
            f"({type(e).__name__}: {first}); check the arguments' types"
        ) from None
    if not isinstance(model, torch.nn.Module):
        raise InputError(
            f"--model {spec}: returned a {type(model).__name__}, not a torch.nn.Module"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise InputError(f"--model {spec}: the model has no trainable parameters to measure")
    return model


def model_layers(model, spec: str, groups: dict | None):
    """The model's :class:`~depthaware.LayerGroups` (``--groups``, else what the package knows
    of it); a model it does not know is an :class:`InputError` that says how to pass them."""
    from .layers import layer_groups

    try:
        return layer_groups(model, groups)
    except ValueError as e:
        hint = (
            ""
            if groups
            else '; pass --groups \'{"name": ["module prefix", ...], ...}\' '
            "(shallowest first; globs allowed), or give the model a layer_map() method"
        )
        message = str(e).split(": pass groups=")[0] if not groups else str(e)
        raise InputError(f"--model {spec}: {message}{hint}") from None


def logits_of(out):
    """A model's output as the loss takes it: a tensor itself, a tuple's first element, a dict's
    (or a Hugging Face ``ModelOutput``'s) ``logits``, or its only tensor; else an
    :class:`InputError` that lists what the output holds."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict):
        if isinstance(out.get("logits"), torch.Tensor):
            return out["logits"]
        tensors = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return out[tensors[0]]
        raise InputError(
            f"the model returns a {type(out).__name__} with entries {list(out)} and no 'logits': "
            "wrap it so that it returns the tensor the loss takes (a module:function model)"
        )
    raise InputError(f"the model returns a {type(out).__name__}, not a tensor the loss can take")


def windows_arg(text: str) -> list[tuple[int, int]]:
    """``--windows``: ``T1:T2,...`` step windows, each with ``T1 < T2``."""
    windows = []
    for part in text.split(","):
        try:
            t1, t2 = (int(v) for v in part.split(":"))
        except ValueError:
            raise ArgumentTypeError(
                f"{text!r}: each window is T1:T2 (two integer steps), e.g. 0:5,0:50; got {part!r}"
            ) from None
        if not t1 < t2:
            raise ArgumentTypeError(f"{text!r}: a window needs T1 < T2; got {part!r}")
        windows.append((t1, t2))
    return windows


def sketch_arg(text: str) -> int:
    """``--sketch``: a valid sketch size (:func:`~depthaware.measure.sketch.check_size`)."""
    try:
        return check_size(int(text))
    except ValueError as e:
        raise ArgumentTypeError(f"{text}: {e}") from None


def at_least(low, kind=int, what: str = "", *, at_most=None):
    """An argparse type: a ``kind`` number ``>= low`` (and ``<= at_most``; ``what`` adds to the
    refusal's words)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise ArgumentTypeError(f"{text!r}: not a number") from None
        if not value >= low:
            raise ArgumentTypeError(f"{text}: need >= {low}{what}")
        if at_most is not None and not value <= at_most:
            raise ArgumentTypeError(f"{text}: need <= {at_most}{what}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


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
    for what, t in (("inputs", inputs), ("targets", targets)):
        if t.is_sparse or t.layout != torch.strided:
            raise InputError(f"--data {path}: the {what} are a sparse tensor; save t.to_dense()")
        if t.ndim == 0:
            raise InputError(f"--data {path}: the {what} are one number (0-dim), not a batch")
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
        elif inputs.is_complex():
            hint = "; they are complex: the model takes real inputs"
        elif not inputs.is_floating_point() and inputs.dtype != torch.bool:
            hint = "; they are integers: save x.float() (images: x.float() / 255)"
        raise InputError(
            f"--data {path}: the model cannot take inputs of shape {tuple(inputs.shape)} "
            f"({str(inputs.dtype).removeprefix('torch.')}): {first}{hint}"
        ) from None
    out = logits_of(out)
    if loss == "mse" and tuple(targets.shape[1:]) != tuple(out.shape[1:]):
        raise InputError(
            f"--loss mse: the targets in {path} have shape {tuple(targets.shape)}, the outputs "
            f"({len(targets)}, {', '.join(map(str, out.shape[1:]))}): they would broadcast"
        )
    if loss == "ce" and (out.ndim < 2 or out.shape[1] < 2):
        raise InputError(
            f"--loss ce: the model gives {1 if out.ndim < 2 else out.shape[1]} output per sample: "
            "a cross-entropy over one class is 0 whatever the weights (every number would be 0 "
            "or NaN); a regression model takes --loss mse"
        )
    if loss == "ce" and targets.is_floating_point():
        rows = targets.reshape(len(targets), -1)
        if (rows < 0).any() or not torch.allclose(rows.sum(1), torch.ones(len(rows)), atol=1e-3):
            raise InputError(
                f"--loss ce: the targets in {path} are floats that are not class probabilities "
                "(non-negative rows summing to 1): regression targets? use --loss mse"
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
