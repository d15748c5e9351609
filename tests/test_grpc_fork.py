"""gRPC's fork handlers stay off in the CLI's process (reindexer/cli.py).

With them on, a child that subprocess makes by fork() (not vfork: pgserver starts pg_ctl as another
user) while a Milvus channel is open runs gRPC's post-fork handler, which restarts a poller thread
that can die of SIGSEGV before the child's exec (grpc/grpc#43055): a clean-clone test run lost
pg_ctl so. With its fork support on, gRPC looks at every fork and logs "skipping fork() handlers"
whenever other threads are in gRPC, as Milvus Lite's in-process server's nearly always are (99 forks
of 100 here); with it off, it never does. That line is what these tests count.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FORKS = 5

CHILD = f"""
import os, subprocess, sys
if sys.argv[1] == "cli":
    import reindexer.cli  # noqa: F401  (sets the default before gRPC is imported)
    assert not [m for m in sys.modules if m == "grpc" or m.startswith(("grpc.", "pymilvus"))], "grpc came first"
from pymilvus import MilvusClient
client = MilvusClient(sys.argv[2])  # Milvus Lite: an in-process server and an open channel
client.create_collection("c", dimension=4)
for _ in range({FORKS}):
    # user= makes subprocess fork() (it never vforks to change user), as pgserver's pg_ctl does
    assert subprocess.run(["/bin/true"], user=os.getuid()).returncode == 0
client.close()
"""


def _forks_seen_by_grpc(tmp_path: Path, how: str, env: dict[str, str]) -> int:
    run = subprocess.run(
        [sys.executable, "-c", CHILD, how, str(tmp_path / f"{how}.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return sum("fork() handlers" in line or "fork_posix" in line for line in run.stderr.splitlines())


@pytest.fixture
def env_without_the_setting() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GRPC_ENABLE_FORK_SUPPORT", None)  # the suite's own setting (tests/conftest.py) removed
    return env


def test_the_cli_turns_grpcs_fork_handlers_off_before_grpc_is_imported(tmp_path, env_without_the_setting):
    assert _forks_seen_by_grpc(tmp_path, "cli", env_without_the_setting) == 0


def test_without_the_cli_grpcs_fork_support_sees_every_fork(tmp_path, env_without_the_setting):
    """The control: the same process without the CLI's import, so the test above can fail."""
    assert _forks_seen_by_grpc(tmp_path, "plain", env_without_the_setting) >= 1


def test_an_operator_who_sets_the_variable_keeps_it(tmp_path, env_without_the_setting):
    env = {**env_without_the_setting, "GRPC_ENABLE_FORK_SUPPORT": "true"}
    assert _forks_seen_by_grpc(tmp_path, "cli", env) >= 1
