"""Per-layer loss landscapes: directions, the batched paths against the plain loop, fallbacks,
non-finite points, restoring the model, and the Hessian's top eigenvalue."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import depthaware as da
from depthaware.measure.landscapes import direction, landscape
from depthaware.measure.sharpness import top_eigenvalue


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    net = da.models.cifar_resnet18(num_classes=10, width=4)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return net.eval(), torch.randn(6, 3, 16, 16), torch.randint(0, 10, (6,))


def test_direction_is_filterwise_for_conv_whole_for_linear_zero_for_vectors():
    w = {"conv": torch.randn(5, 3, 3, 3), "fc": torch.randn(4, 7), "bias": torch.randn(4)}
    w["conv"][2] = 0  # a dead filter gets a zero direction, not NaN
    d = direction(w, _gen())
    torch.testing.assert_close(d["conv"].flatten(1).norm(dim=1), w["conv"].flatten(1).norm(dim=1))
    assert not d["conv"].flatten(1).norm(dim=1)[2] and torch.isfinite(d["conv"]).all()
    torch.testing.assert_close(d["fc"].norm(), w["fc"].norm())
    assert not torch.equal(d["fc"].norm(dim=1), w["fc"].norm(dim=1))  # not row-wise
    assert not d["bias"].any()
    again = direction(w, _gen())
    assert all(torch.equal(d[k], again[k]) for k in d)  # the generator decides


@pytest.mark.parametrize("layer", ["layer4.1.conv2", "layer1.0.conv1", "stage2", "fc"])
def test_batched_and_prefix_equal_the_loop(resnet, layer):
    net, x, y = resnet
    kw = dict(steps=5, radius=0.8)
    ref = landscape(net, layer, F.cross_entropy, x, y, method="loop", generator=_gen(), **kw)
    for method in ("batched", "prefix"):
        got = landscape(net, layer, F.cross_entropy, x, y, method=method, generator=_gen(), **kw)
        assert got.method == method
        torch.testing.assert_close(got.loss, ref.loss, rtol=1e-5, atol=1e-5)
        assert got.center == pytest.approx(ref.center, rel=1e-6)
    assert ref.loss.std() > 0.01  # the grid really moves the loss
    assert ref.loss[2, 2].item() == pytest.approx(ref.center, rel=1e-6)


def test_chunk_size_does_not_change_the_result(resnet):
    net, x, y = resnet
    a = landscape(net, "stage3", F.cross_entropy, x, y, steps=4, chunk_size=1, generator=_gen())
    b = landscape(net, "stage3", F.cross_entropy, x, y, steps=4, chunk_size=7, generator=_gen())
    torch.testing.assert_close(a.loss, b.loss)


def test_train_mode_falls_back_and_restores_buffers(resnet):
    net, x, y = resnet
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    got = landscape(net, "stage1", F.cross_entropy, x, y, steps=3, train=True, generator=_gen())
    ref = landscape(
        net, "stage1", F.cross_entropy, x, y, steps=3, train=True, method="loop", generator=_gen()
    )
    assert got.method == "prefix"  # BatchNorm in train mode cannot be vmapped
    torch.testing.assert_close(got.loss, ref.loss, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(b, buffers[n]) for n, b in net.named_buffers())
    assert not net.training


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 1)

    def forward(self, x):
        h = self.a(x)
        return self.b(h.relu() if h.sum() > 0 else h.tanh())


def test_untraceable_model_uses_the_loop():
    torch.manual_seed(0)
    net, x, y = _Branchy(), torch.randn(8, 3), torch.randn(8, 1)
    got = landscape(net, "a", F.mse_loss, x, y, steps=3, generator=_gen())
    assert got.method == "loop"
    with pytest.raises(Exception, match="(?i)symbolic|trace|bool"):
        landscape(net, "a", F.mse_loss, x, y, steps=3, method="batched", generator=_gen())


def test_nonfinite_points_are_reported_not_raised():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    x = torch.ones(4, 2)

    def loss(out, y):  # overflows to inf far from the centre
        return torch.exp(out * 60).mean()

    for method in ("batched", "loop"):
        ls = landscape(
            net, "0", loss, x, None, steps=7, radius=3.0, method=method, generator=_gen()
        )
        assert ls.nonfinite, method
        assert torch.isinf(ls.loss).sum() == len(ls.nonfinite)
        assert math.isfinite(ls.rise(0.5))  # finite points still summarize
        assert "inf" in str(ls.to_dict()["loss"])


def test_nothing_changes_in_the_model(resnet):
    net, x, y = resnet
    net.layer2[0].conv1.weight.requires_grad_(False)
    net.train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    try:
        for method in ("batched", "prefix", "loop"):
            landscape(net, "stage2", F.cross_entropy, x, y, steps=3, method=method)
        top_eigenvalue(net, "stage2", F.cross_entropy, x, y, iters=3)
        assert net.training and not net.layer2[0].conv1.weight.requires_grad
        assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
        assert all(p.grad is None for p in net.parameters())
    finally:
        net.layer2[0].conv1.weight.requires_grad_(True)
        net.eval()


@pytest.mark.parametrize("method, iters", [("lanczos", 12), ("power", 300)])
def test_top_eigenvalue_matches_the_explicit_hessian(method, iters):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(10, 3), torch.randn(10, 2)
    w0 = net[0].weight.detach().clone()

    def loss_of(w):
        return F.mse_loss(F.linear(x, w, net[0].bias).tanh() @ net[2].weight.T + net[2].bias, y)

    h = torch.autograd.functional.hessian(loss_of, w0).reshape(12, 12)
    eigs = torch.linalg.eigvalsh(h.double())
    want = eigs[eigs.abs().argmax()].item()
    only_weight = da.layer_groups(net, {"w": ["0.weight"], "rest": ["0.bias", "2.*"]})
    got = top_eigenvalue(
        only_weight, "w", F.mse_loss, x, y, iters=iters, method=method, generator=_gen()
    )
    assert got == pytest.approx(want, rel=1e-3)


def test_lanczos_needs_fewer_products_where_the_top_of_the_spectrum_is_crowded():
    """H = diag(0.1, ..., 0.99, 1.0) (a gap of 1%): 30 Lanczos steps reach λ_max within 1e-4, 30
    power steps do not; with a tolerance the steps stop early, at the same answer."""
    n = 200
    scale = torch.linspace(0.1, 0.99, n - 1).tolist() + [1.0]
    x = torch.diag(torch.tensor(scale).sqrt())  # loss = |x w|^2 / 2: H = x^T x
    net = nn.Sequential(nn.Linear(n, 1, bias=False))
    loss = lambda out, y: (out**2).sum() / 2  # noqa: E731
    lanczos = top_eigenvalue(net, "0", loss, x, None, iters=30, generator=_gen())
    power = top_eigenvalue(net, "0", loss, x, None, iters=30, method="power", generator=_gen())
    assert lanczos == pytest.approx(1.0, abs=1e-4) and abs(power - 1.0) > 1e-3
    early = top_eigenvalue(net, "0", loss, x, None, iters=100, tol=1e-6, generator=_gen())
    assert early == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="method"):
        top_eigenvalue(net, "0", loss, x, None, method="arnoldi")


def test_bad_arguments_name_the_problem(resnet):
    net, x, y = resnet
    with pytest.raises(ValueError, match="nope"):
        landscape(net, "nope", F.cross_entropy, x, y)
    with pytest.raises(ValueError, match="method"):
        landscape(net, "fc", F.cross_entropy, x, y, method="fast")
    with pytest.raises(ValueError, match="fc.weight"):
        landscape(net, "fc", F.cross_entropy, x, y, directions=({}, {}))
