"""Customers and their consent, in Redis.

Keys (``p`` is the namespace prefix, e.g. ``proxima:``):

- ``p customers`` — set of enrolled customer ids
- ``p customer:{id}`` — the profile, JSON (identity key included: only the stream reads it)
- ``p consent:{id}`` — hash ``purpose`` or ``purpose@store`` → JSON ``{granted, at}``
- ``p registry:version`` — bumped on every change, so workers rebuild their EID index
- ``p audit`` — stream of consent changes and erasures
"""

from __future__ import annotations

import json
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
        }
        return {k: every[k] for k in self.visible_fields if every.get(k) not in (None, {}, [])}


def new_identity_key() -> str:
    return secrets.token_bytes(16).hex()


class Registry:
    """The customer and consent repository (async redis-py)."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.r = redis
        self.p = prefix

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
            pipe.incr(self._k("registry", "version"))
            await pipe.execute()

    async def get(self, customer_id: str) -> CustomerProfile | None:
        raw = await self.r.get(self._k("customer", customer_id))
        return CustomerProfile.model_validate_json(raw) if raw else None

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
            pipe.incr(self._k("registry", "version"))
            await pipe.execute()

    async def has_consent(self, customer_id: str, purpose: Purpose, store: str) -> bool:
        """Store-specific consent wins over the global one; no record means no."""
        values = await self.r.hmget(
            self._k("consent", customer_id), [f"{purpose.value}@{store}", purpose.value]
        )
        for raw in values:
            if raw:
                return bool(json.loads(raw)["granted"])
        return False

    async def forget(self, customer_id: str) -> bool:
        """Erase the customer: profile, consent, visits and dedupe keys; audit the erasure."""
        now = datetime.now(UTC).isoformat()
        traces = [
            key
            for pattern in (
                self._k("visit", customer_id, "*"),
                self._k("alerted", customer_id, "*"),
            )
            async for key in self.r.scan_iter(pattern, count=1000)
        ]
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.srem(self._k("customers"), customer_id)
            pipe.delete(self._k("customer", customer_id), self._k("consent", customer_id), *traces)
            pipe.xadd(self._k("audit"), {"customer_id": customer_id, "action": "forget", "at": now})
            pipe.incr(self._k("registry", "version"))
            removed, *_ = await pipe.execute()
        return bool(removed)
