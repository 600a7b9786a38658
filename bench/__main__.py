"""Run every benchmark: `python -m bench [--quick] [--db sqlite|postgres|both] [NAME ...]`."""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = (
    "fhir_throughput",
    "ingest_throughput",
    "national_pds",
    "national_index",
    "security_cost",
    "security_breakdown",
    "identity",
    "outbox_delivery",
    "outbox_soak",
)


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmarks (all by default); return non-zero if any failed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default all: {', '.join(BENCHMARKS)})",
    )
    parser.add_argument("--quick", action="store_true", help="short smoke-test runs")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    status = 0
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        forwarded = ["--db", args.db, *(["--quick"] if args.quick else [])]
        print(f"== {name} ==", flush=True)
        status = max(status, int(module.main(forwarded)))
    return status


if __name__ == "__main__":
    sys.exit(main())
