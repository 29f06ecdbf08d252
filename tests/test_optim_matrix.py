"""torch's optimizer conventions on every kernel path and every accepted dtype: a strided
(non-contiguous) parameter steps like its contiguous copy in a mixed-dtype list, a deep copy steps
like the original, an added group trains, and a state_dict round trip continues bit-identically
with its state in the dtype it had."""

import copy

import pytest
import torch
from torch import nn

from depthaware.optim import LARS, DepthSGD, FeedbackSGD

pytestmark = pytest.mark.filterwarnings("ignore:DepthSGD got a parameter group without 'depth'")
PATHS = ["loop", "foreach", "fused"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
KW = dict(lr=0.05, momentum=0.9, weight_decay=1e-3)


def make(cls, params, path):
    return cls(params, foreach=path == "foreach", fused=path == "fused", **KW)


def params(dtype):
    """A strided view of ``dtype`` beside a float32 matrix and a ``dtype`` vector."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 4, 2, generator=g).to(dtype)
    return [
        nn.Parameter(base[..., 0]),
        nn.Parameter(torch.randn(5, 3, generator=g)),
        nn.Parameter(torch.randn(7, generator=g).to(dtype)),
    ]


def steps(opt, ps, n, start=0):
    for step in range(start, start + n):
        g = torch.Generator().manual_seed(step)
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g).to(p.dtype)
        opt.step()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", [LARS, FeedbackSGD, DepthSGD])
def test_conventions_hold_on_every_path_and_dtype(cls, path, dtype):
    strided = params(dtype)
    contiguous = [nn.Parameter(p.detach().clone()) for p in strided]
    a, b = make(cls, strided, path), make(cls, contiguous, path)
    steps(a, strided, 3)
    steps(b, contiguous, 3)
    ulps = dict(rtol=4 * torch.finfo(dtype).eps, atol=1e-6)  # the fused path sends a strided
    for p, q in zip(strided, contiguous):  # view to the loop, whose rounding may differ a little
        torch.testing.assert_close(p, q, **(ulps if p.dtype == dtype else {}))

    a, strided = b, contiguous  # the fused path sends strided views to the loop: compare alike
    twin = copy.deepcopy((a, strided))  # a deep copy steps like the original
    steps(a, strided, 2, start=3)
    steps(twin[0], twin[1], 2, start=3)
    for p, q in zip(strided, twin[1]):
        assert torch.equal(p, q)

    saved = copy.deepcopy(a.state_dict())  # a resume continues bit-identically
    resumed_params = [nn.Parameter(p.detach().clone()) for p in strided]
    resumed = make(cls, resumed_params, path)
    resumed.load_state_dict(saved)
    for p, q in zip(strided, resumed_params):
        for key, value in a.state[p].items():
            if isinstance(value, torch.Tensor):
                assert resumed.state[q][key].dtype == value.dtype, key
    steps(a, strided, 2, start=5)
    steps(resumed, resumed_params, 2, start=5)
    for p, q in zip(strided, resumed_params):
        assert torch.equal(p, q)

    head = nn.Parameter(torch.ones(3, dtype=dtype))  # an added group trains
    a.add_param_group({"params": [head], "lr": 0.01})
    steps(a, [*strided, head], 1, start=7)
    assert not torch.equal(head, torch.ones(3, dtype=dtype))
