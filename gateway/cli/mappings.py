"""`wraparound mappings`: list the local source mappings and check them against their samples."""
from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from mappings import (
    BUILTIN_SOURCES,
    MappingError,
    MappingsError,
    ReaderError,
    Registry,
    TableUsage,
    load_registry,
)

_PROJECT_SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "sources"
_CHECK_RECORDED = "2000-01-01T00:00:00Z"  # fixed: check output is never stored


@dataclass
class SourceReport:
    """What `check` found for one source."""

    source: str
    samples: list[Path] = field(default_factory=list)
    records: int = 0
    mapped: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _registry(extra: tuple[Path, ...]) -> Registry:
    try:
        return load_registry([BUILTIN_SOURCES, *extra])
    except MappingsError as exc:
        raise click.ClickException(str(exc)) from exc


def _validator() -> Callable[[Any], list[Any]] | None:
    try:
        module = importlib.import_module("gateway.fhir.validation")
    except ModuleNotFoundError:
        return None
    validate: Callable[[Any], list[Any]] | None = getattr(module, "validate_resource", None)
    return validate


def _issue_text(issue: Any) -> tuple[str, str]:
    def get(name: str) -> str:
        if isinstance(issue, dict):
            return str(issue.get(name, ""))
        return str(getattr(issue, name, ""))

    return get("severity") or "error", f"{get('expression')}: {get('diagnostics')}".strip(": ")


def _samples(registry: Registry, source: str, samples_dir: Path) -> list[Path]:
    found = sorted((samples_dir / source).glob("sample.*"))
    found += sorted(registry.folder(source).glob("sample.*"))
    return [p for p in found if p.is_file()]


def check_source(registry: Registry, source: str, samples_dir: Path,
                 validate: Callable[[Any], list[Any]] | None) -> SourceReport:
    """Map every record of a source's samples and collect problems and warnings."""
    report = SourceReport(source, _samples(registry, source, samples_dir))
    usage = TableUsage()
    unmapped: Counter[str] = Counter()
    if not report.samples:
        report.warnings.append("no sample found")
    for sample in report.samples:
        try:
            with sample.open("rb") as stream:
                for location, raw in registry.read_records(source, stream):
                    report.records += 1
                    mapping = registry.mapping(source) if len(
                        registry.record_types(source)) == 1 else None
                    if mapping is not None:
                        unmapped.update(mapping.unmapped_fields(raw))
                    try:
                        mapped = registry.map_record(source, raw, location, usage=usage,
                                                     recorded=_CHECK_RECORDED)
                    except MappingError as exc:
                        report.problems.extend(f"{sample.name} {p}" for p in exc.problems)
                        continue
                    report.mapped += 1
                    if validate is None:
                        continue
                    for resource in mapped.resources:
                        for issue in validate(resource):
                            severity, text = _issue_text(issue)
                            if severity in ("error", "fatal"):
                                report.problems.append(
                                    f"{sample.name} {location}: invalid "
                                    f"{resource['resourceType']}: {text}")
        except ReaderError as exc:
            report.problems.append(f"{sample.name} {exc}")
    for name, count in sorted(unmapped.items()):
        report.problems.append(f"unmapped input field {name!r} ({count} records)")
    tables = registry.tables(source)
    for record_type in registry.record_types(source):
        mapping = registry.mapping(source, record_type)
        for name in mapping.unused_inputs():
            report.warnings.append(f"{record_type}: input {name!r} is declared but never used")
        # Local code tables named by the inputs; shared tables used through partials (e.g.
        # verification status) are not expected to be exercised by every source.
        for table_name in sorted(set(mapping.inputs.tables().values())):
            table = tables[table_name]
            for value, count in sorted(usage.missing.get(table_name, {}).items()):
                text = (f"code {value!r} seen {count} times is not in table {table_name!r}")
                if table.default is not None:
                    report.warnings.append(f"{text} (mapped to its default)")
                else:
                    report.problems.append(text)
            if report.samples:
                unused = sorted(set(table.entries) - usage.used.get(table_name, set()))
                if unused:
                    report.warnings.append(
                        f"table {table_name!r}: entries unused by the samples: "
                        f"{', '.join(unused)}")
    return report


@click.group("mappings")
def mappings() -> None:
    """List local source mappings and check them against their samples."""


_EXTRA = click.option(
    "--mappings-dir", "extra", multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Another folder of source mappings (repeatable).")


@mappings.command("list")
@_EXTRA
def list_sources(extra: tuple[Path, ...]) -> None:
    """List every source with its record types and input format."""
    registry = _registry(extra)
    for source in registry.sources():
        fmt = registry.format(source)
        types = ", ".join(registry.record_types(source))
        click.echo(f"{source:<16} {fmt.type:<5} {types:<20} {registry.folder(source)}")


@mappings.command("check")
@_EXTRA
@click.option("--samples", "samples_dir", default=_PROJECT_SAMPLES, show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding <source>/sample.* files.")
@click.option("--source", "only", multiple=True, help="Check only this source (repeatable).")
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
def check(extra: tuple[Path, ...], samples_dir: Path, only: tuple[str, ...],
          strict: bool) -> None:
    """Map every sample record and report errors, unmapped fields and code table gaps."""
    registry = _registry(extra)
    validate = _validator()
    if validate is None:
        click.echo("note: FHIR validation is not available; outputs are not validated")
    failed = False
    unknown = set(only) - set(registry.sources())
    if unknown:
        raise click.BadParameter(f"unknown source(s): {', '.join(sorted(unknown))}",
                                 param_hint="--source")
    for source in registry.sources():
        if only and source not in only:
            continue
        report = check_source(registry, source, samples_dir, validate)
        status = "ok" if not report.problems else "PROBLEMS"
        click.echo(f"{source}: {report.mapped}/{report.records} records mapped from "
                   f"{len(report.samples)} sample(s), {len(report.problems)} problem(s), "
                   f"{len(report.warnings)} warning(s) [{status}]")
        for problem in report.problems:
            click.echo(f"  error: {problem}")
        for warning in report.warnings:
            click.echo(f"  warning: {warning}")
        failed |= bool(report.problems) or (strict and bool(report.warnings))
    if failed:
        raise SystemExit(1)
