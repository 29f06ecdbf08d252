"""The package's error for wrong input (a file, an option, a name): a ``ValueError`` whose message
names the bad thing. The command line reports it in one line; any other exception is a bug and
keeps its traceback."""

__all__ = ["InputError"]


class InputError(ValueError):
    """A user's input is wrong; the message names it (the file, the key, the option, the value)."""
