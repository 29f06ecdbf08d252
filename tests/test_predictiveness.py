import copy
import math

import pytest
import torch
from torch import nn

import depthaware as da


def setup(lr=0.1):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)
    )
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    a = (torch.randn(32, 3, generator=g), torch.randn(32, 1, generator=g))
    b = (torch.randn(32, 3, generator=g), torch.randn(32, 1, generator=g))
    return model, opt, a, b


def test_identical_batches_and_still_neighbours_give_one():
    model, opt, a, _ = setup(lr=0.0)  # lr 0: no layer moves, so G'' = G
    got = da.measure.predictiveness(model, nn.functional.mse_loss, opt, a, a)
    assert list(got) == ["0", "3", "5"]
    for v in got.values():
        assert v["data"] == pytest.approx(1.0) and v["parameters"] == pytest.approx(1.0)


def test_parameters_cosine_matches_a_manual_reading_and_nothing_changes():
    model, opt, a, b = setup()
    loss = nn.functional.mse_loss
    loss(model(a[0]), a[1]).backward()  # leave a gradient and optimizer state behind
    opt.step()
    model.zero_grad()
    loss(model(b[0]), b[1]).backward()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads_before = [p.grad.clone() for p in model.parameters()]
    opt_before = {k: v.clone() for k, v in opt.state[model[0].weight].items()}

    got = da.measure.predictiveness(model, loss, opt, a, b)

    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(g, p.grad) for g, p in zip(grads_before, model.parameters()))
    assert torch.equal(opt_before["momentum_buffer"], opt.state[model[0].weight]["momentum_buffer"])
    assert model.training
    # a second route for layer "5": step a deep copy for real, then put layer 5 back
    ref = copy.deepcopy(model)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    ref_opt.load_state_dict(opt.state_dict())
    ref.zero_grad()
    ref_state = {k: v.clone() for k, v in ref.state_dict().items()}
    loss(ref(a[0]), a[1]).backward()
    g = torch.cat([ref[5].weight.grad.reshape(-1), ref[5].bias.grad])
    ref.load_state_dict(ref_state)  # the batch statistics pass above moved BN's buffers
    ref_opt.step()
    with torch.no_grad():
        ref[5].weight.copy_(model[5].weight)
        ref[5].bias.copy_(model[5].bias)
    ref.zero_grad()
    ref.load_state_dict(
        {
            **ref.state_dict(),
            **{k: v for k, v in ref_state.items() if "running" in k or "num_batches" in k},
        }
    )
    loss(ref(a[0]), a[1]).backward()
    g2 = torch.cat([ref[5].weight.grad.reshape(-1), ref[5].bias.grad])
    expected = torch.nn.functional.cosine_similarity(g, g2, dim=0).item()
    assert got["5"]["parameters"] == pytest.approx(expected, rel=1e-4)
    assert all(-1 <= v["data"] <= 1 and not math.isnan(v["parameters"]) for v in got.values())


def test_monitor_measures_every_k_steps():
    model, opt, a, b = setup()
    monitor = da.measure.PredictivenessMonitor(model, nn.functional.mse_loss, opt, every=3)
    for _ in range(7):
        monitor.update(a, b)
        opt.zero_grad()
        nn.functional.mse_loss(model(a[0]), a[1]).backward()
        opt.step()
    history = monitor.compute()
    assert history["0"]["step"] == [0, 3, 6]
    assert len(history["5"]["parameters"]) == 3
    with pytest.raises(ValueError, match="every"):
        da.measure.PredictivenessMonitor(model, nn.functional.mse_loss, opt, every=0)
