"""The worker's view of consent: each (customer, store)'s decisions as last read from Redis,
kept while the registry shard they came from has not changed.

Every registry change (enroll, grant, revoke, device, forget) bumps its shard's version in
the change's own transaction (:mod:`stream.registry`). So a batch reads the versions of
its customers' shards — one ``GET`` per shard, at most :data:`stream.registry.SHARDS` —
in the round trip that reads its visit state, and the consent of a (customer, store) only
when none is held for the version just read. A decision is tagged with a version read
*before* it in the same pipeline (a shard's keys share one slot, so one node runs them in
order, on a cluster too): a change landing in between makes the tag older than the
decision, never newer, and the next batch reads the decision again. The decisions a batch
uses are therefore exactly as fresh as reading them in its own round trip, with
``HMGET``s only after a change; the alert path still asks Redis again as each alert is
built (:meth:`stream.processor.EventProcessor._alerts`), so a revocation in flight wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stream.registry import Purpose, Registry, shard_of
from transport.redis import RedisPipeline

Pair = tuple[str, str]
"""(customer id, store id)"""

Decision = tuple[bool, bool]
"""(``arrival_alerts``, ``analytics``) at that store."""


@dataclass(slots=True)
class Reading:
    """What :meth:`ConsentView.queue` put on a pipeline: parse its replies with
    :meth:`ConsentView.take`."""

    shards: list[int]
    asked: list[Pair]
    commands: int = field(init=False)

    def __post_init__(self) -> None:
        self.commands = len(self.shards) + len(self.asked)


class ConsentView:
    """Consent decisions by (customer, store), each with the shard version it was read at;
    at most ``max_pairs`` of them (the oldest read goes first), none for longer than
    ``max_age_s``.

    A version only grows while Redis keeps its data; one that went down (Redis lost the
    registry, and it is being enrolled again or rebuilt) starts a new epoch of the shard,
    and decisions of an earlier epoch are never current, even once the counter climbs back
    to the number they were read at. ``max_age_s`` bounds what a loss this view did not see
    in between could cost."""

    def __init__(
        self,
        registry: Registry,
        *,
        max_pairs: int = 200_000,
        max_age_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.max_pairs = max_pairs
        self.max_age_s = max_age_s
        self.clock = clock
        self._held: dict[Pair, tuple[tuple[int, int], float, Decision]] = {}
        self._versions: dict[int, tuple[int, int]] = {}
        """Per shard, (epoch, version) as last read: what a held decision must be tagged with."""

    def queue(self, pipe: RedisPipeline, pairs: Sequence[Pair]) -> Reading:
        """Queue the shards' versions, then the consent of the pairs held for no version
        (or one older than the latest read) on ``pipe``."""
        reg = self.registry
        shards = sorted({shard_of(cid) for cid, _ in pairs})
        for shard in shards:
            pipe.get(reg.keys.version(shard))
        asked = [pair for pair in pairs if not self._current(pair)]
        for cid, store in asked:
            pipe.hmget(reg.consent_key(cid), self._fields(store))
        return Reading(shards, asked)

    def take(self, reading: Reading, replies: Sequence[object]) -> None:
        """Hold what :meth:`queue`'s commands answered (``replies``, in their order); then
        :meth:`read` has the pairs' decisions, reading again those of a shard that changed."""
        versions = replies[: len(reading.shards)]
        for shard, raw in zip(reading.shards, versions, strict=True):
            version = int(raw) if raw else 0  # type: ignore[call-overload]
            epoch, before = self._versions.get(shard, (0, version))
            self._versions[shard] = (epoch + (version < before), version)
        for pair, values in zip(reading.asked, replies[len(reading.shards) :], strict=True):
            self._hold(pair, values)  # type: ignore[arg-type]

    def decisions(self, pairs: Sequence[Pair]) -> tuple[dict[Pair, Decision], list[Pair]]:
        """The held decisions of ``pairs`` that are current for the versions last read (by
        :meth:`take`), and the pairs that are not (:meth:`read` them)."""
        out: dict[Pair, Decision] = {}
        stale: list[Pair] = []
        for pair in pairs:
            held = self._current(pair)
            if held is None:
                stale.append(pair)
            else:
                out[pair] = held
        return out, stale

    async def read(self, pairs: Sequence[Pair]) -> dict[Pair, Decision]:
        """The decisions of ``pairs`` as fresh as a round trip now: the shards' versions are
        read, with the decisions not held for them; again while shards keep changing."""
        out: dict[Pair, Decision] = {}
        stale = list(pairs)
        while stale:
            async with self.registry.r.pipeline(transaction=False) as pipe:
                reading = self.queue(pipe, stale)
                replies = await pipe.execute()
            self.take(reading, replies)
            got, stale = self.decisions(stale)
            out |= got
        return out

    def _current(self, pair: Pair) -> Decision | None:
        held = self._held.get(pair)
        if held is None:
            return None
        tag, read_at, decision = held
        if tag != self._versions.get(shard_of(pair[0])):
            return None
        if self.clock() - read_at >= self.max_age_s:
            return None
        return decision

    def _hold(self, pair: Pair, values: Sequence[bytes | str | None]) -> None:
        tag = self._versions[shard_of(pair[0])]
        self._held.pop(pair, None)  # re-inserted last: the oldest read goes first
        self._held[pair] = (
            tag,
            self.clock(),
            (
                Registry.consent_from(list(values[:2])),
                Registry.consent_from(list(values[2:])),
            ),
        )
        while len(self._held) > self.max_pairs:
            del self._held[next(iter(self._held))]

    @staticmethod
    def _fields(store: str) -> list[str]:
        return [
            *Registry.consent_fields(Purpose.ARRIVAL_ALERTS, store),
            *Registry.consent_fields(Purpose.ANALYTICS, store),
        ]
