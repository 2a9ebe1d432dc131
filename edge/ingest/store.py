"""What the ingest knows of its store: geofences and beacon regions, from a JSON/TOML file."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.models import Identifier
from edge.geofence import Circle, Geofence, Polygon
from edge.ingest.exceptions import IngestConfigError, describe

PAIR_WINDOW_S = 3.0
"""Seconds of storefront readings an app compares an in-store reading with
(:attr:`BeaconRegionSpec.pair_margin_db`)."""
SUSTAIN_READINGS = 4
SUSTAIN_WINDOW_S = 8.0
"""A ``sustained`` enter (:attr:`BeaconRegionSpec.sustained_min_rssi`): the app read an
in-store region at or above its ``sustained_min_rssi``, by its ``pair_margin_db`` over the
storefront's loudest of the last :data:`PAIR_WINDOW_S` s, in at least
:data:`SUSTAIN_READINGS` of the last :data:`SUSTAIN_WINDOW_S` seconds it ranged, and its
loudest of them by the margin over the storefront's loudest of the whole window. The app
applies it (the ingest cannot: an enter carries one reading); here so both read one rule."""


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CircleSpec(_Cfg):
    kind: Literal["circle"]
    id: Identifier
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    radius_m: Annotated[float, Field(gt=0, le=50_000)]


class PolygonSpec(_Cfg):
    kind: Literal["polygon"]
    id: Identifier
    vertices: Annotated[
        list[
            tuple[Annotated[float, Field(ge=-90, le=90)], Annotated[float, Field(ge=-180, le=180)]]
        ],
        Field(min_length=3, max_length=1000, description="[lat, lon] pairs in order"),
    ]


class BeaconRegionSpec(_Cfg):
    """A store beacon region the app monitors, and the zone it stands for.

    iOS wakes the app when the phone first catches any packet of the region, which for a
    beacon near the shop front is often on the pavement. With ``min_rssi`` the app's
    ranged reading decides: an enter at least that loud is in ``zone_id``; a weaker one,
    or one without a reading, is in ``approach_zone_id`` (a zone of kind ``outside`` in
    the store's rules: the visit approaches and has not arrived). Without ``min_rssi``
    every enter is in ``zone_id``.

    ``pair_margin_db`` is for the app, not the ingest: the app counts a reading of this
    region as in the store only when it is also that much louder than the loudest reading,
    in the last :data:`PAIR_WINDOW_S` seconds, of any *storefront* region (one whose
    ``zone_id`` is this region's ``approach_zone_id``: a beacon outside on the shop front),
    or louder than the latest such reading of those seconds and confirmed by a second
    reading that is too (an entrant walks in under the storefront beacon: its loudest of
    the window is from before the door).
    A passer-by at the open door reads the entrance beacon as loud as an entrant does, but
    the storefront beacon louder still. The ingest cannot check it (an enter carries one
    reading) and trusts the app's judgement as it trusts the reading itself.

    ``sustained_min_rssi`` (dBm, below ``min_rssi``) is for a phone in a bag or a pocket,
    which reads a store beacon 5-15 dB weaker than in the hand: an enter the app marks
    ``sustained`` (it read the region in the store, by the pair margin over the
    storefront, in :data:`SUSTAIN_READINGS` of :data:`SUSTAIN_WINDOW_S` ranged seconds,
    docs/operators/ingest.md) counts as in the store from this level up. Without it a
    sustained enter is judged by ``min_rssi`` like any other."""

    type: Literal["ibeacon", "altbeacon", "eddystone_uid"]
    id: Annotated[str, Field(pattern=r"^(?:[0-9a-f]{2}){1,64}$")]
    zone_id: Identifier
    min_rssi: Annotated[float, Field(ge=-127, le=20)] | None = None
    approach_zone_id: Identifier | None = None
    pair_margin_db: Annotated[float, Field(ge=0, le=40)] | None = None
    sustained_min_rssi: Annotated[float, Field(ge=-127, le=20)] | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> BeaconRegionSpec:
        if (self.min_rssi is None) != (self.approach_zone_id is None):
            raise ValueError(
                "min_rssi and approach_zone_id go together: a weaker enter needs a zone to be in"
            )
        if self.pair_margin_db is not None and self.min_rssi is None:
            raise ValueError(
                "pair_margin_db needs min_rssi and approach_zone_id: it compares this "
                "region's reading with the storefront regions' (approach_zone_id's)"
            )
        if self.sustained_min_rssi is not None and (
            self.min_rssi is None or self.sustained_min_rssi > self.min_rssi
        ):
            raise ValueError(
                "sustained_min_rssi needs min_rssi, and may not be above it: it lowers the bar "
                "for an enter the app read in the store over several seconds"
            )
        if self.sustained_min_rssi is not None and self.pair_margin_db is None:
            # Without the storefront to beat, four readings at a bagged phone's bar are what
            # a shopper at the glass gives too.
            raise ValueError(
                "sustained_min_rssi needs pair_margin_db: a sustained enter is one the app read "
                "in the store by that margin over the storefront regions, for seconds"
            )
        return self

    def zone_for(self, rssi: float | None, *, sustained: bool = False) -> str:
        """The zone an enter with this ranged reading (dBm, or None) stands for;
        ``sustained``: the app read the region in the store over several seconds."""
        if self.min_rssi is None or self.approach_zone_id is None:
            return self.zone_id
        bar = self.min_rssi
        if sustained and self.sustained_min_rssi is not None:
            bar = self.sustained_min_rssi
        if rssi is not None and rssi >= bar:
            return self.zone_id
        return self.approach_zone_id


class StoreIngestConfig(_Cfg):
    """What the ingest needs to know about its store: geofences and beacon regions."""

    geofences: list[Annotated[CircleSpec | PolygonSpec, Field(discriminator="kind")]] = Field(
        default_factory=list
    )
    beacon_regions: list[BeaconRegionSpec] = Field(default_factory=list)

    def build_geofences(self) -> list[Geofence]:
        out: list[Geofence] = []
        for spec in self.geofences:
            if isinstance(spec, CircleSpec):
                out.append(Circle(spec.id, spec.lat, spec.lon, spec.radius_m))
            else:
                out.append(Polygon(spec.id, tuple(spec.vertices)))
        return out

    def regions(self) -> dict[tuple[str, str], BeaconRegionSpec]:
        """``(region type, region id) -> its spec`` (its zone: :meth:`BeaconRegionSpec.zone_for`)."""
        return {(r.type, r.id): r for r in self.beacon_regions}


def load_store_config(path: str | Path) -> StoreIngestConfig:
    """Read a JSON or TOML store ingest file (geofences and beacon regions)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        data: Any = tomllib.loads(raw.decode()) if p.suffix == ".toml" else json.loads(raw)
        return StoreIngestConfig.model_validate(data)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise IngestConfigError(f"{p}: {exc}") from exc
    except ValidationError as exc:
        raise IngestConfigError(f"{p}: {describe(exc)}") from exc
