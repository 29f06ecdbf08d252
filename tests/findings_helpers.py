"""What the findings' rule tests share: synthetic run results whose numbers are known, and the
judges' context built from them (no training)."""

import numpy as np

from depthaware.recipes import factor_claims, sine_findings
from depthaware.recipes.findings import SCALES, Context
from depthaware.recipes.paper import FINDINGS
from depthaware.recipes.results import RESULTS

PAPER = SCALES["paper"]  # the paper's schedule: windows [0,50] (fcnn), [0,5] (residual), [0,20]


def fake_run(layer_rates: dict, window: int, epochs: int = 300, **extra) -> dict:
    """A run whose layers have exactly ``layer_rates`` as C over [0, window] (Definition 2.1):
    each distance falls linearly at that rate until the window ends, then linearly to 0 (θ*)."""
    names = list(layer_rates)
    steps = list(range(epochs + 1))
    distances = []
    for name in names:
        at_w = 1 - layer_rates[name] * window
        d = [1 - layer_rates[name] * t for t in range(window + 1)]
        d += [at_w * (epochs - t) / (epochs - window) for t in range(window + 1, epochs + 1)]
        distances.append(d)
    zeros = np.zeros((len(names), epochs + 1)).tolist()
    return {
        "layers": names,
        "depths": list(range(len(names))),
        "steps": steps,
        "distances": distances,
        "norms": zeros,
        "steps_moved": [row[:-1] for row in zeros],
        **extra,
    }


def context(finding, make, seeds=2, scale=PAPER) -> Context:
    """Judge's context with ``make(spec) -> result`` (as its cache file holds it) for every run
    the finding plans."""
    specs = FINDINGS[finding].plan(scale, seeds, None)
    results = {s.key: RESULTS[s.kind].from_dict({"config": {}, "seed": s.seed, **make(s)})
               for s in specs}  # fmt: skip
    return Context(scale, seeds, results)


def outcomes(finding, make, **kw) -> list[str]:
    return [v.outcome for v in FINDINGS[finding].judge(context(finding, make, **kw))]


RES = ["Input layer", "Res-Block 1", "Res-Block 2", "Res-Block 3", "Res-Block 4", "Output layer"]


def res_rates(values):
    return dict(zip(RES, [*values, 0.01]))


def sketched(run: dict, error=lambda step: 1.0) -> dict:
    """A sketched copy of ``run``'s distances: 4 rows that each equal the exact distance times
    ``error(step)`` (1: a perfect sketch), with a spread of 1e-12 (a sketched layer)."""
    spread = (1 - 1e-12, 1 + 1e-12, 1, 1)
    rows = [
        [[d * error(t) * e for e in spread] for t, d in zip(run["steps"], layer)]
        for layer in run["distances"]
    ]
    rms = [[d * error(t) for t, d in zip(run["steps"], layer)] for layer in run["distances"]]
    return {**run, "distances": rms, "distance_rows": rows}


def with_sketch(run: dict, error=lambda step: 1.0, resketches: int = 3) -> dict:
    """``run`` with ``resketches`` sketched copies of its distances (:func:`sketched`), as its
    exact snapshots sketched anew with as many sketch seeds (``resketch``)."""
    return {**run, "resketch": [sketched(run, error) for _ in range(resketches)]}


SHALLOW_FASTER = [0.6, 0.5, 0.4, 0.3, 0.2]  # Input layer, Res-Blocks 1-4: Spearman -1
DEEP_FASTER = SHALLOW_FASTER[::-1]  # Spearman +1
PAPER_FACTORS = {  # rates that follow every sentence of A.3
    "base": SHALLOW_FASTER,
    "lr 0.01": [0.5, 0.6, 0.4, 0.3, 0.2],  # Spearman -0.9: weaker than -1
    "weight decay 1e-4": [0.5, 0.4, 0.32, 0.26, 0.2],  # blocks slower and more alike
    "weight decay 3e-4": [0.45, 0.35, 0.3, 0.25, 0.21],
    "weight decay 1e-3": [0.4, 0.3, 0.27, 0.24, 0.21],
    "weight decay 1e-2": [0.3, 0.2, 0.19, 0.18, 0.17],
    "6 blocks": [0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
    "8 blocks": [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
    "Adam 1e-3": DEEP_FASTER,
    "RMSprop 1e-3": DEEP_FASTER,
    "RMSprop 1e-2": DEEP_FASTER,
    "Adagrad 1e-2": DEEP_FASTER,
    "BatchNorm": [1.5, 1.4, 1.3, 1.2, 1.1],  # faster than lr 0.01's blocks, ordered
    "LayerNorm": [2.0, 2.1, 2.2, 2.3, 2.4],  # faster than BatchNorm, no bias
    "GroupNorm": [2.0, 2.1, 2.2, 2.3, 2.4],
}


def factor_make(table):
    def make(spec):
        name = next(
            n for n, kw in factor_claims.FACTORS.items()
            if spec.config == sine_findings.resfcnn(PAPER, **kw)
        )  # fmt: skip
        if name not in table:  # the normalized networks at LR 0.1
            return {"diverged": "the training loss became nan in epoch 1"}
        c = [v / 10 for v in table[name]]  # rates over [0,5] below 1/5
        names = ["Input layer", *[f"Res-Block {k}" for k in range(1, len(c))], "Output layer"]
        return fake_run(dict(zip(names, [*c, 0.001])), 5)

    return make
