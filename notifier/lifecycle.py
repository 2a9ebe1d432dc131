"""Alert lifecycle in Redis: delivered → claimed → done, declines, escalation, expiry.

One hash per alert, ``{prefix}notifier:{alerts}:alert:{id}``, is the truth; every
transition is one Lua script on that key, so it is atomic across notifier instances (first
claim wins, everyone else is told who has it). A claim, done or decline also queues its
ack on the ack outbox stream in the same script, so the alert hashes and the ack outbox
(:func:`ack_outbox_key`) share the hash tag ``{alerts}``: one Redis Cluster slot, which a
script's keys must be in. Two sorted sets are indexes only, rebuilt from the hashes' truth
as they are read:

``{prefix}notifier:store:{store}:alerts``  alert ids by delivery time (the store's feed)
``{prefix}notifier:open``                  unclaimed alert ids, scanned by ``tick``

Every change is published on ``{prefix}notifier:store:{store}:feed`` so each instance can
push it to the consoles connected to it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from redis.crc import key_slot

from contracts.models import (
    AckStatus,
    Alert,
    AlertAck,
    AlertKind,
    ConsentRecord,
    WithdrawReason,
)
from notifier.channels import Receipt
from notifier.directory import Clock, Directory, feed_channel, from_ms, to_ms, utc_now
from notifier.exceptions import AlertConflict, AlertWithheld, UnknownAlert, UnknownAssociate
from notifier.messaging import Messaging
from notifier.outbox import Outbox
from notifier.outcomes import Outcomes
from notifier.purposes import Purposes
from notifier.rooms import Room, Rooms
from notifier.routing import Ladder, Step, Tier, escalation, next_step, plan
from notifier.store_routing import RoutingConfigs, StoreRouting
from transport.redis import RedisClient, text_map
from transport.redis import as_text as text

log = logging.getLogger(__name__)

NO_TIER = -1
_ACK_OF_OP = {"claim": AckStatus.CLAIMED, "done": AckStatus.DONE, "decline": AckStatus.DECLINED}


# The alert hashes and the ack outbox stream are written by one script: on Redis Cluster
# every key of a script must be in one hash slot, so they share this hash tag.
ALERTS_TAG = "{alerts}"


def ack_outbox_key(prefix: str) -> str:
    """The ack outbox stream, in the alert hashes' slot (:data:`ALERTS_TAG`)."""
    return f"{prefix}notifier:{ALERTS_TAG}:outbox:acks"


def alert_key(prefix: str, alert_id: str) -> str:
    """The hash that is the truth about one alert (in :data:`ALERTS_TAG`'s slot)."""
    return f"{prefix}notifier:{ALERTS_TAG}:alert:{alert_id}"


async def stored_alert(redis: RedisClient, prefix: str, alert_id: str) -> Alert | None:
    """The wire alert (customer id included) the notifier keeps; None once it is gone.

    For tools with Redis access that need what the associates' view leaves out, such as
    ``proxima alerts record``, which scores alerts against a trace's customers.
    """
    raw = await redis.hget(alert_key(prefix, alert_id), "alert")
    return None if raw is None else Alert.model_validate_json(raw)


def visit_of(alert: Alert) -> str:
    """The visit an alert belongs to: the stream's ``visit_id``, or the alert itself."""
    return alert.visit_id or str(alert.alert_id)


def customer_alerts_key(prefix: str, customer_id: str) -> str:
    """The set of a customer's alert ids (in :data:`ALERTS_TAG`'s slot, written with them)."""
    return f"{prefix}notifier:{ALERTS_TAG}:customer:{customer_id}"


def consent_key(prefix: str, customer_id: str) -> str:
    """A revoking customer's arrival_alerts decisions: store or ``*`` → ``1``/``0``."""
    return f"{prefix}notifier:{ALERTS_TAG}:consent:{customer_id}"


def erased_key(prefix: str, customer_id: str) -> str:
    """Set when the customer is forgotten; named by a hash, so it does not keep the id."""
    digest = hashlib.sha256(customer_id.encode()).hexdigest()[:32]
    return f"{prefix}notifier:{ALERTS_TAG}:erased:{digest}"


ARRIVAL_ALERTS = "arrival_alerts"  # the purpose every alert is sent under (the stream's gate)


class AlertState(StrEnum):
    DELIVERED = "delivered"
    CLAIMED = "claimed"
    DONE = "done"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"  # the customer revoked consent or was forgotten


OPEN_STATES = frozenset({AlertState.DELIVERED, AlertState.CLAIMED})


def redacted(alert: Alert) -> Alert:
    """A withdrawn alert keeps nothing the customer showed: no name, no fields."""
    return alert.model_copy(update={"title": "Alert withdrawn", "body": "", "fields": {}})


# KEYS[2] indexes the customer's alerts (for erasure and revocation); KEYS[3] is set once
# the customer is forgotten and KEYS[4] holds their arrival_alerts decisions after a
# revocation (store or '*' -> '1'/'0', the store's own first), so an alert still on
# Kafka when the customer left is not created after the fact. All in one slot.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
local allowed = redis.call('HGET', KEYS[4], ARGV[4])
if not allowed then allowed = redis.call('HGET', KEYS[4], '*') end
if allowed == '0' then return 3 end
local m = cjson.decode(ARGV[1])
for k, v in pairs(m) do redis.call('HSET', KEYS[1], k, v) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return 1
"""

# One script for every transition, so each is a single atomic step on the alert's hash.
# Lists (notified, declined) are comma-joined ids: ids cannot contain commas. ``rev`` goes
# up on every change so a console can drop an update older than what it already shows.
_TRANSITION = """
local key, op, who, now = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
-- claim/done/decline: KEYS[2] is the ack outbox stream (optional), ARGV[4] the store,
-- ARGV[5] the AlertAck JSON, ARGV[6] the stream's cap. The ack is queued in the same
-- atomic step as the change, so no crash can leave a transition without its ack.
local function acked(result)
  if KEYS[2] then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'store', ARGV[4], 'ack', ARGV[5])
  end
  return result
end
if redis.call('EXISTS', key) == 0 then return {'missing', '', ''} end
local state = redis.call('HGET', key, 'state')
local by = redis.call('HGET', key, 'claimed_by') or ''
if op == 'claim' then
  if state == 'delivered' then
    redis.call('HSET', key, 'state', 'claimed', 'claimed_by', who, 'claimed_at', now)
    redis.call('HINCRBY', key, 'rev', 1)
    return acked({'ok', 'claimed', who})
  end
  if state == 'claimed' and by == who then return {'same', state, by} end
  return {'conflict', state, by}
elseif op == 'done' then
  if state == 'claimed' and by == who then
    redis.call('HSET', key, 'state', 'done', 'done_at', now)
    redis.call('HINCRBY', key, 'rev', 1)
    return acked({'ok', 'done', who})
  end
  if state == 'delivered' then
    redis.call('HSET', key, 'state', 'done', 'claimed_by', who, 'claimed_at', now, 'done_at', now)
    redis.call('HINCRBY', key, 'rev', 1)
    return acked({'ok', 'done', who})
  end
  if state == 'done' and by == who then return {'same', state, by} end
  return {'conflict', state, by}
elseif op == 'decline' then
  if state == 'claimed' and by == who then
    redis.call('HSET', key, 'state', 'delivered')
    redis.call('HDEL', key, 'claimed_by', 'claimed_at')
  elseif state ~= 'delivered' then
    return {'conflict', state, by}
  end
  local declined = redis.call('HGET', key, 'declined') or ''
  if string.find(',' .. declined .. ',', ',' .. who .. ',', 1, true) == nil then
    if declined == '' then declined = who else declined = declined .. ',' .. who end
    redis.call('HSET', key, 'declined', declined)
  end
  redis.call('HINCRBY', key, 'rev', 1)
  return acked({'ok', 'delivered', ''})
elseif op == 'escalate' then
  if state ~= 'delivered' then return {'closed', state, by} end
  local tier = tonumber(redis.call('HGET', key, 'tier') or '-1')
  local level = tonumber(redis.call('HGET', key, 'level') or '0')
  local new_tier, new_level = tonumber(who), tonumber(ARGV[5])
  if new_level < level or (new_level == level and new_tier <= tier) then
    return {'noop', state, by}
  end
  if new_tier < tier then new_tier = tier end
  redis.call('HSET', key, 'tier', new_tier, 'level', new_level, 'notified', ARGV[4],
             'escalated_at', now)
  redis.call('HINCRBY', key, 'rev', 1)
  return {'ok', state, by}
elseif op == 'withdraw' then
  -- ARGV[4] the redacted alert JSON, ARGV[5] why. Open alerts only: a done one is history.
  if state ~= 'delivered' and state ~= 'claimed' then return {'closed', state, by} end
  redis.call('HSET', key, 'state', 'withdrawn', 'withdrawn_at', now, 'withdrawn_reason',
             ARGV[5], 'alert', ARGV[4])
  redis.call('HINCRBY', key, 'rev', 1)
  return {'ok', 'withdrawn', by}
elseif op == 'expire' then
  if state ~= 'delivered' then return {'closed', state, by} end
  redis.call('HSET', key, 'state', 'expired', 'expired_at', now)
  redis.call('HINCRBY', key, 'rev', 1)
  return {'ok', 'expired', ''}
end
return redis.error_reply('unknown op ' .. op)
"""


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(v for v in (value or "").split(",") if v)


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert and where it is in its life."""

    alert: Alert
    state: AlertState
    tier: int
    level: int
    notified: tuple[str, ...]
    declined: tuple[str, ...]
    delivered_at: datetime
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    done_at: datetime | None = None
    expired_at: datetime | None = None
    withdrawn_at: datetime | None = None
    withdrawn_reason: WithdrawReason | None = None
    rev: int = 1
    published: bool = False

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> AlertRecord:
        delivered_at = from_ms(data["delivered_at"])
        assert delivered_at is not None
        return cls(
            alert=Alert.model_validate_json(data["alert"]),
            state=AlertState(data["state"]),
            tier=int(data.get("tier", NO_TIER)),
            level=int(data.get("level", 0)),
            notified=_ids(data.get("notified")),
            declined=_ids(data.get("declined")),
            delivered_at=delivered_at,
            claimed_by=data.get("claimed_by") or None,
            claimed_at=from_ms(data.get("claimed_at")),
            done_at=from_ms(data.get("done_at")),
            expired_at=from_ms(data.get("expired_at")),
            withdrawn_at=from_ms(data.get("withdrawn_at")),
            withdrawn_reason=(
                WithdrawReason(data["withdrawn_reason"]) if data.get("withdrawn_reason") else None
            ),
            rev=int(data.get("rev", 1)),
            published=data.get("published") == "1",
        )

    @property
    def tier_label(self) -> str | None:
        return Tier(self.tier).label if self.tier >= 0 else None

    def view(self, names: dict[str, str] | None = None, room: Room | None = None) -> dict[str, Any]:
        """What an associate's console gets: the alert's visible fields, never its ids.

        The customer id and the causing event ids stay out: an associate sees only what
        the customer chose to show (``fields``) and the alert's own wording. ``room`` is
        the fitting room held for the alert's customer, if one is: "Room 2 ready".
        """
        names = names or {}
        a = self.alert
        return {
            "alert_id": str(a.alert_id),
            "store_id": a.store_id,
            "kind": a.kind.value,
            "title": a.title,
            "body": a.body,
            "fields": a.fields,
            "zone_id": a.zone_id,
            "priority": a.priority.value,
            "created_at": a.created_at.isoformat(),
            "delivered_at": self.delivered_at.isoformat(),
            "state": self.state.value,
            "tier": self.tier_label,
            "level": self.level,
            "notified": list(self.notified),
            "declined": list(self.declined),
            "claimed_by": self.claimed_by,
            "claimed_by_name": names.get(self.claimed_by or "", self.claimed_by),
            "claimed_at": self.claimed_at.isoformat() if self.claimed_at else None,
            "done_at": self.done_at.isoformat() if self.done_at else None,
            "expired_at": self.expired_at.isoformat() if self.expired_at else None,
            "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
            "withdrawn_reason": self.withdrawn_reason.value if self.withdrawn_reason else None,
            "rev": self.rev,
            # A withdrawn alert keeps nothing of the customer's visit, her room included.
            "room": room.mark()
            if room is not None and self.state is not AlertState.WITHDRAWN
            else None,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """Associates to notify (over MQTT) about an alert, and why."""

    record: AlertRecord
    step: Step


@dataclass(frozen=True, slots=True)
class Summary:
    """The manager view of one store's day."""

    arrivals_today: int
    alerts_today: int
    unclaimed: int
    claimed_today: int
    median_time_to_claim_s: float | None
    timezone: str = "UTC"
    since: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "arrivals_today": self.arrivals_today,
            "alerts_today": self.alerts_today,
            "unclaimed": self.unclaimed,
            "claimed_today": self.claimed_today,
            "median_time_to_claim_s": self.median_time_to_claim_s,
            "timezone": self.timezone,
            "since": self.since.isoformat() if self.since else None,
        }


class Lifecycle:
    """Creates alerts, applies claims/done/declines, escalates and expires them."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        directory: Directory,
        *,
        clock: Clock = utc_now,
        ladder: Ladder | None = None,
        expire_after: timedelta = timedelta(minutes=15),
        retention: timedelta = timedelta(days=7),
        acks: Outbox | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        if acks is not None and key_slot(acks.key.encode()) != key_slot(self._key("-").encode()):
            raise ValueError(
                f"ack outbox {acks.key!r} is not in the alert hashes' Redis Cluster slot "
                f"(its name needs the hash tag {ALERTS_TAG}: see ack_outbox_key)"
            )
        self.acks = acks
        # Who sends an escalation caused by a decline (the notifier sets it).
        self.on_delivery: Callable[[Delivery], Awaitable[None]] | None = None
        self.prefix = prefix
        self.directory = directory
        self.clock = clock
        self.ladder = ladder or Ladder()
        self.expire_after = expire_after
        self.routing = RoutingConfigs(redis, prefix, StoreRouting(self.ladder, expire_after))
        self.retention = retention
        self.rooms = Rooms(redis, prefix)
        self.purposes = Purposes(redis, prefix)
        self.outcomes = Outcomes(redis, prefix, self.purposes)
        self.messaging = Messaging(redis, prefix, self.purposes, clock=clock)
        self._create = redis.register_script(_CREATE)
        self._transition = redis.register_script(_TRANSITION)

    # keys ------------------------------------------------------------------------
    def _key(self, alert_id: str) -> str:
        return alert_key(self.prefix, alert_id)

    def _feed_index(self, store: str) -> str:
        return f"{self.prefix}notifier:store:{store}:alerts"

    @property
    def _open(self) -> str:
        return f"{self.prefix}notifier:open"

    def channel(self, store: str) -> str:
        return feed_channel(self.prefix, store)

    def _receipts(self, alert_id: str) -> str:
        return f"{self.prefix}notifier:alert:{alert_id}:receipts"

    # create ----------------------------------------------------------------------
    async def create(self, alert: Alert) -> Delivery | AlertRecord | None:
        """Store a new alert and route it.

        Returns the first delivery, or the record if there is nobody to tell yet, or None
        if this alert id was seen before (Kafka redelivers; we do not notify twice).
        """
        now = self.clock()
        staff = await self.directory.staff(alert.store_id)
        routing = await self.routing.get(alert.store_id)
        steps = plan(alert, staff, now, routing.ladder)
        step = steps[0] if steps else None
        mapping = {
            "alert": alert.model_dump_json(by_alias=True),
            "store": alert.store_id,
            "state": AlertState.DELIVERED.value,
            "tier": str(int(step.tier) if step else NO_TIER),
            "level": "0",
            "rev": "1",
            "published": "0",
            "notified": ",".join(step.associate_ids) if step else "",
            "declined": "",
            "delivered_at": str(to_ms(now)),
        }
        ttl = int(self.retention.total_seconds())
        created = await self._create(
            keys=[
                self._key(str(alert.alert_id)),
                customer_alerts_key(self.prefix, alert.customer_id),
                erased_key(self.prefix, alert.customer_id),
                consent_key(self.prefix, alert.customer_id),
            ],
            args=[json.dumps(mapping), ttl, str(alert.alert_id), alert.store_id],
        )
        if created == 2:
            raise AlertWithheld(str(alert.alert_id), WithdrawReason.ERASED)
        if created == 3:
            raise AlertWithheld(str(alert.alert_id), WithdrawReason.CONSENT_REVOKED)
        if not created:
            return None
        score = to_ms(now)
        await self.redis.zadd(self._feed_index(alert.store_id), {str(alert.alert_id): score})
        await self.redis.zadd(self._open, {str(alert.alert_id): score})
        await self._trim(alert.store_id, now)
        record = AlertRecord.from_hash(mapping)
        # The room held for her, read once: the consoles show it and the outcomes count it.
        room = await self.rooms.held_for(alert.store_id, alert.customer_id)
        await self._send(record, {a.associate_id: a.name for a in staff}, room)
        await self.outcomes.alerted(
            alert.kind,
            alert.store_id,
            alert.customer_id,
            visit_of(alert),
            alert.zone_id,
            now,
            routing.midnight(now).date().isoformat(),
            room,
        )
        return Delivery(record, step) if step else record

    async def _trim(self, store: str, now: datetime) -> None:
        horizon = to_ms(now - self.retention)
        await self.redis.zremrangebyscore(self._feed_index(store), "-inf", horizon)

    async def mark_published(self, alert_id: str) -> None:
        """The first delivery reached the broker; a Kafka redelivery need not repeat it."""
        await self.redis.hset(self._key(alert_id), "published", "1")

    # reads -----------------------------------------------------------------------
    async def get(self, alert_id: str) -> AlertRecord | None:
        data = text_map(await self.redis.hgetall(self._key(alert_id)))
        return AlertRecord.from_hash(data) if data else None

    async def get_in_store(self, alert_id: str, store_id: str) -> AlertRecord:
        """The alert if it belongs to ``store_id``; another store's alert does not exist."""
        record = await self.get(alert_id)
        if record is None or record.alert.store_id != store_id:
            raise UnknownAlert(alert_id)
        return record

    async def list_store(
        self, store_id: str, since: datetime, limit: int = 200
    ) -> list[AlertRecord]:
        ids = [
            text(i)
            for i in await self.redis.zrevrangebyscore(
                self._feed_index(store_id), "+inf", to_ms(since), start=0, num=limit
            )
        ]
        pipe = self.redis.pipeline(transaction=False)
        for alert_id in ids:
            pipe.hgetall(self._key(alert_id))
        out: list[AlertRecord] = []
        for data in await pipe.execute():
            if not data:
                continue  # expired by its TTL; the index is trimmed lazily
            record = AlertRecord.from_hash(text_map(data))
            if record.alert.store_id == store_id:
                out.append(record)
        return out

    async def names(self, store_id: str) -> dict[str, str]:
        return {a.associate_id: a.name for a in await self.directory.staff(store_id)}

    async def publish(self, record: AlertRecord, names: dict[str, str] | None = None) -> None:
        if names is None:
            names = await self.names(record.alert.store_id)
        room = await self.rooms.held_for(record.alert.store_id, record.alert.customer_id)
        await self._send(record, names, room)

    async def _send(self, record: AlertRecord, names: dict[str, str], room: Room | None) -> None:
        message = json.dumps({"type": "alert", "alert": record.view(names, room)})
        await self.redis.publish(self.channel(record.alert.store_id), message)

    # transitions -----------------------------------------------------------------
    async def _apply(
        self, op: str, alert_id: str, store_id: str, associate_id: str
    ) -> tuple[str, AlertRecord]:
        before = await self.get_in_store(alert_id, store_id)
        if await self.directory.get(store_id, associate_id) is None:
            raise UnknownAssociate(store_id, associate_id)
        now = self.clock()
        keys, args = [self._key(alert_id)], [op, associate_id, str(to_ms(now))]
        if self.acks is not None:
            ack = AlertAck(
                alert_id=before.alert.alert_id,
                store_id=before.alert.store_id,
                associate_id=associate_id,
                status=_ACK_OF_OP[op],
                at=now,
            )
            keys.append(self.acks.key)
            args += [ack.store_id, ack.model_dump_json(by_alias=True), str(self.acks.maxlen)]
        result = await self._transition(keys=keys, args=args)
        outcome, state, by = (text(v) for v in result)
        if outcome == "missing":
            raise UnknownAlert(alert_id)
        record = await self.get_in_store(alert_id, store_id)
        if outcome == "conflict":
            who = f" by {by}" if by else ""
            raise AlertConflict(
                alert_id, state, by or None, f"alert {alert_id} is already {state}{who}"
            )
        if outcome == "ok":
            # The script queued the ack for proxima.acks.v1 in the same atomic step.
            if record.state is not AlertState.DELIVERED:
                await self.redis.zrem(self._open, alert_id)
            else:
                await self.redis.zadd(self._open, {alert_id: to_ms(record.delivered_at)})
            await self.publish(record)
            await self._record_outcome(op, before, record)
        return outcome, record

    async def _record_outcome(self, op: str, before: AlertRecord, after: AlertRecord) -> None:
        """An arrival claimed (greeted) or closed: the store's outcomes count it."""
        alert = after.alert
        if alert.kind is not AlertKind.ARRIVAL or op not in ("claim", "done"):
            return
        routing = await self.routing.get(alert.store_id)
        args = (alert.store_id, alert.customer_id, visit_of(alert))
        if before.claimed_at is None and after.claimed_at is not None and after.claimed_by:
            wait = (after.claimed_at - after.delivered_at).total_seconds()
            day = routing.midnight(after.claimed_at).date().isoformat()
            await self.outcomes.claimed(*args, after.claimed_by, wait, after.claimed_at, day)
        if op == "done" and after.done_at is not None:
            day = routing.midnight(after.done_at).date().isoformat()
            by = after.claimed_by or ""
            await self.outcomes.done(*args, by, after.done_at, day)

    # receipts --------------------------------------------------------------------
    async def add_receipt(self, alert_id: str, receipt: Receipt) -> None:
        """Keep what a channel reported for this alert, as long as the alert itself."""
        key = self._receipts(alert_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(key, json.dumps(receipt.as_dict()))
        pipe.ltrim(key, -500, -1)
        pipe.expire(key, int(self.retention.total_seconds()))
        await pipe.execute()

    async def receipts(self, alert_id: str) -> list[dict[str, Any]]:
        return [
            json.loads(text(r)) for r in await self.redis.lrange(self._receipts(alert_id), 0, -1)
        ]

    async def claim(self, alert_id: str, store_id: str, associate_id: str) -> AlertRecord:
        """First claim wins; a later claim by someone else raises AlertConflict naming them."""
        return (await self._apply("claim", alert_id, store_id, associate_id))[1]

    async def done(self, alert_id: str, store_id: str, associate_id: str) -> AlertRecord:
        """Close the alert; an unclaimed alert is claimed and closed in one step."""
        return (await self._apply("done", alert_id, store_id, associate_id))[1]

    async def decline(
        self, alert_id: str, store_id: str, associate_id: str
    ) -> tuple[AlertRecord, Delivery | None]:
        """Not me: releases the associate's claim; when everyone told has declined, escalate now."""
        _outcome, record = await self._apply("decline", alert_id, store_id, associate_id)
        if (
            record.state is AlertState.DELIVERED
            and record.notified
            and set(record.notified) <= set(record.declined)
        ):
            staff = await self.directory.staff(store_id)
            ladder = (await self.routing.get(store_id)).ladder
            steps = plan(record.alert, staff, self.clock(), ladder)
            step = next_step(steps, record.tier)
            if step is not None:
                delivery = await self._escalate(record, record.level, step)
                if delivery is not None and self.on_delivery is not None:
                    await self.on_delivery(delivery)
                return (delivery.record if delivery else record), delivery
        return record, None

    async def apply_ack(self, ack: AlertAck) -> AlertRecord:
        """An ack from a handheld (MQTT); same rules as the console."""
        alert_id = str(ack.alert_id)
        if ack.status is AckStatus.CLAIMED:
            return await self.claim(alert_id, ack.store_id, ack.associate_id)
        if ack.status is AckStatus.DONE:
            return await self.done(alert_id, ack.store_id, ack.associate_id)
        return (await self.decline(alert_id, ack.store_id, ack.associate_id))[0]

    async def _escalate(
        self, record: AlertRecord, level: int, step: Step | None
    ) -> Delivery | None:
        """Compare-and-set the alert's (level, tier); only the winner gets the delivery."""
        alert_id = str(record.alert.alert_id)
        ids = step.associate_ids if step else ()
        notified = ",".join(dict.fromkeys((*record.notified, *ids)))
        tier = int(step.tier) if step else record.tier
        result = await self._transition(
            keys=[self._key(alert_id)],
            args=["escalate", str(tier), str(to_ms(self.clock())), notified, str(level)],
        )
        outcome = text(result[0])
        if outcome != "ok" or step is None:
            return None  # another instance moved it, it was claimed meanwhile, or nobody new
        updated = await self.get(alert_id)
        if updated is None:
            return None
        await self.publish(updated)
        return Delivery(updated, step)

    # consent -----------------------------------------------------------------------
    async def customer_alerts(self, customer_id: str) -> list[AlertRecord]:
        """The customer's alerts still kept (any state)."""
        ids = sorted(
            text(i)
            for i in await self.redis.smembers(customer_alerts_key(self.prefix, customer_id))
        )
        records = [await self.get(alert_id) for alert_id in ids]
        return [r for r in records if r is not None]

    async def follow_consent(self, consent: ConsentRecord) -> list[AlertRecord]:
        """A customer's consent changed: remember a revocation of arrival alerts (so an
        alert still on its way is not created) and the decisions the notifier acts on
        (:mod:`notifier.purposes`), and withdraw open alerts in every store
        where arrival alerts are no longer allowed. Returns those withdrawn now."""
        cid = consent.customer_id
        decisions: dict[Any, str] = {
            (key.partition("@")[2] or "*"): "1" if d.granted else "0"
            for key, d in consent.consent.items()
            if key.partition("@")[0] == ARRIVAL_ALERTS
        }
        marker = consent_key(self.prefix, cid)
        if "0" in decisions.values():
            decisions.setdefault("*", "0")  # no global decision: no consent (as the stream)
            async with self.redis.pipeline(transaction=True) as pipe:  # one slot
                pipe.delete(marker)
                pipe.hset(marker, mapping=decisions)
                pipe.expire(marker, int(self.retention.total_seconds()))
                await pipe.execute()
        else:
            await self.redis.delete(marker)
        await self.purposes.follow(consent)  # analytics, room_messages
        await self.outcomes.follow_consent(consent)
        return await self.withdraw_customer(
            cid,
            WithdrawReason.CONSENT_REVOKED,
            lambda store: not consent.allows(ARRIVAL_ALERTS, store),
        )

    async def withdraw_customer(
        self,
        customer_id: str,
        reason: WithdrawReason,
        in_store: Callable[[str], bool] = lambda _store: True,
    ) -> list[AlertRecord]:
        """Withdraw the customer's open alerts (in the stores ``in_store`` picks): escalation
        stops, consoles show them withdrawn and redacted. Returns those withdrawn now."""
        withdrawn = []
        for record in await self.customer_alerts(customer_id):
            if record.state in OPEN_STATES and in_store(record.alert.store_id):
                done = await self._withdraw(record, reason)
                if done is not None:
                    withdrawn.append(done)
        return withdrawn

    async def _withdraw(self, record: AlertRecord, reason: WithdrawReason) -> AlertRecord | None:
        alert_id = str(record.alert.alert_id)
        result = await self._transition(
            keys=[self._key(alert_id)],
            args=[
                "withdraw",
                "",
                str(to_ms(self.clock())),
                redacted(record.alert).model_dump_json(by_alias=True),
                reason.value,
            ],
        )
        await self.redis.zrem(self._open, alert_id)
        outcome = text(result[0])
        if outcome != "ok":
            return None  # done or expired meanwhile: history, left as it is
        updated = await self.get(alert_id)
        if updated is not None:
            await self.publish(updated)
        return updated

    async def erase_customer(self, customer_id: str) -> list[AlertRecord]:
        """Delete every alert of a forgotten customer, with its receipts and index entries;
        open ones are withdrawn first so consoles drop them. Returns those withdrawn.

        Safe to run again: the customer's index is deleted last, so a run that died midway
        finds what is left.
        """
        await self.mark_erased(customer_id)
        withdrawn = await self.withdraw_customer(customer_id, WithdrawReason.ERASED)
        await self.delete_customer(customer_id)
        return withdrawn

    async def mark_erased(self, customer_id: str) -> None:
        """From now on no alert of this customer is created (checked in the create script).

        Set before the customer's index is read: an alert created before the mark is in
        the index by then, and one after it is refused.
        """
        await self.redis.set(
            erased_key(self.prefix, customer_id), "1", ex=int(self.retention.total_seconds())
        )

    async def delete_customer(self, customer_id: str) -> None:
        """Delete the customer's alerts, their receipts and index entries, and the index;
        fitting rooms held for them no longer name them; their consent decisions and room
        messages still waiting go."""
        for record in await self.customer_alerts(customer_id):
            alert_id = str(record.alert.alert_id)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._key(alert_id))
                pipe.delete(self._receipts(alert_id))
                pipe.zrem(self._feed_index(record.alert.store_id), alert_id)
                pipe.zrem(self._open, alert_id)
                await pipe.execute()
        # Rooms held for them stay as they are (someone may be in one) but name nobody.
        for room in await self.rooms.forget_customer(customer_id):
            await self.rooms.publish(room, await self.names(room.store_id))
        await self.outcomes.forget(customer_id)
        await self.messaging.forget(customer_id)
        await self.purposes.forget(customer_id)
        await self.redis.delete(
            consent_key(self.prefix, customer_id), customer_alerts_key(self.prefix, customer_id)
        )

    # time ------------------------------------------------------------------------
    async def tick(self) -> list[Delivery]:
        """Escalate and expire unclaimed alerts; returns who must now be notified.

        Safe to run on every instance at once: each move is a compare-and-set on the
        alert's tier, so exactly one instance gets each delivery.
        """
        now = self.clock()
        first_due = await self.routing.shortest_delay()
        ids = [
            text(i)
            for i in await self.redis.zrangebyscore(self._open, "-inf", to_ms(now - first_due))
        ]
        deliveries: list[Delivery] = []
        staff_cache: dict[str, Sequence[Any]] = {}
        routing_cache: dict[str, StoreRouting] = {}
        for alert_id in ids:
            record = await self.get(alert_id)
            if record is None or record.state is not AlertState.DELIVERED:
                await self.redis.zrem(self._open, alert_id)
                continue
            elapsed = now - record.delivered_at
            store = record.alert.store_id
            if store not in routing_cache:
                routing_cache[store] = await self.routing.get(store)
            routing = routing_cache[store]
            if elapsed >= routing.expire_after:
                await self._expire(record, now)
                continue
            if store not in staff_cache:
                staff_cache[store] = await self.directory.staff(store)
            steps = plan(record.alert, staff_cache[store], now, routing.ladder)
            move = escalation(steps, record.tier, record.level, elapsed, routing.ladder)
            if move is not None:
                delivery = await self._escalate(record, move.level, move.step)
                if delivery is not None:
                    deliveries.append(delivery)
        return deliveries

    async def _expire(self, record: AlertRecord, now: datetime) -> None:
        alert_id = str(record.alert.alert_id)
        result = await self._transition(
            keys=[self._key(alert_id)], args=["expire", "", str(to_ms(now))]
        )
        await self.redis.zrem(self._open, alert_id)
        outcome = text(result[0])
        if outcome == "ok":
            if record.alert.kind is AlertKind.ARRIVAL:
                routing = await self.routing.get(record.alert.store_id)
                day = routing.midnight(record.delivered_at).date().isoformat()
                await self.outcomes.unserved(record.alert.store_id, day)
            updated = await self.get(alert_id)
            if updated is not None:
                await self.publish(updated)

    # reports ---------------------------------------------------------------------
    async def summary(self, store_id: str) -> Summary:
        """Today in one store, from midnight in its time zone (its routing's ``timezone``):
        arrivals, unclaimed, median time to claim."""
        routing = await self.routing.get(store_id)
        midnight = routing.midnight(self.clock())
        records = await self.list_store(store_id, midnight, limit=10_000)
        waits = [
            (r.claimed_at - r.delivered_at).total_seconds()
            for r in records
            if r.claimed_at is not None
        ]
        return Summary(
            arrivals_today=sum(1 for r in records if r.alert.kind is AlertKind.ARRIVAL),
            alerts_today=len(records),
            unclaimed=sum(1 for r in records if r.state is AlertState.DELIVERED),
            claimed_today=len(waits),
            median_time_to_claim_s=statistics.median(waits) if waits else None,
            timezone=routing.timezone,
            since=midnight,
        )
