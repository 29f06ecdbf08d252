"""The package's version, in one place (setup.cfg reads it; runs record it)."""

__version__ = "0.1.0"
