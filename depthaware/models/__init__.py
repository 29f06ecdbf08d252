"""Architectures from the paper."""

from .fcnn import FCNN, ResidualFCNN

__all__ = ["FCNN", "ResidualFCNN"]
