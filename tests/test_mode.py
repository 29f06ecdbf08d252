"""A measurement leaves the model as it found it: every module's own train/eval mode (a frozen
layer's BatchNorm stays in eval), its weights and its buffers."""

import pytest
import torch
import torch.nn.functional as F

import depthaware as da
from depthaware.measure import frequency
from depthaware.measure.landscapes import landscape
from depthaware.measure.sharpness import top_eigenvalue
from depthaware.mode import preserved

X = torch.linspace(-2, 2, 32).unsqueeze(1)
Y = torch.sin(3 * X)

MEASUREMENTS = {
    "describe": lambda m: da.models.describe(m, (1,)),
    "block_contributions": lambda m: frequency.block_contributions(m, X),
    "response_frequency": lambda m: frequency.response_frequency(m, X),
    "landscape": lambda m: landscape(m, "Res-Block 1", F.mse_loss, X, Y, steps=3),
    "landscape_train": lambda m: landscape(m, "Res-Block 2", F.mse_loss, X, Y, steps=3, train=True),
    "top_eigenvalue": lambda m: top_eigenvalue(
        m, "Res-Block 1", F.mse_loss, X, Y, iters=2, train=True
    ),
}


def _model():
    torch.manual_seed(0)
    model = da.models.ResidualFCNN(width=8, blocks=(1, 1), norm="batch").train()
    model.blocks[0].norm.eval()  # as the freezer leaves a frozen layer's BatchNorm
    return model


@pytest.mark.parametrize("name", MEASUREMENTS)
def test_every_module_keeps_its_mode_weights_and_buffers(name):
    model = _model()
    modes = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    MEASUREMENTS[name](model)
    assert [m.training for m in model.modules()] == modes
    assert not model.blocks[0].norm.training and model.blocks[1].norm.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_preserved_restores_after_an_error():
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"), preserved(model, True, ["fc_out.weight"]):
        model(X)  # train-mode BatchNorm updates its running statistics
        with torch.no_grad():
            model.fc_out.weight.add_(1.0)
        raise RuntimeError("boom")
    assert not model.blocks[0].norm.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
