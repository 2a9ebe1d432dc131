"""The associate directory in Redis: who works in which store, where, and who is on shift.

Everything lives in Redis so that any notifier instance can route and sign people in.
Per store, a set of associate ids and one hash per associate:

``{prefix}notifier:store:{store}:associates``        set of ids
``{prefix}notifier:store:{store}:associate:{id}``    hash: name, role, zones, on_shift, ...
``{prefix}notifier:stores``                          set of stores that have associates

Passwords are stored only as argon2id hashes (argon2-cffi). Each hash or check takes
~64 MiB for its duration, so :class:`Passwords` runs a bounded number at once, in threads.
Removing an associate also removes their console sessions and delivery destinations, and
a new ``incarnation`` tells a person re-created with the same id from the one removed.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, TypeVar, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from notifier.exceptions import AssociateExists, InvalidInput, UnknownAssociate
from transport.redis import RedisClient, text_map
from transport.redis import as_text as text

Role = Literal["associate", "manager"]
ROLES: tuple[Role, ...] = ("associate", "manager")
Clock = Callable[[], datetime]

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD = 8
# A real hash of a throwaway password, verified on unknown accounts so that a sign-in
# for a name that does not exist costs as long as one that does (no account probing).
_DUMMY_PASSWORD = "not-a-real-password"  # noqa: S105


T = TypeVar("T")


def sessions_key(prefix: str, store: str, associate: str) -> str:
    """The set of an associate's console session keys, so removal can end them all."""
    return f"{prefix}notifier:store:{store}:associate:{associate}:sessions"


def destinations_key(prefix: str, store: str, associate: str | None) -> str:
    """The hash of a store's (``associate`` None) or an associate's delivery destinations."""
    owner = f"associate:{associate}" if associate else "store"
    return f"{prefix}notifier:store:{store}:destinations:{owner}"


def feed_channel(prefix: str, store: str) -> str:
    """Pub/sub channel of a store's live changes (alerts, shifts, rooms) for every instance."""
    return f"{prefix}notifier:store:{store}:feed"


def revocations_channel(prefix: str, store: str) -> str:
    """Pub/sub channel on which sign-outs and removals reach every instance's live feeds."""
    return f"{prefix}notifier:store:{store}:revoked"


def utc_now() -> datetime:
    return datetime.now(UTC)


def check_id(field_name: str, value: str) -> str:
    if not _ID_RE.match(value):
        raise InvalidInput(
            field_name,
            f"{value!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return value


def slug(name: str) -> str:
    """An id from a display name: ``Maria Silva`` → ``maria-silva``."""
    out = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return out[:64] or "associate"


@dataclass(frozen=True, slots=True)
class Associate:
    """One associate of one store, as the router and the console see them."""

    store_id: str
    associate_id: str
    name: str
    role: Role = "associate"
    zones: tuple[str, ...] = ()
    on_shift: bool = False
    shift_started_at: datetime | None = None
    password_hash: str = field(default="", repr=False, compare=False)
    # Random per creation: a session made for a removed associate never fits the new
    # person given the same id ("" for associates stored before incarnations existed).
    incarnation: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        check_id("store", self.store_id)
        check_id("associate", self.associate_id)
        if self.role not in ROLES:
            raise InvalidInput("role", f"{self.role!r} is not one of {', '.join(ROLES)}")
        if not self.name.strip() or len(self.name) > 100:
            raise InvalidInput("name", "must be 1-100 characters")
        for zone in self.zones:
            check_id("zone", zone)

    def is_on_shift(self, now: datetime, max_shift: timedelta) -> bool:
        """On shift, and the toggle is not older than ``max_shift`` (a forgotten toggle)."""
        if not self.on_shift:
            return False
        if self.shift_started_at is None:
            return True
        return now - self.shift_started_at < max_shift

    def public(self) -> dict[str, object]:
        """What the console and the CLI may show: never the password hash."""
        return {
            "store_id": self.store_id,
            "associate_id": self.associate_id,
            "name": self.name,
            "role": self.role,
            "zones": list(self.zones),
            "on_shift": self.on_shift,
            "shift_started_at": self.shift_started_at.isoformat()
            if self.shift_started_at
            else None,
        }


def to_ms(value: datetime) -> int:
    """Epoch milliseconds, how times are stored in Redis hashes."""
    return int(value.timestamp() * 1000)


def from_ms(value: str | None) -> datetime | None:
    """The inverse of :func:`to_ms` for a stored field (None when absent or empty)."""
    if not value:
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC)


class Hasher(Protocol):
    """What :class:`Passwords` needs of a password hasher (argon2's ``PasswordHasher``)."""

    def hash(self, password: str) -> str: ...

    def verify(self, hash: str, password: str) -> bool: ...

    def check_needs_rehash(self, hash: str) -> bool: ...


class Passwords:
    """Password hashing with at most ``concurrency`` hashes running at once.

    argon2id's defaults take 64 MiB per hash: run unbounded in the default thread pool,
    24 concurrent sign-ins took a notifier from 130 to 452 MiB. Callers past the bound wait
    their turn here (the sign-in limits keep that queue short).
    """

    def __init__(self, hasher: Hasher | None = None, concurrency: int = 2) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.hasher: Hasher = hasher or PasswordHasher()
        self.concurrency = concurrency
        self._slots: asyncio.Semaphore | None = None
        self.running = 0
        self.peak = 0  # most hashes ever running at once (metrics, tests)
        self.verified = 0  # passwords checked, including the dummy check of unknown names

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        async with self._slots:
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                return await asyncio.to_thread(fn, *args)
            finally:
                self.running -= 1

    async def hash(self, password: str) -> str:
        return await self._run(self.hasher.hash, password)

    async def verify(self, hashed: str, password: str) -> bool:
        self.verified += 1
        return await self._run(self._verify, hashed, password)

    def needs_rehash(self, hashed: str) -> bool:
        return bool(self.hasher.check_needs_rehash(hashed))

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(hashed, password))
        except (VerificationError, InvalidHashError):
            return False


class Directory:
    """Associates per store, in Redis."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        *,
        hasher: Hasher | None = None,
        clock: Clock = utc_now,
        hash_concurrency: int = 2,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.passwords = Passwords(hasher, hash_concurrency)
        self.clock = clock
        self._dummy_hash: str | None = None
        # staff() per store, tagged with the store's revision in Redis: reused only while
        # that revision is unchanged, so every instance still sees every write at once.
        self._staff: dict[str, tuple[str, tuple[Associate, ...]]] = {}

    @property
    def hasher(self) -> Hasher:
        return self.passwords.hasher

    @hasher.setter
    def hasher(self, hasher: Hasher) -> None:
        self.passwords.hasher = hasher

    # keys ------------------------------------------------------------------------
    def _members(self, store: str) -> str:
        return f"{self.prefix}notifier:store:{store}:associates"

    def _key(self, store: str, associate: str) -> str:
        return f"{self.prefix}notifier:store:{store}:associate:{associate}"

    @property
    def _stores(self) -> str:
        return f"{self.prefix}notifier:stores"

    def _rev(self, store: str) -> str:
        return f"{self.prefix}notifier:store:{store}:rev"

    async def _changed(self, store: str) -> None:
        """Bump the store's revision after a write, so every instance rereads its staff."""
        await self.redis.incr(self._rev(store))

    # writes ----------------------------------------------------------------------
    async def add(
        self,
        store_id: str,
        name: str,
        password: str,
        *,
        role: str = "associate",
        zones: Iterable[str] = (),
        associate_id: str | None = None,
    ) -> Associate:
        """Create an associate; the id defaults to a slug of the name."""
        if len(password) < MIN_PASSWORD:
            raise InvalidInput("password", f"must be at least {MIN_PASSWORD} characters")
        if role not in ROLES:
            raise InvalidInput("role", f"{role!r} is not one of {', '.join(ROLES)}")
        associate = Associate(
            store_id=store_id,
            associate_id=associate_id or slug(name),
            name=name.strip(),
            role=role,
            zones=tuple(dict.fromkeys(zones)),
            password_hash=await self.passwords.hash(password),
            incarnation=secrets.token_urlsafe(12),
        )
        key = self._key(store_id, associate.associate_id)
        # HSETNX on the name makes "add" race-free between two admins or instances.
        if not await self.redis.hsetnx(key, "name", associate.name):
            raise AssociateExists(store_id, associate.associate_id)
        # Whatever a former holder of this id left (a webhook added while they were being
        # removed) is not the new person's.
        await self._forget_leftovers(store_id, associate.associate_id)
        await self.redis.hset(
            key,
            mapping={
                "role": associate.role,
                "zones": json.dumps(list(associate.zones)),
                "on_shift": "0",
                "password_hash": associate.password_hash,
                "incarnation": associate.incarnation,
            },
        )
        await self.redis.sadd(self._members(store_id), associate.associate_id)
        await self.redis.sadd(self._stores, store_id)
        await self._changed(store_id)
        return associate

    async def remove(self, store_id: str, associate_id: str) -> None:
        """Remove an associate, their sessions (live feeds close) and their destinations."""
        check_id("store", store_id)
        check_id("associate", associate_id)
        deleted = await self.redis.delete(self._key(store_id, associate_id))
        await self.redis.srem(self._members(store_id), associate_id)
        await self._changed(store_id)
        await self._forget_leftovers(store_id, associate_id)
        await self.redis.publish(
            revocations_channel(self.prefix, store_id),
            json.dumps({"type": "revoke", "associate_id": associate_id}),
        )
        if not deleted:
            raise UnknownAssociate(store_id, associate_id)

    async def _forget_leftovers(self, store_id: str, associate_id: str) -> None:
        """Delete an associate id's sessions and webhooks/push subscriptions."""
        index = sessions_key(self.prefix, store_id, associate_id)
        sessions = [text(k) for k in await self.redis.smembers(index)]
        # One key per DEL: the keys may live on different Redis Cluster nodes.
        pipe = self.redis.pipeline(transaction=False)
        for key in [*sessions, index, destinations_key(self.prefix, store_id, associate_id)]:
            pipe.delete(key)
        await pipe.execute()

    async def set_on_shift(self, store_id: str, associate_id: str, on_shift: bool) -> Associate:
        key = self._key(check_id("store", store_id), check_id("associate", associate_id))
        if not await self.redis.exists(key):
            raise UnknownAssociate(store_id, associate_id)
        await self.redis.hset(
            key,
            mapping={
                "on_shift": "1" if on_shift else "0",
                "shift_started_at": str(to_ms(self.clock())) if on_shift else "",
            },
        )
        await self._changed(store_id)
        found = await self.get(store_id, associate_id)
        if found is None:  # removed between the two calls
            raise UnknownAssociate(store_id, associate_id)
        return found

    # reads -----------------------------------------------------------------------
    async def get(self, store_id: str, associate_id: str) -> Associate | None:
        if not _ID_RE.match(store_id) or not _ID_RE.match(associate_id):
            return None
        data = text_map(await self.redis.hgetall(self._key(store_id, associate_id)))
        return self._from_hash(store_id, associate_id, data)

    @staticmethod
    def _from_hash(store_id: str, associate_id: str, data: dict[str, str]) -> Associate | None:
        if not data or "role" not in data:
            return None  # removed, or half-written by a concurrent add
        return Associate(
            store_id=store_id,
            associate_id=associate_id,
            name=data.get("name", associate_id),
            role=cast(Role, data["role"]),  # checked by __post_init__
            zones=tuple(json.loads(data.get("zones") or "[]")),
            on_shift=data.get("on_shift") == "1",
            shift_started_at=from_ms(data.get("shift_started_at")),
            password_hash=data.get("password_hash", ""),
            incarnation=data.get("incarnation", ""),
        )

    async def staff(self, store_id: str) -> list[Associate]:
        """Every associate of a store; one GET when nothing changed since the last call.

        Routing asks for the staff on every alert; rereading 200 hashes each time cost
        tens of milliseconds per alert (``proxima bench notifier``).
        """
        check_id("store", store_id)
        rev = await self.redis.get(self._rev(store_id))
        cached = self._staff.get(store_id)
        if rev is not None and cached is not None and cached[0] == text(rev):
            return list(cached[1])
        ids = sorted(text(i) for i in await self.redis.smembers(self._members(store_id)))
        pipe = self.redis.pipeline(transaction=False)
        for associate_id in ids:
            pipe.hgetall(self._key(store_id, associate_id))
        found = [
            self._from_hash(store_id, associate_id, text_map(data))
            for associate_id, data in zip(ids, await pipe.execute(), strict=True)
        ]
        staff = tuple(a for a in found if a is not None)
        if rev is not None:
            self._staff[store_id] = (text(rev), staff)
        return list(staff)

    async def stores(self) -> list[str]:
        return sorted(text(s) for s in await self.redis.smembers(self._stores))

    # sign-in ---------------------------------------------------------------------
    async def authenticate(
        self, store_id: str, associate_id: str, password: str
    ) -> Associate | None:
        """The associate if the password matches, else None (same cost either way)."""
        associate = await self.get(store_id, associate_id)
        if associate is None or not associate.password_hash:
            if self._dummy_hash is None:
                self._dummy_hash = await self.passwords.hash(_DUMMY_PASSWORD)
            await self.passwords.verify(self._dummy_hash, password + "x")
            return None
        if not await self.passwords.verify(associate.password_hash, password):
            return None
        if self.passwords.needs_rehash(associate.password_hash):
            new_hash = await self.passwords.hash(password)
            await self.redis.hset(self._key(store_id, associate_id), "password_hash", new_hash)
        return associate
