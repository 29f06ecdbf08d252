"""Every optimizer: state_dict resume, closures, non-finite gradients; timm's factory in timm's
own test pattern."""

import copy
import functools

import pytest
import timm
import timm.scheduler
import torch
from optim_helpers import data, loss_of, small_net
from torch import nn

import depthaware as da
from depthaware.optim import LARS, DepthSGD, FeedbackSGD

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
