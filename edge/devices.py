"""Customer devices' public keys, as the app-event ingest knows them.

Each customer app generates an Ed25519 key pair at enrollment and keeps the private key
(in the Secure Enclave / Android Keystore where it can); only the 32-byte public key is
registered under the device's id. A gateway holds public keys only, never customer
identity keys and never the device → customer mapping (that stays with the stream).

Two backends, chosen by URL scheme (``open_registry``):

- ``file:PATH`` (or a bare path): a JSON or TOML file synced by store IT,
  ``{"devices": [{"device_id": "<hex>", "public_key": "<base64>", "revoked": false}]}``.
  It is re-read when its modification time changes (checked at most every
  ``reload_s``); a file that does not parse keeps the last good registry and is logged
  and counted (``reload_errors``), so a bad sync never locks every customer out.
- ``redis://...``: the hash ``{prefix}devices:{device_id}`` with fields ``public_key``
  (base64) and ``revoked`` (``0``/``1``), written at enrollment. Only those two fields are
  read. Answers (found or not) are cached for ``cache_s``, so a revocation reaches a
  gateway within ``cache_s``; if Redis is unreachable, :class:`RegistryUnavailable`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
import tomllib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.exceptions import RedisClusterException, RedisError

from contracts.validation import describe_validation
from edge.exceptions import EdgeError
from transport.redis import REDIS_SCHEMES, RedisClient, as_text, connect_redis, scheme_of

log = logging.getLogger(__name__)

DEVICE_ID_RE = re.compile(r"^(?:[0-9a-f]{2}){8,32}$")
"""16 to 64 lowercase hex digits: a device id is also the event subject id (type ``device``)."""


class DeviceRegistryError(EdgeError):
    """The device registry could not be loaded; ``source`` names the file or URL."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"device registry {source}: {reason}")


class RegistryUnavailable(DeviceRegistryError):
    """The registry backend did not answer (Redis down): the request cannot be checked."""


def _decode_public_key(value: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"public_key is not base64: {exc}") from exc
    if len(raw) != 32:
        raise ValueError(f"public_key must be 32 bytes (raw Ed25519), got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def encode_public_key(key: Ed25519PublicKey) -> str:
    """The registry's form of a public key: standard base64 of the 32 raw bytes."""
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def new_device_key() -> tuple[Ed25519PrivateKey, str]:
    """A fresh key pair for a simulated or test device: the private key and the registry form."""
    private = Ed25519PrivateKey.generate()
    return private, encode_public_key(private.public_key())


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """A registered device: its id and public key, and whether it was revoked."""

    device_id: str
    public_key: Ed25519PublicKey = field(repr=False)
    revoked: bool = False


class DeviceEntry(BaseModel):
    """One device in a registry file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: str = Field(pattern=DEVICE_ID_RE.pattern, description="16-64 lowercase hex digits")
    public_key: str = Field(description="base64 of the raw 32-byte Ed25519 public key")
    revoked: bool = False

    @field_validator("public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        _decode_public_key(value)
        return value

    def to_key(self) -> DeviceKey:
        return DeviceKey(self.device_id, _decode_public_key(self.public_key), self.revoked)


class DeviceFile(BaseModel):
    """A registry file: the list of devices (ids unique)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: list[DeviceEntry] = Field(default_factory=list)

    @field_validator("devices")
    @classmethod
    def _unique(cls, devices: list[DeviceEntry]) -> list[DeviceEntry]:
        seen: set[str] = set()
        for d in devices:
            if d.device_id in seen:
                raise ValueError(f"device {d.device_id} is listed twice")
            seen.add(d.device_id)
        return devices


class DeviceRegistry(Protocol):
    """Where the ingest looks up a device's public key."""

    async def get(self, device_id: str) -> DeviceKey | None:
        """The device's key, or ``None`` if it is not registered."""
        ...


class MemoryDeviceRegistry:
    """A registry held in memory (tests, simulators, the bench)."""

    def __init__(self, keys: dict[str, Ed25519PublicKey] | None = None) -> None:
        self.keys: dict[str, DeviceKey] = {}
        for device_id, key in (keys or {}).items():
            self.add(device_id, key)

    def add(self, device_id: str, key: Ed25519PublicKey, *, revoked: bool = False) -> None:
        if not DEVICE_ID_RE.match(device_id):
            raise ValueError(f"device id {device_id!r}: must be 16-64 lowercase hex digits")
        self.keys[device_id] = DeviceKey(device_id, key, revoked)

    async def get(self, device_id: str) -> DeviceKey | None:
        return self.keys.get(device_id)


def parse_device_file(raw: bytes, name: str) -> dict[str, DeviceKey]:
    """Parse a JSON or TOML (by extension) registry file, naming the bad field on error."""
    try:
        data: Any = tomllib.loads(raw.decode()) if name.endswith(".toml") else json.loads(raw)
        parsed = DeviceFile.model_validate(data)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeviceRegistryError(name, f"does not parse: {exc}") from exc
    except ValidationError as exc:
        raise DeviceRegistryError(name, describe_validation(exc, "")) from exc
    return {d.device_id: d.to_key() for d in parsed.devices}


class FileDeviceRegistry:
    """A JSON/TOML registry file, re-read when it changes; a bad file keeps the last good one."""

    def __init__(
        self,
        path: Path | str,
        *,
        reload_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.reload_s = reload_s
        self.clock = clock
        self.reload_errors = 0
        self.last_error: str | None = None
        self._keys: dict[str, DeviceKey] = {}
        self._mtime: int | None = None
        self._checked = -float("inf")
        self.reload(strict=True)

    def reload(self, *, strict: bool = False) -> bool:
        """Re-read the file if it changed; True if the registry was replaced."""
        self._checked = self.clock()
        try:
            stat = self.path.stat()
            if stat.st_mtime_ns == self._mtime:
                return False
            keys = parse_device_file(self.path.read_bytes(), str(self.path))
        except (OSError, DeviceRegistryError) as exc:
            if strict:
                if isinstance(exc, DeviceRegistryError):
                    raise
                raise DeviceRegistryError(str(self.path), str(exc)) from exc
            self.reload_errors += 1
            self.last_error = str(exc)
            log.error("device registry not reloaded, keeping the last good one: %s", exc)
            return False
        self._keys = keys
        self._mtime = stat.st_mtime_ns
        self.last_error = None
        log.info("device registry %s: %d device(s)", self.path, len(keys))
        return True

    def __len__(self) -> int:
        return len(self._keys)

    async def get(self, device_id: str) -> DeviceKey | None:
        if self.clock() - self._checked >= self.reload_s:
            self.reload()
        return self._keys.get(device_id)


class RedisDeviceRegistry:
    """Device keys in Redis at ``{prefix}devices:{device_id}``, cached for ``cache_s``."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        *,
        cache_s: float = 30.0,
        cache_max: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.cache_s = cache_s
        self.cache_max = cache_max
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, DeviceKey | None]] = OrderedDict()

    async def aclose(self) -> None:
        await self.redis.aclose()

    def key(self, device_id: str) -> str:
        return f"{self.prefix}devices:{device_id}"

    async def register(self, device_id: str, public_key: str, *, revoked: bool = False) -> None:
        """Write one device (enrollment tools and tests; the gateway itself only reads)."""
        entry = DeviceEntry(device_id=device_id, public_key=public_key, revoked=revoked)
        await self.redis.hset(
            self.key(device_id),
            mapping={"public_key": entry.public_key, "revoked": "1" if revoked else "0"},
        )

    async def get(self, device_id: str) -> DeviceKey | None:
        now = self.clock()
        hit = self._cache.get(device_id)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        try:
            raw_key, raw_revoked = await self.redis.hmget(
                self.key(device_id), ["public_key", "revoked"]
            )
        except (RedisError, RedisClusterException, OSError) as exc:
            raise RegistryUnavailable(f"redis {self.key(device_id)}", str(exc)) from exc
        found: DeviceKey | None = None
        if raw_key is not None:
            text = as_text(raw_key)
            revoked = raw_revoked in (b"1", "1", b"true", "true")
            try:
                found = DeviceKey(device_id, _decode_public_key(text), revoked)
            except ValueError as exc:
                log.error("device %s: unusable public key in Redis: %s", device_id, exc)
                found = None
        self._cache[device_id] = (now, found)
        self._cache.move_to_end(device_id)
        while len(self._cache) > self.cache_max:
            self._cache.popitem(last=False)
        return found


def open_registry(
    url: str, *, redis_prefix: str = "proxima:", cache_s: float = 30.0
) -> FileDeviceRegistry | RedisDeviceRegistry:
    """A registry from a URL: ``file:PATH`` or a path, or any Redis URL (``redis://``,
    ``rediss://``, ``unix://``, ``redis+cluster://``: see :func:`transport.redis.connect_redis`)."""
    if scheme_of(url) in REDIS_SCHEMES:
        return RedisDeviceRegistry(connect_redis(url), redis_prefix, cache_s=cache_s)
    path = url.removeprefix("file://").removeprefix("file:")
    if not path:
        raise DeviceRegistryError(url, "no registry given: use file:PATH or redis://HOST")
    return FileDeviceRegistry(path)
