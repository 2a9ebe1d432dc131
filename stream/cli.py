"""``proxima gateways add|list|revoke``: gateway signing keys from the command line.

``deploy/cli.py`` mounts :data:`gateways_app`; :func:`provision_keys` is what ``proxima
replay`` and ``proxima up`` use to give each replayed gateway a key of its own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, TypeVar

import redis.asyncio as aioredis
import typer
from rich.console import Console
from rich.table import Table

from contracts.services import ServiceSettings
from stream.exceptions import KeyringError
from stream.keyring import KeyRecord, Keyring

T = TypeVar("T")

gateways_app = typer.Typer(
    help="Gateway signing keys: the bridge accepts only batches signed with one.",
    no_args_is_help=True,
)
_out = Console()
_err = Console(stderr=True)


async def with_keyring(services: ServiceSettings, fn: Callable[[Keyring], Awaitable[T]]) -> T:
    redis = aioredis.from_url(services.redis)
    try:
        return await fn(Keyring(redis, services.redis_prefix))
    finally:
        await redis.aclose()


async def provision_keys(
    services: ServiceSettings, gateways: Iterable[tuple[str, str]], label: str = "replay"
) -> dict[tuple[str, str], KeyRecord]:
    """A signing key per (store, gateway) for a tool's agents (``proxima replay``/``up``).

    Reused across runs (one active key per gateway and label), so replays do not pile up
    keys; revoking it (``proxima gateways revoke``) makes the next replay issue a new one.
    """

    async def run(ring: Keyring) -> dict[tuple[str, str], KeyRecord]:
        return {(s, g): await ring.labelled(s, g, label) for s, g in gateways}

    return await with_keyring(services, run)


@gateways_app.command("add")
def gateways_add(
    store: Annotated[str, typer.Argument(metavar="STORE")],
    gateway: Annotated[str, typer.Argument(metavar="GATEWAY")],
) -> None:
    """Issue a signing key for a gateway; prints its env lines once (the secret is not shown again)."""
    from pydantic import ValidationError

    try:
        record = asyncio.run(with_keyring(ServiceSettings(), lambda r: r.add(store, gateway)))
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _err.print(f"[red]error:[/red] {msgs}", highlight=False)
        raise typer.Exit(2) from exc
    _err.print(
        f"key {record.kid} for {store}/{gateway}; put these lines in the gateway's environment "
        "(the secret is shown only now):",
        highlight=False,
    )
    typer.echo(record.env_lines())


@gateways_app.command("list")
def gateways_list(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per key")] = False,
) -> None:
    """List gateway keys (never their secrets)."""
    records = asyncio.run(with_keyring(ServiceSettings(), lambda r: r.all()))
    if as_json:
        for rec in records:
            typer.echo(json.dumps(rec.model_dump(mode="json", exclude={"secret"})))
        return
    table = Table(title="gateway keys")
    for col in ("kid", "store", "gateway", "created", "state", "label"):
        table.add_column(col)
    for rec in records:
        table.add_row(
            rec.kid,
            rec.store_id,
            rec.gateway_id,
            rec.created_at.isoformat(timespec="seconds"),
            "revoked" if rec.revoked else "active",
            rec.label or "",
        )
    _out.print(table)


@gateways_app.command("revoke")
def gateways_revoke(kid: Annotated[str, typer.Argument(metavar="KID")]) -> None:
    """Revoke a key; bridges refuse its batches within PROXIMA_STREAM_KEY_CACHE_TTL_S."""
    try:
        record = asyncio.run(with_keyring(ServiceSettings(), lambda r: r.revoke(kid)))
    except KeyringError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    typer.echo(f"{record.kid} ({record.store_id}/{record.gateway_id}): revoked")
