"""The paper's findings, one recipe each, measured over seeds (used by :mod:`.report`).

Every finding is ``f(scale, seeds, out, data_dir, progress) -> dict`` with the paper's ``claim``
and number (``paper``), our ``measured`` value in words (mean ± std over seeds), ``holds``
(``True``/``False``, or ``None`` where the recipe could not decide) and the raw ``numbers``.
``scale="small"`` is sized for a 2-core CPU; ``"paper"`` uses the paper's settings where a CPU
can bear them (each finding's ``scale_note`` says where it cannot). Nothing is tuned per seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import timm
import torch
from torch import nn
from tqdm.auto import tqdm

from ..layers import layer_groups
from ..measure import Trajectory, convergence, predictiveness, spearman
from ..measure.frequency import block_frequencies
from ..measure.landscape import landscape, top_eigenvalue
from ..models import cifar_resnet18
from . import freezing, sine
from .data import load_images
from .sine import SineConfig, train_sine

__all__ = ["FINDINGS"]


def _ms(values, fmt=".3g") -> str:
    """``mean ± sample std`` (NaN propagates: a NaN seed shows as NaN)."""
    values = np.asarray(list(values), dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():{fmt}} ± {sd:{fmt}}"


def _mean(values) -> float:
    return float(np.mean(list(values)))


def _epochs(scale: str, small: int, paper: int) -> int:
    """Epochs at ``scale``; ``tiny`` (a smoke test of the machinery) is a tenth of ``small``."""
    return {"tiny": max(2, small // 10), "small": small, "paper": paper}[scale]


# ---------------------------------------------------------------------------------------------
# 1. FCNN layer convergence bias [3.1, Fig. 1]
# ---------------------------------------------------------------------------------------------
def fcnn_bias(scale, seeds, out, data_dir, progress) -> dict:
    epochs = _epochs(scale, 100, 300)
    rep = sine.reproduce(out / "sine-fcnn", epochs=epochs, seeds=seeds, progress=progress)
    fc, res = rep["models"]["fcnn"], rep["models"]["resfcnn"]
    ratios = [s["ratio_first_last"] for s in res["per_seed"]]
    rates = {n: [s["rates"][n] for s in fc["per_seed"]] for n in fc["compared"]}
    return {
        "claim": "shallower layers converge faster: FCNN C[0,50] Layer 1 > Hidden 1 > Hidden 2; "
        "residual FCNN C[0,5] Res-Block 1 ≈ 2× Res-Block 4",
        "paper": "0.012 / 0.009 / 0.006; ratio ≈ 2",
        "measured": " / ".join(_ms(v) for v in rates.values())
        + f"; ratio {_ms(ratios)} (ordered in every seed: {fc['ordered_in_every_seed']}, "
        f"{res['ordered_in_every_seed']})",
        "holds": fc["ordered_in_every_seed"] and res["ordered_in_every_seed"],
        "numbers": {"fcnn_rates": rates, "resfcnn_ratio": ratios, "epochs": epochs},
        "figure": "sine-fcnn/fig1.png",
    }


# ---------------------------------------------------------------------------------------------
# 2. Gradient predictiveness and landscape sharpness by depth [4, Figs. 3-4]
# ---------------------------------------------------------------------------------------------
def predictiveness_sharpness(scale, seeds, out, data_dir, progress) -> dict:
    epochs = _epochs(scale, 60, 300)
    config = SineConfig(model="resfcnn", epochs=epochs, lr_milestones=(epochs // 2,))
    compared = ["Res-Block 1", "Res-Block 4"]
    per_seed = []
    for seed in tqdm(range(seeds), disable=not progress, desc="predictiveness"):
        series = {n: [] for n in compared}
        g = torch.Generator().manual_seed(seed)

        def measure(epoch, model, opt, x, y, series=series, g=g):
            if epoch % max(1, epochs // 20):
                return
            i, j = torch.randperm(len(x), generator=g)[:256].split(128)
            got = predictiveness(model, nn.functional.mse_loss, (x[i], y[i]), (x[j], y[j]), opt)
            for n in compared:
                series[n].append((epoch, got[n]["parameters"]))

        run = train_sine(config, seed, callback=measure)
        net = _owner_model(run.trajectory.layers)  # the trained model
        x, y = sine.sine_data(512, seed + 30_000)
        sharp = {}
        for n in compared:
            gen = torch.Generator().manual_seed(seed)
            ls = landscape(net, n, nn.functional.mse_loss, x, y, steps=11, generator=gen)
            eig = top_eigenvalue(net, n, nn.functional.mse_loss, x, y, generator=gen)
            sharp[n] = {"loss_rise": ls.rise(0.5), "top_eigenvalue": eig}
        early = {n: _mean(v for e, v in series[n] if e <= epochs // 2) for n in compared}
        late = {n: _mean(v for e, v in series[n] if e > epochs // 2) for n in compared}
        per_seed.append({"early": early, "late": late, "sharpness": sharp, "series": series})
    a, b = compared
    more_predictive = [s["early"][a] > s["early"][b] for s in per_seed]
    near_one = [min(s["late"].values()) > 0.9 for s in per_seed]
    flatter = [
        s["sharpness"][a]["top_eigenvalue"] < s["sharpness"][b]["top_eigenvalue"] for s in per_seed
    ]
    return {
        "claim": "Res-Block 1's gradient is more predictive than Res-Block 4's before the LR "
        "decay, both near 1 after it (Fig. 3); shallower blocks sit in flatter minima (Fig. 4)",
        "paper": "qualitative (Figs. 3-4)",
        "measured": f"predictiveness before decay RB1 {_ms(s['early'][a] for s in per_seed)}, "
        f"RB4 {_ms(s['early'][b] for s in per_seed)}; after RB1 "
        f"{_ms(s['late'][a] for s in per_seed)}, RB4 {_ms(s['late'][b] for s in per_seed)}; "
        f"top Hessian eigenvalue RB1 "
        f"{_ms(s['sharpness'][a]['top_eigenvalue'] for s in per_seed)}, RB4 "
        f"{_ms(s['sharpness'][b]['top_eigenvalue'] for s in per_seed)}",
        "holds": all(more_predictive) and all(near_one) and all(flatter),
        "numbers": {
            "per_seed": per_seed,
            "more_predictive": more_predictive,
            "near_one_after_decay": near_one,
            "flatter": flatter,
            "epochs": epochs,
        },
    }


def _owner_model(layers):
    """The model a trajectory's LayerGroups was built from."""
    if getattr(layers, "model", None) is None:
        raise ValueError("the trajectory's layers do not know their model")
    return layers.model


# ---------------------------------------------------------------------------------------------
# 3. Deeper blocks fit higher frequencies; complexity ablation [5, Figs. 6, 8a-d]
# ---------------------------------------------------------------------------------------------
PAPER_RANGES = {"Input layer": 2.3, "Res-Block 1": 0.7, "Res-Block 2": 0.5, "Res-Block 3": 0.06}


def frequency(scale, seeds, out, data_dir, progress) -> dict:
    epochs = _epochs(scale, 30, 300)
    blocks = [f"Res-Block {k}" for k in range(1, 5)]
    window = (0, min(5, epochs))
    ratio, fig6 = {c: [] for c in range(1, 5)}, []
    jobs = [(c, s) for c in (4, 3, 2, 1) for s in range(seeds)]
    for complexity, seed in tqdm(jobs, disable=not progress, desc="frequency"):
        config = SineConfig(
            model="resfcnn", epochs=epochs, complexity=complexity, lr_milestones=(epochs // 2,)
        )
        run = train_sine(config, seed)
        rates = convergence(run.trajectory).rates(*window)
        ratio[complexity].append(rates["Res-Block 4"] / rates["Res-Block 1"])
        if complexity == 4:
            fig6.append(block_frequencies(_owner_model(run.trajectory.layers)))
    ranges = {n: [f[n]["range"] for f in fig6] for n in fig6[0]}
    freqs = {n: [f[n]["dominant_frequency"] for f in fig6] for n in fig6[0]}
    mean_freq = [_mean(freqs[n]) for n in blocks]
    rising = all(a <= b for a, b in zip(mean_freq, mean_freq[1:])) and mean_freq[-1] > mean_freq[0]
    mean_ratio = [_mean(ratio[c]) for c in (4, 3, 2, 1)]
    speeds_up = all(a < b for a, b in zip(mean_ratio, mean_ratio[1:]))
    return {
        "claim": "block contributions shrink with depth (Fig. 6) and their dominant frequency "
        "rises; removing high frequencies speeds up the deeper blocks (Fig. 8a-d)",
        "paper": "ranges 2.3 / 0.7 / 0.5 / 0.06 (input, RB1-3); RB4/RB1 rate grows as "
        "complexity falls",
        "measured": "ranges "
        + " / ".join(f"{_mean(ranges[n]):.2f}" for n in ranges)
        + "; dominant frequency "
        + " / ".join(f"{f:.2f}" for f in mean_freq)
        + " cycles/unit (RB1-4); C[0,5] RB4/RB1 at complexity 4,3,2,1: "
        + ", ".join(_ms(ratio[c]) for c in (4, 3, 2, 1)),
        "holds": rising and speeds_up,
        "numbers": {
            "ranges": ranges,
            "dominant_frequency": freqs,
            "ratio_rb4_rb1": ratio,
            "frequency_rising": rising,
            "deeper_speed_up": speeds_up,
            "epochs": epochs,
        },
    }


# ---------------------------------------------------------------------------------------------
# 4. Factors [A.3, Figs. 12-16]
# ---------------------------------------------------------------------------------------------
def _optim(name: str, lr: float, wd: float = 0.0) -> Callable:
    classes = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "rmsprop": torch.optim.RMSprop,
        "adagrad": torch.optim.Adagrad,
    }
    return lambda model: classes[name](model.parameters(), lr=lr, weight_decay=wd)


FACTORS = {
    "SGD lr 0.1 (base)": (SineConfig(), _optim("sgd", 0.1)),
    "SGD lr 0.01": (SineConfig(), _optim("sgd", 0.01)),
    "SGD lr 0.1, weight decay 5e-4": (SineConfig(), _optim("sgd", 0.1, 5e-4)),
    "SGD lr 0.1, 5 hidden layers": (SineConfig(widths=(1,) + (32,) * 5 + (1,)), _optim("sgd", 0.1)),
    "Adam lr 1e-3": (SineConfig(), _optim("adam", 1e-3)),
    "RMSprop lr 1e-3": (SineConfig(), _optim("rmsprop", 1e-3)),
    "Adagrad lr 1e-2": (SineConfig(), _optim("adagrad", 1e-2)),
}


def factors(scale, seeds, out, data_dir, progress) -> dict:
    epochs = _epochs(scale, 60, 300)
    window = (0, max(1, epochs // 6))  # the paper's [0, 50] of 300 epochs: the first sixth
    stats = {name: [] for name in FACTORS}
    jobs = [(name, s) for name in FACTORS for s in range(seeds)]
    for name, seed in tqdm(jobs, disable=not progress, desc="factors"):
        config, opt = FACTORS[name]
        config = replace(config, epochs=epochs, lr_milestones=(epochs // 2,))
        run = train_sine(config, seed, optimizer=opt)
        rates = convergence(run.trajectory).rates(*window)
        hidden = list(rates)[:-1]  # as Fig. 1: the output layer is not compared
        stats[name].append(spearman(range(len(hidden)), [rates[n] for n in hidden]))
    base = _mean(stats["SGD lr 0.1 (base)"])
    adaptive = [_mean(stats[n]) for n in ("Adam lr 1e-3", "RMSprop lr 1e-3", "Adagrad lr 1e-2")]
    weaker_lr = _mean(stats["SGD lr 0.01"]) > base
    erased = all(a > base for a in adaptive)
    return {
        "claim": "Spearman(depth, C) over the non-output layers, first sixth of training, is "
        "negative under SGD (the bias); a smaller LR weakens it; "
        "Adam, RMSprop, Adagrad erase it",
        "paper": "qualitative (Figs. 12-16); normalization layers not run here (the FCNN has "
        "none): NOT measured",
        "measured": "; ".join(f"{n}: {_ms(v, '.2f')}" for n, v in stats.items()),
        "holds": base < 0 and weaker_lr and erased,
        "numbers": {"spearman": stats, "window": list(window), "epochs": epochs},
    }


# ---------------------------------------------------------------------------------------------
# 5. Block size placement [A.6, Fig. 20]
# ---------------------------------------------------------------------------------------------
PLACEMENTS = ((4, 1, 1, 1), (1, 4, 1, 1), (1, 1, 4, 1), (1, 1, 1, 4))


def block_placement(scale, seeds, out, data_dir, progress) -> dict:
    epochs = _epochs(scale, 40, 300)
    mse = {p: [] for p in PLACEMENTS}
    jobs = [(p, s) for p in PLACEMENTS for s in range(seeds)]
    for blocks, seed in tqdm(jobs, disable=not progress, desc="placement"):
        config = SineConfig(
            model="resfcnn", res_blocks=blocks, epochs=epochs, lr_milestones=(epochs // 2,)
        )
        mse[blocks].append(train_sine(config, seed).test_loss[-1])
    means = [_mean(mse[p]) for p in PLACEMENTS]
    return {
        "claim": "the big block placed deeper gives lower test MSE: (4,1,1,1) worst, "
        "(1,1,1,4) best",
        "paper": "MSE falls from (4,1,1,1) to (1,1,1,4) (Fig. 20)",
        "measured": "; ".join(f"{p}: {_ms(mse[p], '.2e')}" for p in PLACEMENTS),
        "holds": means[0] == max(means) and means[-1] == min(means),
        "numbers": {str(p): mse[p] for p in PLACEMENTS} | {"epochs": epochs},
    }


# ---------------------------------------------------------------------------------------------
# 6. CNN bias on real images; deeper stages speed up after the LR decay [3.2, Fig. 2]
# ---------------------------------------------------------------------------------------------
def _train_images(model, x, y, opt, sched, epochs: int, seed: int, on_epoch=None) -> None:
    """Plain classification training, batch 64, one scheduler step per epoch;
    ``on_epoch(epoch)`` after each (epochs counted from 1)."""
    order = torch.Generator().manual_seed(seed + 1)
    for epoch in range(1, epochs + 1):
        model.train()
        for idx in torch.randperm(len(x), generator=order).split(64):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
        if on_epoch is not None:
            on_epoch(epoch)


def cnn_bias(scale, seeds, out, data_dir, progress) -> dict:
    epochs = _epochs(scale, 20, 200)
    decay, width = epochs // 2, (64 if scale == "paper" else 8)
    stages = ["stage1", "stage2", "stage3", "stage4"]
    early, after, source = [], [], None
    for seed in tqdm(range(seeds), disable=not progress, desc="cnn"):
        x, y, _, _, source = load_images(data_dir, seed)
        torch.manual_seed(seed)
        model = cifar_resnet18(num_classes=int(y.max()) + 1, in_chans=x.shape[1], width=width)
        layers = layer_groups(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [decay], 0.1)
        traj = Trajectory(layers)
        traj.snapshot(0)
        _train_images(model, x, y, opt, sched, epochs, seed, on_epoch=traj.snapshot)
        conv = convergence(traj)
        early.append(conv.rates(0, decay))
        post = conv.rates(decay, epochs)
        after.append({n: post[n] / conv.rates(decay // 2, decay)[n] for n in stages})
    bias = [spearman(range(4), [r[n] for n in stages]) for r in early]
    speed = [spearman(range(4), [r[n] for n in stages]) for r in after]
    return {
        "claim": "stage 1 converges fastest before the LR decay; after it the deeper stages "
        "speed up most",
        "paper": "qualitative (Fig. 2, ResNet-50 / VGG-19 on CIFAR-10/100, ImageNet)",
        "measured": f"{source}: Spearman(depth, C[0,{decay}]) {_ms(bias, '.2f')}; "
        f"Spearman(depth, speed-up after decay) {_ms(speed, '.2f')}",
        "holds": _mean(bias) < 0 and _mean(speed) > 0,
        "numbers": {"early_rates": early, "speed_up": after, "data": source, "epochs": epochs},
        "scale_note": "CIFAR-sized ResNet-18 only (VGG-19's five max-pools do not fit 8×8 digits)",
    }


# ---------------------------------------------------------------------------------------------
# 7. Width-graded ViTs at equal parameters [6.1, Fig. 9]
# ---------------------------------------------------------------------------------------------
VITS = ("vit_wg_deeper_wider_small", "vit_wg_vanilla_small", "vit_wg_deeper_narrower_small")


def vit_width(scale, seeds, out, data_dir, progress) -> dict:
    epochs = _epochs(scale, 10, 100)
    acc = {v: [] for v in VITS}
    for name, seed in tqdm(
        [(v, s) for v in VITS for s in range(seeds)], disable=not progress, desc="vit"
    ):
        x, y, xt, yt, source = load_images(data_dir, seed)
        torch.manual_seed(seed)
        model = timm.create_model(
            name,
            num_classes=int(y.max()) + 1,
            img_size=x.shape[-1],
            patch_size=2 if x.shape[-1] <= 8 else 4,
            in_chans=x.shape[1],
        )
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        _train_images(model, x, y, opt, sched, epochs, seed)
        with torch.no_grad():
            model.eval()
            acc[name].append(100.0 * (model(xt).argmax(1) == yt).float().mean().item())
    means = [_mean(acc[v]) for v in VITS]
    return {
        "claim": "at equal parameters, deeper-wider > vanilla > deeper-narrower",
        "paper": "80.75 / 78.88 / 75.75 % (ImageNet)",
        "measured": " / ".join(f"{_ms(acc[v], '.1f')} %" for v in VITS) + f" ({source})",
        "holds": means[0] > means[1] > means[2],
        "numbers": {"accuracy": acc, "epochs": epochs},
    }


# ---------------------------------------------------------------------------------------------
# 8. Acting on the bias [tasks 1, 6, 7]
# ---------------------------------------------------------------------------------------------
def acting(scale, seeds, out, data_dir, progress) -> dict:
    epochs = {"resfcnn-sine": 20, "cnn-digits": 10, "vit-digits": 10}
    pairs = {
        n: p if scale == "paper" else replace(p, epochs=_epochs(scale, epochs[n], p.epochs))
        for n, p in freezing.PAIRS.items()
    }
    seeds = seeds if scale == "paper" else min(seeds, 2)
    rows = []
    jobs = [(p, m, s) for p in pairs.values() for s in range(seeds) for m in freezing.METHODS]
    for pair, method, seed in tqdm(jobs, disable=not progress, desc="acting"):
        rows.append(freezing.run(pair, method, seed))
    table, better = {}, []
    for name, pair in pairs.items():
        base = _mean(r["score"] for r in rows if r["pair"] == name and r["method"] == "none")
        for method in freezing.METHODS:
            mine = [r for r in rows if r["pair"] == name and r["method"] == method]
            score = _mean(r["score"] for r in mine)
            gain = (score - base) * (1 if pair.metric == "accuracy" else -1)
            table[f"{name} / {method}"] = {
                "score": _ms(r["score"] for r in mine),
                "wall_s": _ms((r["wall_s"] for r in mine), ".1f"),
                "better_than_none": gain > 0,
            }
            if method != "none" and gain > 0:
                better.append(f"{name}/{method}")
    return {
        "claim": "acting on the bias (per-depth LR, staggered schedule, LARS, feedback LR, "
        "freezing) beats plain training at the same budget",
        "paper": "the paper proposes, does not measure, most of these",
        "measured": "better than plain: " + (", ".join(better) or "none"),
        "holds": None,
        "numbers": {"table": table, "runs": rows, "seeds": seeds},
        "scale_note": "small: 20/10/10 epochs and at most 2 seeds per pair",
    }


#: name -> (section, recipe)
FINDINGS: dict[str, tuple[str, Callable]] = {
    "fcnn-bias": ("3.1, Fig. 1", fcnn_bias),
    "predictiveness-sharpness": ("4, Figs. 3-4", predictiveness_sharpness),
    "frequency": ("5, Figs. 6, 8a-d", frequency),
    "factors": ("A.3, Figs. 12-16", factors),
    "block-placement": ("A.6, Fig. 20", block_placement),
    "cnn-bias": ("3.2, Fig. 2", cnn_bias),
    "vit-width": ("6.1, Fig. 9", vit_width),
    "acting": ("3.2, 6", acting),
}
