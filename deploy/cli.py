"""The ``proxima`` command line (DESIGN.md, Contract: command line).

Only the root and the mounts: each package exports its own Typer app or commands
(``edge.cli``, ``stream.cli``, ``stream.customers_cli``, ``notifier.cli``,
``stream.bookings_cli``, ``simulators.cli``, ``beacons.cli``, ``contracts.cli``, ``deploy.commands``,
``deploy.config``, ``deploy.docs``), printing through ``transport.cli``. A new command goes
into its package's module and, if it is a new group, gets one line here.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from beacons.cli import beacons_app
from contracts.cli import contracts_app
from deploy.commands import bench, up
from deploy.config import config_app
from deploy.docs import docs_app
from deploy.provisioning import gateways_provision
from edge.cli import app as edge_app
from edge.cli import config_app as gateway_config_app
from notifier.cli import associates_app, channels_app, notifier_app
from simulators.cli import alerts_app, replay, score, simulate
from stream.bookings_cli import appointments_app, reservations_app
from stream.cli import bridge, gateways_app, stats, stream_app, topics_app
from stream.customers_cli import customers_app

app = typer.Typer(
    name="proxima",
    help="Proxima: in-store proximity and associate alerts (edge, stream, notifier, simulators).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish, PowerShell)
)


def _print_version(value: bool) -> None:
    if value:
        from contracts.version import installed_version

        typer.echo(f"proxima {installed_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """Proxima: in-store proximity and associate alerts (edge, stream, notifier, simulators)."""


# The order here is the order of `proxima --help` (Typer lists commands, then groups).
app.command("score")(score)
app.command()(up)
app.command()(bridge)
app.command()(replay)
app.command()(simulate)
app.command()(stats)
app.command()(bench)
app.add_typer(edge_app, name="edge")
app.add_typer(config_app, name="config")
app.add_typer(stream_app, name="stream")
app.add_typer(notifier_app, name="notifier")
app.add_typer(customers_app, name="customers")
app.add_typer(reservations_app, name="reservations")
app.add_typer(appointments_app, name="appointments")
app.add_typer(contracts_app, name="contracts")
app.add_typer(associates_app, name="associates")
app.add_typer(alerts_app, name="alerts")
app.add_typer(channels_app, name="channels")
app.add_typer(gateways_app, name="gateways")
gateways_app.add_typer(gateway_config_app, name="config")
# Here, not in stream.cli: --plan places a gateway by the edge's rules (deploy.provisioning).
gateways_app.command("provision")(gateways_provision)
app.add_typer(beacons_app, name="beacons")
app.add_typer(topics_app, name="topics")
app.add_typer(docs_app, name="docs")


def main() -> None:
    """``proxima``: a bad setting or a service out of reach is one line naming the setting
    (never a traceback, never a password) and exit 2 (deploy.config.explain)."""
    try:
        app()
    except Exception as exc:
        from deploy.config import explain

        line = explain(exc)
        if line is None:
            raise
        sys.stderr.write(f"proxima: {line}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
    sys.exit(0)
