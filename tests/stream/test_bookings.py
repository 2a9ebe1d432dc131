"""Reservations and appointments (stream.bookings): which booking an alert shows, the
rules that expect a customer because of one, the alert an associate gets when a customer
with a reservation approaches (through the real processor and Redis), what the CLI does,
and that forget leaves nothing of a customer's bookings."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.models import AlertKind, Event
from stream.bookings import (
    AppointmentBooking,
    Bookings,
    Reservation,
    ReservedItem,
    current,
    with_bookings,
)
from stream.exceptions import RegistryError
from stream.processor import EventProcessor
from stream.registry import Purpose
from stream.rules import RuleBook, Trigger
from tests.factories import eid_event
from tests.kit.cli import proxima
from tests.kit.customers import make_customer
from tests.kit.services import RedisNs
from tests.redis_traces import redis_traces

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
T0 = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
DRESS = ReservedItem(sku="DR-221", name="linen dress", size="38", colour="green")
SHIRT = ReservedItem(sku="SH-1", name="white shirt", size="M")


def _reservation(**overrides: object) -> Reservation:
    fields: dict[str, object] = {
        "booking_id": "res-1",
        "customer_id": "ana",
        "store_id": "store-1",
        "items": [DRESS, SHIRT],
        "start": T0,
        "end": T0 + timedelta(hours=3),
        "associate_id": "assoc-maria",
    }
    return Reservation.model_validate({**fields, **overrides})


def _appointment(**overrides: object) -> AppointmentBooking:
    fields: dict[str, object] = {
        "booking_id": "apt-1",
        "customer_id": "ana",
        "store_id": "store-1",
        "at": T0 + timedelta(hours=1),
        "purpose": "styling session",
        "room": "3",
    }
    return AppointmentBooking.model_validate({**fields, **overrides})


def test_an_alert_shows_the_booking_at_its_store_around_its_time() -> None:
    here = _reservation()
    elsewhere = _reservation(booking_id="res-2", store_id="store-2")
    over = _reservation(
        booking_id="res-3", start=T0 - timedelta(days=1), end=T0 - timedelta(hours=20)
    )
    later = _reservation(
        booking_id="res-4", start=T0 + timedelta(days=2), end=T0 + timedelta(days=3)
    )
    appt = _appointment()
    bookings = [elsewhere, over, later, here, appt]
    assert current(bookings, "store-1", T0 - timedelta(minutes=30)) == (appt, here)
    assert current(bookings, "store-2", T0) == (None, elsewhere)
    assert current(bookings, "store-1", T0 + timedelta(hours=4)) == (None, None)  # all over
    profile = make_customer(customer_id="ana", assigned_associate="assoc-joao")
    seen = with_bookings(profile, bookings, "store-1", T0)
    assert seen.reservation is not None
    assert seen.reservation.items == ["green linen dress 38", "white shirt M"]
    assert seen.appointment is not None
    assert seen.appointment.note == "styling session, room 3"
    assert seen.assigned_associate == "assoc-maria"  # the reservation's associate
    assert with_bookings(profile, bookings, "store-9", T0) is profile


def test_a_reservation_expects_the_customer_only_if_visible_and_in_its_window() -> None:
    rules = RuleBook(None).for_store("store-1")
    held = with_bookings(make_customer(customer_id="ana"), [_reservation()], "store-1", T0)

    def approach(visible: list[str], at: datetime) -> list[str]:
        profile = held.model_copy(update={"visible_fields": visible})
        found = rules.matching(Trigger.APPROACH, profile, profile.visible(), "street", at)
        return [r.id for r in found]

    assert approach(["reservation"], T0 - timedelta(minutes=10)) == ["expected-approach"]
    assert approach([], T0 - timedelta(minutes=10)) == []  # a hidden booking decides nothing
    assert approach(["reservation"], T0 + timedelta(hours=4)) == []  # the window is over


def _event(at: datetime, zone: str) -> Event:
    return eid_event(KEY, at, zone)


@pytest.mark.integration  # Redis
@pytest.mark.parametrize("shown", [True, False])
async def test_a_customer_with_a_reservation_is_on_her_way_to_its_associate(
    redis_ns: RedisNs, shown: bool
) -> None:
    r, prefix = redis_ns
    proc = EventProcessor(r, prefix, rules=RuleBook(None))
    visible = ["name", "reservation"] if shown else ["name"]
    profile = make_customer(
        customer_id="ana", identity_key=KEY.hex(), name="Ana Lima", visible_fields=visible
    )
    await proc.registry.enroll(profile, [Purpose.ARRIVAL_ALERTS])
    await Bookings(r, prefix).put(_reservation())
    approached = await proc.process(_event(T0 - timedelta(minutes=5), "street"))
    arrived = await proc.process(_event(T0 - timedelta(minutes=4), "entrance"))
    if shown:
        (alert,) = approached
        assert alert.kind is AlertKind.APPROACH
        assert alert.title == "Ana Lima is on the way"
        assert "ready a fitting room: green linen dress 38, white shirt M" in alert.body
        assert alert.target.associate_id == "assoc-maria"
    else:
        assert approached == []  # not shown: nothing may depend on it
    (arrival,) = arrived
    assert arrival.kind is AlertKind.ARRIVAL
    assert ("linen dress" in arrival.body) is shown
    assert ("reservation" in arrival.fields) is shown


@pytest.mark.integration  # Redis
async def test_bookings_are_kept_listed_changed_and_cancelled(redis_ns: RedisNs) -> None:
    r, prefix = redis_ns
    bookings = Bookings(r, prefix)
    with pytest.raises(RegistryError, match="'ana' is not enrolled"):
        await bookings.put(_reservation())
    proc = EventProcessor(r, prefix, rules=RuleBook(None))
    await proc.registry.enroll(make_customer(customer_id="ana"), [])
    await bookings.put(_reservation())
    await bookings.put(_appointment())
    assert [b.booking_id for b in await bookings.of_customer("ana")] == ["res-1", "apt-1"]
    day = T0.replace(hour=0)
    listed = await bookings.of_store("store-1", day, day + timedelta(days=1))
    assert [b.booking_id for b in listed] == ["res-1", "apt-1"]
    await bookings.put(_reservation(store_id="store-2"))  # moved: off store-1's list
    assert [
        b.booking_id for b in await bookings.of_store("store-1", day, day + timedelta(days=1))
    ] == ["apt-1"]
    assert await bookings.cancel("ana", "res-1")
    assert not await bookings.cancel("ana", "res-1")
    assert await bookings.of_store("store-2", day, day + timedelta(days=1)) == []
    assert [b.booking_id for b in await bookings.of_customer("ana")] == ["apt-1"]


@pytest.mark.integration  # Redis
async def test_forget_leaves_no_booking_of_the_customer(redis_ns: RedisNs) -> None:
    r, prefix = redis_ns
    proc = EventProcessor(r, prefix, rules=RuleBook(None))
    for cid in ("ana-forgotten", "bea"):
        await proc.registry.enroll(make_customer(customer_id=cid), [])
        bookings = Bookings(r, prefix)
        await bookings.put(_reservation(customer_id=cid, booking_id=f"res-{cid}"))
        await bookings.put(
            _appointment(customer_id=cid, booking_id=f"apt-{cid}", store_id="store-2")
        )
    assert await proc.registry.forget("ana-forgotten")
    # The audit stream records the erasure and the consent outbox carries its tombstone to
    # proxima.consent.v1 (drained by the worker): both name the customer by design.
    skip = ("}audit", "}consent-outbox")
    assert await redis_traces(r, prefix, "ana-forgotten", skip_suffixes=skip) == []
    assert [b.booking_id for b in await Bookings(r, prefix).of_customer("bea")] == [
        "res-bea",
        "apt-bea",
    ]


@pytest.mark.integration  # Redis, through the command a user runs
def test_the_cli_adds_lists_changes_and_cancels_and_names_what_is_wrong(namespace: str) -> None:
    env = dict(os.environ, PROXIMA_NAMESPACE=namespace)
    env.pop("PROXIMA_KAFKA", None)
    try:
        assert proxima("customers", "enroll", "ana", env=env).returncode == 0
        added = proxima(
            "reservations", "add", "ana", "--store", "store-1", "--id", "res-1",
            "--start", "2026-03-14T15:00:00Z", "--end", "2026-03-14T18:00:00Z",
            "--item", "DR-221:linen dress:38:green", "--item", "SH-1:white shirt:M", env=env,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["items"][0] == DRESS.model_dump()
        booked = proxima(
            "appointments", "add", "ana", "--store", "store-1", "--at", "2026-03-14T16:00Z",
            "--purpose", "styling session", "--room", "3", env=env,
        )  # fmt: skip
        assert booked.returncode == 0, booked.stderr
        listed = proxima(
            "reservations", "list", "--store", "store-1", "--day", "2026-03-14", env=env
        )
        assert [json.loads(x)["booking_id"] for x in listed.stdout.splitlines()] == ["res-1"]
        changed = proxima(
            "reservations", "change", "ana", "res-1", "--end", "2026-03-14T19:00Z", env=env
        )
        assert json.loads(changed.stdout)["end"] == "2026-03-14T19:00:00Z"
        bad_day = proxima(
            "reservations", "list", "--store", "store-1", "--day", "14/03/2026", env=env
        )
        assert bad_day.returncode == 2
        assert "--day '14/03/2026': expected YYYY-MM-DD" in bad_day.stderr
        apts = proxima("appointments", "list", "--customer", "ana", "--json", env=env)
        assert [json.loads(x)["room"] for x in apts.stdout.splitlines()] == ["3"]
        assert proxima("reservations", "cancel", "ana", "res-1", env=env).returncode == 0
        again = proxima("reservations", "cancel", "ana", "res-1", env=env)
        assert again.returncode == 1
        assert "ana has no reservation 'res-1'" in again.stderr
        backwards = proxima(
            "reservations", "add", "ana", "--store", "s", "--item", "a:b",
            "--start", "2026-03-14T15:00Z", "--end", "2026-03-14T14:00Z", env=env,
        )  # fmt: skip
        assert backwards.returncode == 2
        assert "end must be after start" in backwards.stderr
        naive = proxima(
            "appointments", "add", "ana", "--store", "s", "--purpose", "x",
            "--at", "2026-03-14T15:00", env=env,
        )  # fmt: skip
        assert naive.returncode == 2
        assert "give a zone" in naive.stderr
        stranger = proxima(
            "appointments", "add", "nobody", "--store", "s", "--purpose", "x",
            "--at", "2026-03-14T15:00Z", env=env,
        )  # fmt: skip
        assert stranger.returncode == 1
        assert "'nobody' is not enrolled" in stranger.stderr
    finally:
        proxima("customers", "forget", "ana", env=env)


@pytest.mark.integration  # Redis
async def test_a_stored_booking_that_does_not_parse_is_left_out_and_alerts_go_on(
    redis_ns: RedisNs, caplog: pytest.LogCaptureFixture
) -> None:
    r, prefix = redis_ns
    proc = EventProcessor(r, prefix, rules=RuleBook(None))
    profile = make_customer(
        customer_id="ana", identity_key=KEY.hex(), name="Ana Lima", visible_fields=["reservation"]
    )
    await proc.registry.enroll(profile, [Purpose.ARRIVAL_ALERTS])
    bookings = Bookings(r, prefix)
    await bookings.put(_reservation())
    await r.hset(bookings.keys.bookings("ana"), "res-broken", b'{"type": "reservation"}')
    (alert,) = await proc.process(_event(T0 - timedelta(minutes=5), "street"))
    assert "green linen dress 38" in alert.body
    assert "customer ana: a booking left out" in caplog.text


RESERVATIONS_CSV = """customer_id,store_id,start,end,items,associate_id
ana,store-1,2026-03-14T15:00:00Z,2026-03-14T18:00:00Z,DR-221:linen dress:38:green|SH-1:white shirt:M,assoc-maria
ana,store-1,2026-03-14T15:00:00,2026-03-14T18:00:00Z,DR-221:linen dress,
ana,store-1,2026-03-14T15:00:00Z,2026-03-14T18:00:00Z,just-a-name,
nobody,store-1,2026-03-14T15:00:00Z,2026-03-14T18:00:00Z,DR-1:dress,
ana,store-1,2026-03-14T18:00:00Z,2026-03-14T15:00:00Z,DR-1:dress,
"""


@pytest.mark.integration  # Redis, through the command a user runs
def test_a_csv_import_adds_the_good_rows_and_names_every_rejected_one(
    namespace: str, tmp_path: Path
) -> None:
    env = dict(os.environ, PROXIMA_NAMESPACE=namespace)
    env.pop("PROXIMA_KAFKA", None)
    src = tmp_path / "reservations.csv"
    src.write_text(RESERVATIONS_CSV)
    try:
        assert proxima("customers", "enroll", "ana", env=env).returncode == 0
        done = proxima("reservations", "import", str(src), env=env)
        assert done.returncode == 1  # rows were rejected
        lines = done.stdout.splitlines()
        assert lines[0] == "1 reservations added, 4 rows rejected"
        assert lines[1].startswith("line 3 (ana): start: ")
        assert "timezone" in lines[1]
        assert lines[2] == "line 4 (ana): item 'just-a-name': expected SKU:NAME[:SIZE[:COLOUR]]"
        assert lines[3] == "line 5 (nobody): customer 'nobody' is not enrolled"
        assert lines[4].startswith("line 6 (ana): (row): ")
        assert "end must be after start" in lines[4]
        listed = proxima("reservations", "list", "--customer", "ana", env=env)
        (row,) = [json.loads(x) for x in listed.stdout.splitlines()]
        assert [i["sku"] for i in row["items"]] == ["DR-221", "SH-1"]
        assert row["associate_id"] == "assoc-maria"
        bad_header = tmp_path / "bad.csv"
        bad_header.write_text("customer_id,when\nana,now\n")
        refused = proxima("appointments", "import", str(bad_header), env=env)
        assert refused.returncode == 1
        assert "unknown column(s) when; known: booking_id, customer_id" in refused.stdout
    finally:
        proxima("customers", "forget", "ana", env=env)
