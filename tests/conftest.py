"""Suite-wide settings. Under pytest-xdist (``-n 2``, as scripts/test.sh runs the suite) each worker
computes on one CPU thread, and so do the processes the tests start: two workers with two OpenMP
threads each on a 2-core machine wait on each other at every op (measured 10x slower on a busy
machine), while one thread each keeps both cores busy without that."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
