"""``proxima beacons decode|eid``: decode a raw advertisement, compute an Eddystone-EID.

``deploy.cli`` mounts :data:`beacons_app`. The library itself stays free of I/O clients;
this module only reads its arguments and prints.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

beacons_app = typer.Typer(
    help="Decode advertisements and compute rotating identifiers.", no_args_is_help=True
)


@beacons_app.command("decode")
def beacons_decode(
    hex_data: Annotated[str, typer.Argument(metavar="HEX", help="raw AD structures")],
) -> None:
    """Decode one raw advertisement; print one JSON object per frame."""
    from beacons.adstruct import decode_raw
    from beacons.exceptions import BeaconError

    try:
        frames = decode_raw(hex_data)
    except (BeaconError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for frame in frames:
        sys.stdout.write(json.dumps(frame.to_json_dict(), separators=(",", ":")) + "\n")


@beacons_app.command("eid")
def beacons_eid(
    identity_key: Annotated[str, typer.Option(help="32 hex digits")],
    rotation_exponent: Annotated[int, typer.Option(help="K, 0..15")],
    time: Annotated[int, typer.Option(help="time counter T: Unix seconds, truncated to 32 bits")],
) -> None:
    """Print the Eddystone-EID (16 lowercase hex digits) for a key, K and time."""
    from beacons.eid import compute_eid
    from beacons.exceptions import BeaconError

    try:
        key = bytes.fromhex(identity_key)
        eid = compute_eid(key, rotation_exponent, time)
    except (BeaconError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    sys.stdout.write(eid.hex() + "\n")
