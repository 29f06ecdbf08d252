"""Optimizer states from elsewhere (torch's ``test_can_load_older_state_dict`` convention): a
state of torch's SGD, or one whose groups lack our options, loads and steps; a state whose group
layout, group order or tensors (sharded against plain) differ is refused at ``load_state_dict``,
naming what differs, with nothing loaded; on every kernel path."""

import copy
import warnings

import pytest
import torch
import torch.distributed as dist
from torch import nn

import depthaware as da
from depthaware.optim import LARS, DepthSGD, FeedbackSGD

PATHS = ["loop", "foreach", "fused"]
CLASSES = [LARS, FeedbackSGD, DepthSGD]


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))


def path_kw(path):
    return dict(foreach=path == "foreach", fused=path == "fused")


def train(model, opt, steps, start=0):
    for step in range(start, start + steps):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(8, 3, generator=g)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), x.sum(1, keepdim=True).sin()).backward()
        opt.step()


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("path", PATHS)
def test_a_torch_sgd_state_loads_into_depthsgd_and_continues_as_torch_sgd(path):
    model = net()
    sgd = torch.optim.SGD(da.optim.depth_param_groups(model, lr=0.1), momentum=0.9)
    train(model, sgd, 3)
    state, saved = copy.deepcopy(sgd.state_dict()), weights(model)
    train(model, sgd, 3, start=3)
    again = net()
    with torch.no_grad():
        for p, w in zip(again.parameters(), saved):
            p.copy_(w)
    ours = DepthSGD(da.optim.depth_param_groups(again, lr=0.1), momentum=0.9, **path_kw(path))
    ours.load_state_dict(state)  # torch's groups have no check_finite: it keeps ours
    assert all(g["check_finite"] for g in ours.param_groups)
    train(again, ours, 3, start=3)
    for a, b in zip(model.parameters(), again.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", [LARS, FeedbackSGD])
def test_a_state_without_our_newer_group_options_loads_and_continues_bit_identically(cls, path):
    model = net()
    opt = cls(da.optim.depth_param_groups(model, lr=0.1), **path_kw(path))
    train(model, opt, 3)
    state = copy.deepcopy(opt.state_dict())
    for group in state["param_groups"]:  # as saved before these options existed
        del group["foreach"], group["fused"], group["check_finite"]
    again = net()
    again.load_state_dict(model.state_dict())
    resumed = cls(da.optim.depth_param_groups(again, lr=0.1), **path_kw(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # path options are filled without a word
        resumed.load_state_dict(state)
    train(model, opt, 3, start=3)
    train(again, resumed, 3, start=3)
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("path", PATHS)
def test_a_torch_sgd_state_loads_into_lars_with_a_warning_naming_the_settings_it_lacks(path):
    model = net()
    sgd = torch.optim.SGD(da.optim.depth_param_groups(model, lr=0.1), momentum=0.9)
    train(model, sgd, 2)
    lars = LARS(da.optim.depth_param_groups(model, lr=0.1), trust_coefficient=0.02, **path_kw(path))
    with pytest.warns(UserWarning, match=r"no \['adapt_1d', 'trust_by', 'trust_clip', 'trust_c"):
        lars.load_state_dict(sgd.state_dict())
    assert {g["trust_coefficient"] for g in lars.param_groups} == {0.02}
    train(model, lars, 2, start=2)  # it steps (torch's KeyError 'adapt_1d' before)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", CLASSES)
def test_a_state_of_another_group_layout_is_refused_naming_both_layouts(cls, path):
    model = net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DepthSGD's warning for groups without depth
        flat = cls(model.parameters(), lr=0.1, **path_kw(path))
    train(model, flat, 2)
    grouped = cls(da.optim.depth_param_groups(model, lr=0.1), **path_kw(path))
    before = grouped.state_dict()
    with pytest.raises(ValueError, match=r"has 1 param group of 6 parameters, the optimizer 6 "
                       r"param groups of 1, 1, 1, 1, 1, 1 parameters \(layers '0', '2', '4'\): "
                       r"its groups were built another way .*Nothing was loaded"):  # fmt: skip
        grouped.load_state_dict(flat.state_dict())
    assert grouped.state_dict() == before


def _swap_equal_shaped_blocks(groups):
    """Res-Block 2's groups before Res-Block 1's: the same shapes, which torch loads silently."""
    order = {"Res-Block 1": "Res-Block 2", "Res-Block 2": "Res-Block 1"}
    layers = [order.get(g["layer"], g["layer"]) for g in groups]
    by_layer = {}
    for g in groups:
        by_layer.setdefault(g["layer"], []).append(g)
    return [g for layer in dict.fromkeys(layers) for g in by_layer[layer]]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", CLASSES)
def test_a_state_whose_groups_come_in_another_order_is_refused_naming_the_layers(cls, path):
    torch.manual_seed(0)
    model = da.models.ResidualFCNN(width=4, blocks=(1, 1, 1))
    groups = da.optim.depth_param_groups(model, lr=0.1)
    opt = cls(groups, **path_kw(path))
    train_res(model, opt)
    swapped = cls(_swap_equal_shaped_blocks(da.optim.depth_param_groups(model, lr=0.1)),
                  **path_kw(path))  # fmt: skip
    at = next(i for i, g in enumerate(groups) if g["layer"] == "Res-Block 1")
    with pytest.raises(ValueError, match=f"param group {at} holds layer 'Res-Block 1' in the "
                       "state_dict, 'Res-Block 2' in this optimizer: the groups come in another "
                       "order"):  # fmt: skip
        swapped.load_state_dict(opt.state_dict())
    assert not swapped.state  # nothing was loaded


def train_res(model, opt):
    x = torch.linspace(-2, 2, 16)[:, None]
    for _ in range(2):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), x.sin()).backward()
        opt.step()


@pytest.fixture
def one_rank(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        from torch.distributed.device_mesh import init_device_mesh

        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("cls", CLASSES)
def test_a_sharded_state_is_refused_by_a_plain_optimizer_and_a_plain_one_by_a_sharded(
    cls, one_rank
):
    from torch.distributed.fsdp import fully_shard

    sharded = fully_shard(net(), mesh=one_rank)
    opt = cls(da.optim.depth_param_groups(sharded, lr=0.1), momentum=0.9)
    train(sharded, opt, 2)
    plain = net()
    plain_opt = cls(da.optim.depth_param_groups(plain, lr=0.1), momentum=0.9)
    with pytest.raises(ValueError, match="is a DTensor .*get_optimizer_state_dict.*full_state_"):
        plain_opt.load_state_dict(opt.state_dict())
    assert not plain_opt.state
    train(plain, plain_opt, 2)
    with pytest.raises(ValueError, match="is a plain tensor, the parameter a DTensor .*set_optim"):
        opt.load_state_dict(plain_opt.state_dict())
