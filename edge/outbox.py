"""The gateway's store-and-forward outbox: SQLite in WAL mode, one row per event.

Producers (the BLE pipeline, the app-event ingest) hand :meth:`Outbox.put` a sequence of
:class:`EventDraft`; in one transaction each gets its ``event_id`` (unless it brought
one) and the gateway's next ``seq``, is validated as a :class:`contracts.models.Event`
and is written with its exact wire JSON. ``put`` returns only once the transaction is
durable, so a caller may acknowledge its own input (an HTTP 202) after it.

The publisher takes batches in ``seq`` order (:meth:`Outbox.next_batch`, bounded by
count, bytes and latency) and calls :meth:`Outbox.ack` only after the broker's PUBACK;
until then the rows stay. One batch is in flight at a time, so events leave in ``seq``
order and never overtake each other (no reordering per subject); a crash between PUBACK
and ``ack`` resends the batch, which the pipeline deduplicates by ``event_id``.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``. In WAL mode ``NORMAL``
survives a process crash (``kill -9``) but may lose the last commits on a power cut.
Here a lost commit is worse than a lost event: its ``seq`` values would be handed out
again after the reboot while the first copies may already have been published, so the
stream would see one ``seq`` with two different events. ``FULL`` fsyncs the WAL on every
commit; the agent writes one transaction per pipeline step (many events), so the cost is
one fsync per step, not per event. The ``seq`` counter lives in the same database and
the same transaction as the rows, so it is monotonic across restarts and crashes.

Cap: ``max_rows``/``max_bytes`` bound the disk an outage of hours may take. From
``warn_fraction`` of either cap on, :attr:`OutboxStats.near_cap` is true (the agent
reports it loudly in its status and metrics). At the cap the oldest *droppable* rows
(``zone_dwell``, ``geofence_dwell``, ``sighting``, ``location``: repeatable or
superseded information) not in flight are deleted to make room, counted per kind in
:attr:`OutboxStats.dropped`. Enter and exit events are never dropped: when only they
remain, ``put`` refuses the new events with :class:`~edge.exceptions.OutboxFull`
(nothing written, no ``seq`` consumed, counted in ``refused``), so what is kept is an
unbroken history and the producer decides (the ingest answers 503, the BLE pipeline
counts the loss).

All SQLite work runs on one dedicated thread (the connection never changes threads),
so the asyncio loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from pydantic import ValidationError

from contracts.models import SCHEMA_FOR_KIND, Event, EventKind, Subject, ZoneEvidence
from contracts.validation import describe_validation
from edge.exceptions import EventRejected, OutboxError, OutboxFull, OutboxMismatch

log = logging.getLogger(__name__)
T = TypeVar("T")

DROPPABLE_KINDS: frozenset[EventKind] = frozenset(
    {EventKind.ZONE_DWELL, EventKind.GEOFENCE_DWELL, EventKind.SIGHTING, EventKind.LOCATION}
)
"""Kinds the cap policy may drop (oldest first); enter/exit kinds are never dropped."""

_SCHEMA_VERSION = 1
_DDL = (
    """CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        droppable INTEGER NOT NULL,
        created REAL NOT NULL,
        size INTEGER NOT NULL,
        body BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_droppable ON outbox (droppable, seq)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event before the outbox gives it its ``seq`` (and ``event_id`` if it has none).

    ``store_id``, ``gateway_id`` and ``schema`` come from the outbox (the gateway's own)
    and the kind. Give ``event_id`` when the producer already has an idempotency key
    (e.g. derived from an app's signed nonce) so a retried input maps to the same event.
    """

    kind: EventKind
    subject: Subject
    observed_at: datetime
    zone_id: str | None = None
    rssi: float | None = None
    distance_m: float | None = None
    confidence: float | None = None
    event_id: UUID | None = None
    evidence: ZoneEvidence | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive outbox rows ready to publish: ``payload`` is the contract's JSON list."""

    first_seq: int
    last_seq: int
    count: int
    payload: bytes
    oldest_created: float


@dataclass(slots=True)
class OutboxStats:
    """Counters and gauges for status and metrics."""

    depth: int = 0
    bytes: int = 0
    oldest_created: float | None = None
    next_seq: int = 1
    written: int = 0
    acked: int = 0
    refused: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    near_cap: bool = False

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class Outbox:
    """A durable, capped, ordered event queue for one gateway. Use ``async with``."""

    def __init__(
        self,
        path: Path | str,
        *,
        store_id: str,
        gateway_id: str,
        max_rows: int = 1_000_000,
        max_bytes: int = 512 * 1024 * 1024,
        warn_fraction: float = 0.8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_rows < 1 or max_bytes < 1:
            raise ValueError("max_rows and max_bytes must be >= 1")
        if not 0 < warn_fraction <= 1:
            raise ValueError("warn_fraction must be in (0, 1]")
        self.path = Path(path)
        self.store_id = store_id
        self.gateway_id = gateway_id
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.warn_fraction = warn_fraction
        self.clock = clock
        self.stats = OutboxStats()
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._changed: asyncio.Event | None = None
        self._acked: asyncio.Event | None = None
        self._inflight_last = 0
        self._write_lock: asyncio.Lock | None = None

    # lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open (or create) the database and load the counters; checks the gateway id."""
        if self._db is not None:
            raise OutboxError(f"outbox {self.path} is already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._changed = asyncio.Event()
        self._acked = asyncio.Event()
        self._write_lock = asyncio.Lock()
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise
        if self.stats.depth:
            self._changed.set()

    async def close(self) -> None:
        if self._db is None or self._executor is None:
            return
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)
        self._executor = None

    # producers -------------------------------------------------------------------
    async def put(self, drafts: Sequence[EventDraft]) -> list[Event]:
        """Give each draft its ``event_id`` and next ``seq`` and store them, all or none.

        Returns the stored events once the write is durable. Raises
        :class:`~edge.exceptions.EventRejected` (index and reason) if any draft is not a
        valid event, :class:`~edge.exceptions.OutboxFull` if the cap leaves no room;
        in both cases nothing is written and no ``seq`` is used.
        """
        if not drafts:
            return []
        assert self._write_lock is not None
        async with self._write_lock:
            events = await self._run(self._put_sync, list(drafts))
        assert self._changed is not None
        self._changed.set()
        return events

    # the publisher ---------------------------------------------------------------
    async def next_batch(
        self, *, max_events: int = 100, max_bytes: int = 128 * 1024, max_latency_s: float = 0.1
    ) -> Batch:
        """Wait for the oldest unsent rows: up to ``max_events``/``max_bytes``, or whatever is
        there ``max_latency_s`` after the first row showed up. One batch at a time: the
        previous one must be acked (or :meth:`release`\\ d) first."""
        assert self._changed is not None
        if self._inflight_last:
            raise OutboxError("the previous batch is still in flight: ack or release it first")
        while self.stats.depth == 0:
            self._changed.clear()
            await self._changed.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_latency_s
        while self.stats.depth < max_events and self.stats.bytes < max_bytes:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                break
        batch = await self._run(self._read_sync, max_events, max_bytes)
        self._inflight_last = batch.last_seq
        return batch

    async def ack(self, batch: Batch) -> None:
        """The broker has the batch (PUBACK): delete its rows."""
        await self._run(self._ack_sync, batch)
        self._inflight_last = 0
        assert self._acked is not None
        self._acked.set()

    async def wait_empty(self) -> None:
        """Return once every stored event has been acknowledged by the broker."""
        assert self._acked is not None
        while self.stats.depth:
            self._acked.clear()
            await self._acked.wait()

    def release(self, batch: Batch) -> None:
        """The batch was not published; it will be the next one again."""
        self._inflight_last = 0

    # gauges ----------------------------------------------------------------------
    def oldest_age_s(self) -> float:
        """Seconds since the oldest unsent event was written (0 when empty)."""
        oldest = self.stats.oldest_created
        return 0.0 if oldest is None else max(0.0, self.clock() - oldest)

    async def pending(self) -> list[Event]:
        """Every stored event, in ``seq`` order (for tools and tests; not the hot path)."""
        rows = await self._run(self._all_sync)
        return [Event.model_validate_json(body) for body in rows]

    # the SQLite thread -----------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise OutboxError(f"outbox {self.path} is not open: use 'async with Outbox(...)'")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is not open")
        return self._db

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("BEGIN IMMEDIATE")
            for ddl in _DDL:
                db.execute(ddl)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            owner = f"{self.store_id}/{self.gateway_id}"
            if not meta:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("version", str(_SCHEMA_VERSION)), ("owner", owner), ("next_seq", "1")],
                )
                meta = {"owner": owner, "next_seq": "1", "version": str(_SCHEMA_VERSION)}
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            db.close()
            raise OutboxError(f"outbox {self.path} is unreadable: {exc}") from exc
        if str(mode).lower() != "wal":
            db.close()
            raise OutboxError(f"outbox {self.path}: WAL mode refused (got {mode!r})")
        if meta["owner"] != owner:
            db.close()
            raise OutboxMismatch(str(self.path), meta["owner"], owner)
        self._db = db
        self._refresh_sync()
        self.stats.next_seq = int(meta["next_seq"])

    def _close_sync(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _refresh_sync(self) -> None:
        db = self._conn()
        depth, size, oldest = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(created) FROM outbox"
        ).fetchone()
        self.stats.depth = int(depth)
        self.stats.bytes = int(size)
        self.stats.oldest_created = None if oldest is None else float(oldest)
        self._update_near_cap()

    def _update_near_cap(self) -> None:
        s = self.stats
        s.near_cap = (
            s.depth >= self.warn_fraction * self.max_rows
            or s.bytes >= self.warn_fraction * self.max_bytes
        )

    def _put_sync(self, drafts: list[EventDraft]) -> list[Event]:
        db = self._conn()
        seq0 = self.stats.next_seq
        events: list[Event] = []
        rows: list[tuple[int, str, str, int, float, int, bytes]] = []
        now = self.clock()
        new_bytes = 0
        for i, draft in enumerate(drafts):
            try:
                event = Event(
                    schema_=SCHEMA_FOR_KIND[EventKind(draft.kind)],
                    event_id=draft.event_id or uuid.uuid4(),
                    store_id=self.store_id,
                    gateway_id=self.gateway_id,
                    observed_at=draft.observed_at,
                    seq=seq0 + i,
                    kind=draft.kind,
                    subject=draft.subject,
                    zone_id=draft.zone_id,
                    rssi=draft.rssi,
                    distance_m=draft.distance_m,
                    confidence=draft.confidence,
                    evidence=draft.evidence,
                )
            except (ValidationError, ValueError) as exc:
                raise EventRejected(i, _reason(exc)) from exc
            body = event.to_json()
            events.append(event)
            new_bytes += len(body)
            kind = EventKind(event.kind)
            rows.append(
                (
                    event.seq,
                    str(event.event_id),
                    kind.value,
                    int(kind in DROPPABLE_KINDS),
                    now,
                    len(body),
                    body,
                )
            )
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                dropped = self._make_room_sync(db, len(rows), new_bytes)
                db.executemany(
                    "INSERT INTO outbox (seq, event_id, kind, droppable, created, size, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(seq0 + len(rows)),)
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError as exc:
            raise EventRejected(None, f"duplicate event_id already in the outbox: {exc}") from exc
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: write failed: {exc}") from exc
        except OutboxFull:
            self.stats.refused += len(rows)
            raise
        for dropped_kind, n in dropped.items():
            self.stats.dropped[dropped_kind] = self.stats.dropped.get(dropped_kind, 0) + n
        self.stats.next_seq = seq0 + len(rows)
        self.stats.written += len(rows)
        if dropped:
            log.warning("outbox at its cap: dropped oldest %s", dropped)
            self._refresh_sync()
        else:
            self.stats.depth += len(rows)
            self.stats.bytes += new_bytes
            if self.stats.oldest_created is None:
                self.stats.oldest_created = now
            self._update_near_cap()
        return events

    def _make_room_sync(self, db: sqlite3.Connection, rows: int, size: int) -> dict[str, int]:
        """Inside the write transaction: delete oldest droppable rows until the new ones fit."""
        depth, total = self.stats.depth, self.stats.bytes
        over_rows = depth + rows - self.max_rows
        over_bytes = total + size - self.max_bytes
        if over_rows <= 0 and over_bytes <= 0:
            return {}
        if rows > self.max_rows or size > self.max_bytes:
            raise OutboxFull(self.max_rows, self.max_bytes, rows)
        victims: list[tuple[int, str, int]] = []
        freed_rows = freed_bytes = 0
        cursor = db.execute(
            "SELECT seq, kind, size FROM outbox WHERE droppable = 1 AND seq > ? ORDER BY seq",
            (self._inflight_last,),
        )
        for seq, kind, sz in cursor:
            if freed_rows >= over_rows and freed_bytes >= over_bytes:
                break
            victims.append((seq, kind, sz))
            freed_rows += 1
            freed_bytes += sz
        cursor.close()
        if freed_rows < over_rows or freed_bytes < over_bytes:
            raise OutboxFull(self.max_rows, self.max_bytes, rows)
        db.executemany("DELETE FROM outbox WHERE seq = ?", [(v[0],) for v in victims])
        dropped: dict[str, int] = {}
        for _, kind, _ in victims:
            dropped[kind] = dropped.get(kind, 0) + 1
        return dropped

    def _read_sync(self, max_events: int, max_bytes: int) -> Batch:
        db = self._conn()
        parts: list[bytes] = []
        first = last = 0
        oldest = 0.0
        size = 1  # "[" + "]" + the commas between n bodies = 1 + n
        for seq, created, body in db.execute(
            "SELECT seq, created, body FROM outbox ORDER BY seq LIMIT ?", (max_events,)
        ):
            if parts and size + len(body) + 1 > max_bytes:
                break
            if not parts:
                first, oldest = seq, created
            parts.append(body)
            last = seq
            size += len(body) + 1
        if not parts:
            raise OutboxError("outbox is unexpectedly empty")  # depth said otherwise
        return Batch(first, last, len(parts), b"[" + b",".join(parts) + b"]", oldest)

    def _ack_sync(self, batch: Batch) -> None:
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            n, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox WHERE seq BETWEEN ? AND ?",
                (batch.first_seq, batch.last_seq),
            ).fetchone()
            db.execute(
                "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (batch.first_seq, batch.last_seq)
            )
            oldest = db.execute("SELECT MIN(created) FROM outbox").fetchone()[0]
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: ack failed: {exc}") from exc
        self.stats.acked += int(n)
        self.stats.depth -= int(n)
        self.stats.bytes -= int(size)
        self.stats.oldest_created = None if oldest is None else float(oldest)
        self._update_near_cap()

    def _all_sync(self) -> list[bytes]:
        return [r[0] for r in self._conn().execute("SELECT body FROM outbox ORDER BY seq")]


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation(exc, "(event)")
    return str(exc)


def batch_events(batch: Batch) -> list[dict[str, Any]]:
    """The events of a batch as JSON objects (for tools and tests)."""
    items: list[dict[str, Any]] = json.loads(batch.payload)
    return items
