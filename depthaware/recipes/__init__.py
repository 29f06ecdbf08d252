"""Training recipes that reproduce the paper's findings (small, plain loops)."""

from . import sine

#: finding name -> ``reproduce(out, *, epochs, seeds, progress) -> dict``
FINDINGS = {"sine-fcnn": sine.reproduce}

__all__ = ["FINDINGS", "sine"]
