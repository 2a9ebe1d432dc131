"""``proxima reservations ...`` and ``proxima appointments ...``: a customer's bookings from
the command line (stream.bookings). ``deploy.cli`` mounts :data:`reservations_app` and
:data:`appointments_app`.

Times are ISO 8601 with a zone (``2026-03-14T15:00:00+00:00`` or ``...Z``). Every command
prints the booking(s) as JSON; ``list`` also as a table on a terminal.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from pydantic import ValidationError
from rich.table import Table

from contracts.services import ServiceSettings
from contracts.validation import describe_validation
from stream.bookings import (
    APPOINTMENT_COLUMNS,
    RESERVATION_COLUMNS,
    AppointmentBooking,
    BookingImport,
    Bookings,
    Reservation,
    ReservedItem,
    bookings_json,
    import_bookings,
    parse_item,
)
from stream.exceptions import RegistryError
from transport.cli import fail, out
from transport.redis import redis_for

T = TypeVar("T")
Kind = Literal["reservation", "appointment"]

reservations_app = typer.Typer(
    help="Items held for a customer to try or collect (Reserve & Try): add, list, change, "
    "cancel, import.",
    no_args_is_help=True,
)
appointments_app = typer.Typer(
    help="A customer's appointments (a time, a purpose, an associate, a room): add, list, "
    "change, cancel, import.",
    no_args_is_help=True,
)

CUSTOMER = Annotated[str, typer.Argument(metavar="CUSTOMER")]
BOOKING = Annotated[str, typer.Argument(metavar="ID", help="the booking's id")]


def _run(fn: Callable[[Bookings], Awaitable[T]]) -> T:
    async def go() -> T:
        services = ServiceSettings()
        async with redis_for(services) as r:
            return await fn(Bookings(r, services.redis_prefix))

    try:
        return asyncio.run(go())
    except RegistryError as exc:
        raise fail(str(exc), 1) from exc


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"{option} {value!r}: not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise fail(f"{option} {value!r}: give a zone, e.g. {value}Z or {value}+01:00")
    return at


def _item(text: str) -> ReservedItem:
    try:
        return parse_item(text)
    except ValueError as exc:
        raise fail(f"--item: {exc}") from exc


def _import(kind: Kind, file: Path) -> None:
    """Add a CSV's rows; print what was added and every rejected row (exit 1 if any)."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"{file}: {exc}") from exc

    async def go(b: Bookings) -> BookingImport:
        return await import_bookings(b, kind, text)

    report = _run(go)
    typer.echo(f"{len(report.added)} {kind}s added, {len(report.rejected)} rows rejected")
    for bad in report.rejected:
        who = f" ({bad.customer_id})" if bad.customer_id else ""
        typer.echo(f"line {bad.line}{who}: {bad.reason}")
    if report.rejected:
        raise typer.Exit(1)


def _build(model: type[T], fields: dict[str, Any]) -> T:
    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise fail(describe_validation(exc, "(booking)")) from exc


def _print(data: object) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")


def _list(
    kind: Kind, customer: str | None, store: str | None, day: str | None, as_json: bool
) -> None:
    if (customer is None) == (store is None):
        raise fail("give --customer ID or --store ID")
    if store is not None:
        try:
            start = date.fromisoformat(day) if day else datetime.now(UTC).date()
        except ValueError:
            raise fail(f"--day {day!r}: expected YYYY-MM-DD") from None
        since = datetime(start.year, start.month, start.day, tzinfo=UTC)

        async def of_store(b: Bookings) -> list[Reservation | AppointmentBooking]:
            return await b.of_store(store, since, since + timedelta(days=1))

        found = _run(of_store)
    else:
        assert customer is not None

        async def of_customer(b: Bookings) -> list[Reservation | AppointmentBooking]:
            return await b.of_customer(customer)

        found = _run(of_customer)
    found = [b for b in found if b.type == kind]
    if as_json or not sys.stdout.isatty():
        for data in bookings_json(found):
            _print(data)
        return
    table = Table(title=f"{kind}s")
    for col in ("id", "customer", "store", "from", "until", "what", "associate"):
        table.add_column(col)
    for b in found:
        what = (
            ", ".join(i.label() for i in b.items)
            if isinstance(b, Reservation)
            else b.purpose + (f" (room {b.room})" if b.room else "")
        )
        table.add_row(
            b.booking_id, b.customer_id, b.store_id, b.start.isoformat(timespec="minutes"),
            b.end.isoformat(timespec="minutes"), what, b.associate_id or "",
        )  # fmt: skip
    out.print(table)


def _cancel(kind: Kind, customer: str, booking_id: str) -> None:
    async def go(b: Bookings) -> bool:
        found = await b.get(customer, booking_id)
        if found is None or found.type != kind:
            return False
        return await b.cancel(customer, booking_id)

    if not _run(go):
        raise fail(f"{customer} has no {kind} {booking_id!r}", 1)
    _print({"booking_id": booking_id, "customer_id": customer, "cancelled": True})


def _change(kind: Kind, customer: str, booking_id: str, update: dict[str, Any]) -> None:
    async def go(b: Bookings) -> Reservation | AppointmentBooking | None:
        found = await b.get(customer, booking_id)
        if found is None or found.type != kind:
            return None
        data = {**found.model_dump(), **{k: v for k, v in update.items() if v is not None}}
        changed = _build(type(found), data)
        await b.put(changed)
        return changed

    changed = _run(go)
    if changed is None:
        raise fail(f"{customer} has no {kind} {booking_id!r}", 1)
    _print(json.loads(changed.model_dump_json()))


def _add(booking: Reservation | AppointmentBooking) -> None:
    async def go(b: Bookings) -> None:
        await b.put(booking)

    _run(go)
    _print(json.loads(booking.model_dump_json()))


# --- reservations ---------------------------------------------------------------------
ITEMS = Annotated[
    list[str] | None,
    typer.Option(
        "--item", help="SKU:NAME[:SIZE[:COLOUR]] (repeat), e.g. DR-221:linen dress:38:green"
    ),
]


@reservations_app.command("add")
def reservations_add(
    customer: CUSTOMER,
    store: Annotated[str, typer.Option(help="store id")],
    start: Annotated[str, typer.Option(help="held from (ISO 8601 with a zone)")],
    end: Annotated[str, typer.Option(help="held until")],
    item: ITEMS = None,
    associate: Annotated[str | None, typer.Option(help="the associate it belongs to")] = None,
    note: Annotated[str | None, typer.Option()] = None,
    booking_id: Annotated[str | None, typer.Option("--id", help="default: generated")] = None,
) -> None:
    """Hold items for a customer; they are shown with the customer's alerts at that store
    (if the customer made ``reservation`` visible) and make them *expected*."""
    _add(
        _build(
            Reservation,
            {
                "customer_id": customer,
                "store_id": store,
                "start": _when(start, "--start"),
                "end": _when(end, "--end"),
                "items": [_item(i) for i in item or []],
                "associate_id": associate,
                "note": note,
                "booking_id": booking_id,
            },
        )
    )


@reservations_app.command("list")
def reservations_list(
    customer: Annotated[str | None, typer.Option(help="a customer's reservations")] = None,
    store: Annotated[str | None, typer.Option(help="a store's, starting on --day")] = None,
    day: Annotated[str | None, typer.Option(help="YYYY-MM-DD (UTC); default today")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object a line")] = False,
) -> None:
    """A customer's reservations, or a store's for a day."""
    _list("reservation", customer, store, day, as_json)


@reservations_app.command("change")
def reservations_change(
    customer: CUSTOMER,
    booking_id: BOOKING,
    start: Annotated[str | None, typer.Option()] = None,
    end: Annotated[str | None, typer.Option()] = None,
    item: ITEMS = None,
    associate: Annotated[str | None, typer.Option()] = None,
    store: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change a reservation (what is given replaces what was; ``--item`` replaces the items)."""
    _change(
        "reservation",
        customer,
        booking_id,
        {
            "start": _when(start, "--start"), "end": _when(end, "--end"),
            "items": [_item(i).model_dump() for i in item] if item else None,
            "associate_id": associate, "store_id": store,
        },
    )  # fmt: skip


@reservations_app.command(
    "import",
    help=f"Add reservations from a CSV file (columns: {', '.join(RESERVATION_COLUMNS)}; items "
    "SKU:NAME[:SIZE[:COLOUR]] separated by |; a row with a booking_id replaces that booking); "
    "report rejected rows and why (exit 1 if any).",
)
def reservations_import(
    file: Annotated[Path, typer.Argument(metavar="FILE.csv", help="header row + one a row")],
) -> None:
    _import("reservation", file)


@reservations_app.command("cancel")
def reservations_cancel(customer: CUSTOMER, booking_id: BOOKING) -> None:
    """Cancel a reservation."""
    _cancel("reservation", customer, booking_id)


# --- appointments ---------------------------------------------------------------------
@appointments_app.command("add")
def appointments_add(
    customer: CUSTOMER,
    store: Annotated[str, typer.Option(help="store id")],
    at: Annotated[str, typer.Option(help="when (ISO 8601 with a zone)")],
    purpose: Annotated[str, typer.Option(help="what it is for, e.g. 'styling session'")],
    duration: Annotated[int, typer.Option(help="minutes", min=1, max=1440)] = 60,
    associate: Annotated[str | None, typer.Option(help="the associate it is with")] = None,
    room: Annotated[str | None, typer.Option(help="a fitting room or salon")] = None,
    booking_id: Annotated[str | None, typer.Option("--id", help="default: generated")] = None,
) -> None:
    """Book an appointment; it is shown with the customer's alerts at that store (if the
    customer made ``appointment`` visible) and makes them *expected*."""
    _add(
        _build(
            AppointmentBooking,
            {
                "customer_id": customer,
                "store_id": store,
                "at": _when(at, "--at"),
                "purpose": purpose,
                "duration_min": duration,
                "associate_id": associate,
                "room": room,
                "booking_id": booking_id,
            },
        )
    )


@appointments_app.command("list")
def appointments_list(
    customer: Annotated[str | None, typer.Option(help="a customer's appointments")] = None,
    store: Annotated[str | None, typer.Option(help="a store's, on --day")] = None,
    day: Annotated[str | None, typer.Option(help="YYYY-MM-DD (UTC); default today")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object a line")] = False,
) -> None:
    """A customer's appointments, or a store's for a day."""
    _list("appointment", customer, store, day, as_json)


@appointments_app.command("change")
def appointments_change(
    customer: CUSTOMER,
    booking_id: BOOKING,
    at: Annotated[str | None, typer.Option()] = None,
    purpose: Annotated[str | None, typer.Option()] = None,
    duration: Annotated[int | None, typer.Option(min=1, max=1440)] = None,
    associate: Annotated[str | None, typer.Option()] = None,
    room: Annotated[str | None, typer.Option()] = None,
    store: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change an appointment (what is given replaces what was)."""
    _change(
        "appointment",
        customer,
        booking_id,
        {
            "at": _when(at, "--at"), "purpose": purpose, "duration_min": duration,
            "associate_id": associate, "room": room, "store_id": store,
        },
    )  # fmt: skip


@appointments_app.command(
    "import",
    help=f"Add appointments from a CSV file (columns: {', '.join(APPOINTMENT_COLUMNS)}; a row "
    "with a booking_id replaces that booking); report rejected rows and why (exit 1 if any).",
)
def appointments_import(
    file: Annotated[Path, typer.Argument(metavar="FILE.csv", help="header row + one a row")],
) -> None:
    _import("appointment", file)


@appointments_app.command("cancel")
def appointments_cancel(customer: CUSTOMER, booking_id: BOOKING) -> None:
    """Cancel an appointment."""
    _cancel("appointment", customer, booking_id)
