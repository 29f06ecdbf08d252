import pytest
import timm
import torch
from torch import nn

import depthaware as da
from depthaware.models.vit import GRADES

PAPER_VITS = ["vit_wg_deeper_wider", "vit_wg_vanilla", "vit_wg_deeper_narrower"]
ALL_VITS = timm.list_models("vit_wg_*")


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_every_name_is_registered_with_timm():
    assert sorted(ALL_VITS) == sorted(PAPER_VITS + [f"{n}_small" for n in PAPER_VITS])


def test_paper_variants_have_equal_parameters_near_9_9m():
    counts = {n: n_params(timm.create_model(n)) for n in PAPER_VITS}  # 1000 classes, 224, patch 16
    # (4 + 2r) d^2 per encoder, sum r = 48 for every variant: identical counts
    assert set(counts.values()) == {9_982_184}
    assert abs(9_982_184 - 9.9e6) / 9.9e6 < 0.01


@pytest.mark.parametrize("name", ALL_VITS)
def test_each_block_mlp_matches_its_grade(name):
    model = timm.create_model(name, num_classes=10, img_size=32, patch_size=8)
    grade = GRADES[name.removeprefix("vit_wg_").removesuffix("_small")]
    hidden = [block.mlp.fc1.out_features for block in model.blocks]
    assert hidden == [int(model.embed_dim * r) for r in grade.ratios()]
    assert len(model.blocks) == 12


@pytest.mark.parametrize("name", ALL_VITS)
def test_vit_trains_one_step_and_has_paper_layer_names(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, img_size=32, patch_size=8)
    layers = da.layer_groups(model)
    assert layers.names == (
        ["Patch Embedding"] + [f"Encoder Block {i}" for i in range(1, 13)] + ["Head"]
    )
    assert layers.numel() == n_params(model)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = layers.flat("Encoder Block 12")
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert not torch.equal(before, layers.flat("Encoder Block 12"))


def test_timm_features_work():
    model = timm.create_model("vit_wg_vanilla_small", num_classes=10, img_size=32, patch_size=4)
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 65, 64)
    model.reset_classifier(3)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert "pos_embed" in model.no_weight_decay()
    assert "blocks" in model.group_matcher()
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("vit_wg_vanilla_small", pretrained=True)


def test_custom_grades_and_bad_configs():
    model = da.models.width_graded_vit(
        (1, 3), (2, 1), embed_dim=32, num_heads=2, img_size=16, patch_size=4, num_classes=5
    )
    assert [b.mlp.fc1.out_features for b in model.blocks] == [32, 32, 96]
    assert da.layer_groups(model).names[-2:] == ["Encoder Block 3", "Head"]
    with pytest.raises(ValueError, match=r"counts \(2, 1\) give 3 encoders, depth is 4"):
        da.models.width_graded_vit((1, 3), (2, 1), depth=4, embed_dim=32, num_heads=2)
    with pytest.raises(ValueError, match=r"bad widths \[0\]"):
        da.models.width_graded_vit((0, 3), (2, 1))
    with pytest.raises(ValueError, match=r"bad counts \[-1\]"):
        da.models.width_graded_vit((1, 3), (2, -1))
    with pytest.raises(ValueError, match="of equal length"):
        da.models.width_graded_vit((1, 3, 4), (2, 1))


@pytest.mark.parametrize(
    "build, names",
    [
        (
            lambda: da.models.cifar_resnet18(width=8),
            ["stem", "stage1", "stage2", "stage3", "stage4", "fc"],
        ),
        (
            lambda: da.models.cifar_resnet50(width=8),
            ["stem", "stage1", "stage2", "stage3", "stage4", "fc"],
        ),
        (lambda: da.models.cifar_vgg19(width=8), [f"layer{i}" for i in range(1, 20)]),
        (
            lambda: da.models.cifar_vgg19(width=8, batch_norm=True),
            [f"layer{i}" for i in range(1, 20)],
        ),
    ],
    ids=["resnet18", "resnet50", "vgg19", "vgg19_bn"],
)
def test_cifar_cnns_train_one_step_with_paper_layers(build, names):
    torch.manual_seed(0)
    model = build()
    layers = da.layer_groups(model)
    assert layers.names == names and layers.numel() == n_params(model)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = layers.flat(names[1])
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert not torch.equal(before, layers.flat(names[1]))


def test_paper_cnns():
    resnet = da.models.resnet50()
    assert n_params(resnet) == 25_557_032
    assert da.layer_groups(resnet).names == ["stem", "stage1", "stage2", "stage3", "stage4", "fc"]
    assert da.models.describe(resnet, (3, 224, 224))["macs"] == pytest.approx(4.1e9, rel=0.01)


def test_cifar_resnet_width_scales_channels_and_rejects_bad_width():
    model = da.models.cifar_resnet18(width=8)
    assert model.conv1.out_channels == 8 and model.fc.in_features == 64
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    with pytest.raises(ValueError, match="width must be a positive integer; got 0"):
        da.models.cifar_resnet18(width=0)
    with pytest.raises(ValueError, match="unknown VGG config 'Z'"):
        da.models.CifarVGG("Z")


def test_describe_by_hand_and_restores_mode():
    fcnn = da.models.FCNN((1, 32, 32, 32, 1))
    fcnn.train()
    info = da.models.describe(fcnn, (1,))
    # weights 32 + 1024 + 1024 + 32 multiply-adds; parameters add the biases
    assert info == {"params": 2209, "trainable": 2209, "macs": 2112}
    assert fcnn.training
    vit = timm.create_model("vit_wg_vanilla_small", num_classes=10, img_size=32, patch_size=4)
    macs = da.models.describe(vit, (3, 32, 32))["macs"]
    # 65 tokens, d=64: per block qkv+proj 4·65·d², mlp 2·65·r·d², attention 2·65²·d; + embed, head
    d, t = 64, 65
    expected = 12 * (4 * t * d * d + 2 * t * 4 * d * d + 2 * t * t * d) + 64 * 48 * d + d * 10
    assert macs == expected
    with pytest.raises(ValueError, match="input_size"):
        da.models.describe(fcnn, ())


# ---------------------------------------------------------------------------------------------
# the residual FCNN's block forms and input initialisations
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["identity", "post", "pre"])
def test_residual_block_forms_by_hand(form):
    torch.manual_seed(0)
    net = da.models.ResidualFCNN(blocks=(2, 1), block_form=form)
    h = torch.randn(4, 128)
    two, one = net.blocks
    relu = torch.relu
    f2 = lambda z: two.fcs[1](relu(two.fcs[0](z)))  # noqa: E731 - W2 σ(W1 z)
    f1 = lambda z: one.fcs[0](relu(z))  # noqa: E731 - a one-layer branch: W1 σ(z)
    expected = {
        "identity": (h + f2(h), h + f1(h)),
        "post": (relu(h + f2(h)), relu(h + f1(h))),
        "pre": (h + f2(relu(h)), h + f1(relu(h))),
    }[form]
    torch.testing.assert_close(two(h), expected[0])
    torch.testing.assert_close(one(h), expected[1])


def test_spread_input_init_places_the_kinks_in_the_domain():
    torch.manual_seed(0)
    spread = da.models.ResidualFCNN(input_init="spread").fc_in
    kinks = (-spread.bias / spread.weight[:, 0]).detach()
    assert kinks.min() >= -2 and kinks.max() <= 2 and kinks.std() > 0.8  # ~U(-2, 2): std 1.15
    bound = (6 / (1 + 128)) ** 0.5  # Glorot's, as "xavier"
    assert spread.weight.abs().max() <= bound
    zero = da.models.ResidualFCNN(input_init="xavier").fc_in
    assert torch.all(zero.bias == 0)  # every kink at x = 0
    with pytest.raises(ValueError, match="input_init"):
        da.models.ResidualFCNN(input_init="kaiming")
    with pytest.raises(ValueError, match="block_form"):
        da.models.ResidualFCNN(block_form="sideways")


def test_fcnn_activations_come_from_timm_by_name_or_class():
    x = torch.linspace(-2, 2, 5)[:, None]
    by_name = da.models.FCNN((1, 4, 1), activation="silu")
    by_class = da.models.FCNN((1, 4, 1), activation=nn.SiLU)
    by_class.load_state_dict(by_name.state_dict())
    torch.testing.assert_close(by_name(x), by_class(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        da.models.FCNN((1, 4, 1), activation="swishy")
