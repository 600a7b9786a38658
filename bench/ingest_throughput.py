"""Ingest throughput against fhir.resources parsing alone, and peak memory on large exports.

Run: ``.venv/bin/python -m bench.ingest_throughput [--db sqlite|postgres|both] [--quick]``.

Throughput: the five sample exports of ``fixtures/sources/`` ingested by ``IngestService.run`` (map,
validate, store), acting as the internal caller of each source's agency with an audit context
as ``wraparound ingest`` does, on a fresh database per round: a new SQLite file, or the PostgreSQL
scratch database ``wraparound_bench_ingest`` emptied. In the same rounds, interleaved, the same
exports as a dry run (map and validate only) and the baseline: ``fhir.resources.R4B.<Type>
.model_validate(resource)`` over every resource the records produce (Provenance included).
Reported: median records/s of each and ``ratio`` = ingest / baseline (target >= 0.5).

Memory: a social-care CSV export of ~10 MB and one of ~100 MB (the sample's rows repeated with
unique ids and perturbed names, in a temporary folder), each run as a dry run in its own
subprocess (``IngestService.run(..., dry_run=True, collect=False)``, as the CLI runs it). Reported:
peak RSS (``ru_maxrss``) before and after the run; flat memory means the two peaks are close.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    DEFAULT_POSTGRES_URL,
    RESULTS_DIR,
    ROOT,
    PostgresScratch,
    machine_info,
    write_results,
)

NAME = "ingest_throughput"
SOURCES_DIR = ROOT / "fixtures" / "sources"
CONTENT_TYPES = {".csv": "text/csv", ".json": "application/json", ".xml": "application/xml"}
SCRATCH_DB = "wraparound_bench_ingest"
TARGET = 0.5


# -- inputs ----------------------------------------------------------------------------------
def samples() -> list[tuple[str, bytes, str]]:
    """Return (source, export bytes, content type) for every source with a sample."""
    out = []
    for folder in sorted(p for p in SOURCES_DIR.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("sample.*")):
            out.append((folder.name, path.read_bytes(), CONTENT_TYPES[path.suffix]))
    return out


def write_social_care_export(path: Path, target_bytes: int) -> int:
    """Write a social-care CSV of about `target_bytes`; return its number of records.

    The sample's rows are repeated with a unique PersonID each and the surname's case varied.
    Bytes are kept as exported (Windows-1252) by round-tripping them through latin-1.
    """
    text = (SOURCES_DIR / "social-care" / "sample.csv").read_bytes().decode("latin-1")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, body = rows[0], [r for r in rows[1:] if r]
    pid, surname = header.index("PersonID"), header.index("Surname")
    count = 0
    with path.open("w", encoding="latin-1", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(header)
        while fh.tell() < target_bytes:
            for row in body:
                row = list(row)
                row[pid] = f"SC{count:06d}"
                if count % 3 == 1:
                    row[surname] = row[surname].upper()
                elif count % 3 == 2:
                    row[surname] = row[surname].lower()
                writer.writerow(row)
                count += 1
                if count >= 1_000_000:
                    raise SystemExit("PersonID has six digits: ask for a smaller file")
    return count


# -- one database ----------------------------------------------------------------------------
class Target:
    """A database the rounds run on: a fresh SQLite file or the emptied scratch PostgreSQL."""

    def __init__(self, kind: str, work: Path, postgres_url: str) -> None:
        self.kind = kind
        self.work = work
        self.round = 0
        self.app: Any = None
        self.scratch: PostgresScratch | None = None
        self.template: Path | None = None
        from gateway.store import make_engine, upgrade

        if kind == "sqlite":
            self.template = work / "template.sqlite"
            engine = make_engine(f"sqlite:///{self.template}")
            upgrade(engine)
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            engine.dispose()
        else:
            self.scratch = PostgresScratch(postgres_url, SCRATCH_DB)
            engine = make_engine(self.scratch.create())
            upgrade(engine)
            engine.dispose()

    def fresh(self) -> Any:
        """Return the services of an app on an empty database."""
        from gateway import create_app
        from gateway.config import Settings

        self.close()
        self.round += 1
        if self.kind == "sqlite":
            assert self.template is not None
            path = self.work / f"round-{self.round}.sqlite"
            shutil.copy(self.template, path)
            url = f"sqlite:///{path}"
        else:
            assert self.scratch is not None
            url = self.scratch.url
            self._truncate(url)
        self.app = create_app(Settings(env="test", data_dir=self.work, database_url=url,
                                       rate_limit_per_minute=0))
        return self.app.extensions["wraparound"]

    @staticmethod
    def _truncate(url: str) -> None:
        import sqlalchemy as sa

        from gateway.store.schema import metadata

        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{t.name}"'
                                                        for t in metadata.sorted_tables)))
        engine.dispose()

    def close(self) -> None:
        """Dispose of the current app's connections."""
        if self.app is not None:
            services = self.app.extensions["wraparound"]
            services.audit.flush()
            services.store.dispose()
            self.app = None
        if self.kind == "sqlite" and self.round:
            for path in self.work.glob(f"round-{self.round}.sqlite*"):
                path.unlink(missing_ok=True)

    def drop(self) -> None:
        """Drop what the target created."""
        self.close()
        if self.scratch is not None:
            self.scratch.drop()


def ingest_all(services: Any, exports: list[tuple[str, bytes, str]], *,
               dry_run: bool) -> tuple[float, int, dict[str, int]]:
    """Ingest every export as its agency would from the CLI; return (seconds, records, counts)."""
    from gateway.security.audit import AuditContext, begin_audit, end_audit
    from gateway.security.context import Caller, acting_as

    counts: dict[str, int] = {}
    records = 0
    start = time.perf_counter()
    for source, data, ctype in exports:
        token = begin_audit(AuditContext("ingest", description=f"bench ingest {source}"))
        try:
            with acting_as(Caller.internal(services.ingest.agency_for(source))):
                report = services.ingest.run(source, io.BytesIO(data), ctype, dry_run=dry_run,
                                             collect=False)
        finally:
            end_audit(token)
        for status, n in report.counts.items():
            counts[status] = counts.get(status, 0) + n
            records += n
        if report.stream_error is not None:
            counts["stream_error"] = counts.get("stream_error", 0) + 1
    return time.perf_counter() - start, records, counts


def output_resources(services: Any, exports: list[tuple[str, bytes, str]],
                     ) -> list[tuple[Any, dict[str, Any]]]:
    """Return (model class, resource) for every resource the exports' records map to."""
    from fhir.resources.R4B import get_fhir_model_class

    from gateway.security.context import Caller, acting_as

    out = []
    for source, data, ctype in exports:
        with acting_as(Caller.internal(services.ingest.agency_for(source))):
            report = services.ingest.run(source, io.BytesIO(data), ctype, dry_run=True)
        for outcome in report.outcomes:
            for resource in outcome.resources:
                out.append((get_fhir_model_class(resource["resourceType"]), resource))
    return out


def parse_all(resources: list[tuple[Any, dict[str, Any]]]) -> float:
    """Return the seconds fhir.resources takes to parse every resource once."""
    start = time.perf_counter()
    for model, resource in resources:
        model.model_validate(resource)
    return time.perf_counter() - start


def run_target(kind: str, rounds: int, exports: list[tuple[str, bytes, str]],
               postgres_url: str) -> dict[str, Any]:
    """Run the interleaved rounds on one database and return its figures."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-ingest-{kind}-"))
    target = Target(kind, work, postgres_url)
    errors: list[str] = []
    try:
        services = target.fresh()
        resources = output_resources(services, exports)
        ingest_all(services, exports, dry_run=True)  # warm-up: caches, compiled expressions
        parse_all(resources)
        per_round = []
        for number in range(1, rounds + 1):
            services = target.fresh()
            seconds, records, counts = ingest_all(services, exports, dry_run=False)
            if counts.get("created") != records or set(counts) - {"created"}:
                errors.append(f"round {number}: expected every record created, got {counts}")
            services.audit.flush()
            dry_seconds, dry_records, dry_counts = ingest_all(services, exports, dry_run=True)
            if dry_counts.get("valid") != dry_records:
                errors.append(f"round {number}: dry run not all valid: {dry_counts}")
            base_seconds = parse_all(resources)
            per_round.append({
                "records": records,
                "resources": len(resources),
                "ingest_records_per_s": records / seconds,
                "dry_run_records_per_s": dry_records / dry_seconds,
                "baseline_records_per_s": records / base_seconds,
                "ratio": base_seconds / seconds,
                "dry_run_ratio": base_seconds / dry_seconds,
            })
            print(f"  {kind} round {number}: ingest {records / seconds:7.1f} rec/s, "
                  f"dry run {dry_records / dry_seconds:7.1f} rec/s, "
                  f"baseline {records / base_seconds:7.1f} rec/s, "
                  f"ratio {base_seconds / seconds:.3f}", flush=True)
    finally:
        target.drop()
        shutil.rmtree(work, ignore_errors=True)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in per_round)

    return {
        "db": kind,
        "rounds": per_round,
        "records": per_round[0]["records"] if per_round else 0,
        "resources": per_round[0]["resources"] if per_round else 0,
        "ingest_records_per_s": median("ingest_records_per_s"),
        "dry_run_records_per_s": median("dry_run_records_per_s"),
        "baseline_records_per_s": median("baseline_records_per_s"),
        "ratio": median("ratio"),
        "ratio_range": [min(r["ratio"] for r in per_round), max(r["ratio"] for r in per_round)],
        "dry_run_ratio": median("dry_run_ratio"),
        "meets_target": median("ratio") >= TARGET,
        "errors": errors,
    }


# -- memory ----------------------------------------------------------------------------------
def memory_child(path: str) -> None:
    """In a subprocess: dry-run one social-care export and print peak RSS before and after."""
    import resource

    from gateway import create_app
    from gateway.config import Settings
    from gateway.security.context import Caller, acting_as

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-mem-"))
    try:
        app = create_app(Settings(env="test", data_dir=work,
                                  database_url=f"sqlite:///{work / 'memory.sqlite'}"))
        service = app.extensions["wraparound"].ingest
        sample = (SOURCES_DIR / "social-care" / "sample.csv").read_bytes()
        samples_rss: list[int] = []
        with acting_as(Caller.internal("social-care")):
            service.run("social-care", io.BytesIO(sample), "text/csv", dry_run=True,
                        collect=False)  # warm-up
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            seen = [0]

            def sample_rss(_: int) -> None:
                seen[0] += 1
                if seen[0] % 5000 == 0:
                    with open("/proc/self/statm", encoding="ascii") as fh:
                        pages = int(fh.read().split()[1])
                    samples_rss.append(pages * os.sysconf("SC_PAGE_SIZE") // 1024)

            start = time.perf_counter()
            with open(path, "rb") as stream:
                report = service.run("social-care", stream, "text/csv", dry_run=True,
                                     progress=sample_rss, collect=False)
            seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"records": sum(report.counts.values()), "counts": dict(report.counts),
                          "seconds": seconds, "peak_rss_before_kib": before,
                          "peak_rss_after_kib": after, "rss_samples_kib": samples_rss}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_memory(sizes_mb: list[float]) -> list[dict[str, Any]]:
    """Generate each export size, dry-run it in a subprocess, and return the figures."""
    out = []
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-exports-"))
    try:
        for size in sizes_mb:
            path = work / f"social-care-{size:g}mb.csv"
            records = write_social_care_export(path, int(size * 1024 * 1024))
            print(f"  memory: {path.stat().st_size / 1e6:.1f} MB, {records} records ...",
                  flush=True)
            proc = subprocess.run(
                [sys.executable, "-m", "bench.ingest_throughput", "--memory-child", str(path)],
                cwd=ROOT, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                out.append({"size_mb": size, "error": proc.stderr[-2000:]})
                continue
            figures = json.loads(proc.stdout.strip().splitlines()[-1])
            figures.update(size_mb=size, file_bytes=path.stat().st_size,
                           generated_records=records)
            out.append(figures)
            path.unlink()
            print(f"  memory: {size:g} MB: peak RSS {figures['peak_rss_before_kib'] / 1024:.0f} MiB"
                  f" before, {figures['peak_rss_after_kib'] / 1024:.0f} MiB after "
                  f"({figures['records'] / figures['seconds']:.0f} rec/s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


# -- report ----------------------------------------------------------------------------------
def print_table(throughput: list[dict[str, Any]], memory: list[dict[str, Any]]) -> None:
    """Print the results as tables."""
    if throughput:
        print(f"\n{'db':<10}{'records':>8}{'ingest rec/s':>14}{'dry-run rec/s':>15}"
              f"{'baseline rec/s':>16}{'ratio':>8}{'range':>15}{'target':>8}")
        for r in throughput:
            lo, hi = r["ratio_range"]
            print(f"{r['db']:<10}{r['records']:>8}{r['ingest_records_per_s']:>14.1f}"
                  f"{r['dry_run_records_per_s']:>15.1f}{r['baseline_records_per_s']:>16.1f}"
                  f"{r['ratio']:>8.3f}{f'{lo:.3f}-{hi:.3f}':>15}"
                  f"{'ok' if r['meets_target'] else 'MISS':>8}")
    if memory:
        print(f"\n{'export':<10}{'records':>9}{'rec/s':>8}{'peak RSS before':>17}"
              f"{'peak RSS after':>16}{'growth':>9}")
        for m in memory:
            if "error" in m:
                print(f"{m['size_mb']:>6g} MB  error: {m['error'][-200:]}")
                continue
            before, after = m["peak_rss_before_kib"] / 1024, m["peak_rss_after_kib"] / 1024
            print(f"{m['file_bytes'] / 1e6:>7.1f} MB{m['records']:>9}"
                  f"{m['records'] / m['seconds']:>8.0f}{before:>13.0f} MiB{after:>12.0f} MiB"
                  f"{after - before:>5.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return non-zero when a run had errors or a database was unusable."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_throughput",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true",
                        help="2 rounds, memory on 1 and 10 MB exports")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per database (5)")
    parser.add_argument("--memory-mb", type=float, nargs="*", default=None,
                        help="export sizes for the memory runs (10 100); none to skip")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "WRAPAROUND_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--memory-child", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    import logging

    logging.basicConfig(level="WARNING")
    rounds = args.rounds or (2 if args.quick else 5)
    sizes = args.memory_mb if args.memory_mb is not None else ([1, 10] if args.quick
                                                               else [10, 100])
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    exports = samples()
    status = 0
    throughput: list[dict[str, Any]] = []
    if not args.skip_throughput:
        for kind in kinds:
            try:
                result = run_target(kind, rounds, exports, args.postgres_url)
            except Exception as exc:  # noqa: BLE001 - an unusable database fails the run only
                print(f"  {kind}: failed: {type(exc).__name__}: {exc}", flush=True)
                throughput.append({"db": kind, "error": f"{type(exc).__name__}: {exc}"})
                status = 1
                continue
            status = max(status, 1 if result["errors"] else 0)
            throughput.append(result)
    memory = run_memory(sizes) if sizes else []
    if any("error" in m for m in memory):
        status = 1
    print_table([t for t in throughput if "error" not in t], memory)
    results: dict[str, Any] = {"machine": machine_info(), "target_ratio": TARGET,
                               "throughput": throughput, "memory": memory}
    previous = RESULTS_DIR / f"{NAME}.json"
    if (args.skip_throughput or not sizes) and previous.exists():
        # a partial run keeps the other section of the last run, marked with that run's time
        earlier = json.loads(previous.read_text(encoding="utf-8"))
        for key in ("throughput", "memory"):
            if not results[key] and earlier.get(key):
                results[key] = earlier[key]
                results[f"{key}_from_run_at"] = earlier.get(f"{key}_from_run_at") or earlier.get(
                    "machine", {}).get("when")
    path = write_results(NAME, results)
    print(f"\nwritten {path.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
