"""What the ingest knows of its store: geofences and beacon regions, from a JSON/TOML file."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.models import Identifier
from edge.geofence import Circle, Geofence, Polygon
from edge.ingest.exceptions import IngestConfigError, describe


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
    """A store beacon region the app monitors, and the zone it stands for."""

    type: Literal["ibeacon", "altbeacon", "eddystone_uid"]
    id: Annotated[str, Field(pattern=r"^(?:[0-9a-f]{2}){1,64}$")]
    zone_id: Identifier


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

    def zones_by_region(self) -> dict[tuple[str, str], str]:
        """``(region type, region id) -> zone_id`` of the beacon regions."""
        return {(r.type, r.id): r.zone_id for r in self.beacon_regions}


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
