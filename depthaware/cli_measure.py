"""``depthaware measure checkpoints | model``: the subcommand's parser and handler; its inputs are
read and checked by :mod:`depthaware.cli_inputs` before any work starts."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .cli_inputs import (
    at_least,
    build_model,
    check_inputs,
    groups_arg,
    kwargs_arg,
    load_data,
    logits_of,
    model_layers,
    sketch_arg,
    windows_arg,
    writable,
)
from .errors import InputError

__all__ = ["add_measure_parser", "measure", "model_settings", "print_bias", "print_table"]

LOSSES = {"ce": torch.nn.functional.cross_entropy, "mse": torch.nn.functional.mse_loss}


def model_settings(args) -> dict:
    """``steps``, ``iters`` and ``tol`` of ``measure model``: the defaults, or the paper's with
    ``--thorough``, each overridden by its own option (checked by its argparse type)."""
    from .measure.model_table import DEFAULT, THOROUGH

    base = THOROUGH if args.thorough else DEFAULT
    return {
        "steps": base["steps"] if args.grid is None else args.grid,
        "iters": base["iters"] if args.iters is None else args.iters,
        "tol": base["tol"] if args.tol is None else args.tol,
    }


def plan(layers, inputs, targets, loss_fn, settings: dict, path: str) -> str:
    """What ``measure model`` will run, and its estimated time from one timed forward+backward
    pass of the model on ``--data`` (:func:`~depthaware.measure.model_table.passes`)."""
    from .measure.model_table import passes, time_pass

    n, grid, iters = len(layers), settings["steps"], settings["iters"]
    seconds = time_pass(layers.model, loss_fn, inputs, targets)
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


def print_bias(b: dict, uncertain: list[str]) -> None:
    """A window's bias line (``b``: :meth:`~depthaware.measure.BiasStats.to_dict`) and, before it,
    the layers whose rate is within the sketch's error of 0."""
    window = f"C[{b['t1']},{b['t2']}]"
    if uncertain:
        print(f"{window} within the sketch's error of 0, not a rate: {', '.join(uncertain)}")
    never_moved = b["never_moved"]
    left_out = f"; never moved (left out): {', '.join(never_moved)}" if never_moved else ""
    if b["diverged"]:
        left_out += "; non-finite, diverged (left out): " + ", ".join(
            f"{n} from step {step}" for n, step in b["diverged"].items()
        )
    print(
        f"{window}: Spearman(depth, C) = {_fmt(b['spearman'])} (-1: shallower layers faster); "
        f"pairs obeying Obs. 2.1: {_fmt(100 * b['pairs_obeying'])}% of {b['n_pairs']}{left_out}"
    )


def measure(args) -> int:
    from . import checkpoints, plots, reports
    from .measure import checkpoint_folder, model_table

    if args.model is None and args.source == "model":
        raise InputError("measure model needs --model (a timm name or module:function)")
    model = None if args.model is None else build_model(args.model, args.kwargs)
    layers = None if model is None else model_layers(model, args.model, args.groups)
    out = Path(args.out)
    writable(out, "--out")
    if args.source == "checkpoints":
        rep = checkpoint_folder.from_checkpoints(
            args.path,
            model,
            pattern=args.pattern,
            key=args.key,
            windows=args.windows,
            groups=args.groups,
            sketch=args.sketch,
            progress=not args.quiet,
        )
        windows = args.windows or checkpoint_folder.default_windows(rep.steps.tolist())
        summary = rep.to_dict(windows)  # each window's rates, once
        print_table(summary["rows"])
        for b in summary["bias"]:
            print_bias(b, summary["uncertain"][f"C[{b['t1']},{b['t2']}]"])
        written = reports.write_report(rep, out, summary=summary)
    else:
        assert model is not None and layers is not None  # measure model needs --model (above)
        reference = model.state_dict()
        model.load_state_dict(checkpoints.load_state(args.path, reference, args.key))
        inputs, targets = load_data(args.data, args.loss)
        inputs = check_inputs(model, inputs, targets, args.loss, args.data)
        settings = model_settings(args)

        def loss_fn(output, target, loss=LOSSES[args.loss]):  # a tuple's, a dict's logits
            return loss(logits_of(output), target)

        print(plan(layers, inputs, targets, loss_fn, settings, args.data))
        rows = model_table.from_model(
            layers, loss_fn, (inputs, targets), progress=not args.quiet, **settings
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
        written = reports.write_table(rows, out, "layers")
        plots.save(plots.layer_table(rows), out / "layers.png")
        written.append(out / "layers.png")
    for path in written:
        print(f"wrote {path}")
    return 0


def add_measure_parser(sub, formatter_class) -> None:
    """``depthaware measure checkpoints | model``: the subcommand's parser (every option typed,
    so that a wrong value is refused by argparse before anything is loaded)."""
    from .measure.model_table import DEFAULT, HVP_PASSES, POINT_PASSES, THOROUGH, passes

    mea = sub.add_parser(
        "measure",
        help="measure a trained model or a folder of checkpoints",
        description="Per-layer convergence rates from a folder of checkpoints, or per-layer "
        "sharpness, gradient predictiveness and response frequency of one trained model.",
    )
    kinds = mea.add_subparsers(dest="source", required=True)
    ckpt = kinds.add_parser(
        "checkpoints",
        formatter_class=formatter_class,
        help="Definition 2.1 per layer over windows of a run's checkpoints",
        description="Each file holds a state_dict (or a dict with one under state_dict, model, "
        "model_state_dict, module); its step comes from an epoch/step/global_step entry, a "
        "named field in its name (epoch_12.pt, epoch=3-val.ckpt), or its name's one number "
        "(checkpoint-500/model.safetensors of a Hugging Face Trainer). "
        "The last checkpoint is theta*.",
    )
    ckpt.add_argument("path", help="the folder of checkpoints")
    ckpt.add_argument(
        "--pattern",
        default=None,
        help="file glob inside the folder (default: the first of *.pt, *.pth, *.ckpt, "
        "checkpoint-*/model.safetensors, checkpoint-*/pytorch_model.bin that matches)",
    )
    ckpt.add_argument(
        "--windows",
        type=windows_arg,
        default=None,
        help="step windows T1:T2,... (default: the first sixth and the first half of the run)",
    )
    ckpt.add_argument(
        "--sketch",
        type=sketch_arg,
        default=None,
        metavar="K",
        help="keep layers larger than K as CountSketches of K numbers (4 times a power of two, "
        "e.g. 4096): memory k floats per layer, rates with 95%% error bars",
    )
    model = kinds.add_parser(
        "model",
        formatter_class=formatter_class,
        help="sharpness, predictiveness and response frequency of each layer of one model",
        description="Per layer: the top Hessian eigenvalue (Lanczos steps of Hessian-vector "
        "products), the mean loss rise over a GRID x GRID landscape of two random directions, "
        "gradient predictiveness (Definition 4.1) and response frequency. Cost, for L layers, "
        f"in forward+backward passes of the model on --data: about L x ({POINT_PASSES} GRID^2 "
        f"+ {HVP_PASSES} ITERS) + 4 (14 layers at the defaults: about "
        f"{passes(14, DEFAULT['steps'], DEFAULT['iters']):.0f} passes); the plan and a time "
        "estimate from one timed pass are printed before any work.",
    )
    model.add_argument("path", help="the trained model's weights (a checkpoint file)")
    model.add_argument(
        "--data",
        required=True,
        help="a .pt file holding (inputs, targets); every measurement runs on all of it, so "
        "its size multiplies the cost",
    )
    model.add_argument("--loss", choices=sorted(LOSSES), default="ce", help="the loss")
    model.add_argument(
        "--grid",
        type=at_least(
            3, what=" points per axis (2 are the corners: none within the radius)", at_most=101
        ),
        default=None,
        help=f"landscape points per axis (3 to 101): GRID^2 forward passes per layer, about "
        f"{POINT_PASSES} of a forward+backward pass each on average (default {DEFAULT['steps']}; "
        f"--thorough {THOROUGH['steps']})",
    )
    model.add_argument(
        "--iters",
        type=at_least(1),
        default=None,
        help=f"Lanczos steps for the top eigenvalue, at most: one Hessian-vector product (about "
        f"{HVP_PASSES} of a forward+backward pass) each, per layer (default {DEFAULT['iters']}; "
        f"--thorough {THOROUGH['iters']})",
    )
    model.add_argument(
        "--tol",
        type=at_least(0.0, float),
        default=None,
        help="stop the Lanczos steps once the eigenvalue changes by less than this, relatively "
        f"(default {DEFAULT['tol']:g}; --thorough {THOROUGH['tol']:g}: all of them)",
    )
    model.add_argument(
        "--thorough",
        action="store_true",
        help="the paper's 21 x 21 landscape and 100 Lanczos steps, about 5 times the default "
        "cost; --grid, --iters and --tol still override it",
    )
    for p in (ckpt, model):
        p.add_argument(
            "--model",
            required=p is model,
            help="timm name or module:function"
            + ("" if p is model else " (default: a Trainer folder's transformers model, built "
               "from its checkpoints' config.json)"),
        )  # fmt: skip
        p.add_argument("--kwargs", type=kwargs_arg, default={}, help="JSON object of the model's "
                       "arguments")  # fmt: skip
        p.add_argument("--key", default=None, help="state_dict key inside each file, if nested")
        p.add_argument(
            "--groups",
            type=groups_arg,
            default=None,
            help="the layers, for a model depthaware does not know: a JSON object of layer name "
            "-> module-name prefix(es) or glob(s), shallowest first",
        )
        p.add_argument("--out", default="runs/measure", help="output directory")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=measure)
