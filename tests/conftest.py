"""Under pytest-xdist each worker is one of the machine's cores: one torch thread each, so that
two workers on 2 cores do not run four threads."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
