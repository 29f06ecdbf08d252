"""Every kernel path (loop, multi-tensor, fused) passes the same conventions: a state_dict from
another model is refused before it can corrupt memory, half-precision norms do not overflow, and
what torch's fused kernel cannot take is routed to a path that can, with the same result (strided
views and DTensors: the whole optimizer, decided once; torch.compile) or refused (a sparse
gradient on the fused path)."""

import pytest
import torch
from torch import nn

from depthaware.optim import LARS, DepthSGD, FeedbackSGD

pytestmark = pytest.mark.filterwarnings("ignore:DepthSGD got a parameter group without 'depth'")
PATHS = ["loop", "foreach", "fused"]
OPTIMIZERS = [LARS, FeedbackSGD, DepthSGD]


def make(cls, params, path, **kw):
    return cls(params, foreach=path == "foreach", fused=path == "fused", **kw)


def trained(cls, path, width):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 1))
    opt = make(cls, net.parameters(), path, lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    return net, opt


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_a_state_saved_for_another_width_is_refused_before_it_loads(cls, path):
    _, small = trained(cls, path, 8)
    net, wide = trained(cls, path, 64)  # a wider model's optimizer resumes the small one's state
    before = {p: {k: v.clone() for k, v in wide.state[p].items()} for p in net.parameters()}
    with pytest.raises(ValueError, match=r"state 'momentum_buffer' of parameter #0 of shape "):
        wide.load_state_dict(small.state_dict())
    for p in net.parameters():  # nothing was loaded
        assert all(torch.equal(v, before[p][k]) for k, v in wide.state[p].items())
    wide.step()  # and it still steps


def test_the_error_names_the_parameter_and_its_layer():
    def opt(width):
        net = nn.Linear(3, width)
        groups = [{"params": [net.weight], "names": ["fc.weight"], "layer": "head"}]
        o = LARS(groups, momentum=0.9)
        net(torch.randn(2, 3)).sum().backward()
        o.step()
        return o

    with pytest.raises(ValueError, match=r"'fc.weight' of layer 'head' has shape \(2, 3\), the "):
        opt(5).load_state_dict(opt(2).state_dict())


@pytest.mark.parametrize("cls", [LARS, FeedbackSGD])
def test_half_precision_norms_are_taken_in_float32_on_every_path(cls):
    """A float16 gradient of norm 1e5 is finite; its float16 norm would be inf (LARS refused it)
    and its float16 square overflows above 256 (FeedbackSGD's signal stopped updating)."""
    results = {}
    for path in PATHS:
        torch.manual_seed(0)
        w = nn.Parameter(torch.randn(100, 100).half())
        opt = make(cls, [w], path, lr=1e-6, momentum=0.9)
        for step in range(3):
            w.grad = torch.full((100, 100), 1000.0, dtype=torch.float16)
            w.grad[step] = -1000.0  # successive gradients differ: a cosine below 1
            opt.step()
        signal = opt.state[w].get("signal")
        results[path] = (w.detach().float(), None if signal is None else signal.item())
    for path in ("foreach", "fused"):
        torch.testing.assert_close(results[path][0], results["loop"][0], rtol=1e-3, atol=1e-3)
        if cls is FeedbackSGD:
            assert results[path][1] == pytest.approx(results["loop"][1], abs=1e-5)
            assert results[path][1] < 1.0  # the signal moved


def strided():
    base = torch.randn(10, 5, 2, generator=torch.Generator().manual_seed(0))
    return nn.Parameter(base[..., 0]), base


@pytest.mark.parametrize("path", PATHS)
def test_depth_sgd_on_a_strided_view_equals_its_contiguous_copy(path):
    p, base = strided()
    other = base[..., 1].clone()
    q = nn.Parameter(p.detach().clone())
    kw = dict(lr=0.1, momentum=0.9, weight_decay=1e-2)
    opts = make(DepthSGD, [p], path, **kw), make(DepthSGD, [q], path, **kw)
    for step in range(3):
        g = torch.randn(10, 5, generator=torch.Generator().manual_seed(step))
        p.grad, q.grad = g.clone(), g.clone()
        for o in opts:
            o.step()
    torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=0)
    assert torch.equal(base[..., 1], other), "memory outside the view changed"


@pytest.mark.parametrize("path", PATHS)
def test_depth_sgd_takes_sparse_gradients_as_torch_sgd_and_the_fused_path_refuses_them(path):
    def run(cls, path):
        emb = nn.Embedding(10, 3, sparse=True)
        nn.init.constant_(emb.weight, 1.0)
        opt = make(cls, emb.parameters(), path, lr=0.1, momentum=0.9)
        for i in range(3):
            opt.zero_grad()
            emb(torch.tensor([i, i + 1])).sum().backward()
            opt.step()
        return emb.weight.detach()

    if path != "fused":
        torch.testing.assert_close(run(DepthSGD, path), run(torch.optim.SGD, "loop"))
        return
    emb = nn.Embedding(10, 3, sparse=True)
    before = emb.weight.detach().clone()
    opt = make(DepthSGD, emb.parameters(), "fused", lr=0.1, momentum=0.9)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match=r"parameter #0 of shape \(10, 3\) has a sparse grad"):
        opt.step()
    assert torch.equal(emb.weight, before) and not opt.state  # nothing moved


def test_the_fused_path_is_decided_once_when_torchs_kernel_cannot_take_a_parameter():
    """fused=True with a strided view anywhere: every group takes the multi-tensor path from
    construction on (a warning names the parameter), as a group added later does."""
    p, _ = strided()
    w = nn.Parameter(torch.randn(3))
    with pytest.warns(UserWarning, match=r"parameter #0 of shape \(10, 5\) is a strided view"):
        opt = DepthSGD([{"params": [w], "depth": 0}, {"params": [p], "depth": 1}], fused=True)
    assert [(g["fused"], g["foreach"]) for g in opt.param_groups] == [(False, True)] * 2
    assert not opt._step_supports_amp_scaling  # a GradScaler unscales for it
    fused = make(DepthSGD, [{"params": [w], "depth": 0}], "fused")
    with pytest.warns(UserWarning, match="strided view"):
        fused.add_param_group({"params": [p], "depth": 1})
    assert not any(g["fused"] for g in fused.param_groups)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_a_grad_scaler_step_equals_the_unscaled_step(cls, path):
    """Power-of-two scales unscale exactly: every path, fused with routed (strided) tensors too."""

    def run(scaled):
        p, _ = strided()
        w = nn.Parameter(torch.randn(4, 5, generator=torch.Generator().manual_seed(1)))
        opt = make(cls, [p, w], path, lr=0.1, momentum=0.9, weight_decay=1e-2)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, enabled=scaled)
        for step in range(3):
            opt.zero_grad()
            x = torch.randn(5, 3, generator=torch.Generator().manual_seed(step))
            loss = (p @ x).pow(2).mean() + (w @ x).pow(2).mean()
            scaler.scale(loss).backward()
            if step == 1:  # an overflow: the scaler skips the step
                p.grad[0, 0] = float("inf")
                if not scaled:
                    continue
            scaler.step(opt)
            scaler.update()
        return p.detach(), w.detach(), scaler.get_scale()

    (p, w, scale), (p_ref, w_ref, _) = run(True), run(False)
    assert scale < 2.0**8
    torch.testing.assert_close(p, p_ref, rtol=0, atol=0)
    torch.testing.assert_close(w, w_ref, rtol=0, atol=0)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_a_compiled_step_equals_the_eager_step(cls, path):
    """torch.compile cannot trace the fused kernel: a fused request (the default on CPU) takes
    the multi-tensor path."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    params = [
        nn.Parameter(torch.randn(8, 4, generator=g)),
        nn.Parameter(torch.randn(4, generator=g)),
    ]
    eager = [nn.Parameter(p.detach().clone()) for p in params]
    opt, ref = make(cls, params, path, lr=0.1), make(cls, eager, path, lr=0.1)
    compiled = torch.compile(opt.step, backend="aot_eager")
    for _ in range(3):
        for p, e in zip(params, eager):
            grad = torch.randn(p.shape, generator=g)
            p.grad, e.grad = grad.clone(), grad.clone()
        compiled()
        ref.step()
    for p, e in zip(params, eager):
        torch.testing.assert_close(p, e)
