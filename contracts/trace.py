"""The trace format (DESIGN.md, Contract: trace format, version 1).

JSON Lines, UTF-8. Line 1 is the header; every other line has ``t`` (seconds since
``start``, non-decreasing) and ``kind``. Unknown extra fields are ignored so other tools
can add their own; a line whose known fields are wrong is an error naming line and field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from contracts.exceptions import ContractError

ZoneKind = Literal["entrance", "fitting_room", "floor", "checkout", "outside"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Kept(BaseModel):
    """Unknown fields are kept (and ignored by the replay): a layout's calibration
    (``rssi_1m``, ``path_loss_n``, zone ``rect``) travels with it to edge.calibration."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Zone(_Kept):
    id: str
    kind: ZoneKind
    name: str | None = None


class GatewayPlacement(_Kept):
    id: str
    zone_id: str
    x: float = 0.0
    y: float = 0.0
    floor: int = 0
    rssi_offset_db: float = Field(default=0.0, description="per-gateway calibration offset")


class Layout(_Kept):
    zones: list[Zone]
    gateways: list[GatewayPlacement]

    def zone_of(self, gateway_id: str) -> str:
        for gw in self.gateways:
            if gw.id == gateway_id:
                return gw.zone_id
        raise KeyError(f"gateway {gateway_id!r} is not in the layout")

    def zone_kind(self, zone_id: str) -> ZoneKind | None:
        for zone in self.zones:
            if zone.id == zone_id:
                return zone.kind
        return None


class TraceHeader(_Open):
    format: Literal["proxima-trace"]
    version: Literal[1]
    store_id: str
    start: AwareDatetime
    layout: Layout | None = None
    layout_name: str | None = None


class AdvRecord(_Open):
    t: Annotated[float, Field(ge=0)]
    kind: Literal["adv"]
    gateway_id: str
    address: str
    rssi: Annotated[int, Field(ge=-127, le=20)]
    manufacturer_data: dict[str, str] = Field(default_factory=dict)
    service_data: dict[str, str] = Field(default_factory=dict)
    service_uuids: list[str] = Field(default_factory=list)
    tx_power: int | None = None
    local_name: str | None = None


class AppRecord(_Open):
    t: Annotated[float, Field(ge=0)]
    kind: Literal["app"]
    device_id: str
    event: str
    model_config = ConfigDict(extra="allow", frozen=True)


class TruthRecord(_Open):
    t: Annotated[float, Field(ge=0)]
    kind: Literal["truth"]
    customer_id: str
    event: str
    zone_id: str | None = None


TraceRecord = AdvRecord | AppRecord | TruthRecord
_RECORD: TypeAdapter[TraceRecord] = TypeAdapter(
    Annotated[AdvRecord | AppRecord | TruthRecord, Field(discriminator="kind")]
)
KNOWN_KINDS = frozenset({"adv", "app", "truth"})


def parse_header(line: str | bytes) -> TraceHeader:
    try:
        return TraceHeader.model_validate_json(line)
    except ValidationError as exc:
        raise ContractError(f"trace line 1 (header): {_first(exc)}") from exc


def parse_record(line: str | bytes, lineno: int) -> TraceRecord | None:
    """One body line; ``None`` for a kind this version does not know (skipped, not fatal)."""
    try:
        data: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ContractError(f"trace line {lineno}: not JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ContractError(f"trace line {lineno}: expected an object")
    if data.get("kind") not in KNOWN_KINDS:
        return None
    try:
        return _RECORD.validate_python(data)
    except ValidationError as exc:
        raise ContractError(f"trace line {lineno}: {_first(exc)}") from exc


def read_trace(lines: Iterable[str]) -> tuple[TraceHeader, Iterator[TraceRecord]]:
    """Header and a lazy iterator over the records; checks that ``t`` never decreases."""
    it = iter(lines)
    try:
        first = next(it)
    except StopIteration:
        raise ContractError("trace is empty: line 1 must be the header") from None
    header = parse_header(first)

    def body() -> Iterator[TraceRecord]:
        last_t = 0.0
        for lineno, line in enumerate(it, start=2):
            if not line.strip():
                continue
            record = parse_record(line, lineno)
            if record is None:
                continue
            if record.t < last_t:
                raise ContractError(f"trace line {lineno}: t={record.t} is before {last_t}")
            last_t = record.t
            yield record

    return header, body()


def dump_line(obj: BaseModel | dict[str, Any]) -> str:
    data = obj.model_dump(mode="json", exclude_none=True) if isinstance(obj, BaseModel) else obj
    return json.dumps(data, separators=(",", ":"), sort_keys=False)


def header_start(header: TraceHeader) -> datetime:
    return header.start


def _first(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "(line)"
    return f"{where}: {err['msg']}"
