"""torch's and timm's optimizer conventions on LARS, FeedbackSGD, DepthSGD and the registered names.

Each test pins one convention against an independent reference: a float64 loop written here or in
optim_helpers.py, torch's own SGD where the settings make them equal, or the same optimizer on
contiguous / real copies of the parameters.
"""

import copy
import pickle

import pytest
import torch
from optim_helpers import PATHS, grads_for, make, reference_lars
from torch import nn

import depthaware as da
from depthaware.optim import LARS, DepthSGD, FeedbackSGD

# DepthSGD on plain parameters is plain SGD with a warning (tested below); here it is intended
pytestmark = pytest.mark.filterwarnings("ignore:DepthSGD got a parameter group without 'depth'")


def strided_params(seed=0):
    """A non-contiguous view, a transposed weight and a channels-last conv weight, each inside a
    larger base tensor whose other elements must never change."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(10, 5, 2, generator=g)
    conv = torch.randn(4, 3, 3, 3, generator=g).to(memory_format=torch.channels_last)
    params = [
        nn.Parameter(base[..., 0]),  # stride (10, 2): the fused kernel would write base[..., 1]
        nn.Parameter(torch.randn(6, 7, generator=g).t()),
        nn.Parameter(conv),
        nn.Parameter(torch.randn(5, generator=g)),
    ]
    return params, base


@pytest.mark.parametrize("path", PATHS)
def test_lars_strided_params_match_the_reference_and_touch_nothing_else(path):
    params, base = strided_params()
    other = base[..., 1].clone()
    kw = dict(lr=0.3, momentum=0.9, weight_decay=1e-2, trust_coefficient=0.02)
    opt = make(LARS, params, path, **kw)
    ref = [p.detach().double().clone() for p in params]
    bufs = [torch.zeros_like(r) for r in ref]
    for step in range(6):
        grads = grads_for(params, step)
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        ref = reference_lars(
            ref,
            [g.double() for g in grads],
            bufs,
            lr=0.3,
            momentum=0.9,
            wd=1e-2,
            eta=0.02,
            clip=False,
            nesterov=False,
            by_group=False,
            adapt=[p.ndim > 1 for p in params],
        )
    assert torch.equal(base[..., 1], other), "memory outside the parameter changed"
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.detach().double(), r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_feedback_strided_params_equal_contiguous_copies(path):
    params, base = strided_params()
    other = base[..., 1].clone()
    dense = [nn.Parameter(p.detach().contiguous().double()) for p in params]
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-3, signal_by="param")
    opt = make(FeedbackSGD, params, path, **kw)
    ref = make(FeedbackSGD, dense, "loop", **kw)
    for step in range(6):
        for p, d, g in zip(params, dense, grads_for(params, step)):
            p.grad, d.grad = g.clone(), g.double()
        opt.step()
        ref.step()
    assert torch.equal(base[..., 1], other), "memory outside the parameter changed"
    for p, d in zip(params, dense):
        torch.testing.assert_close(p.detach().double(), d.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("cls", [LARS, FeedbackSGD])
def test_resume_is_bit_exact_in_any_dtype(cls, dtype):
    def run(opt, params, steps):
        for step in steps:
            for p, g in zip(params, grads_for(params, step)):
                p.grad = g.to(dtype)
            opt.step()

    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(s).to(dtype)) for s in [(8, 4), (4,)]]
    opt = cls(params, lr=0.1, momentum=0.9, weight_decay=1e-3)
    run(opt, params, range(5))
    saved_w = [p.detach().clone() for p in params]
    saved = copy.deepcopy(opt.state_dict())
    run(opt, params, range(5, 10))

    resumed = [nn.Parameter(w.clone()) for w in saved_w]
    opt2 = cls(resumed, lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt2.load_state_dict(saved)
    for p in resumed:  # float32 bookkeeping stays float32 whatever the parameter's dtype
        for key in cls.float32_state:
            assert opt2.state[p][key].dtype == torch.float32
    run(opt2, resumed, range(5, 10))
    for a, b in zip(params, resumed):
        assert torch.equal(a, b)


@pytest.mark.parametrize("copy_fn", ["deepcopy", "pickle"])
@pytest.mark.parametrize("name", ["LARS", "FeedbackSGD", "DepthSGD"])
def test_a_copied_optimizer_steps_like_the_original(name, copy_fn):
    cls = {"LARS": LARS, "FeedbackSGD": FeedbackSGD, "DepthSGD": DepthSGD}[name]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = cls(da.optim.depth_param_groups(model, 0.1, "linear", end=0.5), momentum=0.9)
    x = torch.randn(16, 4)

    def step(m, o):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()

    step(model, opt)
    dup = (
        copy.deepcopy((model, opt))
        if copy_fn == "deepcopy"
        else pickle.loads(pickle.dumps((model, opt)))
    )
    public = {k for k in opt.__dict__ if not k.startswith("_")}
    assert public == {k for k in dup[1].__dict__ if not k.startswith("_")}
    for _ in range(3):
        step(model, opt)
        step(*dup)
    for a, b in zip(model.parameters(), dup[0].parameters()):
        assert torch.equal(a, b)
    copied, dup_opt = dup  # the copy keeps the NaN check (DepthSGD's lives in step hooks)
    dup_opt.zero_grad()
    copied(x).pow(2).mean().backward()
    copied[0].weight.grad[0, 0] = float("nan")
    before = [p.detach().clone() for p in copied.parameters()]
    with pytest.raises(FloatingPointError, match="'0.weight'"):
        dup_opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, copied.parameters()))


@pytest.mark.parametrize("name", ["LARS", "FeedbackSGD", "DepthSGD"])
def test_a_nan_gradient_from_the_closure_is_refused_before_any_update(name):
    cls = {"LARS": LARS, "FeedbackSGD": FeedbackSGD, "DepthSGD": DepthSGD}[name]
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = cls(da.optim.depth_param_groups(model, 0.1), momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]

    def closure():  # the gradients exist only once step() has called it
        opt.zero_grad()
        loss = model(torch.randn(16, 4)).pow(2).mean()
        loss.backward()
        model[2].bias.grad.fill_(float("inf"))
        return loss

    with pytest.raises(FloatingPointError, match="'2.bias'"):
        opt.step(closure)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
