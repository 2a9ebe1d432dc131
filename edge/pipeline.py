"""The gateway's decision path: decode (beacons) → RSSI filter → zone state machine → drafts.

Pure and synchronous: no I/O, time comes from the advertisements and from ``tick(now)``,
so a replay on a virtual clock decides exactly as a live run. Only rotating Eddystone-EID
identifiers feed presence (people); store beacons (iBeacon, AltBeacon, Eddystone-UID,
TLM) identify places, so their TLM telemetry becomes beacon health for the status. The
pipeline never sees an identity key: it forwards the 8-byte EID as heard.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from beacons.exceptions import BeaconError
from beacons.filters import KalmanRssiFilter, RssiFilter
from beacons.frames import EddystoneEidFrame, EddystoneTlmFrame, decode_fields
from beacons.presence import PresenceConfig, PresenceTracker, Transition
from contracts.models import EventKind, GatewayReading, Subject, SubjectType, ZoneEvidence
from edge.outbox import EventDraft
from edge.settings import EdgeSettings
from edge.sources import Advertisement

log = logging.getLogger(__name__)

MAX_BEACONS = 256


@dataclass(slots=True)
class BeaconHealth:
    """Latest TLM of one store beacon (keyed by its address; ``beacon_id`` if it sent one)."""

    address: str
    last_seen: float
    beacon_id: str | None = None
    battery_mv: int | None = None
    temperature_c: float | None = None
    adv_count: int | None = None
    uptime_s: float | None = None


def presence_config(settings: EdgeSettings) -> PresenceConfig:
    """The zone state machine's thresholds and timers, from the gateway's settings."""
    return PresenceConfig(
        enter_rssi=settings.enter_rssi,
        exit_rssi=settings.exit_rssi,
        enter_min_s=settings.enter_min_s,
        enter_min_sightings=settings.enter_min_sightings,
        dwell_s=settings.dwell_s,
        exit_min_s=settings.exit_min_s,
        exit_timeout_s=settings.exit_timeout_s,
        linger_rssi=None
        if settings.linger_db is None
        else settings.enter_rssi - settings.linger_db,
        linger_min_s=settings.linger_min_s,
    )


def _evidence_filter(settings: EdgeSettings) -> Callable[[], RssiFilter] | None:
    """The sightings' own filter (``fusion_sighting_q``), or None: the zone machine's."""
    q = settings.fusion_sighting_q
    return partial(KalmanRssiFilter, q=q) if settings.fused and q is not None else None


@dataclass(slots=True)
class PipelineStats:
    adverts: int = 0
    decode_errors: int = 0
    eid_frames: int = 0
    tlm_frames: int = 0
    transitions: int = 0


class Pipeline:
    """decode → filter → zone logic for one gateway's zone."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.zone_id = settings.zone_id
        self.rssi_offset = settings.rssi_offset_db
        # With fusion on, each tick also reports every subject heard since the last one:
        # its strongest level and when (beacons.fusion reads the door's peak, the interior's
        # rise and the door pair's difference from these). A door pair's gateways take that
        # level from a filter of their own, faster than the zone machine's
        # (fusion_sighting_q): comparing two gateways while someone walks through the door,
        # the machine's filter (q 2 dB²/s, ~30 % of each new sample at 1 Hz) lags the walk
        # by several dB.
        self.tracker = PresenceTracker(
            settings.zone_id,
            presence_config(settings),
            max_subjects=settings.max_subjects,
            evidence_filter_factory=_evidence_filter(settings),
        )
        self.stats = PipelineStats()
        self.beacons: OrderedDict[str, BeaconHealth] = OrderedDict()
        self.last_decode_error: str | None = None
        self.sightings: dict[str, tuple[float, float]] | None = {} if settings.fused else None

    def reconfigure(self, settings: EdgeSettings) -> None:
        """New thresholds and zone for subjects first heard from now on (see edge.live)."""
        tracker = self.tracker
        tracker.config = presence_config(settings)
        tracker.zone_id = self.zone_id = settings.zone_id
        tracker.evict_after_s = settings.exit_timeout_s
        tracker.evidence_filter_factory = _evidence_filter(settings)
        self.rssi_offset = settings.rssi_offset_db

    def handle(self, advert: Advertisement, out: list[Transition]) -> None:
        """Decode one advertisement; append the transitions it causes to ``out``."""
        self.stats.adverts += 1
        try:
            frames = decode_fields(advert.manufacturer_data, advert.service_data)
        except BeaconError as exc:
            # Radio noise and broken beacons are normal: counted, last reason kept for status.
            self.stats.decode_errors += 1
            self.last_decode_error = f"{advert.address}: {exc}"
            log.debug("undecodable advert from %s: %s", advert.address, exc)
            return
        observe = self.tracker.observe
        n0 = len(out)
        for frame in frames:
            ftype = frame.type
            if ftype == "eddystone_eid":
                if isinstance(frame, EddystoneEidFrame):
                    self.stats.eid_frames += 1
                    subject = frame.eid.hex()
                    out.extend(observe(subject, advert.rssi + self.rssi_offset, advert.at))
                    if self.sightings is not None:
                        self._sighted(subject, advert.at)
            elif ftype == "eddystone_tlm":
                self.stats.tlm_frames += 1
                if isinstance(frame, EddystoneTlmFrame):
                    self._tlm(advert, frame)
            elif ftype in ("ibeacon", "altbeacon", "eddystone_uid"):
                health = self.beacons.get(advert.address)
                if health is not None:
                    health.beacon_id = f"{ftype}:{frame.subject_id}"
                    health.last_seen = advert.at
        self.stats.transitions += len(out) - n0

    def tick(self, now: float, out: list[Transition]) -> None:
        """Fire presence timers due by ``now`` (dwell, exits by weak signal or silence)."""
        n0 = len(out)
        out.extend(self.tracker.tick(now))
        sightings = self.sightings
        if sightings:
            zone = self.zone_id
            for subject, (at, level) in sightings.items():
                out.append(Transition(subject, zone, "sighting", at, level, 1.0))
            sightings.clear()
        self.stats.transitions += len(out) - n0

    def _sighted(self, subject: str, at: float) -> None:
        assert self.sightings is not None
        level = self.tracker.evidence_rssi(subject)
        if level is None:
            return
        seen = self.sightings.get(subject)
        if seen is None or level >= seen[1]:
            self.sightings[subject] = (at, level)

    def _tlm(self, advert: Advertisement, frame: EddystoneTlmFrame) -> None:
        health = self.beacons.get(advert.address)
        if health is None:
            if len(self.beacons) >= MAX_BEACONS:
                self.beacons.popitem(last=False)
            health = self.beacons[advert.address] = BeaconHealth(advert.address, advert.at)
        else:
            self.beacons.move_to_end(advert.address)
        health.last_seen = advert.at
        health.battery_mv = frame.battery_mv or None  # 0 = not reported (spec)
        health.temperature_c = frame.temperature_c
        health.adv_count = frame.adv_count
        health.uptime_s = frame.uptime_s


def to_draft(tr: Transition) -> EventDraft:
    """A presence transition as an outbox draft (subject: the EID as heard)."""
    evidence = None
    if tr.why is not None:
        evidence = ZoneEvidence(
            rule=tr.why.rule,
            readings=[
                GatewayReading(gateway_id=g, rssi=max(-127.0, min(20.0, r)))
                for g, r in tr.why.readings
            ],
            detail=tr.why.detail[:200],
        )
    return EventDraft(
        kind=EventKind(tr.kind),
        subject=Subject(type=SubjectType.EDDYSTONE_EID, id=tr.subject),
        observed_at=datetime.fromtimestamp(tr.at, tz=UTC),
        zone_id=tr.zone_id,
        rssi=max(-127.0, min(20.0, round(tr.rssi, 1))),
        confidence=None if tr.kind == "sighting" else tr.confidence,
        evidence=evidence,
    )
