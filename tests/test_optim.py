import copy
import functools
import math

import pytest
import timm
import timm.scheduler
import torch
from torch import nn

import depthaware as da
from depthaware.optim import LARS, DepthSGD, FeedbackSGD


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))


def data(seed=1, n=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, x.sum(1, keepdim=True).sin()


def loss_of(model, x, y):
    return nn.functional.mse_loss(model(x), y)


# ---------------------------------------------------------------------------------------------
# depth parameter groups
# ---------------------------------------------------------------------------------------------
def test_depth_scales_by_hand():
    assert da.optim.depth_scales(3, "linear", end=0.1) == pytest.approx([1, 0.55, 0.1])
    assert da.optim.depth_scales(3, "geometric", end=0.25) == pytest.approx([1, 0.5, 0.25])
    assert da.optim.depth_scales(2, lambda d, n: 2.0**d) == [1.0, 2.0]
    assert da.optim.depth_scales(2, [0.3, 0.7]) == [0.3, 0.7]
    assert da.optim.depth_scales(1, "linear") == [1.0]
    with pytest.raises(ValueError, match="2 entries for 3 layers"):
        da.optim.depth_scales(3, [1, 2])
    with pytest.raises(ValueError, match=r"\(depth, scale\) \[\(1, -1.0\)\]"):
        da.optim.depth_scales(2, [1, -1])
    with pytest.raises(ValueError, match="'cubic'"):
        da.optim.depth_scales(2, "cubic")


def test_depth_param_groups_structure_and_decay_split():
    model = small_net()
    groups = da.optim.depth_param_groups(
        model, lr=0.2, lr_scale="linear", end=0.5, weight_decay=1e-4
    )
    assert [(g["layer"], g["depth"], g["weight_decay"]) for g in groups] == [
        ("0", 0, 1e-4),
        ("0", 0, 0.0),
        ("2", 1, 1e-4),
        ("2", 1, 0.0),
        ("4", 2, 1e-4),
        ("4", 2, 0.0),
    ]
    assert [g["lr"] for g in groups] == pytest.approx([0.2, 0.2, 0.15, 0.15, 0.1, 0.1])
    assert groups[1]["names"] == ["0.bias"]
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())
    # timm's no_weight_decay() names are exempt too
    vit = timm.create_model("vit_wg_vanilla_small", num_classes=3, img_size=16, patch_size=8)
    vgroups = da.optim.depth_param_groups(vit, lr=0.1, weight_decay=0.05)
    exempt = {n for g in vgroups if g["weight_decay"] == 0 for n in g["names"]}
    assert {"pos_embed", "cls_token", "blocks.0.norm1.weight"} <= exempt
    assert "blocks.0.attn.qkv.weight" not in exempt


def test_weight_decay_exemptions_follow_timms_rule_with_patterns():
    """timm's param_groups_weight_decay reads no_weight_decay() entries as glob patterns; the
    depth groups exempt exactly the parameters that timm's own groups exempt."""

    class Net(nn.Sequential):
        def no_weight_decay(self):
            return {"1.*"}

    model = Net(nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    groups = da.optim.depth_param_groups(model, lr=0.1, weight_decay=0.1)
    ours = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    theirs = timm.optim.param_groups_weight_decay(model, 0.1, no_weight_decay_list={"1.*"})
    assert ours == {id(p) for g in theirs if g["weight_decay"] == 0 for p in g["params"]}
    assert id(model[1].weight) in ours and id(model[2].weight) not in ours


def test_frozen_parameters_are_left_out_and_bad_values_refused():
    model = small_net()
    model[0].requires_grad_(False)
    groups = da.optim.depth_param_groups(model, lr=0.1)
    assert {g["layer"] for g in groups} == {"2", "4"}
    with pytest.raises(ValueError, match="lr must be finite"):
        da.optim.depth_param_groups(model, lr=float("nan"))
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        da.optim.depth_param_groups(da.layer_groups(model, {"all": "0", "b": "2", "c": "4"}), 0.1)


SCHEDULERS = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5),
    "MultiStepLR": lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5], 0.1),
    "ExponentialLR": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10),
    "LambdaLR": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1 / (1 + t)),
    "warmup+cosine": lambda o: torch.optim.lr_scheduler.SequentialLR(
        o,
        [
            torch.optim.lr_scheduler.LinearLR(o, 0.1, 1.0, 3),
            torch.optim.lr_scheduler.CosineAnnealingLR(o, 7),
        ],
        milestones=[3],
    ),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=[g["lr"] for g in o.param_groups], total_steps=20
    ),
    # timm's warm-up starts every group from the same absolute warmup_lr_init, so the ratio
    # holds from the end of the warm-up on; without warm-up it holds throughout
    "timm.CosineLRScheduler": lambda o: timm.scheduler.CosineLRScheduler(o, t_initial=10),
    "timm.StepLRScheduler": lambda o: timm.scheduler.StepLRScheduler(o, 3, 0.5),
    # deeper groups start lower and catch up by step 100: the ratio is the depth scale times the
    # stagger, s_d + (1 - s_d) t / 100 with s_d = 0.5 ** (d / max depth) (the docstring's formula)
    "DepthStaggered": lambda o: da.optim.DepthStaggered(
        o, da.optim.CosineDecay(10, 2), start=0.5, catch_up=100
    ),
}


def stagger(depths: list[int], t: int) -> list[float]:
    s = [0.5 ** (d / max(depths)) for d in depths]
    return [(x + (1 - x) * t / 100) / (s[0] + (1 - s[0]) * t / 100) for x in s]


@pytest.mark.parametrize("name", SCHEDULERS)
def test_per_layer_ratio_survives_scheduler(name):
    model = small_net()
    groups = da.optim.depth_param_groups(model, lr=0.1, lr_scale="geometric", end=0.1)
    opt = torch.optim.SGD(groups, momentum=0.9)
    sched = SCHEDULERS[name](opt)
    scales = [g["depth_scale"] for g in opt.param_groups]
    depths = [g["depth"] for g in opt.param_groups]
    for t in range(1, 8):
        opt.step()
        sched.step(t) if name.startswith("timm") else sched.step()
        lrs = [g["lr"] for g in opt.param_groups]
        want = scales
        if name == "DepthStaggered":
            want = [a * b for a, b in zip(scales, stagger(depths, t), strict=True)]
            assert want != pytest.approx(scales, rel=1e-3)  # the stagger is not neutral here
        assert lrs[0] > 0
        assert [lr / lrs[0] for lr in lrs] == pytest.approx(want, rel=1e-9), (name, t)


# ---------------------------------------------------------------------------------------------
# LARS against a plain reading of the formula
# ---------------------------------------------------------------------------------------------
def reference_lars(params, grads, bufs, *, lr, momentum, wd, eta, clip, nesterov, by_group, adapt):
    """One step, tensor by tensor, in float64, straight from the docstring's formula."""
    wn = [p.double().norm().item() for p in params]
    gn = [g.double().norm().item() for g in grads]
    if by_group:
        W = math.sqrt(sum(w * w for w, a in zip(wn, adapt) if a))
        G = math.sqrt(sum(g * g for g, a in zip(gn, adapt) if a))
        wn, gn = [W] * len(params), [G] * len(params)
    ratios = [eta * w / (g + wd * w) if w > 0 and g > 0 else None for w, g in zip(wn, gn)]
    valid = [r for r, a in zip(ratios, adapt) if r is not None and a]
    fallback = sum(valid) / len(valid) if valid else 1.0
    out = []
    for i, p in enumerate(params):
        q = ratios[i] if ratios[i] is not None else (fallback if wn[i] == 0 and gn[i] > 0 else 1.0)
        if clip:
            q = min(q / lr, 1.0)
        q = q if adapt[i] else 1.0
        d = grads[i].double() + wd * p.double()
        bufs[i] = momentum * bufs[i] + q * d
        step = q * d + momentum * bufs[i] if nesterov else bufs[i]
        out.append(p.double() - lr * step)
    return out


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


# ---------------------------------------------------------------------------------------------
# every optimizer: resume, groups, closure, loss, NaN
# ---------------------------------------------------------------------------------------------
OPTIMIZERS = {
    "LARS": lambda g: LARS(g, lr=0.5, momentum=0.9, weight_decay=1e-4, trust_coefficient=0.02),
    "LARS-group": lambda g: LARS(g, lr=0.5, momentum=0.9, trust_by="group", trust_coefficient=0.02),
    "FeedbackSGD": lambda g: FeedbackSGD(g, lr=0.1, momentum=0.9, weight_decay=1e-4),
    "DepthSGD": lambda g: DepthSGD(g, lr=0.1, momentum=0.9, weight_decay=1e-4),
    "SGD+depth groups": lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9),
}


def train(model, opt, steps, x, y):
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_of(model, x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_resume_is_bit_identical(name):
    x, y = data()
    model = small_net()
    opt = OPTIMIZERS[name](da.optim.depth_param_groups(model, 0.1, "geometric", end=0.5))
    train(model, opt, 5, x, y)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    train(model, opt, 5, x, y)

    resumed = small_net(seed=123)
    resumed.load_state_dict(saved_model)
    opt2 = OPTIMIZERS[name](da.optim.depth_param_groups(resumed, 0.1, "geometric", end=0.5))
    opt2.load_state_dict(saved_opt)
    train(resumed, opt2, 5, x, y)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_loss_falls_with_closure(name):
    x, y = data()
    model = small_net()
    opt = OPTIMIZERS[name](da.optim.depth_param_groups(model, 0.1))

    def closure():
        opt.zero_grad()
        loss = loss_of(model, x, y)
        loss.backward()
        return loss

    first = opt.step(closure).item()
    for _ in range(60):
        last = opt.step(closure).item()
    assert last < 0.7 * first, (first, last)


@pytest.mark.parametrize("name", ["LARS", "FeedbackSGD", "DepthSGD"])
def test_non_finite_gradient_is_a_clear_error_and_nothing_moves(name):
    model = small_net()
    opt = OPTIMIZERS[name](da.optim.depth_param_groups(model, 0.1))
    x, y = data()
    loss_of(model, x, y).backward()
    model[2].weight.grad[0, 0] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(FloatingPointError, match="parameter '2.weight' of layer '2'"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_unchecked_lars_lets_nan_through_and_bad_hyperparameters_are_refused():
    p = nn.Parameter(torch.ones(2, 2))
    p.grad = torch.full((2, 2), float("nan"))
    LARS([p], check_finite=False).step()
    assert not torch.isfinite(p).all()
    with pytest.raises(ValueError, match="trust_by"):
        LARS([p], trust_by="tensor")
    with pytest.raises(ValueError, match="momentum"):
        FeedbackSGD([p], momentum=1.0)
    with pytest.raises(ValueError, match="min_scale"):
        FeedbackSGD([p], min_scale=2.0, max_scale=1.0)


# ---------------------------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------------------------
def test_depth_staggered_by_hand_and_state_dict():
    model = small_net()
    groups = da.optim.depth_param_groups(model, lr=1.0)
    opt = torch.optim.SGD(groups)
    sched = da.optim.DepthStaggered(opt, da.optim.StepDecay([4], 0.1), start=0.25, catch_up=4)
    lr = lambda: [g["lr"] for g in opt.param_groups][::2]  # noqa: E731 - one per layer
    # t=0: deepest starts at 0.25, the middle at 0.25^(1/2) = 0.5
    assert lr() == pytest.approx([1.0, 0.5, 0.25])
    for _ in range(2):
        opt.step()
        sched.step()
    # t=2: s + (1 - s) * 2/4
    assert lr() == pytest.approx([1.0, 0.75, 0.625])
    state = sched.state_dict()
    assert not any(callable(v) for v in state.values())
    for _ in range(3):
        opt.step()
        sched.step()
    assert lr() == pytest.approx([0.1, 0.1, 0.1])  # caught up, after the decay at 4
    expected = []
    for _ in range(3):
        opt.step()
        sched.step()
        expected.append(lr())

    opt2 = torch.optim.SGD(da.optim.depth_param_groups(model, lr=1.0))
    sched2 = da.optim.DepthStaggered(opt2, da.optim.StepDecay([4], 0.1), start=0.25, catch_up=4)
    sched2.load_state_dict(state)
    for _ in range(6):
        opt2.step()
        sched2.step()
    assert [g["lr"] for g in opt2.param_groups][::2] == pytest.approx(expected[-1])


def test_layer_lr_and_warmup_cosine_base():
    opt = torch.optim.SGD(da.optim.depth_param_groups(small_net(), lr=0.5))
    sched = da.optim.LayerLR(opt, lambda t, d: (t + 1) * 10.0**-d)
    assert [g["lr"] for g in opt.param_groups][::2] == pytest.approx([0.5, 0.05, 0.005])
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups][::2] == pytest.approx([1.0, 0.1, 0.01])
    base = da.optim.CosineDecay(total=10, warmup=2)
    assert [base(t) for t in (0, 1, 2, 10)] == pytest.approx([0.5, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="no 'depth'"):
        da.optim.LayerLR(torch.optim.SGD(small_net().parameters(), lr=0.1), lambda t, d: 1)
    with pytest.raises(ValueError, match="start must be in"):
        da.optim.DepthStaggered(opt, base, start=0)


# ---------------------------------------------------------------------------------------------
# timm's factory, in timm's own test pattern
# ---------------------------------------------------------------------------------------------
TIMM_NAMES = ["depthsgd", "depthlars", "depthfeedback"]


def timm_opt(name, model, lr):
    groups = functools.partial(da.optim.depth_param_groups, lr=lr, lr_scale="linear", end=0.5)
    return timm.optim.create_optimizer_v2(model, name, lr=lr, param_group_fn=groups)


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_timm_factory_creates_and_is_deterministic(name):
    assert name in timm.optim.list_optimizers()
    x, y = data()
    runs = []
    for _ in range(2):
        model = small_net()
        opt = timm_opt(name, model, 0.1)
        losses = train(model, opt, 30, x, y)
        runs.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert losses[-1] < losses[0]


def test_timm_factory_without_groups():
    model = small_net()
    lars = timm.optim.create_optimizer_v2(model, "depthlars", lr=0.1, weight_decay=1e-4)
    assert isinstance(lars, LARS) and len(lars.param_groups) == 2  # timm's decay / no-decay
    # depthsgd without depth groups is plain SGD, and says so
    with pytest.warns(UserWarning, match="without 'depth'"):
        sgd = timm.optim.create_optimizer_v2(model, "depthsgd", lr=0.1)
    assert isinstance(sgd, DepthSGD) and all(g["lr"] == 0.1 for g in sgd.param_groups)
    with pytest.raises(ValueError, match="lr_scale needs model"):
        timm.optim.create_optimizer_v2(model, "depthlars", lr=0.1, lr_scale="linear")


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_timm_factory_discovers_layers_with_model_keyword(name):
    """model= splits timm's weight-decay groups by layer: the same lr and weight decay per
    parameter as depth_param_groups gives directly."""
    model = small_net()
    opt = timm.optim.create_optimizer_v2(
        model, name, lr=0.1, weight_decay=1e-4, model=model, lr_scale="geometric", end=0.25
    )
    ref = da.optim.depth_param_groups(model, 0.1, "geometric", end=0.25, weight_decay=1e-4)
    got = {
        id(p): (g["lr"], g["weight_decay"], g["depth"])
        for g in opt.param_groups
        for p in g["params"]
    }
    want = {id(p): (g["lr"], g["weight_decay"], g["depth"]) for g in ref for p in g["params"]}
    assert got == want and len(got) == len(list(model.parameters()))


@pytest.mark.parametrize("name", ["depthlars", "depthfeedback"])
def test_rosenbrock_distance_shrinks_with_closure(name):
    def rosenbrock(t):
        x, y = t
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2

    w = nn.Parameter(torch.tensor([-1.5, 1.5]))
    kw = dict(lr=0.05, trust_coefficient=0.1, adapt_1d=True) if name == "depthlars" else {}
    opt = timm.optim.create_optimizer_v2([w], name, **{"lr": 1e-3, **kw})
    solution = torch.tensor([1.0, 1.0])
    start = (w.detach() - solution).norm().item()

    def closure():
        opt.zero_grad()
        loss = rosenbrock(w)
        loss.backward()
        return loss

    for _ in range(300):
        opt.step(closure)
    assert (w.detach() - solution).norm().item() < 0.5 * start
