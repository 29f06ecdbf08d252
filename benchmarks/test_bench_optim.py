"""One optimizer step on a resnet50-shaped parameter set (25.6M parameters, 161 tensors), side by
side with torch and timm (the optimizers of ``depthaware bench``). Targets (issue): LARS <= 1.5x
fused SGD, >= 2.5x faster than timm's Lars; depth groups <= 1.05x plain SGD."""

import pytest
from conftest import device, synchronized

from depthaware.bench import OPTIMIZERS, resnet50_with_grads


@pytest.fixture(scope="module")
def model():
    return resnet50_with_grads(device())


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_step(benchmark, model, name):
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = OPTIMIZERS[name](model)
    step = synchronized(opt.step)
    step()  # create the state outside the timing
    benchmark.pedantic(step, rounds=15, warmup_rounds=2)
    model.load_state_dict(state)
