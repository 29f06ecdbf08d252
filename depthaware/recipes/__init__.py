"""Training recipes that reproduce the paper's findings (small, plain loops)."""

from . import freezing, sine

#: finding name -> ``reproduce(out, *, epochs, seeds, progress) -> dict``
FINDINGS = {"sine-fcnn": sine.reproduce, "freezing": freezing.reproduce}

__all__ = ["FINDINGS", "freezing", "sine"]
