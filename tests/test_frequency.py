import pytest
import torch
from torch import nn

import depthaware as da
from depthaware.measure import frequency


@pytest.mark.parametrize("form", ["identity", "post", "pre"])
@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_contributions_sum_back_to_the_output_for_every_block(form, norm):
    torch.manual_seed(0)
    model = da.models.ResidualFCNN(blocks=(2, 1, 3), block_form=form, norm=norm).train()
    x = torch.linspace(-2, 2, 101).unsqueeze(1)
    parts = frequency.block_contributions(model, x)
    assert list(parts) == ["Input layer", "Res-Block 1", "Res-Block 2", "Res-Block 3"]
    assert model.training  # evaluated in eval mode, mode restored
    model.eval()
    torch.testing.assert_close(sum(parts.values()), model(x).detach(), rtol=1e-5, atol=1e-5)


def test_identity_blocks_contribute_their_branch():
    """Section 5: with z + F(z) the contribution is the output layer applied to F(z)."""
    torch.manual_seed(0)
    model = da.models.ResidualFCNN()
    x = torch.linspace(-2, 2, 11).unsqueeze(1)
    z = model.embed(x)
    branch = model.blocks[0].branch(z) @ model.fc_out.weight.T
    torch.testing.assert_close(frequency.block_contributions(model, x)["Res-Block 1"], branch)


def test_amplitudes_read_each_component_of_the_target():
    x = torch.linspace(-2, 2, 801)
    target = sum(torch.sin(w * x) / w for w in (1, 3, 10, 30))
    got = frequency.amplitudes(target + 0.7, x, [1, 3, 10, 30])
    assert got == pytest.approx([1, 1 / 3, 1 / 10, 1 / 30], abs=1e-6)
    shifted = frequency.amplitudes(torch.cos(3 * x) * 2, x, [1, 3])
    assert shifted == pytest.approx([0, 2], abs=1e-6)  # phase does not matter
    with pytest.raises(ValueError, match="1-D of one shape"):
        frequency.amplitudes(target[:5], x, [1])


def test_block_spectrum_and_bad_models():
    info = frequency.block_spectrum(da.models.ResidualFCNN(), [1, 3])
    assert set(info) == {"Input layer", "Res-Block 1", "Res-Block 2", "Res-Block 3",
                         "Res-Block 4", "output"}  # fmt: skip
    assert set(info["Res-Block 1"]) == {"range", "amplitudes"}
    with pytest.raises(ValueError, match="has no `embed`"):
        frequency.block_contributions(da.models.FCNN(), torch.zeros(2, 1))


def test_layer_module_finds_the_module_or_run_that_computes_each_layer():
    from depthaware.measure.frequency import layer_module

    res = da.models.cifar_resnet18(num_classes=10, width=4)
    mods = {layer.name: layer_module(res, layer) for layer in da.layer_groups(res)}
    assert list(mods["stem"]) == [res.conv1, res.bn1] and mods["stage3"] is res.layer3
    vgg = da.models.cifar_vgg19(num_classes=10, width=4, batch_norm=True)
    conv_bn = layer_module(vgg, da.layer_groups(vgg)["layer2"])
    assert [type(m) for m in conv_bn] == [nn.Conv2d, nn.BatchNorm2d]
    fcnn = da.models.ResidualFCNN()
    assert layer_module(fcnn, da.layer_groups(fcnn)["Res-Block 2"]) is fcnn.blocks[1]
    odd = da.layer_groups(res, {"mixed": ["conv1.*", "fc.*"], "rest": ["bn1.*", "layer*"]})
    with pytest.raises(ValueError, match="mixed"):
        layer_module(res, odd["mixed"])


def test_response_frequency_is_the_scale_of_a_linear_map_and_restores_the_mode():
    from depthaware.measure.frequency import response_frequency

    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Tanh(), nn.Linear(4, 2)).train()
    with torch.no_grad():
        net[0].weight.copy_(3 * torch.linalg.qr(torch.randn(4, 4)).Q)  # 3 × orthogonal
    g = torch.Generator().manual_seed(0)
    r = response_frequency(net, torch.randn(8, 4), eps=1e-3, generator=g)
    assert r["0"] == pytest.approx(3.0, rel=1e-4)
    assert set(r) == {"0", "2"} and net.training
    with pytest.raises(ValueError, match="eps"):
        response_frequency(net, torch.randn(8, 4), eps=0)
