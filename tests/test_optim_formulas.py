"""LARS and FeedbackSGD against plain readings of their formulas, on every kernel path."""

import copy

import pytest
import torch
from optim_helpers import reference_lars
from torch import nn

from depthaware.optim import LARS, FeedbackSGD


# ---------------------------------------------------------------------------------------------
# LARS against a plain reading of the formula
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["loop", "foreach", "fused"])
@pytest.mark.parametrize(
    "opts",
    [
        dict(),
        dict(weight_decay=1e-2),
        dict(nesterov=True, weight_decay=1e-3),
        dict(trust_clip=True, trust_coefficient=0.02),
        dict(trust_by="group", weight_decay=1e-3),
        dict(momentum=0.0, weight_decay=1e-2),
        dict(adapt_1d=True),
    ],
    ids=["plain", "wd", "nesterov", "larc", "by_group", "no_momentum", "adapt_1d"],
)
def test_lars_matches_reference(path, opts):
    torch.manual_seed(0)
    params = [
        nn.Parameter(torch.randn(5, 3)),
        nn.Parameter(torch.zeros(4, 4)),  # zero-init
        nn.Parameter(torch.randn(3)),
        nn.Parameter(torch.randn(6, 2).t()),
        nn.Parameter(torch.randn(256, 257)),  # large enough for the BLAS norm on a CPU
    ]  # 1-d, strided
    kw = {
        **dict(
            lr=0.3,
            momentum=0.9,
            weight_decay=0.0,
            trust_coefficient=0.001,
            trust_clip=False,
            nesterov=False,
            trust_by="param",
        ),
        **opts,
    }
    opt = LARS(params, foreach=path == "foreach", fused=path == "fused", **kw)
    adapt = [p.ndim > 1 or kw.get("adapt_1d", False) for p in params]
    ref_p = [p.detach().double().clone() for p in params]
    bufs = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for step in range(4):
        for p in params:
            p.grad = torch.randn_like(p)
        if step == 2:
            params[0].grad.zero_()  # a zero gradient: ratio 1, never NaN
        grads = [p.grad.detach().double() for p in params]
        ref_p = reference_lars(
            ref_p,
            grads,
            bufs,
            lr=kw["lr"],
            momentum=kw["momentum"],
            wd=kw["weight_decay"],
            eta=kw["trust_coefficient"],
            clip=kw["trust_clip"],
            nesterov=kw["nesterov"],
            by_group=kw["trust_by"] == "group",
            adapt=adapt,
        )
        opt.step()
        if not kw["nesterov"]:  # every path only reads .grad (fused Nesterov leaves q * g there)
            for p, g in zip(params, grads):
                assert torch.equal(p.grad.double(), g)
        for p, r in zip(params, ref_p):
            assert torch.isfinite(p).all()
            torch.testing.assert_close(p.detach().double(), r, rtol=1e-5, atol=1e-6)


def test_lars_paths_agree_and_zero_init_weight_gets_neighbour_sized_step():
    def run(path):
        torch.manual_seed(0)
        params = [
            nn.Parameter(torch.randn(64, 64) * 0.1),
            nn.Parameter(torch.zeros(64, 64)),
            nn.Parameter(torch.randn(64, 64) * 0.1),
        ]
        opt = LARS(params, lr=1.0, momentum=0.0, foreach=path == "foreach", fused=path == "fused")
        for p in params:
            p.grad = torch.randn_like(p)
        before = [p.detach().clone() for p in params]
        opt.step()
        return [(p.detach() - b).norm().item() for p, b in zip(params, before)], params

    (steps_a, pa), (_, pb), (_, pc) = run("loop"), run("foreach"), run("fused")
    for a, b, c in zip(pa, pb, pc):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)
    # the zero-initialised weight moves on its neighbours' scale (ratio = their mean), where a
    # fallback ratio of 1 would have moved it eta^-1 * ||g|| / ||w|| ~ 10^4 times further
    assert 0.5 < steps_a[1] / steps_a[0] < 2
    assert 0.5 < steps_a[1] / steps_a[2] < 2


@pytest.mark.parametrize("opt_class", [LARS, FeedbackSGD])
def test_fused_path_takes_mixed_dtypes(opt_class):
    def run(fused):
        torch.manual_seed(0)
        dtypes = [torch.float32, torch.float64, torch.bfloat16]
        params = [nn.Parameter(torch.randn(s, dtype=d)) for d in dtypes for s in [(5,), (3, 4)]]
        opt = opt_class(params, lr=0.1, momentum=0.9, weight_decay=1e-2, fused=fused, foreach=False)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
        return params

    for a, b in zip(run(False), run(True)):
        assert a.dtype == b.dtype
        tol = dict(rtol=1e-2, atol=1e-2) if a.dtype == torch.bfloat16 else {}
        torch.testing.assert_close(a, b, **tol)


def test_lars_adapts_without_weight_decay():
    p = nn.Parameter(torch.ones(3, 3))
    p.grad = torch.full((3, 3), 10.0)
    LARS([p], lr=1.0, momentum=0.0, weight_decay=0.0, trust_coefficient=0.01).step()
    # q = 0.01 * 3 / 30 = 0.001; step = q * g = 0.01
    torch.testing.assert_close(p.detach(), torch.full((3, 3), 0.99))


@pytest.mark.parametrize(
    "make, sgd_kw, shapes",
    [
        # LARS leaves 1-d tensors unadapted: q = 1 everywhere
        (
            lambda ps: LARS(ps, lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
            dict(weight_decay=1e-2, nesterov=True),
            [(5,), (7,)],
        ),
        # FeedbackSGD with min_scale = max_scale = 1: the multiplier is always 1
        (
            lambda ps: FeedbackSGD(
                ps, lr=0.1, momentum=0.9, weight_decay=1e-3, min_scale=1.0, max_scale=1.0
            ),
            dict(weight_decay=1e-3),
            [(4, 5), (5,)],
        ),
    ],
    ids=["LARS-unadapted", "FeedbackSGD-fixed"],
)
def test_no_op_settings_are_torch_sgd(make, sgd_kw, shapes):
    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(s)) for s in shapes]
    b = copy.deepcopy(a)
    ours = make(a)
    sgd = torch.optim.SGD(b, lr=0.1, momentum=0.9, **sgd_kw)
    for _ in range(5):
        for p, q in zip(a, b):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        ours.step()
        sgd.step()
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("path", ["loop", "foreach", "fused"])
def test_feedback_lowers_the_lr_of_a_layer_whose_gradient_flips(path):
    steady, flipping = nn.Parameter(torch.zeros(10)), nn.Parameter(torch.zeros(10))
    opt = FeedbackSGD(
        [{"params": [steady], "layer": "steady"}, {"params": [flipping], "layer": "flipping"}],
        lr=0.01,
        momentum=0.9,
        beta=0.5,
        min_scale=0.1,
        max_scale=1.0,
        foreach=path == "foreach",
        fused=path == "fused",
    )
    direction = torch.linspace(-1, 1, 10)
    for t in range(20):
        steady.grad = direction.clone()
        flipping.grad = direction * (-1) ** t
        opt.step()
    m = opt.multipliers()
    assert m["steady"] == pytest.approx(1.0)
    assert m["flipping"] == pytest.approx(0.1, abs=1e-3)  # cos = -1 at every step


@pytest.mark.parametrize("path", ["loop", "foreach", "fused"])
@pytest.mark.parametrize("signal_by", ["group", "param"])
def test_feedback_multiplier_follows_the_gradient_cosine(path, signal_by):
    torch.manual_seed(0)
    shapes = [[(256, 257), (7,)], [(5, 3), (4,)]]  # a BLAS-sized tensor and small ones
    groups = [
        {"params": [nn.Parameter(torch.zeros(s)) for s in ss], "layer": f"L{i}"}
        for i, ss in enumerate(shapes)
    ]
    beta, lo, hi = 0.7, 0.2, 1.5
    opt = FeedbackSGD(
        groups,
        lr=0.01,
        momentum=0.9,
        beta=beta,
        min_scale=lo,
        max_scale=hi,
        signal_by=signal_by,
        foreach=path == "foreach",
        fused=path == "fused",
    )
    base = [[torch.randn(s, dtype=torch.float64) for s in ss] for ss in shapes]
    prev, ema = None, [[1.0] * 2 for _ in shapes]  # a second route: float64, by hand
    for _ in range(5):
        grads = [[b + 1.5 * torch.randn_like(b) for b in bs] for bs in base]
        for g, gs in zip(groups, grads):
            for p, gr in zip(g["params"], gs):
                p.grad = gr.float()
        opt.step()
        if prev is not None:
            for i, (gs, ps) in enumerate(zip(grads, prev)):
                if signal_by == "group":
                    a, b = (
                        torch.cat([g.flatten() for g in gs]),
                        torch.cat([q.flatten() for q in ps]),
                    )
                    cos = [float(a @ b / (a.norm() * b.norm()))] * 2
                else:
                    cos = [
                        float(g.flatten() @ q.flatten() / (g.norm() * q.norm()))
                        for g, q in zip(gs, ps)
                    ]
                ema[i] = [beta * e + (1 - beta) * c for e, c in zip(ema[i], cos)]
        prev = grads
    expected = {f"L{i}": lo + (hi - lo) * (1 + sum(e) / 2) / 2 for i, e in enumerate(ema)}
    assert 0.3 < min(expected.values()) and max(expected.values()) < 1.4  # not at a bound
    got = opt.multipliers()
    for layer, m in expected.items():
        assert got[layer] == pytest.approx(m, rel=1e-5)
