"""Fitting rooms per store: the layout an operator sets, and each room's state.

A room is free, held for a customer by an associate, preparing, ready or in use; done
makes it free again. :data:`TRANSITIONS` is the whole state machine: the Lua script that
applies a change is generated from it (who may change a room, :func:`may_change`, is
mirrored there by hand), and checks and writes in one atomic step, so the first hold wins
across notifier instances. Every change is logged (who, when; never the
customer) and counted per store-local day. A store's keys share the hash tag
``{rooms:STORE}``, one Redis Cluster slot, as a script's keys must:

``{prefix}notifier:{rooms:S}:layout``         hash room id → name (the operator's)
``{prefix}notifier:{rooms:S}:room:{id}``      hash: state, held_by, held_at, customer_id,
                                              alert_id, booking_id, changed_at, rev
``{prefix}notifier:{rooms:S}:customers``      hash customer id → the room held for them
``{prefix}notifier:{rooms:S}:log``            stream: room, op, from, to, by, at, alert_id,
                                              booking_id
``{prefix}notifier:{rooms:S}:counts:{day}``   hash: held, ready, used (that day's changes)
``{prefix}notifier:room-stores``              set of stores with a layout
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from notifier.directory import check_id, feed_channel, from_ms, to_ms
from notifier.exceptions import InvalidInput, RoomConflict, UnknownRoom
from transport.redis import RedisClient, text_map
from transport.redis import as_text as text

MAX_ROOMS = 200
LOG_CAP = 10_000
COUNTS_TTL_S = 400 * 24 * 3600  # a year of days, and a bit, for year-on-year counts


class RoomState(StrEnum):
    FREE = "free"
    HELD = "held"
    PREPARING = "preparing"
    READY = "ready"
    IN_USE = "in_use"


class RoomOp(StrEnum):
    HOLD = "hold"  # for a customer: first hold wins
    PREPARE = "prepare"
    READY = "ready"
    USE = "use"  # the customer is in it (from free: a walk-in)
    DONE = "done"  # the customer left: free again
    RELEASE = "release"  # not needed after all: free again


S = RoomState
TRANSITIONS: dict[RoomOp, dict[RoomState, RoomState]] = {
    RoomOp.HOLD: {S.FREE: S.HELD},
    RoomOp.PREPARE: {S.HELD: S.PREPARING},
    RoomOp.READY: {S.HELD: S.READY, S.PREPARING: S.READY},
    RoomOp.USE: {S.FREE: S.IN_USE, S.HELD: S.IN_USE, S.PREPARING: S.IN_USE, S.READY: S.IN_USE},
    RoomOp.DONE: {S.IN_USE: S.FREE},
    RoomOp.RELEASE: {S.HELD: S.FREE, S.PREPARING: S.FREE, S.READY: S.FREE},
}
"""op → {from state: to state}; an op from a state not listed is refused."""

_COUNTED = {S.HELD: "held", S.READY: "ready", S.IN_USE: "used"}
"""Operational counts (no customer in them, so no consent needed): changes into a state."""


def next_state(state: RoomState, op: RoomOp) -> RoomState | None:
    """Where ``op`` takes a room in ``state``; None if it may not."""
    return TRANSITIONS[op].get(state)


def may_change(state: RoomState, held_by: str | None, who: str, *, manager: bool) -> bool:
    """A free room is anyone's; a taken one its holder's, or a manager's."""
    return state is RoomState.FREE or held_by == who or manager


_VERBS = {
    RoomOp.HOLD: "hold {room}",
    RoomOp.PREPARE: "mark {room} preparing",
    RoomOp.READY: "mark {room} ready",
    RoomOp.USE: "mark {room} in use",
    RoomOp.DONE: "mark {room} done",
    RoomOp.RELEASE: "release {room}",
}


def _words(state: RoomState) -> str:
    return state.value.replace("_", " ")


def refusal(op: RoomOp, state: RoomState, room: str, holder: str | None) -> str:
    """Why ``op`` is refused on a room in ``state``, in words for the associate."""
    by = f" by {holder}" if holder else ""
    if op is RoomOp.HOLD and state is not RoomState.FREE:
        return f"{room} is already {_words(state)}{by}: it cannot be held"
    held = (
        "" if not holder else f" by {holder}" if state is RoomState.HELD else f" (held by {holder})"
    )
    allowed = " or ".join(_words(s) for s in TRANSITIONS[op])
    verb = _VERBS[op].format(room=room)
    return f"cannot {verb}: it is {_words(state)}{held}; that needs a room {allowed}"


def not_theirs(room: str, holder: str | None) -> str:
    return f"{room} is held by {holder}: only they or a manager can change it"


def _lua_table() -> str:
    ops = ", ".join(
        f"{op.value} = {{{', '.join(f'{a.value} = {b.value!r}' for a, b in moves.items())}}}"
        for op, moves in TRANSITIONS.items()
    )
    return "{" + ops + "}"


def _lua_counted() -> str:
    return "{" + ", ".join(f"{s.value} = {name!r}" for s, name in _COUNTED.items()) + "}"


# KEYS: 1 layout, 2 room hash, 3 customers index, 4 log stream, 5 the day's counts.
# ARGV: 1 room id, 2 op, 3 who, 4 now (ms), 5 manager ('1'/'0'), 6 customer id, 7 alert
# id, 8 booking id, 9 log cap, 10 counts TTL. Returns {outcome, state, holder, customer}.
_TRANSITION = (
    f"local T = {_lua_table()}\nlocal COUNTED = {_lua_counted()}\n"
    + """local room, op, who, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HEXISTS', KEYS[1], room) == 0 then return {'missing', '', '', ''} end
local state = redis.call('HGET', KEYS[2], 'state') or 'free'
local by = redis.call('HGET', KEYS[2], 'held_by') or ''
local cid = redis.call('HGET', KEYS[2], 'customer_id') or ''
if op == 'forget' then
  if cid ~= ARGV[6] then return {'noop', state, by, ''} end
  redis.call('HDEL', KEYS[2], 'customer_id', 'alert_id', 'booking_id')
  if redis.call('HGET', KEYS[3], cid) == room then redis.call('HDEL', KEYS[3], cid) end
  redis.call('HINCRBY', KEYS[2], 'rev', 1)
  return {'ok', state, by, cid}
end
if op == 'hold' and state == 'held' and by == who and cid == ARGV[6] then
  return {'same', state, by, cid}
end
local to = T[op] and T[op][state]
if not to then return {'invalid', state, by, ''} end
if state ~= 'free' and by ~= who and ARGV[5] ~= '1' then return {'not_yours', state, by, ''} end
if op == 'hold' then
  local has = redis.call('HGET', KEYS[3], ARGV[6])
  if has and has ~= room then return {'customer_has', state, has, ''} end
  redis.call('HSET', KEYS[2], 'held_by', who, 'held_at', now, 'customer_id', ARGV[6],
             'alert_id', ARGV[7], 'booking_id', ARGV[8])
  redis.call('HSET', KEYS[3], ARGV[6], room)
  cid = ARGV[6]
elseif state == 'free' then
  redis.call('HSET', KEYS[2], 'held_by', who, 'held_at', now)
end
local holder = redis.call('HGET', KEYS[2], 'held_by') or ''
local alert = redis.call('HGET', KEYS[2], 'alert_id') or ''
local booking = redis.call('HGET', KEYS[2], 'booking_id') or ''
if to == 'free' then
  if cid ~= '' and redis.call('HGET', KEYS[3], cid) == room then redis.call('HDEL', KEYS[3], cid) end
  redis.call('HDEL', KEYS[2], 'held_by', 'held_at', 'customer_id', 'alert_id', 'booking_id')
end
redis.call('HSET', KEYS[2], 'state', to, 'changed_at', now)
redis.call('HINCRBY', KEYS[2], 'rev', 1)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[9], '*', 'room', room, 'op', op, 'from', state,
           'to', to, 'by', who, 'at', now, 'alert_id', alert, 'booking_id', booking)
local counted = COUNTED[to]
if counted then
  redis.call('HINCRBY', KEYS[5], counted, 1)
  redis.call('EXPIRE', KEYS[5], tonumber(ARGV[10]))
end
return {'ok', to, holder, cid}
"""
)


# Replaces a store's layout in one step. KEYS: 1 layout, then the hashes of the rooms left
# out. ARGV: 1 the new layout (JSON), 2 the layout those were computed from (JSON list of
# ids), then the ids left out. A room left out must be free: a hold landing meanwhile wins.
_SET_LAYOUT = """
local now = redis.call('HKEYS', KEYS[1])
local seen = cjson.decode(ARGV[2])
if #now ~= #seen then return {'changed', '', ''} end
local was = {}
for _, id in ipairs(seen) do was[id] = true end
for _, id in ipairs(now) do if not was[id] then return {'changed', '', ''} end end
for i = 2, #KEYS do
  local state = redis.call('HGET', KEYS[i], 'state')
  if state and state ~= 'free' then return {'taken', ARGV[i + 1], state} end
end
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('DEL', KEYS[1])
for id, name in pairs(cjson.decode(ARGV[1])) do redis.call('HSET', KEYS[1], id, name) end
return {'ok', '', ''}
"""


def _natural(room_id: str) -> list[Any]:
    """Room 2 before room 10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", room_id)]


def check_name(room_id: str, name: str) -> str:
    name = name.strip()
    if not name or len(name) > 60:
        raise InvalidInput("name", f"room {room_id!r}: a name must be 1-60 characters")
    return name


@dataclass(frozen=True, slots=True)
class Room:
    """One fitting room and where it is; ``customer_id`` never leaves the notifier."""

    store_id: str
    room_id: str
    name: str
    state: RoomState = RoomState.FREE
    held_by: str | None = None
    held_at: datetime | None = None
    customer_id: str | None = None
    alert_id: str | None = None
    booking_id: str | None = None
    changed_at: datetime | None = None
    rev: int = 0

    @classmethod
    def from_hash(cls, store_id: str, room_id: str, name: str, data: dict[str, str]) -> Room:
        return cls(
            store_id=store_id,
            room_id=room_id,
            name=name,
            state=RoomState(data.get("state") or "free"),
            held_by=data.get("held_by") or None,
            held_at=from_ms(data.get("held_at")),
            customer_id=data.get("customer_id") or None,
            alert_id=data.get("alert_id") or None,
            booking_id=data.get("booking_id") or None,
            changed_at=from_ms(data.get("changed_at")),
            rev=int(data.get("rev") or 0),
        )

    def view(self, names: dict[str, str] | None = None) -> dict[str, Any]:
        """What a console gets: the room, who holds it and the alert it is for; no customer."""
        names = names or {}
        return {
            "room_id": self.room_id,
            "name": self.name,
            "state": self.state.value,
            "held_by": self.held_by,
            "held_by_name": names.get(self.held_by or "", self.held_by),
            "held_at": self.held_at.isoformat() if self.held_at else None,
            "alert_id": self.alert_id,
            "booking_id": self.booking_id,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
            "rev": self.rev,
        }

    def mark(self) -> dict[str, Any]:
        """How an alert of the customer it is held for shows it: "Room 2 ready"."""
        if self.state is RoomState.READY:
            label = f"{self.name} ready"
        elif self.state is RoomState.IN_USE:
            label = f"{self.name} in use"
        else:
            label = f"{self.name} not ready yet"
        return {
            "room_id": self.room_id,
            "name": self.name,
            "state": self.state.value,
            "ready": self.state is RoomState.READY,
            "label": label,
        }


class Rooms:
    """A store's fitting rooms in Redis: the layout, each room's state, its log and counts."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._transition = redis.register_script(_TRANSITION)
        self._set_layout = redis.register_script(_SET_LAYOUT)

    # keys ------------------------------------------------------------------------
    def _base(self, store: str) -> str:
        return f"{self.prefix}notifier:{{rooms:{store}}}"

    def _layout(self, store: str) -> str:
        return f"{self._base(store)}:layout"

    def _room(self, store: str, room_id: str) -> str:
        return f"{self._base(store)}:room:{room_id}"

    def _customers(self, store: str) -> str:
        return f"{self._base(store)}:customers"

    def _log(self, store: str) -> str:
        return f"{self._base(store)}:log"

    def _counts(self, store: str, day: str) -> str:
        return f"{self._base(store)}:counts:{day}"

    @property
    def _stores(self) -> str:
        return f"{self.prefix}notifier:room-stores"

    # layout ----------------------------------------------------------------------
    async def layout(self, store: str) -> dict[str, str]:
        """Room id → name, in natural order of the ids."""
        data = text_map(await self.redis.hgetall(self._layout(store)))
        return {k: data[k] for k in sorted(data, key=_natural)}

    async def set_layout(self, store: str, rooms: dict[str, str]) -> list[Room]:
        """Replace the store's rooms; a room taken now cannot be left out."""
        check_id("store", store)
        if not rooms:
            raise InvalidInput("rooms", "give at least one room as ID=NAME")
        if len(rooms) > MAX_ROOMS:
            raise InvalidInput("rooms", f"at most {MAX_ROOMS} rooms per store")
        clean = {check_id("room", k): check_name(k, v) for k, v in rooms.items()}
        for _attempt in range(5):
            current = list(await self.layout(store))
            dropped = [room_id for room_id in current if room_id not in clean]
            result = await self._set_layout(
                keys=[self._layout(store), *(self._room(store, r) for r in dropped)],
                args=[json.dumps(clean), json.dumps(current), *dropped],
            )
            outcome, room_id, state = (text(v) for v in result)
            if outcome == "taken":
                raise InvalidInput(
                    "rooms",
                    f"room {room_id!r} is {_words(RoomState(state))}: release it or mark it done"
                    " before removing it",
                )
            if outcome == "ok":
                break
        else:  # the layout kept changing under us: another operator at the same moment
            raise InvalidInput("rooms", "the layout changed meanwhile: try again")
        await self.redis.sadd(self._stores, store)
        return await self.list_rooms(store)

    async def stores(self) -> list[str]:
        return sorted(text(s) for s in await self.redis.smembers(self._stores))

    # reads -----------------------------------------------------------------------
    async def list_rooms(self, store: str) -> list[Room]:
        layout = await self.layout(store)
        pipe = self.redis.pipeline(transaction=False)
        for room_id in layout:
            pipe.hgetall(self._room(store, room_id))
        states = await pipe.execute() if layout else []
        return [
            Room.from_hash(store, room_id, name, text_map(data))
            for (room_id, name), data in zip(layout.items(), states, strict=True)
        ]

    async def get(self, store: str, room_id: str) -> Room:
        name = await self.redis.hget(self._layout(store), room_id)
        if name is None:
            raise UnknownRoom(store, room_id)
        data = text_map(await self.redis.hgetall(self._room(store, room_id)))
        return Room.from_hash(store, room_id, text(name), data)

    async def held_for(self, store: str, customer_id: str) -> Room | None:
        """The room held for this customer in this store, if any."""
        room_id = await self.redis.hget(self._customers(store), customer_id)
        if room_id is None:
            return None
        try:
            return await self.get(store, text(room_id))
        except UnknownRoom:
            return None

    async def held_for_all(self, store: str) -> dict[str, Room]:
        """Customer id → the room held for them, over the whole store (one read of each)."""
        index = text_map(await self.redis.hgetall(self._customers(store)))
        if not index:
            return {}
        rooms = {r.room_id: r for r in await self.list_rooms(store)}
        return {
            cid: rooms[room_id]
            for cid, room_id in index.items()
            if room_id in rooms and rooms[room_id].customer_id == cid
        }

    async def counts(self, store: str, day: str) -> dict[str, int]:
        data = text_map(await self.redis.hgetall(self._counts(store, day)))
        return {name: int(data.get(name) or 0) for name in _COUNTED.values()}

    async def history(self, store: str, limit: int = 100) -> list[dict[str, Any]]:
        """The latest transitions, newest first: room, op, from, to, by, at, alert, booking."""
        entries = await self.redis.xrevrange(self._log(store), count=limit) or []
        out = []
        for _id, fields in entries:
            row: dict[str, Any] = text_map(fields or {})
            at = from_ms(row.get("at"))
            row["at"] = at.isoformat() if at else None
            out.append(row)
        return out

    # changes ---------------------------------------------------------------------
    async def apply(
        self,
        store: str,
        room_id: str,
        op: RoomOp,
        who: str,
        now: datetime,
        day: str,
        *,
        manager: bool = False,
        customer_id: str = "",
        alert_id: str = "",
        booking_id: str = "",
        names: dict[str, str] | None = None,
    ) -> tuple[Room, str]:
        """Apply ``op`` atomically; returns the room and the customer it was (or is) for.

        Raises :class:`RoomConflict` with the reason when the room's state or its holder
        does not allow it, :class:`UnknownRoom` when the store has no such room.
        """
        if op is RoomOp.HOLD and not customer_id:
            raise InvalidInput("customer", "a hold is for a customer: name the alert")
        result = await self._transition(
            keys=[
                self._layout(store),
                self._room(store, room_id),
                self._customers(store),
                self._log(store),
                self._counts(store, day),
            ],
            args=[
                room_id,
                op.value,
                who,
                str(to_ms(now)),
                "1" if manager else "0",
                customer_id,
                alert_id,
                booking_id,
                str(LOG_CAP),
                str(COUNTS_TTL_S),
            ],
        )
        outcome, state, holder, customer = (text(v) for v in result)
        if outcome == "missing":
            raise UnknownRoom(store, room_id)
        room = await self.get(store, room_id)
        names = names or {}
        who_name = names.get(holder, holder) or None
        if outcome == "invalid":
            raise RoomConflict(
                room_id, state, holder or None, refusal(op, RoomState(state), room.name, who_name)
            )
        if outcome == "not_yours":
            raise RoomConflict(room_id, state, holder or None, not_theirs(room.name, who_name))
        if outcome == "customer_has":
            other = await self.get(store, holder)
            by = names.get(other.held_by or "", other.held_by)
            raise RoomConflict(
                room_id,
                state,
                None,
                f"this customer already has {other.name} ({_words(other.state)}, held by {by}):"
                " release it first",
            )
        return room, customer

    async def forget_customer(self, customer_id: str) -> list[Room]:
        """A forgotten customer's rooms keep their state but no longer name them (or their
        alert and booking). Returns the rooms changed.

        The customers index is written in the same script as the room, so it names every
        room held for them: one read per store with rooms finds them.
        """
        stores = await self.stores()
        pipe = self.redis.pipeline(transaction=False)
        for store in stores:
            pipe.hget(self._customers(store), customer_id)
        found = [(s, text(r)) for s, r in zip(stores, await pipe.execute(), strict=True) if r]
        changed = []
        for store, room_id in found:
            result = await self._transition(
                keys=[
                    self._layout(store),
                    self._room(store, room_id),
                    self._customers(store),
                    self._log(store),
                    self._counts(store, "-"),
                ],
                args=[room_id, "forget", "", "0", "0", customer_id, "", "", "0", "0"],
            )
            if text(result[0]) == "ok":
                changed.append(await self.get(store, room_id))
            await self.redis.hdel(self._customers(store), customer_id)
        return changed

    async def publish(self, room: Room, names: dict[str, str]) -> None:
        message = json.dumps({"type": "room", "room": room.view(names)})
        await self.redis.publish(feed_channel(self.prefix, room.store_id), message)

    async def publish_all(self, store: str, names: dict[str, str]) -> None:
        rooms = [r.view(names) for r in await self.list_rooms(store)]
        message = json.dumps({"type": "rooms", "rooms": rooms})
        await self.redis.publish(feed_channel(self.prefix, store), message)
