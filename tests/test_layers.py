import pytest
import timm
import torch
import torchvision
from torch import nn

import depthaware as da


def _covers_every_parameter_once(model, layers):
    named = dict(model.named_parameters())
    seen = [n for layer in layers for n in layer.param_names]
    assert sorted(seen) == sorted(named), "every parameter exactly once"
    for layer in layers:
        for n, p in zip(layer.param_names, layer.params, strict=True):
            assert named[n] is p
    assert layers.depths == list(range(len(layers)))


@pytest.mark.parametrize(
    "build, first, last, count",
    [
        (lambda: torchvision.models.resnet18(), "stem", "fc", 6),
        (lambda: torchvision.models.vgg11(), "layer1", "layer11", 11),
        (lambda: torchvision.models.vgg19_bn(), "layer1", "layer19", 19),
        (lambda: timm.create_model("vit_tiny_patch16_224"), "Patch Embedding", "Head", 14),
        (lambda: timm.create_model("resnet18"), "stem", "fc", 6),
        (lambda: timm.create_model("convnext_atto"), "stem", "head", 6),
        (lambda: da.models.FCNN(), "Layer 1", "Output layer", 4),
        (lambda: da.models.ResidualFCNN(), "Input layer", "Output layer", 6),
    ],
    ids=[
        "resnet18",
        "vgg11",
        "vgg19_bn",
        "vit_tiny",
        "timm-resnet18",
        "convnext",
        "fcnn",
        "resfcnn",
    ],  # fmt: skip
)
def test_discovery_covers_every_parameter(build, first, last, count):
    model = build()
    layers = da.layer_groups(model)
    _covers_every_parameter_once(model, layers)
    assert (layers.names[0], layers.names[-1], len(layers)) == (first, last, count)


def test_paper_layer_names():
    assert da.layer_groups(da.models.FCNN()).names == [
        "Layer 1",
        "Hidden layer 1",
        "Hidden layer 2",
        "Output layer",
    ]
    res = da.layer_groups(da.models.ResidualFCNN(blocks=(4, 1, 1, 1)))
    assert res.names[1:5] == [f"Res-Block {i}" for i in range(1, 5)]
    assert len(res["Res-Block 1"].params) == 8  # four linear layers, weight + bias each
    vit = da.layer_groups(timm.create_model("vit_tiny_patch16_224"))
    assert vit.names[1:13] == [f"Encoder Block {i}" for i in range(1, 13)]
    # timm folds the final norm into the last block's group
    assert "norm.weight" in vit["Encoder Block 12"].param_names
    assert {"cls_token", "pos_embed"} <= set(vit["Patch Embedding"].param_names)
    # one naming rule: a ResNet's stages are stage1..4 whether torchvision's or timm's
    tv = da.layer_groups(torchvision.models.resnet18()).names
    assert da.layer_groups(timm.create_model("resnet18")).names == tv


def test_resnet_fine_granularity_and_vgg_bn_joins_conv():
    fine = da.layer_groups(torchvision.models.resnet18(), granularity="fine")
    assert fine.names == ["stem"] + [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)] + [
        "fc"
    ]
    vgg = da.layer_groups(torchvision.models.vgg11_bn())
    assert vgg["layer1"].param_names == (
        "features.0.weight",
        "features.0.bias",
        "features.1.weight",
        "features.1.bias",
    )


def test_sequential_norm_joins_previous_layer():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    layers = da.layer_groups(model)
    assert layers.names == ["0", "3"]
    assert layers["0"].param_names == ("0.weight", "0.bias", "1.weight", "1.bias")
    assert layers.numel("0") == 3 * 4 + 4 + 4 + 4
    assert layers.depth("3") == 1


def test_helpers_flat_and_index():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    layers = da.layer_groups(model)
    flat = layers.flat("0")
    torch.testing.assert_close(flat, torch.cat([model[0].weight.reshape(-1), model[0].bias]))
    flat.zero_()  # a copy: the model is untouched
    assert model[0].weight.abs().sum() > 0
    assert layers[1] is layers["1"]
    assert layers.layer_of()["1.bias"] == "1"
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        layers["nope"]


def test_explicit_groups_prefix_and_glob():
    model = torchvision.models.resnet18()
    layers = da.layer_groups(
        model, {"early": ["conv1", "bn1", "layer1"], "mid": "layer[23].*", "late": ["layer4", "fc"]}
    )
    _covers_every_parameter_once(model, layers)
    assert layers.names == ["early", "mid", "late"]
    seq = da.layer_groups(model, ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"])
    assert seq.names[2] == "layer1"


def test_unassigned_and_double_parameters_are_listed():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    with pytest.raises(ValueError, match=r"parameters in no layer: \['1.weight', '1.bias'\]"):
        da.layer_groups(model, {"a": "0"})
    with pytest.raises(ValueError, match=r"more than one layer: \{'0.weight': \['a', 'b'\]"):
        da.layer_groups(model, {"a": "0", "b": "0.weight", "c": "1"})
    with pytest.raises(ValueError, match="match no parameter"):
        da.layer_groups(model, {"a": "0", "b": "1", "c": "2"})


def test_frozen_parameters_may_stay_unassigned():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    model[0].requires_grad_(False)
    assert da.layer_groups(model, {"head": "1"}).names == ["head"]


def test_bad_models_and_arguments():
    with pytest.raises(ValueError, match="ReLU has no parameters"):
        da.layer_groups(nn.ReLU())

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(1, 1)

    with pytest.raises(ValueError, match="don't know the layers of Custom"):
        da.layer_groups(Custom())
    with pytest.raises(ValueError, match="granularity"):
        da.layer_groups(Custom(), granularity="medium")


# the one calling convention: a model or its LayerGroups first, resolved once
def _measurements():
    x, y = torch.linspace(-2, 2, 16).unsqueeze(1), torch.sin(3 * torch.linspace(-2, 2, 16))[:, None]
    mse = nn.functional.mse_loss

    def predictiveness(m):
        sgd = torch.optim.SGD(da.model_of(m).parameters(), lr=0.1)
        return da.measure.predictiveness(m, mse, sgd, (x, y), (x.flip(0), y))

    return {
        "predictiveness": predictiveness,
        "response_frequency": lambda m: da.measure.response_frequency(m, x),
        "landscape": lambda m: da.measure.landscape(m, "Res-Block 2", mse, x, y, steps=3).loss,
        "top_eigenvalue": lambda m: da.measure.top_eigenvalue(m, "Res-Block 1", mse, x, y, iters=3),
        "from_model": lambda m: da.measure.from_model(
            m, mse, (x, y), steps=3, iters=2, progress=False
        ),
    }


@pytest.mark.parametrize("name", list(_measurements()))
def test_a_measurement_takes_the_model_or_its_layer_groups(name):
    torch.manual_seed(0)
    model = da.models.ResidualFCNN(width=8, blocks=(1, 1))
    measure = _measurements()[name]
    results = []
    for m in (model, da.layer_groups(model)):
        torch.manual_seed(0)  # the same random draws for both
        results.append(measure(m))
    by_model, by_layers = results
    if isinstance(by_model, torch.Tensor):
        torch.testing.assert_close(by_model, by_layers, equal_nan=True)
    else:
        assert repr(by_model) == repr(by_layers)  # NaN-safe equality
    with pytest.raises(ValueError, match="carries no model"):
        measure(da.LayerGroups(list(da.layer_groups(model))))
    with pytest.raises(TypeError, match="not model.parameters()"):
        measure(model.parameters())


def test_the_stateful_tools_take_the_model_or_its_layer_groups():
    model = da.models.ResidualFCNN(width=8, blocks=(1, 1))
    names = da.layer_groups(model).names
    opt = torch.optim.SGD(da.optim.depth_param_groups(model, lr=0.1), lr=0.1)
    tools = [
        da.measure.Trajectory(model),
        da.measure.GradMagnitude(model),
        da.freeze.ConvergenceFreezer(opt, model),
        da.freeze.FreezeOut(opt, model, total_steps=10),
    ]
    assert all(t.layers.names == names for t in tools)
    with pytest.raises(TypeError, match="not model.parameters()"):
        da.measure.Trajectory(model.parameters())
