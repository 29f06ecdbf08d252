"""Depth parameter groups, LR schedules over them, and depthaware's depth schedules."""

import pytest
import timm
import timm.scheduler
import torch
from optim_helpers import small_net
from torch import nn

import depthaware as da


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
