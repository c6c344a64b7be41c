"""Suite-wide settings. Under pytest-xdist (``-n 2``, as scripts/test.sh runs the suite) each worker
computes on one CPU thread, and so do the processes the tests start: two workers with two OpenMP
threads each on a 2-core machine wait on each other at every op (measured 10x slower on a busy
machine), while one thread each keeps both cores busy without that."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def build_once(tmp_path_factory, name: str, build) -> Path:  # type: ignore[no-untyped-def]
    """The folder ``build(folder)`` fills, made once per test run however many xdist workers ask:
    the first builds it under a file lock (in the base folder the workers share), the others wait
    and reuse it. A module-scoped fixture is otherwise computed again on every worker whose tests
    need it, and again each time another module's test runs in between (the flowers fine-tune was
    computed three times in one run). ``build`` must leave the folder as its users only read it."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / f"built-once-{name}"
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".complete").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            (folder / ".complete").write_text("")
    return folder
