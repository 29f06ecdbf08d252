"""How a multi-process test's worker ends (the ranks of ``torch.multiprocessing.spawn``)."""

import os
import sys
from typing import NoReturn

from depthaware.distributed import shutdown


def end_worker() -> NoReturn:
    """:func:`depthaware.distributed.shutdown`, then leave without the interpreter's
    finalization (exit code 0; the worker wrote its results before): a worker's models are still
    referenced from its frame, and freed at interpreter exit their tensors can abort the process
    ("terminate called without an active exception", seen now and then on 2 loaded cores; the
    cause pytorch/pytorch#179291 describes)."""
    shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
