"""Customers and their consent, in Redis (a single server or a Redis Cluster).

The registry is split into :data:`SHARDS` shards by customer id. Every key of a shard
carries the shard's hash tag (``{r05}``), so a shard lives in one Redis Cluster hash slot
and each change stays one MULTI/EXEC transaction on one node, as on a single server: the
profile, the consent, its audit entry, its consent-outbox entry and the version bump of
one customer are written together or not at all. Keys (``p`` is the namespace prefix,
e.g. ``proxima:``, ``t`` the customer's shard tag, see :class:`RegistryKeys`):

- ``p{t}customers`` — set of the shard's enrolled customer ids
- ``p{t}customer:{id}`` — the profile, JSON; its identity key sealed with the stream's key
  when ``PROXIMA_STREAM_IDENTITY_SEAL_KEYS`` is set (:mod:`stream.sealing`), else plain
- ``p{t}consent:{id}`` — hash ``purpose`` or ``purpose@store`` → JSON ``{granted, at}``
- ``p{t}customer-devices:{id}`` — set of the customer's app device ids
- ``p{t}registry:version`` — bumped on every change of the shard; :meth:`Registry.version`
  is the sum over the shards, so workers rebuild their EID index
- ``p{t}audit`` — stream of the shard's consent changes, device registrations and erasures
- ``p{t}consent-outbox`` — stream of customer ids whose consent changed, written in the
  change's own transaction and drained to ``proxima.consent.v1`` (stream.consent_log)
- ``p device-owner`` — hash app device id (hex) → customer id (app-reported events); one
  key of its own, written after the customer's devices set (see :meth:`register_device`)

Reads over many customers (:meth:`Registry.get_many`, :meth:`Registry.all_profiles`) are
pipelines of single-key commands, never MGET, which Redis Cluster refuses across slots.
"""

from __future__ import annotations

import json
import re
import secrets
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stream.exceptions import RegistryError
from stream.sealing import SEALED_PREFIX, IdentitySealer, SealError, is_sealed
from transport.redis import RedisClient, as_text, replace_if_same

# One hash tag per 1,024-slot range of Redis Cluster's 16,384 slots (slots 500, 1525, ...,
# 16319), so the shards spread over the primaries of any cluster. Changing the count or a
# tag moves customers between keys: a data migration.
SHARD_TAGS = (
    "r00d0", "r01e0", "r02f0", "r03g0", "r04p0", "r05", "r06b0", "r07c0",
    "r08l0", "r09m0", "r10o0", "r11n0", "r12b0", "r13c0", "r14k0", "r15j0",
)  # fmt: skip
SHARDS = len(SHARD_TAGS)


def shard_of(customer_id: str) -> int:
    """The registry shard that holds a customer's keys (stable: CRC-32 of the id)."""
    return zlib.crc32(customer_id.encode()) % SHARDS


@dataclass(frozen=True, slots=True)
class RegistryKeys:
    """Every registry key name; the one place that knows the layout (see the module doc)."""

    prefix: str

    def tag(self, shard: int) -> str:
        return f"{self.prefix}{{{SHARD_TAGS[shard]}}}"

    def customer(self, customer_id: str) -> str:
        return f"{self.tag(shard_of(customer_id))}customer:{customer_id}"

    def consent(self, customer_id: str) -> str:
        return f"{self.tag(shard_of(customer_id))}consent:{customer_id}"

    def devices(self, customer_id: str) -> str:
        return f"{self.tag(shard_of(customer_id))}customer-devices:{customer_id}"

    def bookings(self, customer_id: str) -> str:
        """The customer's reservations and appointments (stream.bookings)."""
        return f"{self.tag(shard_of(customer_id))}bookings:{customer_id}"

    def bookings_by_store(self, store_id: str) -> str:
        return f"{self.prefix}bookings-by-store:{store_id}"

    def customers(self, shard: int) -> str:
        return f"{self.tag(shard)}customers"

    def version(self, shard: int) -> str:
        return f"{self.tag(shard)}registry:version"

    def audit(self, shard: int) -> str:
        return f"{self.tag(shard)}audit"

    def outbox(self, shard: int) -> str:
        return f"{self.tag(shard)}consent-outbox"

    @property
    def device_owner(self) -> str:
        return f"{self.prefix}device-owner"

    @property
    def outbox_lock(self) -> str:
        return f"{self.prefix}consent-outbox:lock"

    def shards(self) -> range:
        return range(SHARDS)


class Purpose(StrEnum):
    ARRIVAL_ALERTS = "arrival_alerts"
    PERSONALIZATION = "personalization"
    ANALYTICS = "analytics"
    ROOM_MESSAGES = "room_messages"  # tell me when my fitting room is ready (notifier)


VISIBLE_FIELDS = frozenset(
    {
        "name", "initials", "tier", "sizes", "wishlist", "notes", "appointment", "reservation",
        "photo_url",
    }
)  # fmt: skip


class Appointment(BaseModel):
    """A booked appointment: the stream alerts when the customer arrives within its window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime
    store_id: str | None = None
    duration_min: Annotated[int, Field(gt=0, le=24 * 60)] = 60
    note: str | None = None

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("appointment time must carry a timezone")
        return value.astimezone(UTC)


class ReservationView(BaseModel):
    """The items held for the customer (labels: ``green linen dress 38``) and when: what an
    alert may show of a reservation (stream.bookings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[str]
    start: datetime
    end: datetime


class CustomerProfile(BaseModel):
    """An enrolled customer. Only ``visible_fields`` ever reach an associate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    identity_key: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    rotation_exponent: Annotated[int, Field(ge=0, le=15)]
    name: str | None = None
    tier: str | None = None
    sizes: dict[str, str] = Field(default_factory=dict)
    wishlist: list[str] = Field(default_factory=list)
    notes: str | None = None
    appointment: Appointment | None = None
    reservation: ReservationView | None = Field(
        default=None, description="set for an alert from the customer's bookings (stream.bookings)"
    )
    photo_url: str | None = None
    assigned_associate: str | None = None
    stores: list[str] = Field(default_factory=list, description="empty = every store")
    visible_fields: list[str] = Field(default_factory=list)
    enrolled_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("visible_fields")
    @classmethod
    def _known_fields(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - VISIBLE_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown visible field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(VISIBLE_FIELDS))}"
            )
        return value

    def visible(self) -> dict[str, object]:
        """The fields the customer chose to show, and nothing else."""
        initials = "".join(w[0] for w in (self.name or "").split() if w).upper() or None
        every: dict[str, object] = {
            "name": self.name,
            "initials": initials,
            "tier": self.tier,
            "sizes": dict(self.sizes),
            "wishlist": list(self.wishlist),
            "notes": self.notes,
            "appointment": (
                self.appointment.model_dump(mode="json", exclude_none=True)
                if self.appointment
                else None
            ),
            "reservation": (self.reservation.model_dump(mode="json") if self.reservation else None),
            "photo_url": self.photo_url,
        }
        return {k: every[k] for k in self.visible_fields if every.get(k) not in (None, {}, [])}


def new_identity_key() -> str:
    return secrets.token_bytes(16).hex()


_SEALED_MARK = f'"{SEALED_PREFIX}'.encode()
"""How a sealed identity key starts in a profile's JSON (a JSON string value)."""


_IDENTITY_KEY = re.compile(r"[0-9a-f]{32}")


class _SealedProfile(CustomerProfile):
    """A profile as stored, its identity key possibly sealed (checked once opened)."""

    identity_key: str


def sealer_from_settings() -> IdentitySealer | None:
    """The identity-key sealer the stream's settings name (None: keys stored in plain)."""
    from stream.settings import StreamSettings

    settings = StreamSettings()
    return IdentitySealer.from_settings(
        settings.identity_seal_keys.get_secret_value(), settings.identity_seal_keys_file
    )


@dataclass(frozen=True, slots=True)
class SealReport:
    """What :meth:`Registry.seal_identity_keys` did (or, dry, would do)."""

    customers: int
    sealed: int  # plain before
    resealed: int  # sealed with an older key before
    current: int  # already sealed with the current key
    changed: int  # changed under us every try: run again


class Registry:
    """The customer and consent repository (async redis-py, single server or cluster).

    ``sealer``: how identity keys are sealed at rest; by default the one
    ``PROXIMA_STREAM_IDENTITY_SEAL_KEYS`` names, so every process that enrolls or
    resolves customers agrees (``None``: plain text).
    """

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        *,
        sealer: IdentitySealer | Literal["settings"] | None = "settings",
    ) -> None:
        self.r = redis
        self.p = prefix
        self.keys = RegistryKeys(prefix)
        self.sealer = sealer_from_settings() if sealer == "settings" else sealer
        self._parsed: dict[bytes, CustomerProfile] = {}

    def _stored(self, profile: CustomerProfile) -> str:
        """The profile as kept in Redis: its identity key sealed when a sealer is set."""
        if self.sealer is None:
            return profile.model_dump_json()
        data = profile.model_dump(mode="json")
        data["identity_key"] = self.sealer.seal(profile.identity_key, profile.customer_id)
        return json.dumps(data, separators=(",", ":"))

    def _open_profile(self, stored: _SealedProfile) -> CustomerProfile:
        if not is_sealed(stored.identity_key):
            return CustomerProfile.model_validate(stored.model_dump())
        if self.sealer is None:
            raise SealError(
                stored.customer_id, "sealed, and PROXIMA_STREAM_IDENTITY_SEAL_KEYS is not set here"
            )
        key = self.sealer.open(stored.identity_key, stored.customer_id)
        if not _IDENTITY_KEY.fullmatch(key):
            raise SealError(stored.customer_id, "sealed value is not a 16-byte identity key")
        # Every other field was validated by _SealedProfile, which differs only in this one.
        fields = {name: getattr(stored, name) for name in CustomerProfile.model_fields}
        return CustomerProfile.model_construct(
            stored.model_fields_set, **{**fields, "identity_key": key}
        )

    def _opened(self, data: dict[str, Any]) -> dict[str, Any]:
        stored = data.get("identity_key")
        if not (isinstance(stored, str) and is_sealed(stored)):
            return data  # plain: written before sealing was on (seal-keys seals it)
        cid = str(data.get("customer_id", ""))
        if self.sealer is None:
            raise SealError(cid, "sealed, and PROXIMA_STREAM_IDENTITY_SEAL_KEYS is not set here")
        return {**data, "identity_key": self.sealer.open(stored, cid)}

    async def enroll(
        self, profile: CustomerProfile, consent: list[Purpose], store: str | None = None
    ) -> None:
        now = datetime.now(UTC)
        cid = profile.customer_id
        shard = shard_of(cid)
        async with self.r.pipeline(transaction=True) as pipe:  # one shard: one slot
            pipe.sadd(self.keys.customers(shard), cid)
            pipe.set(self.keys.customer(cid), self._stored(profile))
            for purpose in consent:
                field = f"{purpose.value}@{store}" if store else purpose.value
                pipe.hset(
                    self.keys.consent(cid),
                    field,
                    json.dumps({"granted": True, "at": now.isoformat()}),
                )
                pipe.xadd(
                    self.keys.audit(shard),
                    {
                        "customer_id": cid,
                        "action": "grant",
                        "purpose": field,
                        "at": now.isoformat(),
                    },
                )
            if consent:
                pipe.xadd(self.keys.outbox(shard), {"customer_id": cid})
            pipe.incr(self.keys.version(shard))
            await pipe.execute()

    async def outbox_len(self) -> int:
        """Entries in the consent outbox (all shards): changes not yet on Kafka."""
        async with self.r.pipeline(transaction=False) as pipe:
            for shard in self.keys.shards():
                pipe.xlen(self.keys.outbox(shard))
            return sum(await pipe.execute())

    async def get(self, customer_id: str) -> CustomerProfile | None:
        return (await self.get_many([customer_id]))[customer_id]

    async def get_many(self, customer_ids: list[str]) -> dict[str, CustomerProfile | None]:
        """Profiles of several customers in one round trip (None: not enrolled)."""
        return await self._profiles(customer_ids)

    async def _profiles(self, customer_ids: list[str]) -> dict[str, CustomerProfile | None]:
        if not customer_ids:
            return {}
        # A pipeline rather than MGET: the keys live on different Redis Cluster slots.
        async with self.r.pipeline(transaction=False) as pipe:
            for cid in customer_ids:
                pipe.get(self.keys.customer(cid))
            raws = await pipe.execute()
        return {
            cid: self._parse(raw) if raw else None
            for cid, raw in zip(customer_ids, raws, strict=True)
        }

    def _parse(self, raw: bytes) -> CustomerProfile:
        # The worker reads the profiles of a batch's alert candidates every batch; the same
        # bytes are the same (frozen) profile, so validate each version once.
        profile = self._parsed.get(raw)
        if profile is None:
            if _SEALED_MARK in (raw if isinstance(raw, bytes) else str(raw).encode()):
                profile = self._open_profile(_SealedProfile.model_validate_json(raw))
            else:
                profile = CustomerProfile.model_validate_json(raw)
            self._parsed[raw] = profile
            if len(self._parsed) > 10_000:
                del self._parsed[next(iter(self._parsed))]
        return profile

    async def seal_identity_keys(self, *, dry_run: bool = False, tries: int = 3) -> SealReport:
        """Seal every identity key stored plain or with an older seal key, with the current one.

        Each profile is replaced only if it is still the bytes that were read (a script on
        its one key), so an enrollment racing this is never overwritten; a profile that
        changed is read again, up to ``tries`` times. The identity keys themselves do not
        change, so the registry version is not bumped and workers keep their EID index.
        """
        if self.sealer is None:
            raise RegistryError(
                "no seal key: set PROXIMA_STREAM_IDENTITY_SEAL_KEYS (64 hex digits, e.g. "
                "`openssl rand -hex 32`) or PROXIMA_STREAM_IDENTITY_SEAL_KEYS_FILE"
            )
        ids = await self.customer_ids()
        counts = {"sealed": 0, "resealed": 0, "current": 0, "changed": 0}
        for cid in ids:
            key = self.keys.customer(cid)
            for _ in range(tries):
                raw = await self.r.get(key)
                if raw is None:
                    break  # forgotten meanwhile
                data = json.loads(raw)
                stored = str(data.get("identity_key", ""))
                if self.sealer.is_current(stored):
                    counts["current"] += 1
                    break
                kind = "resealed" if is_sealed(stored) else "sealed"
                if dry_run:
                    counts[kind] += 1
                    break
                plain = self._opened(data)["identity_key"]
                sealed = {**data, "identity_key": self.sealer.seal(str(plain), cid)}
                new = json.dumps(sealed, separators=(",", ":"))
                if await replace_if_same(self.r, key, raw, new):
                    counts[kind] += 1
                    break
            else:
                counts["changed"] += 1
        return SealReport(customers=len(ids), **counts)

    async def consent_many(
        self, pairs: list[tuple[str, str]], purpose: Purpose
    ) -> dict[tuple[str, str], bool]:
        """:meth:`has_consent` for several (customer, store) pairs in one round trip."""
        if not pairs:
            return {}
        async with self.r.pipeline(transaction=False) as pipe:
            for cid, store in pairs:
                pipe.hmget(self.consent_key(cid), self.consent_fields(purpose, store))
            got = await pipe.execute()
        return {pair: self.consent_from(values) for pair, values in zip(pairs, got, strict=True)}

    async def customer_ids(self) -> list[str]:
        """Every enrolled customer id, sorted."""
        async with self.r.pipeline(transaction=False) as pipe:
            for shard in self.keys.shards():
                pipe.smembers(self.keys.customers(shard))
            members: list[set[bytes]] = await pipe.execute()
        return sorted(as_text(m) for ids in members for m in ids)

    async def all_profiles(self, chunk: int = 1000) -> list[CustomerProfile]:
        ids = await self.customer_ids()
        profiles: list[CustomerProfile] = []
        for i in range(0, len(ids), chunk):
            got = await self._profiles(ids[i : i + chunk])
            profiles.extend(p for p in got.values() if p is not None)
        return profiles

    async def version(self) -> int:
        """Goes up on every change (the sum of the shards' counters)."""
        async with self.r.pipeline(transaction=False) as pipe:
            for shard in self.keys.shards():
                pipe.get(self.keys.version(shard))
            return sum(int(raw) for raw in await pipe.execute() if raw)

    async def _enrolled(self, customer_id: str) -> bool:
        return bool(await self.r.sismember(self.keys.customers(shard_of(customer_id)), customer_id))

    async def set_consent(
        self, customer_id: str, purpose: Purpose, granted: bool, store: str | None = None
    ) -> None:
        if not await self._enrolled(customer_id):
            raise RegistryError(f"customer {customer_id!r} is not enrolled")
        now = datetime.now(UTC).isoformat()
        field = f"{purpose.value}@{store}" if store else purpose.value
        shard = shard_of(customer_id)
        async with self.r.pipeline(transaction=True) as pipe:  # one shard: one slot
            pipe.hset(
                self.keys.consent(customer_id), field, json.dumps({"granted": granted, "at": now})
            )
            pipe.xadd(
                self.keys.audit(shard),
                {
                    "customer_id": customer_id,
                    "action": "grant" if granted else "revoke",
                    "purpose": field,
                    "at": now,
                },
            )
            pipe.xadd(self.keys.outbox(shard), {"customer_id": customer_id})
            pipe.incr(self.keys.version(shard))
            await pipe.execute()

    async def has_consent(self, customer_id: str, purpose: Purpose, store: str) -> bool:
        """Store-specific consent wins over the global one; no record means no."""
        values = await self.r.hmget(
            self.consent_key(customer_id), self.consent_fields(purpose, store)
        )
        return self.consent_from(values)

    def consent_key(self, customer_id: str) -> str:
        return self.keys.consent(customer_id)

    @staticmethod
    def consent_fields(purpose: Purpose, store: str) -> list[str]:
        """The hash fields that decide ``purpose`` at ``store``, the deciding one first."""
        return [f"{purpose.value}@{store}", purpose.value]

    @staticmethod
    def consent_from(values: list[bytes | str | None]) -> bool:
        """The decision from :meth:`consent_fields`' values (as HMGET returns them)."""
        for raw in values:
            if raw:
                return bool(json.loads(raw)["granted"])
        return False

    async def register_device(self, customer_id: str, device_id: str) -> None:
        """Map an app device id (lowercase hex, as in event subjects) to the customer.

        The customer's devices set (with the audit entry) is written first and the device
        map after it: they are in different slots on a cluster, and a crash in between
        leaves a listed device that resolves to nobody yet (registering again completes
        it), never a mapping that :meth:`forget` would not find.
        """
        if not re.fullmatch(r"(?:[0-9a-f]{2}){1,64}", device_id):
            raise RegistryError(
                f"device id {device_id!r}: must be lowercase hex, an even number of digits (2..128)"
            )
        if not await self._enrolled(customer_id):
            raise RegistryError(f"customer {customer_id!r} is not enrolled")
        owner = await self.r.hget(self.keys.device_owner, device_id)
        if owner is not None and as_text(owner) != customer_id:
            raise RegistryError(f"device {device_id} already belongs to another customer")
        now = datetime.now(UTC).isoformat()
        async with self.r.pipeline(transaction=True) as pipe:  # one shard: one slot
            pipe.sadd(self.keys.devices(customer_id), device_id)
            pipe.xadd(
                self.keys.audit(shard_of(customer_id)),
                {"customer_id": customer_id, "action": "device", "device": device_id, "at": now},
            )
            await pipe.execute()
        await self.r.hset(self.keys.device_owner, device_id, customer_id)

    async def customer_for_device(self, device_id: str) -> str | None:
        raw = await self.r.hget(self.keys.device_owner, device_id)
        return None if raw is None else as_text(raw)

    async def devices(self, customer_id: str) -> list[str]:
        return sorted(as_text(m) for m in await self.r.smembers(self.keys.devices(customer_id)))

    async def consent_records(self, customer_id: str) -> dict[str, dict[str, object]]:
        """Every consent decision: ``purpose`` or ``purpose@store`` → ``{granted, at}``."""
        raw = await self.r.hgetall(self.keys.consent(customer_id))
        return {as_text(k): json.loads(v) for k, v in raw.items()}

    async def audit(self, customer_id: str | None = None) -> list[dict[str, str]]:
        """Audit entries (of one customer, or of all) oldest first, by their stream ids."""
        shards: Iterable[int] = (
            [shard_of(customer_id)] if customer_id is not None else self.keys.shards()
        )
        entries: list[tuple[str, dict[str, str]]] = []
        for shard in shards:
            for entry_id, fields in await self.r.xrange(self.keys.audit(shard)) or []:
                entry = {as_text(k): as_text(v) for k, v in (fields or {}).items()}
                if entry_id and (customer_id is None or entry.get("customer_id") == customer_id):
                    entries.append((as_text(entry_id), entry))
        entries.sort(key=lambda e: tuple(int(n) for n in e[0].split("-")))
        return [entry for _, entry in entries]

    async def forget(self, customer_id: str) -> bool:
        """Erase the customer: profile, consent, devices, bookings, visits and dedupe keys;
        audit it.

        In three steps, each safe to die after, so running forget again finishes it:

        1. the customer's devices: each ``device-owner`` entry naming the customer (found by
           scanning that hash, so also entries whose devices set is gone, as an older
           forget that died after its transaction left them) loses the gateways' copy of
           its public key (``{prefix}devices:{id}``) first and then itself, the latter only
           if it still names the customer (a script on that one key: a device registered
           to someone else since is theirs);
        2. one transaction on the customer's shard: the customer's own keys, the audit
           entry, the tombstone's outbox entry and the version bump;
        3. what lives in other slots and is found by scanning: visit state, cooldowns,
           dedupe keys, departures, the stores' booking indexes.

        True if there was anything of the customer to erase.
        """
        now = datetime.now(UTC).isoformat()
        shard = shard_of(customer_id)
        owned = sorted(
            {
                as_text(device)
                async for device, owner in self.r.hscan_iter(self.keys.device_owner, count=10000)
                if as_text(owner) == customer_id
            }
        )
        if owned:
            # Single-key commands in a plain pipeline: each goes to its own slot's node.
            async with self.r.pipeline(transaction=False) as pipe:
                for d in owned:  # the gateways' copy of the device's public key (edge.devices)
                    pipe.delete(f"{self.p}devices:{d}")
                await pipe.execute()
            # Only now that the keys are gone: the entry is what finds them again.
            await self.r.eval(_RELEASE_DEVICES, 1, self.keys.device_owner, customer_id, *owned)
        async with self.r.pipeline(transaction=True) as pipe:  # one shard: one slot
            pipe.srem(self.keys.customers(shard), customer_id)
            pipe.delete(
                self.keys.customer(customer_id),
                self.keys.consent(customer_id),
                self.keys.devices(customer_id),
                self.keys.bookings(customer_id),
            )
            pipe.xadd(
                self.keys.audit(shard),
                {"customer_id": customer_id, "action": "forget", "at": now},
            )
            pipe.xadd(self.keys.outbox(shard), {"customer_id": customer_id})
            pipe.incr(self.keys.version(shard))
            removed, *_ = await pipe.execute()
        traces = [
            key
            for pattern in (
                f"{self.p}visit:{customer_id}:*",
                f"{self.p}alerted:{customer_id}:*",
                f"{self.p}cooldown:{customer_id}:*",
            )
            async for key in self.r.scan_iter(pattern, count=10000)
        ]
        departing = [k async for k in self.r.scan_iter(f"{self.p}departing:*", count=10000)]
        # Each store's index of bookings names the customer in its members ("id/booking").
        booked: dict[Any, list[Any]] = {}
        async for key in self.r.scan_iter(self.keys.bookings_by_store("*"), count=10000):
            async for member, _ in self.r.zscan_iter(key, match=f"{customer_id}/*"):
                if as_text(member).partition("/")[0] == customer_id:  # the match is a glob
                    booked.setdefault(key, []).append(member)
        async with self.r.pipeline(transaction=False) as pipe:
            for key in traces:
                pipe.delete(key)
            for key in departing:
                pipe.zrem(key, customer_id)
            for key, members in booked.items():
                pipe.zrem(key, *members)
            swept = await pipe.execute()
        return bool(removed or owned or any(swept))


_RELEASE_DEVICES = """
for i = 2, #ARGV do
  if redis.call('hget', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('hdel', KEYS[1], ARGV[i]) end
end
"""
"""Remove the ``device-owner`` entries ARGV[2..] that still name customer ARGV[1]."""
