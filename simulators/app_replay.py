"""Replay support: a trace's ``app`` lines reach the real ingest endpoint, signed, on time.

``proxima replay`` runs the store's app-event ingest (:mod:`edge.ingest`) on loopback
inside the agent of one gateway (the first entrance gateway of the layout, else the
first), as a gateway running ``PROXIMA_INGEST_ENABLED`` does; its events leave through
that agent's outbox. The device registry is the real one (Redis, where ``proxima customers
device --public-key`` publishes keys); the geofence and beacon regions come from the trace
header's layout (``geofence``, ``beacons`` with their identities: docs/trace-format.md).

Each ``geofence_enter|exit``, ``beacon_region_enter|exit`` and ``location`` line becomes one
request signed with its device's private key from ``--device-keys`` (a trace never holds
keys), timestamped on the replay's clock: at ``--speed max`` the TraceClock calls
:meth:`AppReplay.on_app` once everything before the line is published and waits until the
line's events are on the broker, so they take their place in the trace's order; at a
finite speed :meth:`AppReplay.feed` sends each line at its time, and the hosting agent
stays up until the last one is sent (:class:`HeldSource`). Nonces derive from the line,
so a replay gives the same event ids every time (the pipeline deduplicates by them).

A line whose device has no key is skipped and counted, as are lines the ingest rejects
(by reason) and lines that lack a field; :meth:`AppReplay.summary` says so once at the end.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.services import ServiceSettings
from contracts.trace import AppRecord, TraceHeader
from edge.devices import DEVICE_ID_RE
from edge.ingest import IngestServer, IngestSettings, StoreIngestConfig, sign_request
from edge.outbox import Outbox
from edge.sources import Advertisement, ScannerSource
from simulators.exceptions import SimulatorError

log = logging.getLogger(__name__)

DEVICE_KEYS_SUFFIX = ".device-keys.json"
INGEST_EVENTS = {
    "geofence_enter": "geofence-transitions",
    "geofence_exit": "geofence-transitions",
    "beacon_region_enter": "beacon-regions",
    "beacon_region_exit": "beacon-regions",
    "location": "locations",
}
APPLIED_ELSEWHERE = frozenset({"consent_revoke", "consent_grant"})  # simulators.replay
LOG_LIMIT = 10


class DeviceKeysError(SimulatorError):
    """A ``--device-keys`` file cannot be used; the message names the file and the entry."""


def device_keys_path(trace: Path) -> Path:
    """Where ``proxima simulate --enroll`` writes a trace's device keys: beside it."""
    return trace.with_name(trace.name + DEVICE_KEYS_SUFFIX)


def write_device_keys(path: Path, keys: dict[str, bytes]) -> None:
    """``{"DEVICE_ID": base64 of the 32-byte Ed25519 private key}``, readable by its owner only."""
    data = {device: base64.b64encode(raw).decode() for device, raw in sorted(keys.items())}
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def load_device_keys(path: Path) -> dict[str, Ed25519PrivateKey]:
    """Read a device keys file; any entry that is not a device id and a key is an error."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeviceKeysError(f"device keys {path}: cannot read: {exc.strerror}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeviceKeysError(f"device keys {path}: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DeviceKeysError(f'device keys {path}: expected {{"DEVICE_ID": "BASE64 KEY"}}')
    keys: dict[str, Ed25519PrivateKey] = {}
    for device, value in data.items():
        where = f"device keys {path}: {device[:70]!r}"
        if not DEVICE_ID_RE.match(device):
            raise DeviceKeysError(f"{where}: a device id is 16-64 lowercase hex digits")
        if not isinstance(value, str):
            raise DeviceKeysError(f"{where}: the key must be a base64 string")
        try:
            raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DeviceKeysError(f"{where}: the key is not base64 ({exc})") from exc
        if len(raw) != 32:
            raise DeviceKeysError(
                f"{where}: an Ed25519 private key is 32 raw bytes, this one is {len(raw)}"
            )
        keys[device] = Ed25519PrivateKey.from_private_bytes(raw)
    return keys


def store_config(layout: dict[str, Any], store_id: str) -> StoreIngestConfig:
    """The ingest's geofences and beacon regions from a trace header's layout.

    ``geofence`` ``{lat, lon, radius_m, id?}`` (id: the store id) and each of ``beacons``
    with ``zone_id`` and its identity: ``uuid``/``major``/``minor`` (iBeacon) or
    ``namespace``/``instance`` (Eddystone-UID). An entry without them is not a region. A
    beacon's ``app_min_rssi`` becomes its region's ``min_rssi``, with the layout's street
    (its zone of kind ``outside``) as the approach zone, its ``app_pair_margin_db`` the
    region's ``pair_margin_db`` and its ``app_sustained_min_rssi`` the region's
    ``sustained_min_rssi``. A beacon in the street (a storefront beacon) is a region of the
    street: every enter of it is an approach.
    """
    geofences: list[dict[str, Any]] = []
    gf = layout.get("geofence")
    if isinstance(gf, dict) and {"lat", "lon"} <= gf.keys():
        geofences.append(
            {"kind": "circle", "id": gf.get("id") or store_id, "lat": gf["lat"], "lon": gf["lon"],
             "radius_m": gf.get("radius_m", 100.0)}
        )  # fmt: skip
    regions: list[dict[str, Any]] = []
    # A beacon with app_min_rssi: a weaker ranged enter is on the street (the layout's zone
    # of kind outside), an approach.
    street = next(
        (
            z["id"]
            for z in layout.get("zones") or []
            if isinstance(z, dict) and z.get("kind") == "outside"
        ),
        None,
    )
    for b in layout.get("beacons") or []:
        if not isinstance(b, dict) or "zone_id" not in b:
            continue
        ref = region_ref(b)
        if ref is None:
            continue
        region: dict[str, Any] = {"type": ref[0], "id": ref[1], "zone_id": b["zone_id"]}
        if b.get("app_min_rssi") is not None and street is not None:
            region |= {"min_rssi": b["app_min_rssi"], "approach_zone_id": street}
            if b.get("app_pair_margin_db") is not None:
                region["pair_margin_db"] = b["app_pair_margin_db"]
            if b.get("app_sustained_min_rssi") is not None:
                region["sustained_min_rssi"] = b["app_sustained_min_rssi"]
        regions.append(region)
    return StoreIngestConfig.model_validate({"geofences": geofences, "beacon_regions": regions})


def region_ref(fields: dict[str, Any]) -> tuple[str, str] | None:
    """(type, hex id) of a beacon region from ``uuid``/``major``/``minor`` or
    ``namespace``/``instance``; None when neither is there."""
    if fields.get("uuid") is not None:
        uuid = str(fields["uuid"]).replace("-", "").lower()
        major, minor = int(fields.get("major", 0)), int(fields.get("minor", 0))
        return "ibeacon", f"{uuid}{major:04x}{minor:04x}"
    if fields.get("namespace") is not None and fields.get("instance") is not None:
        return "eddystone_uid", f"{fields['namespace']}{fields['instance']}".lower()
    return None


class AppLineError(SimulatorError):
    """An app line lacks what its event needs (names the field)."""


class AppReplay:
    """Sends a trace's app lines to an ingest it serves on loopback (see module docstring).

    ``clock`` is the replay's clock (Unix seconds): the ingest judges timestamps, nonces
    and rate limits on it. Give :meth:`serve` to the hosting agent as a service.
    """

    def __init__(
        self,
        header: TraceHeader,
        layout: dict[str, Any],
        keys: dict[str, Ed25519PrivateKey],
        clock: Callable[[], float] | None = None,
        services: ServiceSettings | None = None,
        *,
        keys_hint: Path | None = None,
    ) -> None:
        self.header = header
        self.start = header.start.timestamp()
        self.services = services or ServiceSettings()
        self.keys = keys
        self.clock = clock or self._paced_now
        self._speed = 1.0
        self._wall0: float | None = None
        self.store = store_config(layout, header.store_id)
        self.geofence_id = self.store.geofences[0].id if self.store.geofences else None
        self.keys_hint = keys_hint
        self.host: str | None = None  # the gateway whose agent serves the ingest
        self.server: IngestServer | None = None
        self.outbox: Outbox | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ready = asyncio.Event()
        self._lines = 0
        self.sent: Counter[str] = Counter()
        self.accepted = 0
        self.events = 0
        self.no_key: Counter[str] = Counter()  # device → lines skipped
        self.rejected: Counter[str] = Counter()  # ingest reason → lines
        self.unusable: Counter[str] = Counter()  # why a line could not become a request
        self.other_events: Counter[str] = Counter()

    # --- the ingest, served by the hosting agent -----------------------------------------
    async def serve(self, outbox: Outbox) -> None:
        """Serve the ingest into ``outbox`` until cancelled (an EdgeAgent service)."""
        settings = IngestSettings(
            enabled=True, host="127.0.0.1", port=0, devices=self.services.redis, store_file=""
        )
        server = IngestServer.from_settings(
            settings,
            store_id=self.header.store_id,
            sink=outbox,
            redis_prefix=self.services.redis_prefix,
            clock=self.clock,
        )
        await server.update_store(self.store)
        self.server, self.outbox = server, outbox
        # Geofence dwells and stale exits are ticked on the replay's clock, before each line.
        await server.start(tick_s=None)
        self._session = aiohttp.ClientSession()
        self._ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            self._ready.clear()
            await self._session.close()
            await server.stop()
            aclose = getattr(server.registry, "aclose", None)
            if aclose is not None:
                await aclose()

    # --- the lines -------------------------------------------------------------------------
    async def on_app(self, record: AppRecord) -> list[UUID]:
        """The TraceClock's hook: send one line; once its events are published, their ids."""
        ids = await self.send(record)
        if ids and self.outbox is not None:
            await self.outbox.wait_empty()
        return ids

    def _paced_now(self) -> float:
        if self._wall0 is None:
            return self.start
        return self.start + (time.monotonic() - self._wall0) * self._speed

    async def feed(self, lines: asyncio.Queue[AppRecord | None], speed: float) -> None:
        """At ``--speed N``: send app lines as their time comes (N× real time) until None.

        The hosting agent's reader of the trace puts its app lines here as it passes them
        (:meth:`simulators.replay.ConsentReplay.source`), so the trace is read once per agent.
        """
        self._speed, self._wall0 = speed, time.monotonic()
        while (record := await lines.get()) is not None:
            if record.event not in INGEST_EVENTS:
                self._count_other(record)
                continue
            await asyncio.sleep(max(0.0, record.t / speed - (time.monotonic() - self._wall0)))
            await self.send(record)

    async def send(self, record: AppRecord) -> list[UUID]:
        """Sign and post one line; the ids of the events the ingest stored (none when it was
        skipped or rejected: counted, logged, never raised)."""
        if record.event not in INGEST_EVENTS:
            self._count_other(record)
            return []
        self._lines += 1
        key = self.keys.get(record.device_id)
        if key is None:
            self.no_key[record.device_id] += 1
            if sum(self.no_key.values()) <= LOG_LIMIT:
                log.warning(
                    "trace t=%s: %s of device %s: no key for it in --device-keys; line skipped",
                    record.t, record.event, record.device_id[:64],
                )  # fmt: skip
            return []
        try:
            route, body = self._request(record)
        except AppLineError as exc:
            self._unusable(record, str(exc))
            return []
        await self._ready.wait()
        assert self.server is not None
        await self.server.tick()
        path = f"/v1/stores/{self.header.store_id}/{route}"
        raw = json.dumps(body, separators=(",", ":")).encode()
        nonce = base64.urlsafe_b64encode(
            hashlib.sha256(f"{record.device_id}|{record.t}|{self._lines}".encode()).digest()
        )[:22].decode()
        headers = sign_request(
            key, record.device_id, "POST", path, raw, timestamp=int(self.clock()), nonce=nonce
        )
        self.sent[record.event] += 1
        status, answer = await self._post(path, raw, headers)
        if status == 202:
            stored = [UUID(e["event_id"]) for e in answer.get("events") or []]
            self.accepted += 1
            self.events += len(stored)
            return stored
        reason = str(answer.get("reason") or f"HTTP {status}")
        self.rejected[reason] += 1
        if sum(self.rejected.values()) <= LOG_LIMIT:
            log.warning(
                "trace t=%s: the ingest rejected %s of device %s: %s: %s",
                record.t, record.event, record.device_id, reason, answer.get("detail"),
            )  # fmt: skip
        return []

    async def _post(
        self, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        assert self.server is not None
        assert self._session is not None
        url = f"http://127.0.0.1:{self.server.port}{path}"
        async with self._session.post(url, data=body, headers=headers) as resp:
            try:
                answer = await resp.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                answer = {}
            return resp.status, answer if isinstance(answer, dict) else {}

    def _request(self, record: AppRecord) -> tuple[str, dict[str, Any]]:
        extra = record.model_extra or {}
        at = datetime.fromtimestamp(self.start + record.t, UTC).isoformat()
        event = record.event
        if event.startswith("geofence_"):
            geofence = extra.get("region") or self.geofence_id
            if not geofence:
                raise AppLineError("no 'region' and the layout has no geofence")
            item = {
                "geofence_id": geofence,
                "transition": event.removeprefix("geofence_"),
                "at": at,
            }
            return INGEST_EVENTS[event], {"transitions": [item]}
        if event.startswith("beacon_region_"):
            try:
                ref = region_ref(extra)
            except (TypeError, ValueError) as exc:
                raise AppLineError(f"major/minor must be integers: {exc}") from exc
            if ref is None:
                raise AppLineError("needs uuid (with major, minor) or namespace and instance")
            item = {"region": {"type": ref[0], "id": ref[1]},
                    "transition": event.removeprefix("beacon_region_"), "at": at}  # fmt: skip
            if extra.get("rssi") is not None:
                item["rssi"] = extra["rssi"]
            if extra.get("sustained") is True:
                item["sustained"] = True
            return INGEST_EVENTS[event], {"events": [item]}
        missing = [f for f in ("lat", "lon", "accuracy_m") if extra.get(f) is None]
        if missing:
            raise AppLineError(f"location needs {', '.join(missing)}")
        fix = {
            "lat": extra["lat"],
            "lon": extra["lon"],
            "accuracy_m": extra["accuracy_m"],
            "at": at,
        }
        return INGEST_EVENTS[event], {"fixes": [fix]}

    def _unusable(self, record: AppRecord, why: str) -> None:
        self.unusable[f"{record.event}: {why}"] += 1
        if sum(self.unusable.values()) <= LOG_LIMIT:
            log.warning("trace t=%s: %s: %s; line skipped", record.t, record.event, why)

    def _count_other(self, record: AppRecord) -> None:
        if record.event not in APPLIED_ELSEWHERE:
            self.other_events[record.event[:40]] += 1

    @property
    def skipped_no_key(self) -> int:
        return sum(self.no_key.values())

    def summary(self) -> str | None:
        """One paragraph for the end of a replay, or None when the trace had no app lines."""
        if not (self._lines or self.other_events):
            return None
        sent = sum(self.sent.values())
        where = f"{self.host}'s ingest" if self.host else "the ingest"
        parts = [f"app lines: {sent} sent to {where}, {self.accepted} accepted "
                 f"({self.events} events)"]  # fmt: skip
        if self.no_key:
            hint = ""
            if self.keys_hint is not None:
                hint = f"; give --device-keys {self.keys_hint}"
            parts.append(
                f"{self.skipped_no_key} skipped: no device key for {len(self.no_key)} device(s) "
                f"(first: {next(iter(self.no_key))}{hint})"
            )
        if self.rejected:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.rejected.items()))
            parts.append(f"{sum(self.rejected.values())} rejected by the ingest: {reasons}")
        if self.unusable:
            why = "; ".join(f"{n} {w}" for w, n in sorted(self.unusable.items()))
            parts.append(f"{sum(self.unusable.values())} skipped, fields missing: {why}")
        if self.other_events:
            kinds = ", ".join(f"{n} {e!r}" for e, n in sorted(self.other_events.items()))
            parts.append(f"ignored app events this version does not send: {kinds}")
        return "; ".join(parts)


class HeldSource(ScannerSource):
    """A source that, once its adverts are over, ends only when ``until`` is set: the agent
    hosting the ingest at a finite speed stays up until the last app line is sent."""

    def __init__(self, inner: ScannerSource, until: asyncio.Event) -> None:
        self.inner = inner
        self.until = until
        self.name = inner.name

    @property
    def state(self) -> str:  # type: ignore[override]
        return self.inner.state

    @property
    def finite(self) -> bool:
        return self.inner.finite

    def now(self) -> float:
        return self.inner.now()

    def close(self) -> None:
        self.inner.close()

    async def adverts(self) -> AsyncIterator[Advertisement]:
        async for advert in self.inner.adverts():
            yield advert
        await self.until.wait()
