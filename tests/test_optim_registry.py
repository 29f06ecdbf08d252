"""timm's registry of depthaware's optimizers, and the edges of torch's optimizer conventions:
gradients left unchanged, tensor LRs, groups without names, step hooks, sparse and complex
parameters, overflow, and torch's private kernels gone."""

import inspect

import pytest
import timm
import torch
from optim_helpers import PATHS, grads_for, make
from torch import nn

import depthaware as da
from depthaware.optim import LARS, DepthSGD, FeedbackSGD

# DepthSGD on plain parameters is plain SGD with a warning (tested below); here it is intended
pytestmark = pytest.mark.filterwarnings("ignore:DepthSGD got a parameter group without 'depth'")

NAMES = ["depthsgd", "depthlars", "depthfeedback"]


@pytest.mark.parametrize("name", NAMES)
def test_registered_entries_are_optimizer_classes_with_honest_infos(name):
    cls = timm.optim.get_optimizer_class(name, bind_defaults=False)
    assert inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)
    info = timm.optim.get_optimizer_info(name)
    args = inspect.signature(cls.__init__).parameters
    assert (info.has_eps, info.has_betas, info.has_momentum) == (
        "eps" in args,
        "betas" in args,
        "momentum" in args,
    )
    opt = timm.optim.create_optimizer_v2(
        [nn.Parameter(torch.ones(4, 4))], name, lr=1e-3, eps=1e-6, betas=(0.5, 0.6), momentum=0.5
    )
    assert opt.param_groups[0]["momentum"] == 0.5


@pytest.mark.parametrize("name", NAMES)
def test_registered_names_pass_timms_basic_cases(name):
    """timm's registry-wide pattern: plain, dict and single-tensor groups, non-contiguous params."""
    for weight, bias in [
        (torch.randn(10, 5), torch.randn(10)),
        (torch.randn(10, 5, 2)[..., 0], torch.randn(10, 2)[..., 0]),
    ]:
        for build in (
            lambda w, b: [w, b],
            lambda w, b: [{"params": [w]}, {"params": [b], "lr": 1e-2}],
            lambda w, b: [{"params": b, "lr": 1e-2}],
        ):
            w, b, x = nn.Parameter(weight.clone()), nn.Parameter(bias.clone()), torch.randn(5)
            with pytest.warns(UserWarning) if name == "depthsgd" else _no_warning():
                opt = timm.optim.create_optimizer_v2(build(w, b), name, lr=1e-3)
            repr(opt)

            def fn(opt=opt, w=w, b=b, x=x):
                opt.zero_grad()
                loss = (w.mv(x) + b).pow(2).sum()
                loss.backward()
                return loss

            first = fn().item()
            for _ in range(50):
                opt.step(fn)
            assert fn().item() < first


class _no_warning:  # noqa: N801 - a context manager used like pytest.warns
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", [LARS, FeedbackSGD])
def test_grad_is_left_unchanged(cls, path, nesterov):
    params = [nn.Parameter(torch.randn(16, 8)), nn.Parameter(torch.randn(8))]
    opt = make(cls, params, path, lr=1e-2, momentum=0.9, weight_decay=0.1, nesterov=nesterov)
    for step in range(2):
        grads = [3 * g for g in grads_for(params, step)]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for p, g in zip(params, grads):
            assert torch.equal(p.grad, g)


def test_model_keyword_takes_a_group_whose_params_is_one_tensor():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    opt = timm.optim.create_optimizer_v2(
        [{"params": model[0].bias, "lr": 1e-2}], "depthlars", lr=1e-3, model=model
    )
    [group] = opt.param_groups
    assert group["params"] == [model[0].bias] and group["names"] == ["0.bias"]
    assert group["lr"] == 1e-2 and group["layer"] == "0"


def test_a_tensor_lr_stays_the_callers_where_the_scale_is_1():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    lr = torch.tensor(0.1)
    opt = timm.optim.create_optimizer_v2(model, "depthlars", lr=lr, model=model)
    assert all(g["lr"] is lr for g in opt.param_groups)
    groups = da.optim.depth_param_groups(model, lr, [1.0, 0.5])
    assert [g["lr"] is lr for g in groups] == [True, True, False, False]
    assert float(groups[2]["lr"]) == pytest.approx(0.05)
    # the optimizer reads the tensor at every step: lr.fill_(0) stops it
    lr.fill_(0.0)
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("cls", [LARS, FeedbackSGD, DepthSGD, torch.optim.SGD])
def test_add_param_group_without_names(cls):
    """Fine-tuning adds groups: torch refuses a group without 'param_names' once any group has
    that key, so depth groups keep their names under 'names'."""
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    head = nn.Linear(1, 1)
    opt = cls(da.optim.depth_param_groups(model, 0.1), lr=0.1, momentum=0.9)
    with pytest.warns(UserWarning, match="without 'depth'") if cls is DepthSGD else _no_warning():
        opt.add_param_group({"params": list(head.parameters()), "lr": 0.01})
    assert opt.param_groups[-1]["momentum"] == 0.9  # the optimizer's defaults fill the rest
    before = head.weight.detach().clone()
    head(model(torch.randn(2, 3))).sum().backward()
    opt.step()
    assert not torch.equal(head.weight, before)  # the added group trains


def test_step_hooks_run_once_per_step():
    torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1)  # patches SGD.step with torch's hooks
    calls = []
    p = nn.Parameter(torch.ones(3))
    for opt in (DepthSGD([p], lr=0.1), LARS([p]), FeedbackSGD([p])):
        opt.register_step_pre_hook(lambda *a: calls.append("pre"))
        opt.register_step_post_hook(lambda *a: calls.append("post"))
        p.grad = torch.ones(3)
        opt.step()
        assert calls == ["pre", "post"], type(opt).__name__
        calls.clear()


def test_sparse_gradients():
    def run(cls):
        emb = nn.Embedding(10, 3, sparse=True)
        torch.nn.init.constant_(emb.weight, 1.0)
        opt = cls(emb.parameters(), lr=0.1, momentum=0.9)
        for i in range(3):
            opt.zero_grad()
            emb(torch.tensor([i, i + 1])).sum().backward()
            opt.step()
        return emb.weight.detach()

    torch.testing.assert_close(run(DepthSGD), run(torch.optim.SGD))
    for cls in (LARS, FeedbackSGD):
        with pytest.raises(
            RuntimeError, match=r"sparse gradients: parameter #0 of shape \(10, 3\)"
        ):
            run(cls)


def test_a_huge_finite_gradient_is_no_error_for_depth_sgd():
    p = nn.Parameter(torch.ones(4, 4))
    p.grad = torch.full((4, 4), 1e30)  # its squared norm overflows float32; the values do not
    DepthSGD([p], lr=1e-40, momentum=0.0).step()
    assert torch.isfinite(p).all()


def test_grad_scaler_skips_an_overflow_step_of_fused_depth_sgd():
    def run(cls):
        torch.manual_seed(0)
        model = nn.Linear(4, 1)
        opt = cls(model.parameters(), lr=0.1, momentum=0.9, fused=True)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        for step in range(3):
            opt.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            scaler.scale(loss).backward()
            if step == 1:
                model.weight.grad[0, 0] = float("inf")  # an overflow: the scaler skips the step
            scaler.step(opt)
            scaler.update()
        return model.weight.detach(), scaler.get_scale()

    (w, scale), (w_ref, scale_ref) = run(DepthSGD), run(torch.optim.SGD)
    assert scale == scale_ref < 2.0**10
    torch.testing.assert_close(w, w_ref)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", [LARS, FeedbackSGD])
def test_complex_params_step_as_their_real_view(cls, path):
    g = torch.Generator().manual_seed(0)
    z = nn.Parameter(torch.randn(6, 4, dtype=torch.complex64, generator=g))
    r = nn.Parameter(torch.view_as_real(z.detach()).clone())
    kw = dict(lr=0.1, momentum=0.9, weight_decay=1e-2, adapt_1d=True) if cls is LARS else {}
    opt_z, opt_r = make(cls, [z], path, **kw), make(cls, [r], path, **kw)
    for _ in range(3):
        grad = torch.randn(6, 4, dtype=torch.complex64, generator=g)
        z.grad, r.grad = grad, torch.view_as_real(grad).clone()
        opt_z.step()
        opt_r.step()
    torch.testing.assert_close(torch.view_as_real(z.detach()), r.detach())


def test_complex_params_with_depth_sgd_equal_torch_sgd():
    z = nn.Parameter(torch.randn(5, dtype=torch.complex64))
    w = nn.Parameter(z.detach().clone())
    for opt_cls, p in ((DepthSGD, z), (torch.optim.SGD, w)):
        p.grad = torch.ones(5, dtype=torch.complex64)
        opt_cls([p], lr=0.1, momentum=0.9).step()
    torch.testing.assert_close(z, w)


def test_lars_refuses_weights_whose_norm_overflows():
    """Weights of 1e18: ||w||^2 overflows float32 and the trust ratio would be NaN."""
    big, small = nn.Parameter(torch.full((64, 64), 1e18)), nn.Parameter(torch.ones(4, 4))
    opt = LARS(
        [{"params": [small, big], "names": ["small", "big"], "layer": "L"}], weight_decay=1e-4
    )
    big.grad, small.grad = torch.ones(64, 64), torch.ones(4, 4)
    with pytest.raises(FloatingPointError, match="trust ratio .* parameter 'big' of layer 'L'"):
        opt.step()
    assert torch.equal(small, torch.ones(4, 4)) and torch.equal(big, torch.full((64, 64), 1e18))


def test_without_torchs_private_fused_kernel_the_default_path_falls_back(monkeypatch):
    def run():
        torch.manual_seed(0)
        p = nn.Parameter(torch.randn(6, 5))
        opt = LARS([p], lr=0.1, weight_decay=1e-3)
        for step in range(3):
            p.grad = grads_for([p], step)[0]
            opt.step()
        return p.detach().clone()

    fused = run()
    monkeypatch.delattr(torch, "_fused_sgd_")
    torch.testing.assert_close(run(), fused)
    w = nn.Parameter(torch.ones(2, 2))
    w.grad = torch.ones(2, 2)
    with pytest.raises(ValueError, match="_fused_sgd_"):
        LARS([w], fused=True).step()


def test_without_torchs_private_path_chooser_the_rule_it_implements_is_used(monkeypatch):
    """choose_path asks torch's private _default_to_fused_or_foreach when foreach is unset; a torch
    without it gets the fallback's answer: foreach on CUDA, the loop elsewhere (both branches;
    a CUDA parameter is stood in for by its device, as this machine may have none)."""
    import types

    import torch.optim.optimizer as torch_optimizer

    from depthaware.optim.kernels import choose_path

    meta = [torch.zeros(3, device="meta")]
    with_torch = choose_path(None, None, meta)
    monkeypatch.delattr(torch_optimizer, "_default_to_fused_or_foreach")
    assert choose_path(None, None, meta) == with_torch == "loop"
    cuda = [types.SimpleNamespace(device=torch.device("cuda", 0))]
    assert choose_path(None, None, cuda) == "foreach"
