"""Map, validate and store a source export; every record stands or falls alone.

Records are stored in chunks, one database transaction per chunk; when a chunk fails, each of
its records is stored alone, so a bad record never blocks the good ones and never leaves part of
itself stored. Resource ids are deterministic, so sending a record again updates it or leaves it
unchanged; its Provenance is written only when the record is new or something it describes
changed.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from gateway.errors import Forbidden, GatewayError, Issue
from gateway.fhir.service import FhirService, WriteResult
from gateway.security.context import current_caller
from gateway.security.policy import Policy
from mappings import MappedRecord, MappingError, MappingsError, ReaderError, Registry

log = logging.getLogger(__name__)
CHUNK = 200
STATUSES = ("created", "updated", "unchanged", "rejected")
# While an export is ingested, the cyclic garbage collector's youngest generation is collected
# after this many new container objects (Python's default: 700) and the middle one after this
# many collections of the youngest (default: 10). Mapping, validating and storing a record
# allocate thousands of short-lived dicts and lists, freed by reference counting; with the
# defaults, collections ran every few records and a full one (which walks every object the
# process holds) about every 500 records, some 15% of an ingest's time. Cycles are still
# collected, only in larger batches.
GC_THRESHOLDS = (10_000, 100)
_gc_lock = threading.Lock()
_gc_runs = [0, None]  # ingest runs in progress, thresholds to restore when the last ends


@contextlib.contextmanager
def _collect_less() -> Iterator[None]:
    """Raise the garbage collector's first threshold while any ingest runs; restore it after."""
    with _gc_lock:
        if _gc_runs[0] == 0:
            _gc_runs[1] = gc.get_threshold()
            first, second, third = gc.get_threshold()
            gc.set_threshold(max(first, GC_THRESHOLDS[0]), max(second, GC_THRESHOLDS[1]), third)
        _gc_runs[0] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs[0] -= 1
            if _gc_runs[0] == 0 and _gc_runs[1] is not None:
                gc.set_threshold(*_gc_runs[1])
                _gc_runs[1] = None


@dataclass
class RecordOutcome:
    """What happened to one source record."""

    location: str
    status: str
    record_id: str | None = None
    problems: list[Issue] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class IngestReport:
    """Counts and per-record outcomes of one ingest run."""

    source: str
    dry_run: bool
    counts: Counter[str] = field(default_factory=Counter)
    outcomes: list[RecordOutcome] = field(default_factory=list)
    stream_error: Issue | None = None
    collect: bool = True  # False: keep only rejected outcomes, so memory stays flat

    @property
    def rejected(self) -> int:
        """Return how many records were rejected."""
        return self.counts["rejected"] + (1 if self.stream_error else 0)

    def add(self, outcome: RecordOutcome) -> None:
        """Count one record outcome and keep it (only a rejected one unless collecting)."""
        self.counts[outcome.status] += 1
        if self.collect or outcome.status == "rejected":
            self.outcomes.append(outcome)


def _mapping_issues(exc: MappingError) -> list[Issue]:
    out = []
    for p in exc.problems:
        where = f"{p.location}" + (f", field {p.field}" if p.field else "")
        out.append(Issue("error", "invalid", f"{where}: {p.message}",
                         (p.fhir_path,) if p.fhir_path else ()))
    return out


class IngestService:
    """Ingest exports of the registered source systems into the FHIR store."""

    def __init__(self, mappings: Registry, fhir: FhirService, policy: Policy) -> None:
        self.mappings = mappings
        self.fhir = fhir
        self.policy = policy
        # The identity service links each stored child to its golden Patient, inside the
        # ingest transaction (set by gateway.identity.init_app).
        self.identity: Any = None

    def agency_for(self, source: str) -> str:
        """Return the agency that owns a source system's records."""
        for name, agency in self.policy.agencies.items():
            if source in agency.sources:
                return name
        return source

    def check_caller(self, source: str, *, storing: bool = False) -> None:
        """Raise unless the current caller may ingest this source (and, storing, write its types).

        Checking the write permissions up front answers a token without them with one 403
        instead of rejecting every record as it is stored.
        """
        caller = current_caller()
        if caller.system:
            return
        agency = self.policy.agency(caller.agency)
        if source not in agency.sources:
            raise Forbidden(f"the {caller.agency} agency may not ingest {source} exports")
        if not storing:
            return
        for res_type in self.resource_types(source):
            for interaction in ("create", "update"):
                self.policy.require_scope(caller, res_type, interaction)
            if res_type not in agency.write:
                raise Forbidden(f"the {caller.agency} agency may not write {res_type}, which "
                                f"{source} exports produce")

    def resource_types(self, source: str) -> list[str]:
        """Return the resource types a source's records map to (Provenance included)."""
        types = {template.resource_type for record_type in self.mappings.record_types(source)
                 for template in self.mappings.mapping(source, record_type).resources}
        return sorted(types | {"Provenance"})

    def sources(self) -> list[str]:
        """Return the source systems that can be ingested."""
        return self.mappings.sources()

    def map_and_validate(self, source: str, location: str, raw: dict[str, Any]) -> RecordOutcome:
        """Map one record and validate every resource it produces."""
        try:
            mapped: MappedRecord = self.mappings.map_record(source, raw, location)
        except MappingError as exc:
            return RecordOutcome(location, "rejected", problems=_mapping_issues(exc))
        problems: list[Issue] = []
        for resource in mapped.resources:
            for issue in self.fhir.validate(resource, resource.get("resourceType")):
                if issue.severity in ("error", "fatal"):
                    problems.append(Issue(issue.severity, issue.code,
                                          f"{location}: {issue.diagnostics}", issue.expression))
        status = "rejected" if problems else "mapped"
        return RecordOutcome(location, status, mapped.source_record_id, problems,
                             mapped.resources)

    def run(self, source: str, stream: IO[bytes], content_type: str | None, *,
            dry_run: bool = False, progress: Callable[[int], None] | None = None,
            collect: bool = True) -> IngestReport:
        """Ingest every record of an export and return the report.

        With `collect=False` the report keeps the counts and the rejected records only (no
        per-record outcomes or dry-run resources), so memory stays flat for exports of any size.
        """
        self.check_caller(source, storing=not dry_run)
        with _collect_less():
            return self._run(source, stream, content_type, dry_run=dry_run, progress=progress,
                             collect=collect)

    def _run(self, source: str, stream: IO[bytes], content_type: str | None, *,
             dry_run: bool, progress: Callable[[int], None] | None,
             collect: bool) -> IngestReport:
        report = IngestReport(source, dry_run, collect=collect)
        pending: list[RecordOutcome] = []
        try:
            for outcome in self._mapped(source, stream, content_type):
                if outcome.status == "rejected" or dry_run:
                    if dry_run and outcome.status != "rejected":
                        outcome.status = "valid"
                    report.add(outcome)
                else:
                    pending.append(outcome)
                if len(pending) >= CHUNK:
                    self._store_chunk(pending, report)
                    pending = []
                if progress:
                    progress(1)
        except ReaderError as exc:
            report.stream_error = Issue("error", "security" if exc.code == "hostile-input"
                                        else "structure", str(exc))
        if pending:
            self._store_chunk(pending, report)
        log.info("ingest source=%s dry_run=%s counts=%s", source, dry_run, dict(report.counts))
        return report

    def _mapped(self, source: str, stream: IO[bytes],
                content_type: str | None) -> Iterator[RecordOutcome]:
        for location, raw in self.mappings.read_records(source, stream, content_type):
            yield self.map_and_validate(source, location, raw)

    def _store_chunk(self, chunk: list[RecordOutcome], report: IngestReport) -> None:
        try:
            results = self.fhir._store_write(lambda tx: self._store_records(tx, chunk))
        except Exception:  # noqa: BLE001 - the chunk failed as a whole: retry each record alone
            log.warning("ingest chunk failed; storing its records one by one")
            results = [self._store_alone(outcome) for outcome in chunk]
        for outcome in results:
            report.add(outcome)

    def _store_alone(self, outcome: RecordOutcome) -> RecordOutcome:
        try:
            return self.fhir._store_write(  # type: ignore[no-any-return]
                lambda tx: self._store_records(tx, [outcome])[0])
        except GatewayError as exc:  # a refusal (policy, conflict) rejects this record only
            return RecordOutcome(outcome.location, "rejected", outcome.record_id, [Issue(
                "error", exc.code, f"{outcome.location}: could not be stored ({exc.message})")])
        except Exception as exc:  # noqa: BLE001 - a database refusal rejects this record only
            return RecordOutcome(outcome.location, "rejected", outcome.record_id, [Issue(
                "error", "exception", f"{outcome.location}: could not be stored "
                f"({type(exc).__name__})")])

    def _store_records(self, tx: Any, chunk: list[RecordOutcome]) -> list[RecordOutcome]:
        """Store the records' resources in one transaction; 'created' means new to the gateway.

        Every resource the chunk writes is read (and locked) by one query per type; the writes
        are staged record by record, in order, and stored together, so a resource that several
        records produce (a school, a worker) is compared with its latest version as before.
        A record is known when its Provenance (a deterministic id per source record) is stored:
        a known record that gains a resource (a new episode, a new contact) is 'updated'.
        Once the chunk is stored, each source Patient is linked to its golden Patient, in order.
        Any failure fails the whole transaction; the caller then stores each record alone.
        """
        current = tx.get_many_for_update(
            (r["resourceType"], r["id"]) for outcome in chunk for r in outcome.resources)
        results = []
        patients: list[dict[str, Any]] = []
        for outcome in chunk:
            created = changed = False
            provenances = [r for r in outcome.resources if r["resourceType"] == "Provenance"]
            for resource in outcome.resources:
                if resource["resourceType"] == "Provenance":
                    continue
                result: WriteResult = self.fhir._stage_update_in(
                    tx, current, resource["resourceType"], resource["id"], resource)
                created |= result.status == 201
                changed |= result.changed
                if resource["resourceType"] == "Patient":
                    patients.append(resource)
            if provenances:
                created = False
                for resource in provenances:
                    known = current.get(("Provenance", resource["id"]))
                    created |= known is None or known.deleted
            if changed or created:
                for resource in provenances:
                    self.fhir._stage_update_in(tx, current, "Provenance", resource["id"],
                                               resource)
            status = "created" if created else ("updated" if changed else "unchanged")
            results.append(RecordOutcome(outcome.location, status, outcome.record_id))
        tx.flush()
        if self.identity is not None and patients:
            self.identity.resolve_many_in(tx, patients)
        return results


@functools.lru_cache(maxsize=1)
def builtin_mappings() -> Registry:
    """Return the built-in mapping registry, loaded once per process."""
    from mappings import load_registry

    return load_registry()


def report_outcome(report: IngestReport) -> dict[str, Any]:
    """Return the report as an OperationOutcome with the counts as an extension."""
    counts = {s: report.counts.get(s, 0) for s in (*STATUSES, "valid")}
    summary = ", ".join(f"{k} {v}" for k, v in counts.items() if v or k in STATUSES)
    issues: list[dict[str, Any]] = [{
        "severity": "information", "code": "informational",
        "diagnostics": f"{report.source}: {summary}" + (" (dry run)" if report.dry_run else ""),
    }]
    if report.stream_error:
        issues.append(report.stream_error.to_fhir())
    for outcome in report.outcomes:
        if outcome.status == "rejected":
            issues.extend(p.to_fhir() for p in outcome.problems)
    return {
        "resourceType": "OperationOutcome",
        "extension": [{
            "url": "https://wraparound.example.org/fhir/StructureDefinition/ingest-counts",
            "extension": [{"url": k, "valueInteger": v} for k, v in counts.items()],
        }],
        "issue": issues,
    }


def iter_outcomes(report: IngestReport) -> Iterable[RecordOutcome]:
    """Return the per-record outcomes."""
    return report.outcomes


__all__ = ["IngestReport", "IngestService", "MappingsError", "RecordOutcome", "report_outcome"]
