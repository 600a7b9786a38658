"""Benchmarks, each reported as a ratio against a baseline measured in the same run.

`python -m bench` (or `make bench`) runs them all; `python -m bench.<name>` runs one. Each
benchmark module provides `main(argv) -> int` accepting at least `--quick` and
`--db sqlite|postgres|both`, and writes its results to `bench/results/<name>.json`.
"""
