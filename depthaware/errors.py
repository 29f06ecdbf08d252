"""Every error class of the package, in one place.

:class:`InputError` is wrong input (a file, an argument, a name): a ``ValueError`` whose message
names the bad thing. The command line reports it, :class:`FolderLockedError` and
:class:`Interrupted` in one line; any other exception is a bug and keeps its traceback."""

__all__ = [
    "FolderLockedError",
    "InputError",
    "Interrupted",
    "NoModuleError",
    "ResumeMismatchError",
    "Terminated",
]


class InputError(ValueError):
    """A user's input is wrong; the message names it (the file, the key, the option, the value)."""


class Interrupted(RuntimeError):
    """Ctrl-C or SIGTERM stopped a long job; the message says what was kept and how to resume."""


class FolderLockedError(RuntimeError):
    """Another writer holds the folder (``depthaware._io.FolderLock``); the message names the
    holder."""


class NoModuleError(ValueError):
    """No module (or run of sibling modules) computes exactly one layer's parameters
    (``depthaware.measure.frequency.layer_module``)."""


class ResumeMismatchError(ValueError):
    """A resumed run's weights are not the ones its trajectory recorded at the step it resumes
    from; the message names the layers that differ and what usually causes it."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread of ``reproduce`` so that its workers are ended, not
    orphaned; it becomes :class:`Interrupted` (a ``BaseException``, as ``KeyboardInterrupt``, so
    that no ``except Exception`` swallows it)."""
