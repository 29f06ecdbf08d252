"""Small real data sets for CPU recipes (nothing is downloaded)."""

from __future__ import annotations

import torch

__all__ = ["digits"]


def digits(seed: int = 0, test_fraction: float = 0.2):
    """scikit-learn's bundled handwritten digits (1797 images, 8x8, 10 classes), split by ``seed``.

    Returns:
        ``(x_train, y_train, x_test, y_test)``; images ``(N, 1, 8, 8)`` scaled to ``[0, 1]``.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # scikit-learn is in the "dev" extra
        raise ImportError("the digits recipes need scikit-learn: pip install scikit-learn") from e
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(x)))
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]
