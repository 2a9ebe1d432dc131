"""Reservations and appointments: what a customer booked at a store, several per customer.

A *reservation* (Reserve & Try, click and reserve) holds items (SKU, name, size, colour)
for the customer to try or collect in a window; an *appointment* is a time with a purpose
(a styling session, an alteration), an associate and maybe a room. Both name the associate
they belong to, so the routing ladder reaches them first.

Storage (Redis): one hash per customer in the customer's registry shard
(``{prefix}{tag}bookings:{customer}``, field = booking id, value = the booking's JSON), so
``proxima customers forget`` erases them in the same transaction as the profile; and one
sorted set per store (``{prefix}bookings-by-store:{store}``, member ``customer/booking``,
score = when it starts) for listing a store's day.

The stream reads a batch's alert candidates' bookings in one round trip and shows, with
each alert, the customer's booking *at that store around that time*
(:func:`with_bookings`): the profile's ``appointment`` and ``reservation`` fields, which
reach an associate only if the customer made them visible, as every other field.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from contracts.validation import describe_validation
from stream.customers import RejectedRow, header_problem
from stream.exceptions import RegistryError
from stream.registry import Appointment, CustomerProfile, RegistryKeys, ReservationView
from transport.redis import RedisClient, as_text

log = logging.getLogger(__name__)

BookingId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
CustomerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
StoreId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]

LOOKAHEAD = timedelta(hours=12)
"""How far ahead of a booking's start an alert still shows it (the morning of the day)."""


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a timezone, e.g. 2026-03-14T15:00:00+00:00")
    return value.astimezone(UTC)


class ReservedItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=120)]
    size: Annotated[str, Field(max_length=16)] | None = None
    colour: Annotated[str, Field(max_length=40)] | None = None

    def label(self) -> str:
        """``green linen dress 38`` (name, colour if not in the name, size)."""
        words = [self.name]
        if self.colour and self.colour.lower() not in self.name.lower():
            words.insert(0, self.colour)
        if self.size:
            words.append(self.size)
        return " ".join(words)


class Reservation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["reservation"] = "reservation"
    booking_id: BookingId = Field(default_factory=lambda: f"res-{uuid.uuid4().hex[:12]}")
    customer_id: CustomerId
    store_id: StoreId
    items: Annotated[list[ReservedItem], Field(min_length=1, max_length=50)]
    start: datetime = Field(description="from when the items are held for the customer")
    end: datetime = Field(description="until when")
    associate_id: str | None = None
    note: Annotated[str, Field(max_length=500)] | None = None

    _tz = field_validator("start", "end")(_aware)

    @model_validator(mode="after")
    def _ordered(self) -> Reservation:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def view(self) -> ReservationView:
        return ReservationView(
            items=[i.label() for i in self.items], start=self.start, end=self.end
        )


class AppointmentBooking(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["appointment"] = "appointment"
    booking_id: BookingId = Field(default_factory=lambda: f"apt-{uuid.uuid4().hex[:12]}")
    customer_id: CustomerId
    store_id: StoreId
    at: datetime
    duration_min: Annotated[int, Field(gt=0, le=24 * 60)] = 60
    purpose: Annotated[str, Field(min_length=1, max_length=200)]
    associate_id: str | None = None
    room: Annotated[str, Field(max_length=64)] | None = None

    _tz = field_validator("at")(_aware)

    @property
    def start(self) -> datetime:
        return self.at

    @property
    def end(self) -> datetime:
        return self.at + timedelta(minutes=self.duration_min)

    def view(self) -> Appointment:
        room = f", room {self.room}" if self.room else ""
        return Appointment(
            at=self.at,
            store_id=self.store_id,
            duration_min=self.duration_min,
            note=f"{self.purpose}{room}",
        )


Booking = Annotated[Reservation | AppointmentBooking, Field(discriminator="type")]
_BOOKING: TypeAdapter[Reservation | AppointmentBooking] = TypeAdapter(Booking)


def parse_booking(raw: bytes | str) -> Reservation | AppointmentBooking:
    return _BOOKING.validate_json(raw)


def _readable(
    customer_id: str, raws: Iterable[bytes | str]
) -> list[Reservation | AppointmentBooking]:
    """The bookings that parse; one that does not (written by hand, by an older version) is
    logged and left out, so it never stops the customer's alerts."""
    out: list[Reservation | AppointmentBooking] = []
    for raw in raws:
        try:
            out.append(parse_booking(raw))
        except ValidationError as exc:
            log.warning(
                "customer %s: a booking left out: %s", customer_id, describe_validation(exc)
            )
    return out


def current(
    bookings: Iterable[Reservation | AppointmentBooking], store_id: str, at: datetime
) -> tuple[AppointmentBooking | None, Reservation | None]:
    """The customer's appointment and reservation at ``store_id`` around ``at``: not over yet,
    and starting within :data:`LOOKAHEAD`; of several, the one that starts nearest ``at``."""

    def relevant(b: Reservation | AppointmentBooking) -> bool:
        return b.store_id == store_id and b.end >= at and b.start - LOOKAHEAD <= at

    def nearest(b: Reservation | AppointmentBooking) -> float:
        return abs((b.start - at).total_seconds())

    ours = [b for b in bookings if relevant(b)]
    appts = sorted((b for b in ours if isinstance(b, AppointmentBooking)), key=nearest)
    reservations = sorted((b for b in ours if isinstance(b, Reservation)), key=nearest)
    return (appts[0] if appts else None), (reservations[0] if reservations else None)


def with_bookings(
    profile: CustomerProfile,
    bookings: Iterable[Reservation | AppointmentBooking],
    store_id: str,
    at: datetime,
) -> CustomerProfile:
    """The profile as an alert at ``store_id`` at ``at`` shows it: its ``appointment`` the
    booked one there (else the profile's own), its ``reservation`` the one held there, and
    the booking's associate (the appointment's, else the reservation's) as the one the
    alert goes to first. What reaches the associate is still only what ``visible_fields``
    allows."""
    appt, reservation = current(bookings, store_id, at)
    update: dict[str, object] = {}
    if appt is not None:
        update["appointment"] = appt.view()
    if reservation is not None:
        update["reservation"] = reservation.view()
    owner = next((b.associate_id for b in (appt, reservation) if b and b.associate_id), None)
    if owner is not None:
        update["assigned_associate"] = owner
    return profile.model_copy(update=update) if update else profile


class Bookings:
    """The bookings in Redis (see the module docstring)."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self.r = redis
        self.p = prefix
        self.keys = RegistryKeys(prefix)

    def _by_store(self, store_id: str) -> str:
        return self.keys.bookings_by_store(store_id)

    async def put(self, booking: Reservation | AppointmentBooking) -> None:
        """Create or replace a booking (by its id); the customer must be enrolled."""
        if not await self.r.exists(self.keys.customer(booking.customer_id)):
            raise RegistryError(f"customer {booking.customer_id!r} is not enrolled")
        old = await self.get(booking.customer_id, booking.booking_id)
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hset(
                self.keys.bookings(booking.customer_id),
                booking.booking_id,
                booking.model_dump_json(),
            )
            if old is not None and old.store_id != booking.store_id:
                pipe.zrem(self._by_store(old.store_id), self._member(old))
            pipe.zadd(
                self._by_store(booking.store_id),
                {self._member(booking): booking.start.timestamp()},
            )
            await pipe.execute()

    @staticmethod
    def _member(booking: Reservation | AppointmentBooking) -> str:
        return f"{booking.customer_id}/{booking.booking_id}"

    async def get(
        self, customer_id: str, booking_id: str
    ) -> Reservation | AppointmentBooking | None:
        raw = await self.r.hget(self.keys.bookings(customer_id), booking_id)
        return None if raw is None else parse_booking(raw)

    async def of_customer(self, customer_id: str) -> list[Reservation | AppointmentBooking]:
        raw = await self.r.hvals(self.keys.bookings(customer_id))
        return sorted(_readable(customer_id, raw), key=lambda b: b.start)

    async def of_customers(
        self, customer_ids: Iterable[str]
    ) -> dict[str, list[Reservation | AppointmentBooking]]:
        """Several customers' bookings in one round trip (their keys are in different slots:
        a pipeline, as the profiles are read)."""
        ids = sorted(set(customer_ids))
        if not ids:
            return {}
        async with self.r.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.hvals(self.keys.bookings(cid))
            rows = await pipe.execute()
        return {cid: _readable(cid, row) for cid, row in zip(ids, rows, strict=True)}

    async def of_store(
        self, store_id: str, since: datetime, until: datetime
    ) -> list[Reservation | AppointmentBooking]:
        """A store's bookings starting between ``since`` and ``until``, by start."""
        members = [
            as_text(m).partition("/")
            for m in await self.r.zrangebyscore(
                self._by_store(store_id), since.timestamp(), until.timestamp()
            )
        ]
        if not members:
            return []
        # One round trip (the hashes are in different slots: a pipeline, not a script).
        async with self.r.pipeline(transaction=False) as pipe:
            for cid, _, bid in members:
                pipe.hget(self.keys.bookings(cid), bid)
            raws = await pipe.execute()
        return [
            booking
            for (cid, _, _), raw in zip(members, raws, strict=True)
            if raw is not None
            for booking in _readable(cid, [raw])
        ]

    async def cancel(self, customer_id: str, booking_id: str) -> bool:
        """Remove a booking; False if the customer has none by that id."""
        booking = await self.get(customer_id, booking_id)
        if booking is None:
            return False
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hdel(self.keys.bookings(customer_id), booking_id)
            pipe.zrem(self._by_store(booking.store_id), self._member(booking))
            await pipe.execute()
        return True


RESERVATION_COLUMNS = (
    "booking_id", "customer_id", "store_id", "start", "end", "items", "associate_id", "note",
)  # fmt: skip
"""``items``: ``SKU:NAME[:SIZE[:COLOUR]]`` separated by ``|``."""
APPOINTMENT_COLUMNS = (
    "booking_id", "customer_id", "store_id", "at", "duration_min", "purpose", "associate_id",
    "room",
)  # fmt: skip


def parse_item(text: str) -> ReservedItem:
    """``SKU:NAME[:SIZE[:COLOUR]]`` → the item; ValueError naming what is wrong."""
    parts = [p.strip() for p in text.split(":")]
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"item {text!r}: expected SKU:NAME[:SIZE[:COLOUR]]")
    sku, name, size, colour = [*parts, "", ""][:4]
    try:
        return ReservedItem(sku=sku, name=name, size=size or None, colour=colour or None)
    except ValidationError as exc:
        raise ValueError(f"item {text!r}: {describe_validation(exc, '(item)')}") from exc


@dataclass(slots=True)
class BookingImport:
    added: list[str] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)


async def import_bookings(
    bookings: Bookings, kind: Literal["reservation", "appointment"], text: str
) -> BookingImport:
    """Add every good row of a CSV of reservations or appointments (a header row naming
    :data:`RESERVATION_COLUMNS` / :data:`APPOINTMENT_COLUMNS`; ``booking_id`` optional: a
    row with one replaces that booking); report the others with their line and reason."""
    columns = RESERVATION_COLUMNS if kind == "reservation" else APPOINTMENT_COLUMNS
    model: type[Reservation | AppointmentBooking] = (
        Reservation if kind == "reservation" else AppointmentBooking
    )
    report = BookingImport()
    reader = csv.DictReader(io.StringIO(text))
    if (bad := header_problem(reader, columns)) is not None:
        report.rejected.append(bad)
        return report
    for row in reader:
        line = reader.line_num
        cid = (row.get("customer_id") or "").strip()
        if None in row:
            report.rejected.append(RejectedRow(line, cid, "more fields than the header has"))
            continue
        fields: dict[str, object] = {k: v.strip() for k, v in row.items() if v and v.strip()}
        try:
            if kind == "reservation":
                fields["items"] = [
                    parse_item(i) for i in str(fields.get("items", "")).split("|") if i.strip()
                ]
            booking = model.model_validate(fields)
            await bookings.put(booking)
        except ValueError as exc:  # ValidationError is one
            reason = (
                describe_validation(exc, "(row)") if isinstance(exc, ValidationError) else str(exc)
            )
            report.rejected.append(RejectedRow(line, cid, reason))
            continue
        except RegistryError as exc:
            report.rejected.append(RejectedRow(line, cid, str(exc)))
            continue
        report.added.append(booking.booking_id)
    return report


def bookings_json(bookings: Iterable[Reservation | AppointmentBooking]) -> list[object]:
    return [json.loads(b.model_dump_json()) for b in bookings]
