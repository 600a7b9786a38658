"""`wraparound identity`: rebuild the golden records, report their quality, re-estimate weights."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sources"
WEIGHTS = Path(__file__).resolve().parents[1] / "identity" / "weights.yaml"


def _app() -> Any:
    from gateway.app import configure_logging, create_app
    from gateway.config import load_settings

    settings = load_settings()
    configure_logging("WARNING")
    return create_app(settings)


@click.group()
def identity() -> None:
    """Golden records across agencies: rebuild the links, report their quality."""


@identity.command()
def rebuild() -> None:
    """Recompute every link from every stored Patient (a person's decisions are kept)."""
    from gateway.identity.views import EXTENSION
    from gateway.security.audit import AuditContext, begin_audit, end_audit

    app = _app()
    services = app.extensions["wraparound"]
    token = begin_audit(AuditContext("operation", res_type="Patient",
                                     description="cli identity rebuild"))
    try:
        summary = app.extensions[EXTENSION].rebuild()
    finally:
        end_audit(token)
        services.audit.flush()
        services.store.dispose()
    click.echo(f"source Patients: {summary.sources}, children: {summary.goldens}, "
               f"pairs compared: {summary.pairs_compared}, links changed: {summary.moved}, "
               f"golden Patients retired: {summary.retired}, "
               f"waiting for review: {summary.review_open}")
    if summary.skipped_buckets:
        click.echo(f"blocking keys shared too widely to use: {summary.skipped_buckets}")


@identity.command()
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path),
              default=FIXTURES / "truth.csv", show_default=True,
              help="CSV of source,record_id,child_id to score precision and recall against.")
@click.option("--no-truth", is_flag=True, help="Report counts only.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def report(truth: Path, no_truth: bool, as_json: bool) -> None:
    """Report children, sources per child, the review queue, and precision/recall."""
    from gateway.identity.report import read_truth
    from gateway.identity.views import EXTENSION
    from gateway.security.context import Caller, acting_as

    known = None
    if not no_truth:
        if not truth.is_file():
            raise click.ClickException(f"no truth file at {truth} (use --no-truth)")
        known = read_truth(truth)
    app = _app()
    try:
        with acting_as(Caller.internal("gateway")):
            result = app.extensions[EXTENSION].report(known)
    finally:
        app.extensions["wraparound"].store.dispose()
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        for line in result.lines():
            click.echo(line)


@identity.command()
@click.option("--fixtures", type=click.Path(file_okay=False, path_type=Path), default=FIXTURES,
              show_default=True, help="Folder with truth.csv and <source>/golden/sample.json.")
@click.option("--write/--check", default=False,
              help="Rewrite weights.yaml, or (default) only show what would change.")
def estimate(fixtures: Path, write: bool) -> None:
    """Re-estimate the matching weights and thresholds from records of known identity."""
    import yaml

    from gateway.identity.estimate import estimate as run
    from gateway.identity.estimate import labelled_fixtures, render
    from gateway.identity.matching import MatchModel

    current = yaml.safe_load(WEIGHTS.read_text(encoding="utf-8"))
    model = MatchModel.load()
    data = run(labelled_fixtures(fixtures), model, current["estimation"])
    text = render(data, current["estimation"], current.get("blocking") or {})
    if write:
        WEIGHTS.write_text(text, encoding="utf-8")
        click.echo(f"wrote {WEIGHTS}")
        return
    unchanged = text == WEIGHTS.read_text(encoding="utf-8")
    click.echo(f"{data['estimated_from']}; thresholds {data['thresholds']}")
    click.echo("weights.yaml is up to date" if unchanged else
               "weights.yaml differs from this estimate (run with --write)")
    if not unchanged:
        raise SystemExit(1)


__all__ = ["identity"]
