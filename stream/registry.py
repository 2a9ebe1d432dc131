"""Customers and their consent, in Redis.

Keys (``p`` is the namespace prefix, e.g. ``proxima:``):

- ``p customers`` — set of enrolled customer ids
- ``p customer:{id}`` — the profile, JSON (identity key included: only the stream reads it)
- ``p consent:{id}`` — hash ``purpose`` or ``purpose@store`` → JSON ``{granted, at}``
- ``p registry:version`` — bumped on every change, so workers rebuild their EID index
- ``p device-owner`` — hash app device id (hex) → customer id (app-reported events)
- ``p audit`` — stream of consent changes, device registrations and erasures
- ``p consent-outbox`` — stream of customer ids whose consent changed, written in the
  change's own transaction and drained to ``proxima.consent.v1`` (stream.consent_log)
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field, field_validator

from stream.exceptions import RegistryError


class Purpose(StrEnum):
    ARRIVAL_ALERTS = "arrival_alerts"
    PERSONALIZATION = "personalization"
    ANALYTICS = "analytics"


VISIBLE_FIELDS = frozenset(
    {"name", "initials", "tier", "sizes", "wishlist", "notes", "appointment", "photo_url"}
)


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
            "photo_url": self.photo_url,
        }
        return {k: every[k] for k in self.visible_fields if every.get(k) not in (None, {}, [])}


def as_text(value: bytes | str) -> str:
    """A Redis reply as str, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def new_identity_key() -> str:
    return secrets.token_bytes(16).hex()


class Registry:
    """The customer and consent repository (async redis-py)."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.r = redis
        self.p = prefix
        self._parsed: dict[bytes, CustomerProfile] = {}

    def _k(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    async def enroll(
        self, profile: CustomerProfile, consent: list[Purpose], store: str | None = None
    ) -> None:
        now = datetime.now(UTC)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.sadd(self._k("customers"), profile.customer_id)
            pipe.set(self._k("customer", profile.customer_id), profile.model_dump_json())
            for purpose in consent:
                field = f"{purpose.value}@{store}" if store else purpose.value
                pipe.hset(
                    self._k("consent", profile.customer_id),
                    field,
                    json.dumps({"granted": True, "at": now.isoformat()}),
                )
                pipe.xadd(
                    self._k("audit"),
                    {
                        "customer_id": profile.customer_id,
                        "action": "grant",
                        "purpose": field,
                        "at": now.isoformat(),
                    },
                )
            if consent:
                pipe.xadd(self.outbox_key, {"customer_id": profile.customer_id})
            pipe.incr(self._k("registry", "version"))
            await pipe.execute()

    @property
    def outbox_key(self) -> str:
        """The consent outbox: ids of customers whose consent changed, not yet on Kafka."""
        return self._k("consent-outbox")

    async def get(self, customer_id: str) -> CustomerProfile | None:
        return (await self.get_many([customer_id]))[customer_id]

    async def get_many(self, customer_ids: list[str]) -> dict[str, CustomerProfile | None]:
        """Profiles of several customers in one round trip (None: not enrolled)."""
        if not customer_ids:
            return {}
        # A pipeline rather than MGET: the keys may live on different Redis Cluster slots.
        async with self.r.pipeline(transaction=False) as pipe:
            for cid in customer_ids:
                pipe.get(self._k("customer", cid))
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
            profile = self._parsed[raw] = CustomerProfile.model_validate_json(raw)
            if len(self._parsed) > 10_000:
                del self._parsed[next(iter(self._parsed))]
        return profile

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

    async def all_profiles(self) -> list[CustomerProfile]:
        ids = sorted(
            m.decode() if isinstance(m, bytes) else str(m)
            for m in await self.r.smembers(self._k("customers"))
        )
        if not ids:
            return []
        raws = await self.r.mget([self._k("customer", i) for i in ids])
        return [CustomerProfile.model_validate_json(raw) for raw in raws if raw]

    async def version(self) -> int:
        raw = await self.r.get(self._k("registry", "version"))
        return int(raw) if raw else 0

    async def set_consent(
        self, customer_id: str, purpose: Purpose, granted: bool, store: str | None = None
    ) -> None:
        if not await self.r.sismember(self._k("customers"), customer_id):
            raise RegistryError(f"customer {customer_id!r} is not enrolled")
        now = datetime.now(UTC).isoformat()
        field = f"{purpose.value}@{store}" if store else purpose.value
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._k("consent", customer_id), field, json.dumps({"granted": granted, "at": now})
            )
            pipe.xadd(
                self._k("audit"),
                {
                    "customer_id": customer_id,
                    "action": "grant" if granted else "revoke",
                    "purpose": field,
                    "at": now,
                },
            )
            pipe.xadd(self.outbox_key, {"customer_id": customer_id})
            pipe.incr(self._k("registry", "version"))
            await pipe.execute()

    async def has_consent(self, customer_id: str, purpose: Purpose, store: str) -> bool:
        """Store-specific consent wins over the global one; no record means no."""
        values = await self.r.hmget(
            self.consent_key(customer_id), self.consent_fields(purpose, store)
        )
        return self.consent_from(values)

    def consent_key(self, customer_id: str) -> str:
        return self._k("consent", customer_id)

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
        """Map an app device id (lowercase hex, as in event subjects) to the customer."""
        if not re.fullmatch(r"(?:[0-9a-f]{2}){1,64}", device_id):
            raise RegistryError(
                f"device id {device_id!r}: must be lowercase hex, an even number of digits (2..128)"
            )
        if not await self.r.sismember(self._k("customers"), customer_id):
            raise RegistryError(f"customer {customer_id!r} is not enrolled")
        owner = await self.r.hget(self._k("device-owner"), device_id)
        if owner is not None and as_text(owner) != customer_id:
            raise RegistryError(f"device {device_id} already belongs to another customer")
        now = datetime.now(UTC).isoformat()
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(self._k("device-owner"), device_id, customer_id)
            pipe.sadd(self._k("customer-devices", customer_id), device_id)
            pipe.xadd(
                self._k("audit"),
                {"customer_id": customer_id, "action": "device", "device": device_id, "at": now},
            )
            await pipe.execute()

    async def customer_for_device(self, device_id: str) -> str | None:
        raw = await self.r.hget(self._k("device-owner"), device_id)
        return None if raw is None else as_text(raw)

    async def devices(self, customer_id: str) -> list[str]:
        return sorted(
            m.decode() if isinstance(m, bytes) else str(m)
            for m in await self.r.smembers(self._k("customer-devices", customer_id))
        )

    async def consent_records(self, customer_id: str) -> dict[str, dict[str, object]]:
        """Every consent decision: ``purpose`` or ``purpose@store`` → ``{granted, at}``."""
        raw = await self.r.hgetall(self._k("consent", customer_id))
        return {
            (k.decode() if isinstance(k, bytes) else str(k)): json.loads(v) for k, v in raw.items()
        }

    async def forget(self, customer_id: str) -> bool:
        """Erase the customer: profile, consent, visits and dedupe keys; audit the erasure."""
        now = datetime.now(UTC).isoformat()
        traces = [
            key
            for pattern in (
                self._k("visit", customer_id, "*"),
                self._k("alerted", customer_id, "*"),
                self._k("cooldown", customer_id, "*"),
            )
            async for key in self.r.scan_iter(pattern, count=1000)
        ]
        devices = await self.devices(customer_id)
        departing = [k async for k in self.r.scan_iter(self._k("departing", "*"), count=1000)]
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.srem(self._k("customers"), customer_id)
            pipe.delete(
                self._k("customer", customer_id),
                self._k("consent", customer_id),
                self._k("customer-devices", customer_id),
                *traces,
            )
            if devices:
                pipe.hdel(self._k("device-owner"), *devices)
                # the gateways' copy of the devices' public keys (edge.devices)
                pipe.delete(*(self._k(f"devices:{d}") for d in devices))
            for key in departing:
                pipe.zrem(key, customer_id)
            pipe.xadd(self._k("audit"), {"customer_id": customer_id, "action": "forget", "at": now})
            pipe.xadd(self.outbox_key, {"customer_id": customer_id})
            pipe.incr(self._k("registry", "version"))
            removed, *_ = await pipe.execute()
        return bool(removed)
