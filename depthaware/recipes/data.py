"""Small real data sets for CPU recipes (nothing is downloaded).

* :func:`digits`: scikit-learn's bundled 8×8 digits (the default; no files needed);
* :func:`cifar`: CIFAR-10/100 from a local copy of the original python-pickle batches
  (``cifar-10-batches-py/`` or ``cifar-100-python/``);
* :func:`image_folder`: any ``train/``, ``test/`` (or ``val/``) tree of class folders;
* :func:`load_images`: picks one of them from a ``data_dir``.

Images come back as float tensors ``(N, C, H, W)`` in ``[0, 1]`` with integer labels.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100

from ..errors import InputError

__all__ = ["cifar", "digits", "image_folder", "load_images"]


def digits(seed: int = 0, test_fraction: float = 0.2):
    """scikit-learn's bundled handwritten digits (1797 images, 8x8, 10 classes), split by ``seed``.

    Returns:
        ``(x_train, y_train, x_test, y_test)``; images ``(N, 1, 8, 8)`` scaled to ``[0, 1]``.
    """
    from sklearn.datasets import load_digits  # imported on use: `import depthaware` stays light

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(x)))
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


#: everything a CIFAR batch's pickle may call: numpy's array, scalar and dtype rebuilders (both
#: module spellings, numpy 1 and 2), and the codec that protocol-2 pickles use for bytes
_CIFAR_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    """Reads a CIFAR batch without running anything else: a pickle may name any function to call
    while it is read (``os.system`` included), so only the calls in ``_CIFAR_GLOBALS`` pass."""

    def __init__(self, f, path: Path):
        super().__init__(f, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(
                f"{self.path}: refused to load, it asks to call {module}.{name}, which a CIFAR "
                "batch never does (a crafted or foreign file?)"
            )
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"CIFAR batch {path} is missing")
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, path).load()
    except pickle.UnpicklingError as e:
        raise InputError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None
    except (EOFError, ValueError, TypeError) as e:
        raise InputError(f"{path}: not a CIFAR batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict) or "data" not in batch:
        raise InputError(f"{path}: not a CIFAR batch (no 'data' entry)")
    return batch


def _checked(path: Path, batch: dict) -> tuple[np.ndarray, np.ndarray]:
    """A batch's pixels ``(N, 3072)`` uint8 and its ``N`` integer labels, or an error naming the
    file: float pixels (already in [0, 1]?) would be divided by 255 again, a row that is not 32×32×3
    is not CIFAR, and a label count unlike the image count would pair images with other images'
    labels."""
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8:
        raise InputError(
            f"{path}: CIFAR pixels are uint8 in 0..255; this batch holds {data.dtype} "
            f"(values {data.min() if data.size else '-'}..{data.max() if data.size else '-'})"
        )
    if data.ndim != 2 or data.shape[1] != 3072:
        raise InputError(
            f"{path}: CIFAR 'data' is (N, 3072), a 3×32×32 image per row; got {data.shape}"
        )
    if "labels" not in batch and "fine_labels" not in batch:
        raise InputError(f"{path}: a CIFAR batch without 'labels' or 'fine_labels'")
    labels = np.asarray(batch.get("labels", batch.get("fine_labels")))
    if labels.ndim != 1 or len(labels) != len(data):
        raise InputError(
            f"{path}: {len(data)} images but {labels.size} labels; a batch has one label per image"
        )
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise InputError(f"{path}: labels must be non-negative integers; got {labels.dtype}")
    return data, labels


#: torchvision's CIFAR classes name the folders and batch files; their own reader is not used
#: because it ``pickle.load``s the batches (running whatever a crafted file asks) and demands the
#: official files' MD5s
_CIFAR = {cls.base_folder: cls for cls in (CIFAR10, CIFAR100)}


def cifar(root: str | Path):
    """CIFAR-10 (``root/cifar-10-batches-py``) or CIFAR-100 (``root/cifar-100-python``), or
    ``root`` itself being one of those folders.

    Returns:
        ``(x_train, y_train, x_test, y_test)``, images ``(N, 3, 32, 32)`` in ``[0, 1]``.
    """
    root = Path(root)
    folder = next((f for f in _CIFAR if root.name == f or (root / f).is_dir()), None)
    if folder is None:
        raise InputError(f"{root} holds neither cifar-10-batches-py nor cifar-100-python")
    base = root if root.name == folder else root / folder
    spec = _CIFAR[folder]

    def load(files):
        pairs = [_checked(base / name, _unpickle(base / name)) for name, _md5 in files]
        data = np.concatenate([d for d, _ in pairs]).reshape(-1, 3, 32, 32)
        labels = np.concatenate([y for _, y in pairs])
        return torch.from_numpy(data).float() / 255.0, torch.from_numpy(labels).long()

    return (*load(spec.train_list), *load(spec.test_list))


def image_folder(root: str | Path, size: int = 32):
    """A ``root/train`` and ``root/test`` (or ``root/val``) tree of class folders, resized to
    ``size``×``size`` RGB (torchvision's ``ImageFolder``)."""
    from torchvision import datasets, transforms

    root = Path(root)
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        raise InputError(f"{root} needs train/ and test/ (or val/) folders of class folders")
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])

    def load(folder):
        ds = datasets.ImageFolder(folder, transform=tf, loader=lambda p: _rgb(p))
        xs, ys = zip(*(ds[i] for i in range(len(ds))))
        return torch.stack(xs), torch.tensor(ys)

    train, test = load(root / "train"), load(test_dir)
    return (*train, *test)


def _rgb(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def load_images(data_dir: str | Path | None, seed: int = 0):
    """``(x_train, y_train, x_test, y_test, name)`` from ``data_dir`` (CIFAR batches or an
    ImageFolder tree), or the digits split by ``seed`` when ``data_dir`` is ``None``."""
    if data_dir is None:
        return (*digits(seed), "digits (scikit-learn)")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"data_dir {data_dir} is not a directory")
    if data_dir.name in _CIFAR or any((data_dir / n).is_dir() for n in _CIFAR):
        return (*cifar(data_dir), f"CIFAR ({data_dir})")
    return (*image_folder(data_dir), f"ImageFolder ({data_dir})")
