"""The package's error for wrong input (a file, an option, a name): a ``ValueError`` whose message
names the bad thing. The command line reports it in one line; any other exception is a bug and
keeps its traceback."""

__all__ = ["InputError", "Interrupted"]


class InputError(ValueError):
    """A user's input is wrong; the message names it (the file, the key, the option, the value)."""


class Interrupted(RuntimeError):
    """Ctrl-C or SIGTERM stopped a long job; the message says what was kept and how to resume."""
