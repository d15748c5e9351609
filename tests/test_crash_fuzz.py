"""Randomized crash fuzzing (issue 22): a real `reindex` SIGKILLed at a random instant, then the next command.

tests/test_crash.py kills each step at its named points; this test draws the operation, the
pending application writes and the instant at random, ``ITERATIONS`` times on each embedded
backend (Qdrant local, Milvus Lite): apply, sync, cutover, rollback, gc, migrate, adopt or
verify --fix, killed ``uniform(0, 1.2)`` times its typical duration after it started (or
finished first), then the command the README's "Reliability" section names for the
interruption, then the checks of tests/crashfuzz.py (exit codes, alias and state in
agreement, verify clean after the scheduled sync, every source document in the live version
once with its model's tag and vector, a Searcher answer from the live version alone).

The draws are seeded: ``REINDEX_FUZZ_SEED`` (default 22), ``REINDEX_FUZZ_ITERATIONS`` (per
backend), ``REINDEX_FUZZ_START`` and ``REINDEX_FUZZ_BACKENDS`` replay what a failure names.
``make bench-crash-fuzz`` (benchmarks/crash_fuzz.py) runs hundreds, the Milvus server too.
"""

from __future__ import annotations

import os

import pytest

from tests.crashfuzz import (
    N_DOCS,
    FuzzWorld,
    Launcher,
    fuzz,
    fuzz_environment,
    scaled_documents,
    settings_from_env,
    summary,
)
from tests.plugins.stores import EMBEDDED_KINDS

ITERATIONS = 15  # per backend: 30 in all, about 2 s each on the project's busy 2-core machine


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    """The process the killed commands are forked from (torch and the store clients imported once)."""
    started = Launcher(tmp_path_factory.mktemp("crash-fuzz") / "launcher.log")
    yield started
    started.close()


@pytest.mark.parametrize("kind", EMBEDDED_KINDS)
def test_random_kills_then_the_next_command_leave_a_consistent_world(
    kind, launcher, tmp_path, minilm_path, demo_corpus
):
    wanted = os.environ.get("REINDEX_FUZZ_BACKENDS")
    if wanted and kind not in wanted.split(","):
        pytest.skip(f"REINDEX_FUZZ_BACKENDS={wanted}")
    seed, iterations, start = settings_from_env(ITERATIONS)
    with fuzz_environment():
        world = FuzzWorld(kind, tmp_path, minilm_path, scaled_documents(demo_corpus.documents, N_DOCS))
        world.build()
        records = fuzz(world, launcher, seed, iterations, start)
    print(f"\nseed {seed}, iterations {start}..{start + iterations - 1}, world built in {world.build_seconds:.1f}s")
    print("\n".join(r.line() for r in records))
    print(summary(records))
    failures = [r for r in records if r.failure]
    assert not failures, f"{len(failures)} of {len(records)} iterations failed (seed {seed}):\n\n" + "\n\n".join(
        f"{r.line()}\n{r.failure}" for r in failures
    )
    assert len(records) == iterations
