"""Request bodies of the three endpoints, and the checks beyond their schema (size, times)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, ValidationError

from contracts.models import Identifier
from edge.ingest.exceptions import Rejection, describe


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeofenceTransitionIn(_Body):
    geofence_id: Identifier
    transition: Literal["enter", "exit"]
    at: AwareDatetime


class RegionRef(_Body):
    type: Literal["ibeacon", "altbeacon", "eddystone_uid"]
    id: Annotated[str, Field(pattern=r"^(?:[0-9a-f]{2}){1,64}$")]


class BeaconRegionIn(_Body):
    region: RegionRef
    transition: Literal["enter", "exit"]
    at: AwareDatetime
    rssi: Annotated[float, Field(ge=-127, le=20)] | None = None
    sustained: StrictBool = False
    """The app read the region in the store over several seconds (a bagged phone), not in
    one reading: judged against the region's ``sustained_min_rssi``."""


class FixIn(_Body):
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
    accuracy_m: Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)]
    at: AwareDatetime


class Report(_Body):
    """A request body: one list of items (``items_field``), each with its time ``at``."""

    items_field: ClassVar[str]


B = TypeVar("B", bound=Report)


class GeofenceReport(Report):
    items_field: ClassVar[str] = "transitions"
    transitions: Annotated[list[GeofenceTransitionIn], Field(min_length=1, max_length=500)]


class BeaconReport(Report):
    items_field: ClassVar[str] = "events"
    events: Annotated[list[BeaconRegionIn], Field(min_length=1, max_length=500)]


class LocationReport(Report):
    items_field: ClassVar[str] = "fixes"
    fixes: Annotated[list[FixIn], Field(min_length=1, max_length=500)]


def parse_report(
    model: type[B],
    body: bytes,
    *,
    max_items: int,
    clock_skew_s: float,
    max_report_age_s: float,
    now: float,
) -> B:
    """Validate a body; its list field ``model.items_field`` is checked for size and times."""
    name = model.items_field
    try:
        parsed = model.model_validate_json(body)
    except ValidationError as exc:
        raise Rejection(422, "invalid_body", describe(exc)) from exc
    items: list[Any] = getattr(parsed, name)
    if len(items) > max_items:
        raise Rejection(
            422,
            "invalid_body",
            f"{name}: {len(items)} items, more than the limit {max_items}",
        )
    for i, item in enumerate(items):
        t = item.at.timestamp()
        if t - now > clock_skew_s:
            raise Rejection(422, "invalid_body", f"{name}.{i}.at: {t - now:.0f} s in the future")
        if now - t > max_report_age_s:
            raise Rejection(
                422,
                "invalid_body",
                f"{name}.{i}.at: {now - t:.0f} s old, older than {max_report_age_s:g} s",
            )
    return parsed
