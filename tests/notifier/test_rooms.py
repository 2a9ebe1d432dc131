"""Fitting rooms: the state machine (pure), and the rooms over real Redis (first hold wins,
refusals with reasons, the log and counts, forgetting a customer, the CLI)."""

from __future__ import annotations

import asyncio
import json
from collections import deque

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from contracts.models import Alert, WithdrawReason
from notifier.cli import rooms_app
from notifier.directory import Associate, Directory
from notifier.exceptions import AlertConflict, InvalidInput, RoomConflict, UnknownRoom
from notifier.lifecycle import Lifecycle
from notifier.room_desk import HoldFor, RoomDesk
from notifier.rooms import (
    TRANSITIONS,
    Room,
    RoomOp,
    RoomState,
    may_change,
    next_state,
    not_theirs,
    refusal,
)
from tests.kit.clock import FakeUtcClock
from tests.notifier.conftest import make_alert

S = RoomState


# --- the state machine, pure ---------------------------------------------------------
def test_a_free_room_can_only_be_held_or_used() -> None:
    allowed = {op for op in RoomOp if next_state(S.FREE, op) is not None}
    assert allowed == {RoomOp.HOLD, RoomOp.USE}
    assert next_state(S.FREE, RoomOp.HOLD) is S.HELD
    assert next_state(S.FREE, RoomOp.USE) is S.IN_USE


def test_a_room_is_held_once_and_only_from_free() -> None:
    for state in S:
        assert (next_state(state, RoomOp.HOLD) is not None) == (state is S.FREE)


def test_the_service_path_runs_hold_prepare_ready_use_done_back_to_free() -> None:
    state = S.FREE
    path = [RoomOp.HOLD, RoomOp.PREPARE, RoomOp.READY, RoomOp.USE, RoomOp.DONE]
    seen = []
    for op in path:
        moved = next_state(state, op)
        assert moved is not None, (state, op)
        state = moved
        seen.append(state)
    assert seen == [S.HELD, S.PREPARING, S.READY, S.IN_USE, S.FREE]


def test_done_frees_only_a_room_in_use_and_release_only_one_not_in_use() -> None:
    assert {s for s in S if next_state(s, RoomOp.DONE)} == {S.IN_USE}
    assert {s for s in S if next_state(s, RoomOp.RELEASE)} == {S.HELD, S.PREPARING, S.READY}
    for op in (RoomOp.DONE, RoomOp.RELEASE):
        assert set(TRANSITIONS[op].values()) == {S.FREE}


def test_every_state_is_reachable_from_free_and_gets_back_to_free() -> None:
    def reachable(start: RoomState) -> set[RoomState]:
        seen, todo = {start}, deque([start])
        while todo:
            state = todo.popleft()
            for op in RoomOp:
                moved = next_state(state, op)
                if moved is not None and moved not in seen:
                    seen.add(moved)
                    todo.append(moved)
        return seen

    assert reachable(S.FREE) == set(S)
    for state in S:
        assert S.FREE in reachable(state), state


def test_a_free_room_is_anyones_and_a_taken_one_its_holders_or_a_managers() -> None:
    assert may_change(S.FREE, None, "joao", manager=False)
    for state in (S.HELD, S.PREPARING, S.READY, S.IN_USE):
        assert may_change(state, "maria", "maria", manager=False)
        assert not may_change(state, "maria", "joao", manager=False)
        assert may_change(state, "maria", "boss", manager=True)


def test_refusals_name_the_room_its_state_its_holder_and_what_is_needed() -> None:
    assert refusal(RoomOp.HOLD, S.HELD, "Room 2", "Maria") == (
        "Room 2 is already held by Maria: it cannot be held"
    )
    assert refusal(RoomOp.HOLD, S.IN_USE, "Room 2", "Maria") == (
        "Room 2 is already in use by Maria: it cannot be held"
    )
    assert refusal(RoomOp.DONE, S.READY, "Room 2", "Maria") == (
        "cannot mark Room 2 done: it is ready (held by Maria); that needs a room in use"
    )
    assert refusal(RoomOp.READY, S.FREE, "Room 2", None) == (
        "cannot mark Room 2 ready: it is free; that needs a room held or preparing"
    )
    assert refusal(RoomOp.PREPARE, S.READY, "Room 2", "Maria") == (
        "cannot mark Room 2 preparing: it is ready (held by Maria); that needs a room held"
    )
    assert refusal(RoomOp.DONE, S.HELD, "Room 2", "Maria") == (
        "cannot mark Room 2 done: it is held by Maria; that needs a room in use"
    )
    assert not_theirs("Room 2", "Maria") == (
        "Room 2 is held by Maria: only they or a manager can change it"
    )


def test_an_alert_shows_ready_only_when_the_room_is_ready() -> None:
    room = Room("s1", "2", "Room 2")
    labels = {s: Room("s1", "2", "Room 2", state=s).mark()["label"] for s in S if s is not S.FREE}
    assert labels == {
        S.HELD: "Room 2 not ready yet",
        S.PREPARING: "Room 2 not ready yet",
        S.READY: "Room 2 ready",
        S.IN_USE: "Room 2 in use",
    }
    assert Room("s1", "2", "Room 2", state=S.READY).mark()["ready"] is True
    assert room.mark()["ready"] is False
    assert "customer_id" not in Room("s1", "2", "Room 2", customer_id="ana").view()


def test_a_hold_names_whom_it_is_for() -> None:
    with pytest.raises(InvalidInput, match="name the open alert"):
        HoldFor()
    with pytest.raises(InvalidInput, match="not both"):
        HoldFor(alert_id="a", customer_id="ana")
    with pytest.raises(InvalidInput, match="booking_id"):
        HoldFor(alert_id="a", booking_id="no spaces")


# --- over real Redis --------------------------------------------------------------
ROOMS = {"1": "Room 1", "2": "Room 2", "10": "Room 10"}
STEPS_TO = {
    S.FREE: [],
    S.HELD: [RoomOp.HOLD],
    S.PREPARING: [RoomOp.HOLD, RoomOp.PREPARE],
    S.READY: [RoomOp.HOLD, RoomOp.READY],
    S.IN_USE: [RoomOp.HOLD, RoomOp.USE],
}


@pytest.fixture
async def desk(lifecycle: Lifecycle, directory: Directory, store: str) -> RoomDesk:
    await directory.add(store, "Maria Silva", "password-1", associate_id="maria")
    await directory.add(store, "Joao Costa", "password-1", associate_id="joao")
    await directory.add(store, "Bea Boss", "password-1", associate_id="boss", role="manager")
    desk = RoomDesk(lifecycle)
    await desk.set_layout(store, ROOMS)
    return desk


async def _who(directory: Directory, store: str, associate_id: str) -> Associate:
    found = await directory.get(store, associate_id)
    assert found is not None
    return found


async def _alert(lifecycle: Lifecycle, store: str, customer: str = "cust-a7x") -> Alert:
    alert = make_alert(store_id=store, customer_id=customer, title="Ana is at the entrance")
    await lifecycle.create(alert)
    return alert


@pytest.mark.integration
@pytest.mark.parametrize("state", list(S))
async def test_the_redis_script_follows_the_table_for_every_op(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, store: str, state: RoomState
) -> None:
    """From each state, each op: the stored room ends where TRANSITIONS says, or the op is
    refused with a 409's reason and the room is left as it was."""
    maria = await _who(directory, store, "maria")
    for i, op in enumerate(RoomOp):
        room_id = f"r{i}"
        await desk.set_layout(store, {**ROOMS, **{f"r{j}": f"Room r{j}" for j in range(6)}})
        alert = await _alert(lifecycle, store, customer=f"c-{state.value}-{i}")
        hold = HoldFor(alert_id=str(alert.alert_id))
        for step in STEPS_TO[state]:
            await desk.act(store, room_id, step, maria, hold if step is RoomOp.HOLD else None)
        before = await desk.rooms.get(store, room_id)
        assert before.state is state
        # A hold for another customer (one for the same one by its holder is a no-op).
        other = await _alert(lifecycle, store, customer=f"d-{state.value}-{i}")
        hold = HoldFor(alert_id=str(other.alert_id))
        expected = next_state(state, op)
        if expected is None:
            with pytest.raises(RoomConflict) as refused:
                await desk.act(store, room_id, op, maria, hold if op is RoomOp.HOLD else None)
            assert refused.value.state == state.value
            assert (await desk.rooms.get(store, room_id)).rev == before.rev
        else:
            after = await desk.act(store, room_id, op, maria, hold if op is RoomOp.HOLD else None)
            assert after.state is expected, (state, op)
            assert after.rev == before.rev + 1


@pytest.mark.integration
async def test_of_two_concurrent_holds_exactly_one_wins(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, store: str
) -> None:
    maria = await _who(directory, store, "maria")
    joao = await _who(directory, store, "joao")
    for round_ in range(10):
        await desk.set_layout(store, {"2": "Room 2"})
        ana = await _alert(lifecycle, store, customer=f"ana-{round_}")
        bia = await _alert(lifecycle, store, customer=f"bia-{round_}")
        results = await asyncio.gather(
            desk.act(store, "2", RoomOp.HOLD, maria, HoldFor(alert_id=str(ana.alert_id))),
            desk.act(store, "2", RoomOp.HOLD, joao, HoldFor(alert_id=str(bia.alert_id))),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, Room)]
        lost = [r for r in results if isinstance(r, RoomConflict)]
        assert (len(won), len(lost)) == (1, 1), results
        winner = "Maria Silva" if won[0].held_by == "maria" else "Joao Costa"
        assert str(lost[0]) == f"Room 2 is already held by {winner}: it cannot be held"
        assert lost[0].held_by == won[0].held_by
        room = await desk.rooms.get(store, "2")
        assert room.held_by == won[0].held_by
        await desk.act(
            store, "2", RoomOp.RELEASE, maria if won[0].held_by == "maria" else joao, None
        )


@pytest.mark.integration
async def test_a_taken_room_is_changed_only_by_its_holder_or_a_manager(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, store: str
) -> None:
    maria, joao, boss = [await _who(directory, store, a) for a in ("maria", "joao", "boss")]
    alert = await _alert(lifecycle, store)
    await desk.act(store, "2", RoomOp.HOLD, maria, HoldFor(alert_id=str(alert.alert_id)))
    with pytest.raises(RoomConflict) as refused:
        await desk.act(store, "2", RoomOp.READY, joao, None)
    assert (
        str(refused.value) == "Room 2 is held by Maria Silva: only they or a manager can change it"
    )
    assert (await desk.rooms.get(store, "2")).state is S.HELD
    assert (await desk.act(store, "2", RoomOp.READY, boss, None)).state is S.READY
    # The holder stays Maria: the manager helped, did not take it over.
    assert (await desk.rooms.get(store, "2")).held_by == "maria"


@pytest.mark.integration
async def test_a_customer_has_one_room_at_a_time_and_a_hold_needs_an_open_alert(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, store: str
) -> None:
    maria = await _who(directory, store, "maria")
    alert = await _alert(lifecycle, store)
    hold = HoldFor(alert_id=str(alert.alert_id))
    await desk.act(store, "1", RoomOp.HOLD, maria, hold)
    # Holding it again for the same customer is a no-op, not a conflict (a double tap).
    assert (await desk.act(store, "1", RoomOp.HOLD, maria, hold)).state is S.HELD
    with pytest.raises(
        RoomConflict, match=r"this customer already has Room 1 \(held, held by Maria Silva\)"
    ):
        await desk.act(store, "2", RoomOp.HOLD, maria, hold)
    await desk.act(store, "1", RoomOp.RELEASE, maria, None)
    assert (await desk.act(store, "2", RoomOp.HOLD, maria, hold)).state is S.HELD

    closed = await _alert(lifecycle, store, customer="bia")
    await lifecycle.done(str(closed.alert_id), store, "maria")
    with pytest.raises(AlertConflict, match="is done: hold a room for an open alert"):
        await desk.act(store, "10", RoomOp.HOLD, maria, HoldFor(alert_id=str(closed.alert_id)))
    with pytest.raises(UnknownRoom, match="no fitting room '9'"):
        await desk.act(store, "9", RoomOp.USE, maria, None)


@pytest.mark.integration
async def test_every_change_is_logged_with_who_and_when_and_counted_per_local_day(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, store: str, clock: FakeUtcClock
) -> None:
    await lifecycle.routing.set(store, timezone="America/New_York")  # 05:00 local at T0
    maria = await _who(directory, store, "maria")
    alert = await _alert(lifecycle, store)
    for op in (RoomOp.HOLD, RoomOp.PREPARE, RoomOp.READY, RoomOp.USE):
        await desk.act(
            store,
            "2",
            op,
            maria,
            HoldFor(alert_id=str(alert.alert_id), booking_id="res-1")
            if op is RoomOp.HOLD
            else None,
        )
        clock.advance(60)
    await desk.act(store, "2", RoomOp.DONE, maria, None)
    await desk.act(store, "1", RoomOp.USE, maria, None)  # a walk-in
    history = await desk.rooms.history(store)
    assert [(h["room"], h["op"], h["from"], h["to"]) for h in reversed(history)] == [
        ("2", "hold", "free", "held"),
        ("2", "prepare", "held", "preparing"),
        ("2", "ready", "preparing", "ready"),
        ("2", "use", "ready", "in_use"),
        ("2", "done", "in_use", "free"),
        ("1", "use", "free", "in_use"),
    ]
    assert {h["by"] for h in history} == {"maria"}
    assert history[-1]["at"] == clock.now.replace(minute=0).isoformat()
    assert history[-1]["alert_id"] == str(alert.alert_id)
    assert history[-1]["booking_id"] == "res-1"
    assert "cust-a7x" not in json.dumps(history)  # who and when; never the customer
    today = await desk.today(store)
    assert today == {
        "day": "2026-01-01",
        "timezone": "America/New_York",
        "held": 1,
        "ready": 1,
        "used": 2,
    }


@pytest.mark.integration
async def test_alerts_show_the_room_held_for_their_customer_live(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, redis: aioredis.Redis, store: str
) -> None:
    maria = await _who(directory, store, "maria")
    approach = await _alert(lifecycle, store)
    other = await _alert(lifecycle, store, customer="bia")
    pubsub = redis.pubsub()
    await pubsub.subscribe(lifecycle.channel(store))
    confirmed = await pubsub.get_message(timeout=2.0)
    assert confirmed is not None
    assert confirmed["type"] == "subscribe"
    try:
        await desk.act(store, "2", RoomOp.HOLD, maria, HoldFor(alert_id=str(approach.alert_id)))
        await desk.act(store, "2", RoomOp.READY, maria, None)
        arrival = await _alert(lifecycle, store)  # the same customer arrives
        messages = []
        while len(messages) < 5:
            got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
            assert got is not None, messages
            messages.append(json.loads(got["data"]))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    kinds = [(m["type"], (m.get("room") or m.get("alert") or {}).get("state")) for m in messages]
    assert kinds == [
        ("room", "held"),
        ("alert", "delivered"),  # the approach alert, now marked
        ("room", "ready"),
        ("alert", "delivered"),
        ("alert", "delivered"),  # the arrival, marked as it is created
    ]
    assert messages[1]["alert"]["room"]["label"] == "Room 2 not ready yet"
    assert messages[3]["alert"]["room"]["label"] == "Room 2 ready"
    assert messages[4]["alert"]["alert_id"] == str(arrival.alert_id)
    assert messages[4]["alert"]["room"]["label"] == "Room 2 ready"
    assert all("cust-a7x" not in json.dumps(m) for m in messages)
    marks = await lifecycle.rooms.held_for_all(store)
    assert set(marks) == {"cust-a7x"}
    assert str(other.alert_id) not in json.dumps(messages)


@pytest.mark.integration
async def test_a_withdrawn_alert_shows_no_room(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, store: str
) -> None:
    maria = await _who(directory, store, "maria")
    alert = await _alert(lifecycle, store)
    await desk.act(store, "2", RoomOp.HOLD, maria, HoldFor(alert_id=str(alert.alert_id)))
    await lifecycle.withdraw_customer("cust-a7x", WithdrawReason.CONSENT_REVOKED)
    record = await lifecycle.get(str(alert.alert_id))
    assert record is not None
    room = await lifecycle.rooms.held_for(store, "cust-a7x")
    assert room is not None  # the room is still held: the store decides when to free it
    assert record.view({}, room)["room"] is None


@pytest.mark.integration
async def test_forgetting_a_customer_leaves_no_trace_of_them_on_rooms(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, redis: aioredis.Redis, store: str
) -> None:
    maria = await _who(directory, store, "maria")
    customer = "ana-forget-me"
    alert = await _alert(lifecycle, store, customer=customer)
    await desk.act(store, "2", RoomOp.HOLD, maria, HoldFor(alert_id=str(alert.alert_id)))
    await desk.act(store, "2", RoomOp.USE, maria, None)
    await lifecycle.erase_customer(customer)
    room = await desk.rooms.get(store, "2")
    assert (room.state, room.held_by, room.customer_id, room.alert_id) == (
        S.IN_USE,
        "maria",
        None,
        None,
    )
    prefix = lifecycle.prefix
    async for key in redis.scan_iter(match=f"{prefix}*"):
        assert customer not in key
        kind = await redis.type(key)
        if kind == "hash":
            assert customer not in json.dumps(await redis.hgetall(key)), key
        elif kind == "stream":
            assert customer not in json.dumps(await redis.xrange(key)), key
    # The room goes on as usual.
    assert (await desk.act(store, "2", RoomOp.DONE, maria, None)).state is S.FREE


@pytest.mark.integration
async def test_the_layout_is_checked_and_a_taken_room_cannot_be_left_out(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, store: str
) -> None:
    assert list(await desk.rooms.layout(store)) == ["1", "2", "10"]  # natural order
    with pytest.raises(InvalidInput, match="room: 'a b' must be"):
        await desk.set_layout(store, {"a b": "Room"})
    with pytest.raises(InvalidInput, match="a name must be 1-60"):
        await desk.set_layout(store, {"3": " "})
    with pytest.raises(InvalidInput, match="at least one room"):
        await desk.set_layout(store, {})
    maria = await _who(directory, store, "maria")
    await desk.act(store, "10", RoomOp.USE, maria, None)
    with pytest.raises(InvalidInput, match="room '10' is in use: release it or mark it done"):
        await desk.set_layout(store, {"1": "Room 1"})
    await desk.act(store, "10", RoomOp.DONE, maria, None)
    rooms = await desk.set_layout(store, {"1": "Fitting 1", "3": "Fitting 3"})
    assert [(r.room_id, r.name, r.state) for r in rooms] == [
        ("1", "Fitting 1", S.FREE),
        ("3", "Fitting 3", S.FREE),
    ]


@pytest.mark.integration
async def test_a_hold_and_a_layout_leaving_the_room_out_do_not_both_win(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, store: str
) -> None:
    maria = await _who(directory, store, "maria")
    for round_ in range(10):
        await desk.set_layout(store, {"1": "Room 1", "2": "Room 2"})
        alert = await _alert(lifecycle, store, customer=f"cust-{round_}")
        hold, layout = await asyncio.gather(
            desk.act(store, "2", RoomOp.HOLD, maria, HoldFor(alert_id=str(alert.alert_id))),
            desk.set_layout(store, {"1": "Room 1"}),
            return_exceptions=True,
        )
        if isinstance(hold, Room):  # the hold won: the layout must keep room 2
            assert isinstance(layout, InvalidInput), layout
            assert "room '2' is held" in str(layout)
            assert await desk.rooms.held_for(store, f"cust-{round_}") == hold
            await desk.act(store, "2", RoomOp.RELEASE, maria, None)
        else:  # the layout won: room 2 is gone, and nothing names it
            assert isinstance(hold, UnknownRoom), hold
            assert isinstance(layout, list)
            assert [r.room_id for r in layout] == ["1"]
            assert await desk.rooms.held_for_all(store) == {}


@pytest.mark.integration
def test_cli_sets_and_lists_rooms(
    namespace: str, monkeypatch: pytest.MonkeyPatch, redis: object
) -> None:
    monkeypatch.setenv("PROXIMA_NAMESPACE", namespace)
    runner = CliRunner()
    done = runner.invoke(
        rooms_app, ["set", "--store", "s1", "--room", "1=Room 1", "--room", "2=Room 2"]
    )
    assert done.exit_code == 0, done.output
    assert [json.loads(line)["state"] for line in done.output.splitlines()] == ["free", "free"]
    listed = runner.invoke(rooms_app, ["list", "--store", "s1"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[:2] == ["1\tRoom 1\tfree", "2\tRoom 2\tfree"]
    assert "held 0, ready 0, used 0" in listed.output
    as_json = runner.invoke(rooms_app, ["list", "--store", "s1", "--json"])
    assert [json.loads(line)["name"] for line in as_json.output.splitlines()] == [
        "Room 1",
        "Room 2",
    ]
    bad = runner.invoke(rooms_app, ["set", "--store", "s1", "--room", "2"])
    assert bad.exit_code == 2
    assert "room: '2' is not ID=NAME" in bad.output
    twice = runner.invoke(rooms_app, ["set", "--store", "s1", "--room", "2=a", "--room", "2=b"])
    assert twice.exit_code == 2
    assert "room '2' is given twice" in twice.output
    empty = runner.invoke(rooms_app, ["list", "--store", "s2"])
    assert "no fitting rooms in s2" in empty.output
    assert runner.invoke(rooms_app, ["history", "--store", "s1"]).output == ""
