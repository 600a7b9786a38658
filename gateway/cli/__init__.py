"""The `wraparound` command line: one click group, one module per command family."""
from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Wraparound: an interoperability gateway for children's services."""


def _register() -> None:
    # One line per command family; each module owns its commands.
    from gateway.cli import serve as _serve

    main.add_command(_serve.serve)
    main.add_command(_serve.db)
    main.add_command(_serve.demo)
    from gateway.cli import ingest as _ingest

    main.add_command(_ingest.ingest)
    from gateway.cli import clients as _clients

    main.add_command(_clients.clients)
    main.add_command(_clients.dev_token)
    from gateway.cli import seed as _seed

    main.add_command(_seed.seed)
    main.add_command(_seed.client_assertion)
    from gateway.cli import conformance as _conformance

    main.add_command(_conformance.conformance)
    from gateway.cli import identity as _identity

    main.add_command(_identity.identity)
    # --- command families added by later work go below this line ---
    from gateway.cli import mappings as _mappings
    main.add_command(_mappings.mappings)
    from gateway.cli import mocks as _mocks

    main.add_command(_mocks.mocks)
    from gateway.cli import outbox as _outbox

    main.add_command(_outbox.worker)
    main.add_command(_outbox.outbox)
    from gateway.cli import national as _national

    main.add_command(_national.national)


_register()

__all__ = ["main"]
