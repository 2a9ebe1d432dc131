"""Routing configured per store: ladder times, expiry and which tiers the store uses.

A store without a configuration uses the notifier's settings. Overrides live in Redis,
so every instance routes a store the same way:

``{prefix}notifier:store:{store}:routing``   hash: escalate_after_s, manager_after_s,
                                              expire_after_s, tiers (comma-separated),
                                              timezone (IANA: the manager's "today")
``{prefix}notifier:routing-stores``          set of stores that have an override
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notifier.directory import check_id
from notifier.exceptions import InvalidInput
from notifier.routing import ALL_TIERS, Ladder, Tier
from transport.redis import RedisClient, text_map
from transport.redis import as_text as text

MIN_DELAY_S = 5.0
MAX_DELAY_S = 24 * 3600.0
TIER_NAMES = {t.label: t for t in ALL_TIERS}


@dataclass(frozen=True, slots=True)
class StoreRouting:
    """How one store's alerts climb and end."""

    ladder: Ladder
    expire_after: timedelta
    timezone: str = "UTC"
    """The store's IANA time zone: where its day (the manager view's "today") begins."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "escalate_after_s": self.ladder.escalate_after.total_seconds(),
            "manager_after_s": self.ladder.manager_after.total_seconds(),
            "expire_after_s": self.expire_after.total_seconds(),
            "tiers": [t.label for t in sorted(self.ladder.tiers)],
            "timezone": self.timezone,
        }

    def midnight(self, now: datetime) -> datetime:
        """The start of the store's day that holds ``now`` (aware, in the store's zone)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _seconds(field: str, value: float) -> timedelta:
    if not MIN_DELAY_S <= value <= MAX_DELAY_S:
        raise InvalidInput(field, f"must be between {MIN_DELAY_S:g} and {MAX_DELAY_S:g} seconds")
    return timedelta(seconds=value)


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            "timezone", f"{name!r} is not an IANA time zone (e.g. Europe/Lisbon)"
        ) from None
    return name


def parse_tiers(names: list[str]) -> frozenset[Tier]:
    unknown = [n for n in names if n not in TIER_NAMES]
    if unknown:
        raise InvalidInput("tiers", f"{unknown[0]!r} is not one of {', '.join(sorted(TIER_NAMES))}")
    tiers = frozenset(TIER_NAMES[n] for n in names)
    if Tier.MANAGER not in tiers:
        raise InvalidInput("tiers", "must include 'manager', the last resort")
    return tiers


class RoutingConfigs:
    """Per-store overrides over the notifier-wide default."""

    def __init__(self, redis: RedisClient, prefix: str, default: StoreRouting) -> None:
        self.redis = redis
        self.prefix = prefix
        self.default = default

    def _key(self, store: str) -> str:
        return f"{self.prefix}notifier:store:{store}:routing"

    @property
    def _stores(self) -> str:
        return f"{self.prefix}notifier:routing-stores"

    def _merge(self, data: dict[str, str]) -> StoreRouting:
        ladder = self.default.ladder
        expire = self.default.expire_after
        if not data:
            return self.default
        ladder = replace(
            ladder,
            escalate_after=timedelta(
                seconds=float(data.get("escalate_after_s") or ladder.escalate_after.total_seconds())
            ),
            manager_after=timedelta(
                seconds=float(data.get("manager_after_s") or ladder.manager_after.total_seconds())
            ),
            tiers=parse_tiers(data["tiers"].split(",")) if data.get("tiers") else ladder.tiers,
        )
        if data.get("expire_after_s"):
            expire = timedelta(seconds=float(data["expire_after_s"]))
        return StoreRouting(ladder, expire, data.get("timezone") or self.default.timezone)

    async def get(self, store: str) -> StoreRouting:
        return self._merge(text_map(await self.redis.hgetall(self._key(store))))

    async def set(
        self,
        store: str,
        *,
        escalate_after_s: float | None = None,
        manager_after_s: float | None = None,
        expire_after_s: float | None = None,
        tiers: list[str] | None = None,
        timezone: str | None = None,
    ) -> StoreRouting:
        """Override some values; the result is checked whole before it is stored."""
        check_id("store", store)
        current = text_map(await self.redis.hgetall(self._key(store)))
        update: dict[Any, str] = {}
        if escalate_after_s is not None:
            _seconds("escalate_after_s", escalate_after_s)
            update["escalate_after_s"] = repr(float(escalate_after_s))
        if manager_after_s is not None:
            _seconds("manager_after_s", manager_after_s)
            update["manager_after_s"] = repr(float(manager_after_s))
        if expire_after_s is not None:
            _seconds("expire_after_s", expire_after_s)
            update["expire_after_s"] = repr(float(expire_after_s))
        if tiers is not None:
            parse_tiers(tiers)
            update["tiers"] = ",".join(dict.fromkeys(tiers))
        if timezone is not None:
            update["timezone"] = check_timezone(timezone)
        try:
            merged = self._merge({**current, **update})
        except ValueError as exc:  # the Ladder's own check: escalate_after <= manager_after
            raise InvalidInput(
                "manager_after_s", "must not be shorter than escalate_after_s"
            ) from exc
        if merged.expire_after < merged.ladder.escalate_after:
            raise InvalidInput("expire_after_s", "must not be shorter than escalate_after_s")
        if update:
            await self.redis.hset(self._key(store), mapping=update)
            await self.redis.sadd(self._stores, store)
        return merged

    async def reset(self, store: str) -> StoreRouting:
        check_id("store", store)
        await self.redis.delete(self._key(store))
        await self.redis.srem(self._stores, store)
        return self.default

    async def overridden(self) -> list[str]:
        return sorted(text(s) for s in await self.redis.smembers(self._stores))

    async def shortest_delay(self) -> timedelta:
        """The earliest any open alert can be due, over the default and every override."""
        delays = [self.default.ladder.escalate_after, self.default.expire_after]
        for store in await self.overridden():
            routing = await self.get(store)
            delays += [routing.ladder.escalate_after, routing.expire_after]
        return min(delays)
