"""Gateway signing keys in Redis, and the bridge's bounded cache of them.

Keys (``p`` is the namespace prefix): ``p gateway-keys`` — hash ``kid`` → JSON
``{store_id, gateway_id, secret, created_at, revoked}`` (``secret`` in hex). The secret is
printed once when the key is added (``proxima gateways add``) and goes into the gateway's
config as ``PROXIMA_EDGE_SIGNING_KID`` / ``PROXIMA_EDGE_SIGNING_KEY``; ``list`` never shows it.

The bridge verifies with :class:`KeyCache`: a key is fetched from Redis the first time its
kid is seen and re-read after ``ttl_s`` (so a revocation takes effect within that time); an
unknown kid is remembered as unknown for ``negative_ttl_s``, so a flood of forged kids costs
one Redis read per kid per that time, and the cache holds at most ``max_entries`` kids.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from contracts.models import Identifier
from contracts.signing import KID_PROPERTY, KID_RE, GatewayKey, Verified, verify_message
from stream.exceptions import KeyringError
from transport.redis import RedisClient

SECRET_BYTES = 32
REPLAY_LABEL = "replay"
"""The label of the keys ``proxima replay`` and ``proxima up`` provision for replayed
gateways: their events carry the trace's recorded time (GatewayKey.trace_time)."""


class KeyRecord(BaseModel):
    """One gateway key as stored in Redis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kid: str
    store_id: Identifier
    gateway_id: Identifier
    secret: str = Field(repr=False, pattern=r"^[0-9a-f]{32,128}$")
    created_at: datetime
    revoked: bool = False
    revoked_at: datetime | None = None
    label: str | None = Field(default=None, description="e.g. 'replay' for keys tools provision")

    def gateway_key(self) -> GatewayKey:
        return GatewayKey(
            kid=self.kid,
            store_id=self.store_id,
            gateway_id=self.gateway_id,
            secret=bytes.fromhex(self.secret),
            revoked=self.revoked,
            trace_time=self.label == REPLAY_LABEL,
        )

    def env_lines(self) -> str:
        """What the gateway's environment needs to sign its batches."""
        return f"PROXIMA_EDGE_SIGNING_KID={self.kid}\nPROXIMA_EDGE_SIGNING_KEY={self.secret}"


class Keyring:
    """Add, list, revoke and read gateway keys (async redis-py)."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self.r = redis
        self.key = f"{prefix}gateway-keys"

    async def add(
        self,
        store_id: str,
        gateway_id: str,
        *,
        label: str | None = None,
        now: datetime | None = None,
    ) -> KeyRecord:
        """A new key for one gateway; the gateway's older keys stay valid until revoked."""
        record = KeyRecord(
            kid=f"gk-{secrets.token_hex(8)}",
            store_id=store_id,
            gateway_id=gateway_id,
            secret=secrets.token_bytes(SECRET_BYTES).hex(),
            created_at=now or datetime.now(UTC),
            label=label,
        )
        if not await self.r.hsetnx(self.key, record.kid, record.model_dump_json()):
            raise KeyringError(f"key id {record.kid} already exists (try again)")
        return record

    async def labelled(self, store_id: str, gateway_id: str, label: str) -> KeyRecord:
        """The gateway's active key with this label, created on first use (tools reuse it)."""
        for rec in await self.all():
            same = (rec.store_id, rec.gateway_id, rec.label) == (store_id, gateway_id, label)
            if same and not rec.revoked:
                return rec
        return await self.add(store_id, gateway_id, label=label)

    async def get(self, kid: str) -> KeyRecord | None:
        raw = await self.r.hget(self.key, kid)
        return KeyRecord.model_validate_json(raw) if raw else None

    async def all(self) -> list[KeyRecord]:
        raws = await self.r.hvals(self.key)
        records = [KeyRecord.model_validate_json(raw) for raw in raws]
        return sorted(records, key=lambda k: (k.store_id, k.gateway_id, k.created_at))

    async def revoke(self, kid: str, *, now: datetime | None = None) -> KeyRecord:
        record = await self.get(kid)
        if record is None:
            raise KeyringError(f"no gateway key {kid!r}")
        revoked = record.model_copy(
            update={"revoked": True, "revoked_at": now or datetime.now(UTC)}
        )
        await self.r.hset(self.key, kid, revoked.model_dump_json())
        return revoked


class KeyCache:
    """The bridge's view of the keyring: bounded, refreshed on unknown or stale kids."""

    def __init__(
        self,
        keyring: Keyring,
        *,
        ttl_s: float = 30.0,
        negative_ttl_s: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keyring = keyring
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, GatewayKey | None]] = OrderedDict()
        self.fetches = 0

    async def verify(
        self,
        topic: str,
        payload: bytes,
        properties: Iterable[tuple[str, str]],
        *,
        store_id: str,
        gateway_id: str,
    ) -> Verified:
        """:func:`contracts.signing.verify_message` with this cache's keys (the bridge's
        and the worker's one way to check a batch). Only a well-formed key id reaches Redis;
        verify_message names a malformed one. Raises SignatureError."""
        props = list(properties)
        kid = next((value for name, value in props if name == KID_PROPERTY), None)
        key = await self.get(kid) if kid is not None and KID_RE.fullmatch(kid) else None

        def lookup(_kid: str) -> GatewayKey | None:
            return key

        return verify_message(
            topic, payload, props, lookup, store_id=store_id, gateway_id=gateway_id
        )

    async def get(self, kid: str) -> GatewayKey | None:
        now = self.clock()
        hit = self._entries.get(kid)
        if hit is not None:
            at, key = hit
            if now - at < (self.ttl_s if key is not None else self.negative_ttl_s):
                self._entries.move_to_end(kid)
                return key
        self.fetches += 1
        try:
            record = await self.keyring.get(kid)
        except (ValueError, json.JSONDecodeError):
            record = None  # a corrupt entry verifies nothing
        key = record.gateway_key() if record is not None else None
        self._entries[kid] = (now, key)
        self._entries.move_to_end(kid)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return key

    def __len__(self) -> int:
        return len(self._entries)
