"""Training recipes that reproduce the paper's findings (small, plain loops), and the report."""

from . import findings, freezing, report, sine
from .findings import FINDINGS
from .report import reproduce

__all__ = ["FINDINGS", "findings", "freezing", "report", "reproduce", "sine"]
