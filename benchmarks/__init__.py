"""Benchmarks of reindexer: speed targets live here, printed as ratios measured side by side in one run."""
