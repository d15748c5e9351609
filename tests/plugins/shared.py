"""Session artifacts made once per run, whether the suite runs in one process or in pytest-xdist workers.

``make test`` runs the suite in two xdist workers (scripts/test.sh). A session fixture runs once per
worker, so an expensive artifact that does not depend on the worker (a fine-tuned model) would be
trained twice. ``made_once`` puts it in the folder all workers share (the parent of each worker's
basetemp) under a file lock: the first worker to ask makes it, the others wait and reuse it. Servers
stay per worker: each worker has a network namespace of its own (scripts/netns-python).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Path]) -> Path:
    """The path ``make(folder)`` returned, made in a fresh ``folder`` by one worker of this run only.

    ``make`` writes under the folder it is given and returns the artifact's path inside it; a marker
    file records that path once it is complete, so a worker killed half-way leaves nothing reused.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        return make(folder)
    root = tmp_path_factory.getbasetemp().parent
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with FileLock(str(root / f"shared-{name}.lock")):
        if done.exists():
            return Path(done.read_text())
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        out = make(folder)
        done.write_text(str(out))
        return out
