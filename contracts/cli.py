"""``proxima contracts schema``: the JSON Schema of every wire model (``deploy.cli`` mounts
:data:`contracts_app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

contracts_app = typer.Typer(help="Wire contracts and their JSON Schemas.", no_args_is_help=True)


@contracts_app.command("schema")
def contracts_schema(
    out_dir: Annotated[
        Path, typer.Option("--out", help="directory for the *.schema.json files")
    ] = Path("schemas"),
) -> None:
    """Write the JSON Schema of every wire model."""
    from contracts.schema import write_schemas

    for path in write_schemas(out_dir):
        typer.echo(str(path))
