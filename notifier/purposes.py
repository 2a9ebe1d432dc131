"""What each customer decided for the purposes the notifier acts on itself.

The stream decides who is alerted about (``arrival_alerts``); the notifier does two more
things with a customer's data that need their consent, each a purpose of its own:

* ``analytics``: visit rows of the outcomes (:mod:`notifier.outcomes`);
* ``room_messages``: telling them their fitting room is ready through the retailer's
  messaging system (:mod:`notifier.messaging`).

The notifier learns the decisions from ``proxima.consent.v1`` (each record is a
customer's whole consent, :meth:`Lifecycle.follow_consent`) and keeps, per customer, only
those of :data:`FOLLOWED`::

    {prefix}notifier:purposes:{customer}   hash  purpose | purpose@store → "1" (granted) | "0"

A store's own decision wins over the global one; no decision means no, as the stream
decides (``ConsentRecord.allows``). A forget deletes the hash. A decision not read yet
(the consent record is still on its way) is no decision: data minimisation errs that way.
"""

from __future__ import annotations

from typing import Any

from contracts.models import ConsentRecord
from transport.redis import RedisClient
from transport.redis import as_text as text

ANALYTICS = "analytics"
ROOM_MESSAGES = "room_messages"
FOLLOWED = (ANALYTICS, ROOM_MESSAGES)
"""The purposes whose decisions the notifier keeps (``stream.registry.Purpose`` values)."""


class Purposes:
    """Per customer, ``purpose[@store]`` → granted, followed from consent records."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def key(self, customer_id: str) -> str:
        return f"{self.prefix}notifier:purposes:{customer_id}"

    async def follow(self, consent: ConsentRecord) -> None:
        """Replace the customer's decisions with those of this (whole) consent record."""
        decisions: dict[Any, str] = {
            key: "1" if decision.granted else "0"
            for key, decision in consent.consent.items()
            if key.partition("@")[0] in FOLLOWED
        }
        key = self.key(consent.customer_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if decisions:
                pipe.hset(key, mapping=decisions)
            await pipe.execute()

    async def allows(self, customer_id: str, purpose: str, store: str) -> bool:
        """The store's own decision wins over the global one; none means no."""
        if purpose not in FOLLOWED:
            raise ValueError(f"the notifier does not follow {purpose!r}: only {FOLLOWED}")
        own, every = await self.redis.hmget(self.key(customer_id), [f"{purpose}@{store}", purpose])
        decision = own if own is not None else every
        return decision is not None and text(decision) == "1"

    async def decisions(self, customer_id: str) -> dict[str, bool]:
        """Everything kept for the customer (``purpose[@store]`` → granted)."""
        data = await self.redis.hgetall(self.key(customer_id))
        return {text(k): text(v) == "1" for k, v in data.items()}

    async def forget(self, customer_id: str) -> None:
        await self.redis.delete(self.key(customer_id))


__all__ = ["ANALYTICS", "FOLLOWED", "ROOM_MESSAGES", "Purposes"]
