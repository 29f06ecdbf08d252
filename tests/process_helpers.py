"""How a multi-process test's worker ends (the ranks of ``torch.multiprocessing.spawn``)."""

import gc
import os
import sys
from typing import NoReturn

import torch.distributed as dist


def end_worker() -> NoReturn:
    """Wait for every rank, tear the process group down and leave without the interpreter's
    finalization (exit code 0; the worker wrote its results before).

    gloo's worker threads can still hold tensors of modules that FSDP's and DDP's hooks keep in
    reference cycles; freed while the interpreter shuts down, they abort the process after all
    its work is done ("terminate called without an active exception", seen now and then on 2
    loaded cores; the cause pytorch/pytorch#179291 describes)."""
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
