import pytest

from depthaware.recipes import freezing


@pytest.mark.parametrize("pair", ["resfcnn-sine", "cnn-digits"])
def test_backward_flops_fall_as_the_frozen_prefix_grows(pair):
    p = freezing.PAIRS[pair]
    x, y, *_ = p.data(0)
    flops = freezing.backward_flops(p, (x[:16], y[:16]))
    assert all(a > b for a, b in zip(flops, flops[1:]))
    assert flops[-1] < 0.01 * flops[0]  # only the head left


def test_run_reports_savings_of_a_freezing_method():
    p = freezing.PAIRS["resfcnn-sine"]
    x, y, *_ = p.data(0)
    flops = freezing.backward_flops(p, (x[: p.batch_size], y[: p.batch_size]))
    none = freezing.run(p, "none", 0, flops, epochs=4)
    cubic = freezing.run(p, "freezeout-cubic", 0, flops, epochs=4)
    assert none.backward_flops == none.backward_flops_unfrozen
    assert cubic.backward_flops < 0.7 * none.backward_flops
    assert list(cubic.frozen_at_epoch)[0] == "Input layer"
    assert cubic.frozen_at_epoch["Input layer"] == pytest.approx(0.5, abs=0.05)  # 0.125 * 4
    with pytest.raises(ValueError, match="unknown method"):
        freezing.run(p, "sometimes", 0)


@pytest.mark.parametrize("method", freezing.LR_METHODS)
def test_lr_methods_train_without_freezing(method):
    from depthaware import optim

    p = freezing.PAIRS["resfcnn-sine"]
    layers = freezing.layer_groups(p.build())
    opt = freezing._optimizer(p, layers, method)
    kinds = {"lars": optim.LARS, "feedback": optim.FeedbackSGD}
    assert isinstance(opt, kinds.get(method, freezing.torch.optim.SGD))
    lrs = [g["lr"] for g in opt.param_groups]
    if method == "depth-lr":  # deepest layer at a tenth of the shallowest
        assert lrs[-1] == pytest.approx(0.1 * lrs[0])
    result = freezing.run(p, method, 0, epochs=2)
    assert result.frozen_at_epoch == {} and result.score < 0.5  # test MSE after 2 epochs


def test_an_interrupted_comparison_resumes_from_its_saved_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(freezing, "PAIRS", {"resfcnn-sine": freezing.PAIRS["resfcnn-sine"]})
    monkeypatch.setattr(freezing, "METHODS", ("none", "freezeout-cubic"))
    first = freezing.compare(tmp_path, seeds=1, epochs=1, progress=False)
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2

    def fail(*args):
        raise AssertionError("a saved run was trained again")

    monkeypatch.setattr(freezing, "run", fail)
    again = freezing.compare(tmp_path, seeds=1, epochs=1, progress=False)
    assert again["pairs"] == first["pairs"]
