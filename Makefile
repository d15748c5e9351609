.PHONY: setup demo test bench bench-query clean

setup:
	@bash scripts/setup.sh

demo: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/reindex demo

test: setup
	@bash scripts/test.sh $(PYTEST_ARGS)

bench: setup
	.venv/bin/python -m pip install -q -e ".[bench]"
	HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/run.py

bench-query: setup
	.venv/bin/python -m pip install -q -e ".[serve]"
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/query.py

clean:
	rm -rf .venv .reindex build *.egg-info
