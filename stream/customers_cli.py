"""``proxima customers ...``: enroll customers, change and withdraw their consent, import
them from CSV, register their app devices, forget them.

Consent changes go to Redis and the consent outbox at once and are drained to
``proxima.consent.v1`` right after (:func:`publish_consent`); where Kafka is out of reach
the stream worker publishes them. ``deploy.cli`` mounts :data:`customers_app`.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from contracts.services import ServiceSettings
from contracts.validation import describe_validation
from transport.cli import err, fail, out
from transport.redis import redis_for

if TYPE_CHECKING:
    from stream.customers import ImportReport
    from transport.redis import RedisClient

# The help's list of stream.registry.Purpose, spelt out so that --help does not import the
# registry (tests/stream/test_customers.py checks it names every purpose).
_PURPOSES = "arrival_alerts, personalization, analytics, room_messages"

customers_app = typer.Typer(help="Enroll customers and manage their consent.", no_args_is_help=True)


@customers_app.command("enroll")
def customers_enroll(
    customer_id: Annotated[str, typer.Argument(metavar="ID")],
    identity_key: Annotated[
        str | None, typer.Option(help="32 hex digits; generated if omitted")
    ] = None,
    rotation_exponent: Annotated[int, typer.Option(help="EID rotation exponent K (0..15)")] = 10,
    consent: Annotated[
        list[str] | None, typer.Option(help=f"purpose granted (repeat): {_PURPOSES}")
    ] = None,
    visible: Annotated[
        list[str] | None, typer.Option(help="field associates may see (repeat)")
    ] = None,
    name: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
    tier: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
    size: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE (repeat)")] = None,  # noqa: UP045
    wishlist: Annotated[Optional[list[str]], typer.Option(help="item (repeat)")] = None,  # noqa: UP045
    assigned_associate: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP045
    store: Annotated[Optional[str], typer.Option(help="limit consent to this store")] = None,  # noqa: UP045
    qr: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="write a QR code PNG of what the app needs here (holds the key)"),
    ] = None,
) -> None:
    """Enroll a customer with their identity key and consent."""
    from pydantic import ValidationError

    from stream.registry import CustomerProfile, Purpose, new_identity_key

    generated = identity_key is None
    key = (identity_key or new_identity_key()).lower()
    sizes: dict[str, str] = {}
    for item in size or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise fail(f"--size {item!r}: expected KEY=VALUE")
        sizes[k] = v
    try:
        purposes = [Purpose(p) for p in consent or []]
    except ValueError as exc:
        raise fail(f"--consent: {exc}; purposes are {', '.join(p.value for p in Purpose)}") from exc
    try:
        profile = CustomerProfile(
            customer_id=customer_id,
            identity_key=key,
            rotation_exponent=rotation_exponent,
            name=name,
            tier=tier,
            sizes=sizes,
            wishlist=list(wishlist or []),
            assigned_associate=assigned_associate,
            stores=[store] if store else [],
            visible_fields=list(visible or []),
        )
    except ValidationError as exc:
        msgs = describe_validation(exc, "")
        raise fail(f"customer {customer_id!r}: {msgs}") from exc

    async def go() -> None:
        from stream.registry import Registry

        services = ServiceSettings()
        async with redis_for(services) as r:
            await Registry(r, services.redis_prefix).enroll(profile, purposes, store)
            if purposes:
                _consent_published(await publish_consent(r, services))

    asyncio.run(go())
    result = {
        "customer_id": customer_id,
        "rotation_exponent": rotation_exponent,
        "consent": [p.value for p in purposes],
    }
    if generated:
        result["identity_key"] = key
    if qr is not None:
        write_enrollment_qr(qr, customer_id, key, rotation_exponent)
        result["qr"] = str(qr)
    out.print_json(json.dumps(result))


def _consent_published(why_not: str | None) -> None:
    if why_not is not None:
        err.print(
            f"consent saved; not yet on proxima.consent.v1 ({why_not}): "
            "the stream worker publishes it",
            highlight=False,
        )


@customers_app.command("revoke")
def customers_revoke(
    customer_id: Annotated[str, typer.Argument(metavar="ID")],
    purpose: Annotated[str, typer.Argument(metavar="PURPOSE", help=_PURPOSES)],
    store: Annotated[Optional[str], typer.Option(help="revoke only for this store")] = None,  # noqa: UP045
) -> None:
    """Withdraw consent for a purpose; takes effect at once (the notifier withdraws the
    customer's open alerts there when it reads proxima.consent.v1)."""
    _set_consent(customer_id, purpose, False, store)


@customers_app.command("grant")
def customers_grant(
    customer_id: Annotated[str, typer.Argument(metavar="ID")],
    purpose: Annotated[str, typer.Argument(metavar="PURPOSE", help=_PURPOSES)],
    store: Annotated[Optional[str], typer.Option(help="grant only for this store")] = None,  # noqa: UP045
) -> None:
    """Grant consent for a purpose."""
    _set_consent(customer_id, purpose, True, store)


def _set_consent(customer_id: str, purpose: str, granted: bool, store: str | None) -> None:
    from stream.exceptions import RegistryError
    from stream.registry import Purpose, Registry

    try:
        p = Purpose(purpose)
    except ValueError:
        raise fail(
            f"unknown purpose {purpose!r}; purposes are {', '.join(x.value for x in Purpose)}"
        ) from None

    async def go() -> None:
        services = ServiceSettings()
        async with redis_for(services) as r:
            await Registry(r, services.redis_prefix).set_consent(customer_id, p, granted, store)
            _consent_published(await publish_consent(r, services))

    try:
        asyncio.run(go())
    except RegistryError as exc:
        raise fail(str(exc), 1) from exc
    out.print(f"{customer_id}: {p.value} {'granted' if granted else 'revoked'}", highlight=False)


@customers_app.command("forget")
def customers_forget(customer_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Erase a customer everywhere: profile, consent, EID index, visits, and (through
    proxima.consent.v1) the notifier's alerts about them."""
    from stream.registry import Registry

    async def go() -> bool:
        services = ServiceSettings()
        async with redis_for(services) as r:
            forgotten = await Registry(r, services.redis_prefix).forget(customer_id)
            _consent_published(await publish_consent(r, services))
            return forgotten

    if not asyncio.run(go()):
        raise fail(f"customer {customer_id!r} is not enrolled", 1)
    out.print(f"{customer_id}: forgotten", highlight=False)


@customers_app.command("show")
def customers_show(customer_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Show a customer's profile (without the identity key) and consent."""
    from stream.registry import Purpose, Registry

    async def go() -> dict[str, object] | None:
        services = ServiceSettings()
        async with redis_for(services) as r:
            reg = Registry(r, services.redis_prefix)
            profile = await reg.get(customer_id)
            if profile is None:
                return None
            data = profile.model_dump(mode="json", exclude={"identity_key"})
            data["consent"] = {p.value: await reg.has_consent(customer_id, p, "*") for p in Purpose}
            data["consent_records"] = await reg.consent_records(customer_id)
            data["devices"] = await reg.devices(customer_id)
            return data

    data = asyncio.run(go())
    if data is None:
        raise fail(f"customer {customer_id!r} is not enrolled", 1)
    out.print_json(json.dumps(data))


@customers_app.command("import")
def customers_import(
    file: Annotated[
        Path, typer.Argument(metavar="FILE.csv", help="header row + one customer per row")
    ],
    keys_out: Annotated[
        Path | None,
        typer.Option(help="write generated identity keys here (CSV) for the customers' apps"),
    ] = None,
) -> None:
    """Enroll customers from a CSV file; report rejected rows and why (exit 1 if any)."""
    from stream.customers import import_csv
    from stream.registry import Registry

    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"{file}: {exc}") from exc

    async def run(progress: Callable[[int], None] | None = None) -> ImportReport:
        services = ServiceSettings()
        async with redis_for(services) as redis:
            return await import_csv(Registry(redis, services.redis_prefix), text, progress)

    if sys.stderr.isatty():  # a bar for people; logs and pipes get the summary only
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        rows = max(0, text.count("\n") - 1)
        with Progress(
            "enrolling", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=err, transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task("rows", total=rows)
            report = asyncio.run(run(lambda n: bar.update(task, completed=n)))
    else:
        report = asyncio.run(run())
    typer.echo(f"{len(report.enrolled)} enrolled, {len(report.rejected)} rejected")
    for bad in report.rejected:
        who = f" ({bad.customer_id})" if bad.customer_id else ""
        typer.echo(f"line {bad.line}{who}: {bad.reason}")
    if report.generated_keys:
        if keys_out is None:
            typer.echo(
                f"{len(report.generated_keys)} identity keys were generated; "
                "re-run with --keys-out FILE to keep them (they are not printed)"
            )
        else:
            with keys_out.open("w", encoding="utf-8", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["customer_id", "identity_key", "rotation_exponent"])
                for cid, (key, k) in sorted(report.generated_keys.items()):
                    w.writerow([cid, key, k])
            keys_out.chmod(0o600)
            typer.echo(f"generated identity keys written to {keys_out}")
    if report.rejected:
        raise typer.Exit(1)


@customers_app.command("device")
def customers_device(
    customer_id: Annotated[str, typer.Argument(metavar="ID")],
    device_id: Annotated[str, typer.Argument(metavar="DEVICE", help="app device id, hex")],
    public_key: Annotated[
        str | None,
        typer.Option(
            help="the app's Ed25519 public key, base64 (published for the gateways' ingest)"
        ),
    ] = None,
) -> None:
    """Register a customer's app device: its geofence and beacon-region events resolve to them."""
    from stream.customers import register_device
    from stream.exceptions import RegistryError

    async def run() -> None:
        services = ServiceSettings()
        async with redis_for(services) as redis:
            await register_device(redis, services.redis_prefix, customer_id, device_id, public_key)

    try:
        asyncio.run(run())
    except RegistryError as exc:
        raise fail(str(exc), 1) from exc
    typer.echo(f"{customer_id}: device {device_id} registered")


@customers_app.command("seal-keys")
def customers_seal_keys(
    dry_run: Annotated[bool, typer.Option(help="count only; write nothing")] = False,
) -> None:
    """Seal identity keys stored in plain text (or with an older seal key) with the current key.

    The key is the first of PROXIMA_STREAM_IDENTITY_SEAL_KEYS (and _FILE); keep the older
    ones listed until this has run. Safe to run again and beside running workers.
    """
    from stream.exceptions import RegistryError
    from stream.registry import Registry, SealReport

    async def run() -> SealReport:
        services = ServiceSettings()
        async with redis_for(services) as redis:
            return await Registry(redis, services.redis_prefix).seal_identity_keys(dry_run=dry_run)

    try:
        report = asyncio.run(run())
    except RegistryError as exc:
        raise fail(str(exc), 1) from exc
    verb = "would seal" if dry_run else "sealed"
    typer.echo(
        f"{report.customers} customers: {verb} {report.sealed} plain and {report.resealed} "
        f"with an older key; {report.current} already sealed with the current key"
    )
    if report.changed:
        typer.echo(f"{report.changed} changed while being sealed: run again")
        raise typer.Exit(1)


def write_enrollment_qr(
    path: Path, customer_id: str, identity_key: str, rotation_exponent: int
) -> None:
    """``proxima customers enroll --qr PATH``: the app's enrollment payload as a QR code PNG."""
    from stream.customers import app_payload, write_qr

    write_qr(app_payload(customer_id, identity_key, rotation_exponent), path)
    path.chmod(0o600)


async def publish_consent(redis: RedisClient, services: ServiceSettings) -> str | None:
    """Drain the consent outbox to ``proxima.consent.v1`` right after a CLI change.

    Returns None when done, else why not (no Kafka configured, broker unreachable): the
    change is in Redis and in the outbox either way, and the stream worker publishes it.
    """
    from aiokafka.errors import KafkaError

    from contracts.topics import CONSENT
    from stream.consent_log import aiokafka_send, pump_outbox
    from transport.kafka import make_producer

    if not services.kafka:
        return "PROXIMA_KAFKA is not set"
    producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="proxima-cli")
    try:
        async with asyncio.timeout(20):
            await producer.start()
            await pump_outbox(
                redis,
                services.redis_prefix,
                aiokafka_send(producer),
                services.topics.kafka(CONSENT),
            )
    except (KafkaError, OSError, TimeoutError) as exc:
        return f"Kafka: {exc!r}"
    finally:
        await producer.stop()
    return None


@customers_app.command("rebuild-consent")
def customers_rebuild_consent(
    timeout: Annotated[float, typer.Option(help="seconds to read the topic to its end")] = 60.0,
) -> None:
    """Restore every customer's consent in Redis from proxima.consent.v1 (idempotent)."""
    from contracts.topics import CONSENT
    from stream.consent_log import RebuildReport, rebuild_consent
    from stream.exceptions import ConsentLogError
    from stream.registry import Registry

    services = ServiceSettings()
    if not services.kafka:
        raise fail("PROXIMA_KAFKA is not set: name the broker")
    topic = services.topics.kafka(CONSENT)

    async def run() -> RebuildReport:
        async with redis_for(services) as redis:
            # Changes still in the outbox go to the topic first, so the topic is current;
            # if a worker's pump holds the lock, wait until it has drained the outbox.
            registry = Registry(redis, services.redis_prefix)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                why = await publish_consent(redis, services)
                if why is not None:
                    raise ConsentLogError(topic, f"the consent outbox could not be drained: {why}")
                if not await registry.outbox_len():
                    break
                if loop.time() > deadline:
                    raise ConsentLogError(topic, "the consent outbox was not drained in time")
                await asyncio.sleep(0.2)
            return await rebuild_consent(
                redis, services.redis_prefix, services.kafka_bootstrap, topic, timeout
            )

    try:
        report = asyncio.run(run())
    except ConsentLogError as exc:
        raise fail(str(exc), 1) from exc
    typer.echo(
        f"{report.restored} customers' consent restored, {report.erased} erased (forgotten), "
        f"{report.skipped} bad records skipped"
    )
