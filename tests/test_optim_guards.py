"""What the optimizers refuse or repair before a step writes a wrong number: a NaN/inf learning
rate (refused, naming the group, nothing updated), a GradScaler step skipped on an overflow
(torch's fused SGD leaves uninitialised momentum buffers behind: dropped), and a group of mixed
dtypes (each tensor's step independent of its neighbours' dtype); on every kernel path."""

import copy
import math

import pytest
import torch
from torch import nn

import depthaware as da
from depthaware.optim import LARS, DepthSGD, FeedbackSGD

PATHS = ["loop", "foreach", "fused"]


def path_kw(path):
    return dict(foreach=path == "foreach", fused=path == "fused")


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


def backward(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, generator=g)
    net.zero_grad()
    nn.functional.mse_loss(net(x), x.sum(1, keepdim=True).sin()).backward()


@pytest.mark.parametrize("lr", [math.nan, math.inf, torch.tensor(math.nan)], ids=str)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", [LARS, FeedbackSGD, DepthSGD])
def test_a_non_finite_lr_is_refused_naming_its_group_before_any_weight_moves(cls, path, lr):
    net = model()
    opt = cls(da.optim.depth_param_groups(net, lr=0.1), momentum=0.9, **path_kw(path))
    backward(net)
    opt.step()
    before = copy.deepcopy(net.state_dict())
    opt.param_groups[2]["lr"] = lr  # what a scheduler gone wrong writes
    backward(net, 1)
    with pytest.raises(FloatingPointError, match=r"param group 2 \(layer '2'\) has lr (nan|inf)"):
        opt.step()
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def scaled_backward(net, scaler, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, generator=g)
    net.zero_grad()
    scaler.scale(nn.functional.mse_loss(net(x), x.sum(1, keepdim=True).sin())).backward()


@pytest.mark.parametrize("dampening", [0.0, 0.5])
def test_a_gradscaler_step_skipped_on_its_first_overflow_leaves_no_garbage_buffer(dampening):
    net, twin = model(), model()
    kw = dict(momentum=0.9, dampening=dampening, fused=True)
    opt = DepthSGD(da.optim.depth_param_groups(net, lr=0.1), **kw)
    fresh = DepthSGD(da.optim.depth_param_groups(twin, lr=0.1), **kw)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    before = copy.deepcopy(net.state_dict())
    scaled_backward(net, scaler)
    with torch.no_grad():
        net[0].weight.grad[0, 0] = math.inf  # the first step overflows: the scaler skips it
    scaler.step(opt)
    scaler.update()
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all("momentum_buffer" not in opt.state[p] for p in net.parameters())
    for step in range(1, 3):  # the next steps are a fresh optimizer's first ones
        scaled_backward(net, scaler, step)
        scaler.step(opt)
        scaler.update()
        backward(twin, step)
        fresh.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.filterwarnings("ignore:DepthSGD\\(fused=True\\)")
def test_depthsgd_after_load_state_dict_keeps_its_path_and_unscales_once():
    """A fused request sent to the multi-tensor path when built keeps it through load_state_dict
    (and the step hooks are not registered again): a GradScaler unscales its gradients once."""
    base = torch.randn(4, 3, 2)
    strided = nn.Parameter(base[..., 0])  # a strided view: off the fused kernel
    plain = nn.Parameter(strided.detach().clone())
    results = []
    for param, reload in ((strided, True), (plain, False)):
        opt = DepthSGD([{"params": [param], "depth": 0}], lr=0.1, momentum=0.9, fused=True)
        if reload:
            for _ in range(3):
                opt.load_state_dict(opt.state_dict())
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for step in range(2):
            param.grad = None
            scaler.scale((param * (0.5 + step)).sum()).backward()
            scaler.step(opt)
            scaler.update()
        results.append(param.detach().clone())
    torch.testing.assert_close(results[0], results[1])


@pytest.mark.parametrize("path", PATHS)
def test_feedbacksgd_steps_a_float32_tensor_alike_whatever_dtype_its_group_starts_with(path):
    def run(order):
        g = torch.Generator().manual_seed(0)
        half = nn.Parameter(torch.randn(5, generator=g).to(torch.bfloat16))
        full = nn.Parameter(torch.randn(6, 3, generator=g))
        params = [half, full] if order == "bf16 first" else [full, half]
        opt = FeedbackSGD([{"params": params}], lr=0.1, momentum=0.9, min_scale=0.3,
                          **path_kw(path))  # fmt: skip
        for step in range(4):
            gen = torch.Generator().manual_seed(10 + step)
            full.grad = torch.randn(6, 3, generator=gen)
            half.grad = torch.randn(5, generator=gen).to(torch.bfloat16)
            opt.step()
        return full.detach().clone()

    assert torch.equal(run("bf16 first"), run("float32 first"))
