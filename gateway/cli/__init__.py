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
    # --- command families added by later work go below this line ---


_register()

__all__ = ["main"]
