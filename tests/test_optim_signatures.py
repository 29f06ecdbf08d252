"""A call written for torch's or timm's SGD-family optimizers, by position, means the same with
ours or is refused: ``(params, lr, momentum, dampening, weight_decay, nesterov)`` is torch SGD's
and timm Lars's order. Read with another order it would train with the wrong weight decay and no
error (timm's ``Lars(params, 0.1, 0.9, 0, 5e-4)`` on an optimizer whose third argument is the
weight decay)."""

import pytest
import torch

import depthaware as da

OPTIMIZERS = {
    "DepthSGD": da.optim.DepthSGD,
    "LARS": da.optim.LARS,
    "FeedbackSGD": da.optim.FeedbackSGD,
    "DepthLARS": da.optim.DepthLARS,
    "DepthFeedbackSGD": da.optim.DepthFeedbackSGD,
}
TORCH_SGD = (0.1, 0.9, 0.0, 5e-4, False)  # lr, momentum, dampening, weight_decay, nesterov
TIMM_LARS = (0.1, 0.9, 0.0, 5e-4)  # timm.optim.Lars(params, lr, momentum, dampening, wd)


@pytest.mark.parametrize("pattern", [TORCH_SGD, TIMM_LARS], ids=["torch-SGD", "timm-Lars"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_positional_call_in_torchs_order_means_the_same_or_is_refused(name, pattern):
    params = [torch.nn.Parameter(torch.randn(3, 3))]
    try:
        opt = OPTIMIZERS[name](params, *pattern)
    except TypeError as e:
        assert "positional argument" in str(e)
        return
    group = opt.param_groups[0]
    expected = dict(zip(("lr", "momentum", "dampening", "weight_decay", "nesterov"), pattern))
    assert {k: group[k] for k in expected} == expected


@pytest.mark.parametrize("name", ["LARS", "FeedbackSGD", "DepthLARS", "DepthFeedbackSGD"])
def test_the_scaled_optimizers_take_all_but_lr_by_keyword(name):
    params = [torch.nn.Parameter(torch.randn(3, 3))]
    with pytest.raises(TypeError, match="positional argument"):
        OPTIMIZERS[name](params, 0.1, 0.9)
    opt = OPTIMIZERS[name](params, 0.1, momentum=0.5, weight_decay=1e-3)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.5, 1e-3)
