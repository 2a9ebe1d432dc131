"""The trace format (DESIGN.md, Contract: trace format, version 1).

JSON Lines, UTF-8. Line 1 is the header; every other line has ``t`` (seconds since
``start``, non-decreasing) and ``kind``. Unknown extra fields and kinds are ignored so other
tools can add their own. A body line that is not JSON, or whose known fields are wrong, is
an error naming line and field; a reader given :class:`TraceProblems` skips it instead,
reports it once and counts it, so one bad line of a long recording costs that line only.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from contracts.exceptions import ContractError
from contracts.validation import describe_validation

log = logging.getLogger(__name__)
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
    customer_id: str | None = Field(
        default=None, description="null: a person nobody can name (an unknown phone)"
    )
    event: str
    zone_id: str | None = None
    device_class: str | None = Field(
        default=None,
        description="what the person carries: android_app, iphone_app, vip_tag, no_app, "
        "staff or unknown (for scoring per class; absent in older traces)",
    )


TraceRecord = AdvRecord | AppRecord | TruthRecord
_RECORD: TypeAdapter[TraceRecord] = TypeAdapter(
    Annotated[AdvRecord | AppRecord | TruthRecord, Field(discriminator="kind")]
)
KNOWN_KINDS = frozenset({"adv", "app", "truth"})
PIPELINE_KINDS = frozenset({"adv", "app"})  # truth lines are for scoring only (DESIGN.md)


def parse_header(line: str | bytes) -> TraceHeader:
    try:
        return TraceHeader.model_validate_json(line)
    except ValidationError as exc:
        raise ContractError(f"trace line 1 (header): {_first(exc)}") from exc


# Why a lenient reader skipped a line (TraceProblems.skipped's keys).
NOT_UTF8 = "not UTF-8"
NOT_JSON = "not JSON"  # a recording cut off mid-line is the usual case
NOT_AN_OBJECT = "not a JSON object"
BAD_FIELDS = "known fields wrong"
T_BACKWARDS = "t before the previous line's"


class TraceProblems:
    """The lines lenient readers of one trace skipped, each reported once, counted by reason.

    Several readers of the same file (one per gateway at a finite replay speed) share one:
    every reader goes through the file in order, so a line is new exactly when it lies past
    the furthest line reported so far. The first ``log_limit`` lines of each reason are
    logged with their number and why; the rest are counted for :meth:`summary`.
    """

    def __init__(self, source: str = "trace", log_limit: int = 10) -> None:
        self.source = source
        self.log_limit = log_limit
        self.skipped: Counter[str] = Counter()
        self.first_line: dict[str, int] = {}
        self.ignored_kinds: Counter[str] = Counter()
        self._furthest = 0

    def _new(self, lineno: int) -> bool:
        if lineno <= self._furthest:
            return False
        self._furthest = lineno
        return True

    def skip(self, lineno: int, reason: str, detail: str) -> None:
        if not self._new(lineno):
            return
        self.skipped[reason] += 1
        self.first_line.setdefault(reason, lineno)
        n = self.skipped[reason]
        if n <= self.log_limit:
            log.warning("%s line %d: %s; line skipped", self.source, lineno, detail)
        if n == self.log_limit:
            log.warning(
                "%s: further lines %s are counted, not logged (see the summary)",
                self.source,
                reason,
            )

    def ignore_kind(self, lineno: int, kind: object) -> None:
        if self._new(lineno):
            self.ignored_kinds[str(kind)[:40]] += 1

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str | None:
        """One sentence for the end of a run, or None when every line was read."""
        parts = []
        if self.skipped:
            reasons = ", ".join(
                f"{n} {reason} (first at line {self.first_line[reason]})"
                for reason, n in sorted(self.skipped.items())
            )
            parts.append(f"skipped {self.total_skipped} malformed line(s): {reasons}")
        if self.ignored_kinds:
            kinds = ", ".join(f"{n} {kind!r}" for kind, n in sorted(self.ignored_kinds.items()))
            parts.append(f"ignored lines of kinds this version does not know: {kinds}")
        return f"{self.source}: " + "; ".join(parts) if parts else None


def parse_record(line: str | bytes, lineno: int) -> TraceRecord | None:
    """One body line; ``None`` for a kind this version does not know (skipped, not fatal)."""
    data = load_line(line, lineno)
    if data.get("kind") not in KNOWN_KINDS:
        return None
    return _validate(data, lineno)


class TraceLineError(ContractError):
    """One body line that cannot be read: ``reason`` is one of the constants above."""

    def __init__(self, lineno: int, reason: str, detail: str) -> None:
        super().__init__(f"trace line {lineno}: {detail}")
        self.lineno = lineno
        self.reason = reason
        self.detail = detail


def load_line(line: str | bytes, lineno: int) -> dict[str, Any]:
    """One body line as a JSON object, or :class:`TraceLineError` saying why not."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TraceLineError(lineno, NOT_UTF8, f"not UTF-8: {exc.reason}") from exc
    try:
        data: Any = json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        raise TraceLineError(lineno, NOT_JSON, f"not JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise TraceLineError(lineno, NOT_AN_OBJECT, "expected an object, not JSON of another type")
    return data


def _validate(data: dict[str, Any], lineno: int) -> TraceRecord:
    try:
        return _RECORD.validate_python(data)
    except ValidationError as exc:
        raise TraceLineError(lineno, BAD_FIELDS, _first(exc)) from exc


def _body_record(
    line: str | bytes,
    lineno: int,
    last_t: float,
    kinds: Collection[str],
    problems: TraceProblems | None,
) -> TraceRecord | None:
    data = load_line(line, lineno)
    kind = data.get("kind")
    if kind not in KNOWN_KINDS:
        if problems is not None:
            problems.ignore_kind(lineno, kind)
        return None
    if kind not in kinds:
        return None
    record = _validate(data, lineno)
    if record.t < last_t:
        raise TraceLineError(lineno, T_BACKWARDS, f"t={record.t} is before {last_t}")
    return record


def read_trace(
    lines: Iterable[str] | Iterable[bytes],
    problems: TraceProblems | None = None,
    *,
    kinds: Collection[str] = KNOWN_KINDS,
) -> tuple[TraceHeader, Iterator[TraceRecord]]:
    """Header and a lazy iterator over the records; checks that ``t`` never decreases.

    Without ``problems`` a bad body line raises :class:`ContractError`; with it the line is
    skipped and recorded there. Only records of ``kinds`` are validated and yielded: the
    pipeline reads ``adv`` and ``app`` and never looks inside a ``truth`` line. A bad
    header is always an error: without it nothing can be replayed.
    """
    it: Iterator[str | bytes] = iter(lines)
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
            try:
                record = _body_record(line, lineno, last_t, kinds, problems)
            except TraceLineError as exc:
                if problems is None:
                    raise
                problems.skip(lineno, exc.reason, exc.detail)
                continue
            if record is not None:
                last_t = record.t
                yield record

    return header, body()


def dump_line(obj: BaseModel | dict[str, Any]) -> str:
    data = obj.model_dump(mode="json", exclude_none=True) if isinstance(obj, BaseModel) else obj
    return json.dumps(data, separators=(",", ":"), sort_keys=False)


def header_start(header: TraceHeader) -> datetime:
    return header.start


def _first(exc: ValidationError) -> str:
    return describe_validation(exc, "(line)", first=True)
