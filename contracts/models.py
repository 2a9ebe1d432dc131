"""The wire models of DESIGN.md (Contract: event fields, alerts, acks, gateway status).

Every model forbids unknown fields and unknown enum values: a payload is accepted
whole or rejected with an error that names the offending field, never half-accepted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from contracts.exceptions import ContractError
from contracts.validation import describe_validation

MAX_BATCH_EVENTS = 500
M = TypeVar("M", bound=BaseModel)
_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_HEX_RE = re.compile(r"^[0-9a-f]+$")


def _utc_ms(value: datetime) -> datetime:
    # On every timestamp of every event: plain arithmetic, not astimezone() (3.5x slower,
    # ~6% of the stream worker's CPU in `proxima bench stream`'s profile).
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("timestamp must carry a timezone (UTC), e.g. 2026-01-01T10:00:00.000Z")
    if offset:
        value = value - offset
    ms = value.microsecond // 1000 * 1000
    if value.tzinfo is UTC and ms == value.microsecond:
        return value
    return value.replace(tzinfo=UTC, microsecond=ms)


def _iso_ms(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


UtcMillis = Annotated[
    datetime, AfterValidator(_utc_ms), PlainSerializer(_iso_ms, return_type=str, when_used="json")
]
"""A UTC timestamp with millisecond precision, serialised as ``2026-01-01T10:00:00.000Z``."""

Identifier = Annotated[str, Field(pattern=_ID_RE, description="store, gateway, zone or person id")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class EventKind(StrEnum):
    ZONE_ENTER = "zone_enter"
    ZONE_DWELL = "zone_dwell"
    ZONE_EXIT = "zone_exit"
    SIGHTING = "sighting"
    GEOFENCE_ENTER = "geofence_enter"
    GEOFENCE_DWELL = "geofence_dwell"
    GEOFENCE_EXIT = "geofence_exit"
    LOCATION = "location"


# Each kind belongs to exactly one schema family; a mismatch is rejected.
SCHEMA_FOR_KIND: dict[EventKind, str] = {
    EventKind.ZONE_ENTER: "proxima.zone.v1",
    EventKind.ZONE_DWELL: "proxima.zone.v1",
    EventKind.ZONE_EXIT: "proxima.zone.v1",
    EventKind.SIGHTING: "proxima.sighting.v1",
    EventKind.GEOFENCE_ENTER: "proxima.geofence.v1",
    EventKind.GEOFENCE_DWELL: "proxima.geofence.v1",
    EventKind.GEOFENCE_EXIT: "proxima.geofence.v1",
    EventKind.LOCATION: "proxima.location.v1",
}
EventSchema = Literal[
    "proxima.zone.v1", "proxima.sighting.v1", "proxima.geofence.v1", "proxima.location.v1"
]


class SubjectType(StrEnum):
    EDDYSTONE_EID = "eddystone_eid"
    IBEACON = "ibeacon"
    ALTBEACON = "altbeacon"
    EDDYSTONE_UID = "eddystone_uid"
    DEVICE = "device"


class Subject(_Strict):
    """What was seen: a rotating EID, a store beacon, or an app-reported device."""

    type: SubjectType
    id: Annotated[str, Field(min_length=2, max_length=128)]

    @field_validator("id")
    @classmethod
    def _lower_hex(cls, value: str) -> str:
        if not _HEX_RE.match(value) or len(value) % 2:
            raise ValueError("subject id must be lowercase hex with an even number of digits")
        return value


class GatewayReading(_Strict):
    """One gateway's filtered RSSI behind a fused zone decision."""

    gateway_id: Identifier
    rssi: Annotated[float, Field(ge=-127, le=20)]


class ZoneEvidence(_Strict):
    """Why a store's presence coordinator (docs/presence.md), or the app ingest for a beacon
    region's enter (``app_region_*``, docs/operators/ingest.md), placed a subject in a zone.

    ``rule`` names the evidence (``door_then_interior``, ``interior_gateway``, ...),
    ``readings`` the gateways it used, ``detail`` says it in words; the event's
    ``confidence`` is the decision's.
    """

    rule: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    readings: Annotated[list[GatewayReading], Field(max_length=16)] = Field(default_factory=list)
    detail: Annotated[str, Field(max_length=200)] = ""


class Event(_Strict):
    """One event from a gateway or the app ingest (DESIGN.md, Contract: event fields)."""

    schema_: EventSchema = Field(alias="schema")
    event_id: UUID
    store_id: Identifier
    gateway_id: Identifier
    observed_at: UtcMillis
    seq: Annotated[int, Field(ge=1)]
    kind: EventKind
    subject: Subject
    zone_id: Identifier | None = None
    rssi: Annotated[float, Field(ge=-127, le=20)] | None = None
    distance_m: Annotated[float, Field(ge=0, le=10_000)] | None = None
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    # Added compatibly (optional): a store's presence coordinator and the app ingest send it.
    evidence: ZoneEvidence | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("kind")
    @classmethod
    def _kind_matches_schema(cls, kind: EventKind, info: Any) -> EventKind:
        schema = info.data.get("schema_")
        if schema is not None and SCHEMA_FOR_KIND[kind] != schema:
            raise ValueError(
                f"kind {kind.value!r} belongs to schema {SCHEMA_FOR_KIND[kind]!r}, not {schema!r}"
            )
        return kind

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class GatewayState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    DEGRADED = "degraded"


class GatewayStatus(_Strict):
    """Retained gateway health on the status topic; the last will is the ``offline`` form."""

    schema_: Literal["proxima.gateway_status.v1"] = Field(
        default="proxima.gateway_status.v1", alias="schema"
    )
    store_id: Identifier
    gateway_id: Identifier
    state: GatewayState
    at: UtcMillis
    version: str | None = None
    uptime_s: Annotated[float, Field(ge=0)] | None = None
    adverts_per_s: Annotated[float, Field(ge=0)] | None = None
    events_published: Annotated[int, Field(ge=0)] | None = None
    outbox_depth: Annotated[int, Field(ge=0)] | None = None
    outbox_oldest_s: Annotated[float, Field(ge=0)] | None = None
    scanner: str | None = None
    reconnects: Annotated[int, Field(ge=0)] | None = None
    warnings: list[str] = Field(default_factory=list)
    # Added compatibly (all optional): older gateways simply do not send them.
    events_per_s: Annotated[float, Field(ge=0)] | None = None
    outbox_bytes: Annotated[int, Field(ge=0)] | None = None
    dropped: Annotated[int, Field(ge=0)] | None = None
    decode_errors: Annotated[int, Field(ge=0)] | None = None
    scanner_state: str | None = None
    beacons: list[BeaconHealth] = Field(default_factory=list)
    # 0.3.0, compatible: the live config the agent runs (its config_version) and why the
    # last one pushed was rejected, if it was (`proxima gateways config rollout` reads both).
    config_version: str | None = None
    config_error: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BeaconHealth(_Strict):
    """A store beacon's last Eddystone-TLM as one gateway heard it (fleet health)."""

    address: str
    beacon_id: str | None = None
    last_seen: UtcMillis
    battery_mv: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    temperature_c: float | None = None
    adv_count: Annotated[int, Field(ge=0)] | None = None
    uptime_s: Annotated[float, Field(ge=0)] | None = None


class AlertKind(StrEnum):
    ARRIVAL = "arrival"
    APPROACH = "approach"  # alert v1 revision 2: near the store, not yet in it
    FITTING_ROOM = "fitting_room"
    APPOINTMENT = "appointment"
    DEPARTURE = "departure"


REVISIONS: dict[str, int] = {"proxima.alert.v1": 2, "proxima.visit.v1": 2}
"""Compatible revisions of a schema: values added, none removed or changed, so every record
valid under an earlier revision is valid under this one and the schema name stays. A
reader of an earlier revision rejects the new values (models forbid unknown ones): upgrade
readers first (CHANGELOG's migration notes). A schema not listed is at revision 1."""


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class AlertTarget(_Strict):
    """Who the stream suggests should get the alert; the notifier routes from here."""

    associate_id: Identifier | None = None
    role: Literal["associate", "manager"] | None = None


# A customer-visible field name: the allow-list in ``visible_fields`` uses these.
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class Alert(_Strict):
    """An alert for associates (DESIGN.md, Contract: event fields — an alert)."""

    schema_: Literal["proxima.alert.v1"] = Field(default="proxima.alert.v1", alias="schema")
    alert_id: UUID
    store_id: Identifier
    customer_id: Identifier
    visit_id: str | None = None
    kind: AlertKind
    title: Annotated[str, Field(min_length=1, max_length=200)]
    body: Annotated[str, Field(max_length=2000)] = ""
    fields: dict[FieldName, Any] = Field(
        default_factory=dict, description="only the fields the customer made visible"
    )
    zone_id: Identifier | None = None
    caused_by: Annotated[list[UUID], Field(min_length=1, max_length=100)]
    created_at: UtcMillis
    priority: Priority = Priority.NORMAL
    target: AlertTarget = Field(default_factory=AlertTarget)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    def view(self) -> AlertView:
        """What associates' devices get: the alert without the customer's and the visit's
        ids and the causing events (the console shows none of them either)."""
        return AlertView(
            alert_id=self.alert_id,
            store_id=self.store_id,
            kind=self.kind,
            title=self.title,
            body=self.body,
            fields=self.fields,
            zone_id=self.zone_id,
            created_at=self.created_at,
            priority=self.priority,
            target=self.target,
        )


class AlertView(_Strict):
    """An alert as handhelds, store screens and webhooks get it (DESIGN.md, Contract: MQTT
    topics): :class:`Alert` without ``customer_id``, ``visit_id`` and ``caused_by``, which
    would let anyone holding a handheld link a customer's visits. The wire alert on
    ``proxima.alerts.v1`` keeps them for the services."""

    schema_: Literal["proxima.alert_view.v1"] = Field(
        default="proxima.alert_view.v1", alias="schema"
    )
    alert_id: UUID
    store_id: Identifier
    kind: AlertKind
    title: Annotated[str, Field(min_length=1, max_length=200)]
    body: Annotated[str, Field(max_length=2000)] = ""
    fields: dict[FieldName, Any] = Field(
        default_factory=dict, description="only the fields the customer made visible"
    )
    zone_id: Identifier | None = None
    created_at: UtcMillis
    priority: Priority = Priority.NORMAL
    target: AlertTarget = Field(default_factory=AlertTarget)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class WithdrawReason(StrEnum):
    CONSENT_REVOKED = "consent_revoked"  # the customer withdrew arrival_alerts
    ERASED = "erased"  # the customer was forgotten


class AlertWithdrawn(_Strict):
    """On the same MQTT topics as the alert: drop it, do not act on it any more."""

    schema_: Literal["proxima.alert_withdrawn.v1"] = Field(
        default="proxima.alert_withdrawn.v1", alias="schema"
    )
    alert_id: UUID
    store_id: Identifier
    reason: WithdrawReason
    at: UtcMillis

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class AckStatus(StrEnum):
    CLAIMED = "claimed"
    DONE = "done"
    DECLINED = "declined"


class AlertAck(_Strict):
    """An associate's answer to an alert, on the ack topic."""

    schema_: Literal["proxima.ack.v1"] = Field(default="proxima.ack.v1", alias="schema")
    alert_id: UUID
    store_id: Identifier
    associate_id: Identifier
    status: AckStatus
    at: UtcMillis

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


DLQ_ORIGINAL_MAX = 16 * 1024
"""Most bytes of the original input a DLQ record keeps (a prefix; its size and hash say
what the whole was)."""
DLQ_TEXT_MAX = 1000
"""Most characters of a DLQ record's reason, source, store and gateway."""
DLQ_RECORD_MAX = 64 * 1024
"""No DLQ record made by :meth:`DlqRecord.of` is larger than this serialised (bytes)."""


def _clip(text: str, limit: int = DLQ_TEXT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DlqRecord(_Strict):
    """Rejected input on ``proxima.events.dlq.v1``: why, where from, and the original bytes.

    ``original_b64`` is the whole input when it is at most :data:`DLQ_ORIGINAL_MAX` bytes,
    else its first that many bytes with ``original_truncated`` set; ``original_size`` and
    ``original_sha256`` always describe the whole input. Build records with :meth:`of`,
    which bounds every field, so a DLQ write never exceeds a broker's message limit.
    """

    schema_: Literal["proxima.dlq.v1"] = Field(default="proxima.dlq.v1", alias="schema")
    reason: str
    source: str
    received_at: UtcMillis
    original_b64: str
    store_id: str | None = None
    gateway_id: str | None = None
    # Added compatibly (optional): records written before them simply do not have them.
    original_size: Annotated[int, Field(ge=0)] | None = None
    original_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    original_truncated: bool = False

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @classmethod
    def of(
        cls,
        reason: str,
        raw: bytes,
        *,
        source: str,
        received_at: datetime | None = None,
        store_id: str | None = None,
        gateway_id: str | None = None,
    ) -> DlqRecord:
        """A record for ``raw`` rejected with ``reason``, every field bounded."""
        return cls(
            reason=_clip(reason),
            source=_clip(source),
            received_at=received_at or datetime.now(UTC),
            original_b64=base64.b64encode(raw[:DLQ_ORIGINAL_MAX]).decode(),
            store_id=None if store_id is None else _clip(store_id, 200),
            gateway_id=None if gateway_id is None else _clip(gateway_id, 200),
            original_size=len(raw),
            original_sha256=hashlib.sha256(raw).hexdigest(),
            original_truncated=len(raw) > DLQ_ORIGINAL_MAX,
        )

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


_BATCH = TypeAdapter(Annotated[list[Event], Field(min_length=1, max_length=MAX_BATCH_EVENTS)])


def _describe(exc: ValidationError) -> str:
    return describe_validation(exc, "(payload)")


def parse_batch(raw: bytes | str) -> list[Event]:
    """Parse a gateway's MQTT payload: a JSON list of at least one event.

    Raises ContractError naming every offending field (``3.kind: Input should be ...``).
    """
    try:
        return _BATCH.validate_json(raw)
    except ValidationError as exc:
        raise ContractError(f"invalid event batch: {_describe(exc)}") from exc


def parse_alert(raw: bytes | str) -> Alert:
    """Parse one alert, raising ContractError that names the offending field."""
    return parse_model(Alert, raw)


def parse_alert_message(raw: bytes | str) -> AlertView | AlertWithdrawn:
    """One message of an MQTT alert topic: an alert's view, or its withdrawal."""
    try:
        schema = json.loads(raw).get("schema")
    except (ValueError, AttributeError):
        schema = None
    if schema == "proxima.alert_withdrawn.v1":
        return parse_model(AlertWithdrawn, raw)
    return parse_model(AlertView, raw)


def parse_model(model: type[M], raw: bytes | str) -> M:
    """Parse any contract model, raising ContractError that names the offending field."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ContractError(f"invalid {model.__name__}: {_describe(exc)}") from exc


@dataclass(frozen=True, slots=True)
class Rejected:
    """One item of a batch that did not validate: its index, why, and its raw JSON."""

    index: int | None
    reason: str
    raw: bytes


def split_batch(
    raw: bytes | str, max_events: int = MAX_BATCH_EVENTS
) -> tuple[list[Event], list[Rejected]]:
    """Validate a batch item by item, so one bad event never costs its good neighbours.

    A payload that is not a JSON list at all, is empty or too long is one rejection.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        # The common case, a batch of good events, in one pass of pydantic's JSON parser
        # (~40% faster than json.loads then one model_validate per event); anything else
        # is taken apart item by item below, so each rejection names its event.
        events = _EVENT_LIST.validate_json(data)
    except ValidationError:
        pass
    else:
        if events and len(events) <= max_events:
            return events, []
    try:
        items = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [], [Rejected(None, f"payload is not JSON: {exc}", data)]
    if not isinstance(items, list):
        return [], [
            Rejected(
                None, f"payload must be a JSON list of events, got {type(items).__name__}", data
            )
        ]
    if not items:
        return [], [Rejected(None, "batch is empty: at least one event is required", data)]
    if len(items) > max_events:
        return [], [
            Rejected(None, f"batch has {len(items)} events, more than the limit {max_events}", data)
        ]
    good: list[Event] = []
    bad: list[Rejected] = []
    for i, item in enumerate(items):
        try:
            good.append(Event.model_validate(item))
        except ValidationError as exc:
            bad.append(Rejected(i, f"event {i}: {_describe(exc)}", json.dumps(item).encode()))
    return good, bad


_EVENT_LIST = TypeAdapter(list[Event])


class VisitChange(StrEnum):
    APPROACH = "approach"  # visit v1 revision 2: a geofence or storefront beacon, not yet inside
    ARRIVAL = "arrival"
    ZONE_MOVE = "zone_move"
    DEPARTURE = "departure"


class VisitSource(StrEnum):
    BLE = "ble"
    GEOFENCE = "geofence"
    APP_BEACON = "app_beacon"


class VisitUpdate(_Strict):
    """One change of a customer's visit on ``proxima.visits.v1`` (key: customer id).

    Published only for customers who granted ``analytics`` (DESIGN.md, minimisation).
    """

    schema_: Literal["proxima.visit.v1"] = Field(default="proxima.visit.v1", alias="schema")
    visit_id: str
    customer_id: Identifier
    store_id: Identifier
    change: VisitChange
    at: UtcMillis
    started_at: UtcMillis
    zone_id: Identifier | None = None
    previous_zone_id: Identifier | None = None
    source: VisitSource
    caused_by: Annotated[list[UUID], Field(max_length=100)] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone (UTC)")
    return value.astimezone(UTC)


class ConsentDecision(_Strict):
    """One consent decision: granted or revoked, and when (kept at full precision)."""

    granted: bool
    at: Annotated[datetime, AfterValidator(_aware_utc)]


class ConsentRecord(_Strict):
    """A customer's whole consent on ``proxima.consent.v1`` (compacted, key: customer id).

    Each record is the customer's full consent state after a change, so the latest record
    per key is enough to rebuild the registry; a tombstone (null value) means forgotten.
    ``version`` is the registry shard's version read with the state (it grows, also across
    a rebuild); which record is newer is decided by its place on the topic: one customer
    is one partition, and ``rebuild-consent`` keeps the last offset per key.
    """

    schema_: Literal["proxima.consent.v1"] = Field(default="proxima.consent.v1", alias="schema")
    customer_id: Identifier
    consent: dict[
        Annotated[str, Field(pattern=r"^[a-z_]+(@[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$")],
        ConsentDecision,
    ] = Field(description="purpose or purpose@store -> decision")
    version: Annotated[int, Field(ge=0)]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def allows(self, purpose: str, store: str) -> bool:
        """The decision for ``purpose`` at ``store``: the store's own wins over the global
        one; no decision means no (as the stream decides)."""
        for key in (f"{purpose}@{store}", purpose):
            decision = self.consent.get(key)
            if decision is not None:
                return decision.granted
        return False

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
