"""`wraparound ingest SOURCE FILE`: ingest an export of any size into the configured database."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from gateway.config import load_settings

CONTENT_TYPES = {".csv": "text/csv", ".json": "application/json", ".ndjson": "application/x-ndjson",
                 ".jsonl": "application/x-ndjson", ".xml": "application/xml"}


@click.command()
@click.argument("source")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Map and validate only; store nothing.")
@click.option("--content-type", default=None, help="Override the format guessed from the suffix.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def ingest(source: str, file: Path, dry_run: bool, content_type: str | None, quiet: bool) -> None:
    """Ingest FILE, an export of SOURCE; exits 1 when any record is rejected."""
    from gateway.app import configure_logging, create_app
    from gateway.ingest.service import builtin_mappings, report_outcome
    from gateway.services import Services

    known = builtin_mappings().sources()
    if source not in known:  # before the app opens database connections
        raise click.BadParameter(f"unknown source; known: {', '.join(known)}",
                                 param_hint="SOURCE")
    ctype = content_type or CONTENT_TYPES.get(file.suffix.lower())
    size = os.path.getsize(file)
    from gateway.security.audit import AuditContext, begin_audit, end_audit
    from gateway.security.context import Caller, acting_as

    settings = load_settings()
    configure_logging("WARNING")
    app = create_app(settings)
    services: Services = app.extensions["wraparound"]
    audit_token = begin_audit(AuditContext("ingest", description=f"cli ingest {source}"))
    try:
        with acting_as(Caller.internal(services.ingest.agency_for(source))), \
                file.open("rb") as stream:
            if quiet or not os.isatty(2):
                report = services.ingest.run(source, stream, ctype, dry_run=dry_run,
                                             collect=False)
            else:
                # sys.stderr: click.get_text_stream is deprecated (a warning) in Click 8.2+
                with click.progressbar(length=size, label=f"{source}", file=sys.stderr) as bar:
                    last = [0]

                    def advance(_: int) -> None:
                        pos = stream.tell()
                        bar.update(pos - last[0])
                        last[0] = pos

                    report = services.ingest.run(source, stream, ctype, dry_run=dry_run,
                                                 progress=advance, collect=False)
    finally:
        end_audit(audit_token)
        services.audit.flush()
        services.store.dispose()
    outcome = report_outcome(report)
    for issue in outcome["issue"]:
        click.echo(f"{issue['severity']}: {issue.get('diagnostics', '')}"
                   + (f" [{', '.join(issue['expression'])}]" if issue.get("expression") else ""))
    raise SystemExit(1 if report.rejected else 0)
