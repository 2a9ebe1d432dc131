"""Store layouts as data: zones with geometry, portals, gateways with calibration, beacons.

A layout file (JSON, in ``simulators/layouts/``) describes one store in metres on a local
plan: x along the street, y into the store, one plan per floor. Zones are rectangles; where
two overlap, the one listed first wins (list the specific zones, such as fitting rooms,
before the floor around them). Portals join two zones at a point: the door joins the street
to the entrance, an escalator joins two floors and takes ``travel_s`` to ride.

The header of a trace embeds :meth:`StoreLayout.trace_layout`: the contract's ``zones`` and
``gateways`` plus this file's geometry and calibration as extra fields.
"""

from __future__ import annotations

import json
from collections import deque
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.trace import ZoneKind
from contracts.validation import describe_validation
from simulators.exceptions import LayoutError

FLOOR_HEIGHT_M = 4.5
REFERENCE_RSSI_1M = -59.0
"""The RSSI at 1 m every gateway is normalised to: ``rssi_offset_db = -59 - rssi_1m``."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dwell(_Spec):
    """Log-normal dwell time: ``median_s`` and the sigma of its logarithm."""

    median_s: Annotated[float, Field(gt=0)]
    sigma: Annotated[float, Field(ge=0, le=3)] = 0.6
    max_s: Annotated[float, Field(gt=0)] = 3600.0


class ZoneSpec(_Spec):
    id: str
    kind: ZoneKind
    name: str | None = None
    floor: int = 0
    rect: tuple[float, float, float, float] = Field(description="x0, y0, x1, y1 in metres")
    dwell: Dwell | None = None
    visit_prob: Annotated[float, Field(ge=0, le=1)] = 0.0

    @model_validator(mode="after")
    def _rect_ordered(self) -> ZoneSpec:
        x0, y0, x1, y1 = self.rect
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"zone {self.id!r}: rect must be x0 < x1, y0 < y1, got {self.rect}")
        return self

    def contains(self, floor: int, x: float, y: float) -> bool:
        x0, y0, x1, y1 = self.rect
        return floor == self.floor and x0 <= x <= x1 and y0 <= y <= y1


class PortalSpec(_Spec):
    """A way between zones ``a`` and ``b`` at (x, y); ``to_floor`` for stairs/escalators."""

    id: str
    a: str
    b: str
    x: float
    y: float
    floor: int = 0
    to_floor: int | None = None
    travel_s: Annotated[float, Field(ge=0)] = 0.0


class GatewaySpec(_Spec):
    """A gateway and its calibration (what its radio measures from the reference phone)."""

    id: str
    zone_id: str
    x: float
    y: float
    floor: int = 0
    height_m: Annotated[float, Field(ge=0, le=10)] = 2.5
    rssi_1m: Annotated[float, Field(ge=-90, le=-30)] = REFERENCE_RSSI_1M
    path_loss_n: Annotated[float, Field(ge=1.5, le=5)] = 2.2
    shadowing_db: Annotated[float, Field(ge=0, le=15)] | None = None
    scan_duty: Annotated[float, Field(gt=0, le=1)] = 0.9
    facing_deg: Annotated[float, Field(ge=-360, le=360)] | None = Field(
        default=None,
        description="a directional (patch) antenna: the direction it points on the plan, "
        "degrees anticlockwise from +x (-90: towards the street of the shipped layouts); "
        "None: omnidirectional",
    )
    back_loss_db: Annotated[float, Field(ge=0, le=30)] = Field(
        default=0.0,
        description="a directional antenna's front-to-back ratio as the store sees it (dB): "
        "the loss for a phone straight behind it, half that at its side",
    )

    @model_validator(mode="after")
    def _antenna(self) -> GatewaySpec:
        if self.back_loss_db > 0 and self.facing_deg is None:
            raise ValueError(
                f"gateway {self.id!r}: back_loss_db needs facing_deg (where the antenna points)"
            )
        return self

    @property
    def rssi_offset_db(self) -> float:
        return round(REFERENCE_RSSI_1M - self.rssi_1m, 1)


class BeaconSpec(_Spec):
    """A store beacon: iBeacon or Eddystone-UID, optionally interleaving Eddystone-TLM."""

    id: str
    kind: Literal["ibeacon", "eddystone_uid"]
    zone_id: str
    x: float
    y: float
    floor: int = 0
    uuid: str | None = Field(default=None, description="iBeacon proximity UUID, 32 hex")
    major: int = 0
    minor: int = 0
    namespace: str | None = Field(default=None, description="Eddystone namespace, 20 hex")
    instance: str | None = Field(default=None, description="Eddystone instance, 12 hex")
    measured_power: int = -59
    interval_s: Annotated[float, Field(gt=0.02, le=10)] = 1.0
    tlm_every: Annotated[int, Field(ge=0)] = 10
    battery_mv: int = 3000
    app_min_rssi: float | None = Field(
        default=None,
        description="dBm: the app reports this beacon's region as in-store only once it "
        "ranges it at least this loud; weaker, the enter is an approach (the street). None: "
        "every enter is in-store (an app that does not range)",
    )
    app_pair_margin_db: Annotated[float, Field(ge=0, le=40)] | None = Field(
        default=None,
        description="dB: with app_min_rssi, the app counts a reading as in-store only when it "
        "is also this much louder than every storefront beacon's (a beacon in the street "
        "zone) loudest reading of the last 3 s: a passer-by at the open door reads the "
        "entrance beacon as loud as an entrant, the storefront beacon louder still",
    )
    app_sustained_min_rssi: float | None = Field(
        default=None,
        description="dBm, at most app_min_rssi: the app also reports the region as in-store "
        "when it reads it at least this loud, by app_pair_margin_db over the storefront, in "
        "4 of 8 ranged seconds (a phone in a bag reads 5-15 dB weaker than in the hand)",
    )

    @model_validator(mode="after")
    def _ids_for_kind(self) -> BeaconSpec:
        want = {"ibeacon": (("uuid", 32),), "eddystone_uid": (("namespace", 20), ("instance", 12))}
        for name, digits in want[self.kind]:
            value = getattr(self, name)
            if value is None or len(value) != digits:
                raise ValueError(
                    f"beacon {self.id!r} ({self.kind}) needs {name}: {digits} hex digits"
                )
            try:
                bytes.fromhex(value)
            except ValueError:
                raise ValueError(f"beacon {self.id!r}: {name} is not hex: {value!r}") from None
        if self.app_pair_margin_db is not None and self.app_min_rssi is None:
            raise ValueError(f"beacon {self.id!r}: app_pair_margin_db needs app_min_rssi")
        if self.app_sustained_min_rssi is not None and (
            self.app_min_rssi is None or self.app_sustained_min_rssi > self.app_min_rssi
        ):
            raise ValueError(
                f"beacon {self.id!r}: app_sustained_min_rssi needs app_min_rssi, at or above it"
            )
        if self.app_sustained_min_rssi is not None and self.app_pair_margin_db is None:
            raise ValueError(
                f"beacon {self.id!r}: app_sustained_min_rssi needs app_pair_margin_db (the "
                "storefront beacon a sustained reading must beat)"
            )
        return self


class Geofence(_Spec):
    """The store's OS geofence (a circle the customer's phone monitors; iOS's practical
    minimum radius is about 100 m). ``id`` defaults to the store id."""

    lat: float
    lon: float
    radius_m: Annotated[float, Field(gt=0)] = 100.0
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Arrivals(_Spec):
    """People per hour for each opening hour (a non-homogeneous Poisson rate)."""

    open: str = "10:00"
    hourly: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)]


DeviceClass = Literal["android_app", "iphone_app", "vip_tag", "no_app", "staff", "unknown"]
CUSTOMER_CLASSES: tuple[DeviceClass, ...] = ("iphone_app", "android_app", "vip_tag", "no_app")
"""The classes an enrolled customer is drawn into (by ``Population.device_classes``);
``staff`` are the staff's handhelds and ``unknown`` everyone who is not enrolled."""
DEFAULT_DEVICE_CLASSES: dict[DeviceClass, float] = {
    "iphone_app": 0.55,
    "android_app": 0.30,
    "vip_tag": 0.05,
    "no_app": 0.10,
}


class Population(_Spec):
    """Who comes in, and how often each hard case happens (probabilities per arrival).

    ``device_classes`` are the shares of enrolled customers by what they carry
    (:mod:`simulators.devices` says how each class is heard); they need not sum to 1.
    """

    customers: Annotated[int, Field(ge=0)] = 40
    p_enrolled: Annotated[float, Field(ge=0, le=1)] = 0.2
    p_consent: Annotated[float, Field(ge=0, le=1)] = 0.7
    p_revoke: Annotated[float, Field(ge=0, le=1)] = 0.1
    p_phone: Annotated[float, Field(ge=0, le=1)] = 0.6
    p_wearable: Annotated[float, Field(ge=0, le=1)] = 0.3
    group_sizes: list[float] = Field(default_factory=lambda: [0.6, 0.28, 0.09, 0.03])
    p_window_shopper: Annotated[float, Field(ge=0, le=1)] = 0.25
    p_lingerer: Annotated[float, Field(ge=0, le=1)] = 0.05
    p_between: Annotated[float, Field(ge=0, le=1)] = 0.03
    p_return: Annotated[float, Field(ge=0, le=1)] = 0.05
    staff: Annotated[int, Field(ge=0)] = 3
    static_noise: Annotated[int, Field(ge=0)] = 4
    device_classes: dict[DeviceClass, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_DEVICE_CLASSES),
        description="shares of enrolled customers per device class (normalised)",
    )
    p_shares_location: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.6,
        description="app users who let the OS monitor the store's geofence and send fixes",
    )
    android_foreground_intervals_s: list[Annotated[float, Field(gt=0.02, le=10)]] = Field(
        default_factory=lambda: [0.1, 0.25],
        description="Android app on screen: LOW_LATENCY 100 ms or BALANCED 250 ms",
    )
    android_background_intervals_s: list[Annotated[float, Field(gt=0.02, le=10)]] = Field(
        default_factory=lambda: [0.25, 1.0, 1.0],
        description="Android app in the background (a foreground service keeps advertising): "
        "BALANCED 250 ms or LOW_POWER 1 s",
    )
    p_android_on_screen: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.3, description="of the Android phones held in hand, those with the app open"
    )
    tag_interval_s: Annotated[float, Field(gt=0.02, le=10)] = 0.5
    associates: list[str] = Field(default_factory=lambda: ["assoc-maria"])

    @model_validator(mode="after")
    def _customer_classes(self) -> Population:
        wrong = sorted(set(self.device_classes) - set(CUSTOMER_CLASSES))
        if wrong:
            raise ValueError(
                f"device_classes: {', '.join(wrong)} are not classes of enrolled customers "
                f"({', '.join(CUSTOMER_CLASSES)})"
            )
        if sum(self.device_classes.values()) <= 0:
            raise ValueError("device_classes: the shares sum to 0")
        return self

    def draw_class(self, u: float) -> DeviceClass:
        """The class a uniform draw ``u`` in [0, 1) falls in, by the shares (normalised)."""
        total = sum(self.device_classes.values())
        acc = 0.0
        last: DeviceClass = CUSTOMER_CLASSES[0]
        for cls in CUSTOMER_CLASSES:  # a fixed order: the same draw, the same class
            share = self.device_classes.get(cls, 0.0)
            if share <= 0:
                continue
            acc += share / total
            last = cls
            if u < acc:
                return cls
        return last


class RadioEnv(_Spec):
    """The store's radio environment (see :mod:`simulators.radio`).

    The defaults reproduce a measured indoor link (tests/simulators/test_radio.py).
    """

    shadowing_db: Annotated[float, Field(ge=0, le=15)] = 2.5
    shadowing_tau_s: Annotated[float, Field(gt=0)] = 3.0
    rician_k: Annotated[float, Field(ge=0)] = 6.0
    spot_db: Annotated[float, Field(ge=0, le=15)] = 3.2
    spot_decorrelation_m: Annotated[float, Field(gt=0)] = 2.0
    edge_dbm: float = -83.0
    edge_width_db: Annotated[float, Field(gt=0, le=10)] = 2.5
    burst_db: Annotated[float, Field(ge=0, le=40)] = 9.0
    burst_share: Annotated[float, Field(ge=0, lt=1)] = 0.4
    burst_mean_s: Annotated[float, Field(gt=0)] = 1.5
    floor_loss_db: Annotated[float, Field(ge=0)] = 18.0
    facade_loss_db: Annotated[float, Field(ge=0)] = 6.0
    base_loss: Annotated[float, Field(ge=0, lt=1)] = 0.03
    collision_per_advertiser: Annotated[float, Field(ge=0, lt=1)] = 0.0015
    sensitivity_dbm: float = -98.0


class StoreLayout(_Spec):
    name: str
    store_id: str
    description: str = ""
    floors: list[int] = Field(default_factory=lambda: [0])
    zones: Annotated[list[ZoneSpec], Field(min_length=2)]
    portals: list[PortalSpec]
    gateways: Annotated[list[GatewaySpec], Field(min_length=1)]
    beacons: list[BeaconSpec] = Field(default_factory=list)
    geofence: Geofence
    arrivals: Arrivals
    population: Population = Field(default_factory=Population)
    radio: RadioEnv = Field(default_factory=RadioEnv)
    crowd: str | None = None
    """Whose crowd this store draws (a variant's base: the same people walk the same paths
    for a seed, so a variant's figures compare with its base's); None: its own name's."""

    @property
    def crowd_name(self) -> str:
        return self.crowd or self.name

    @model_validator(mode="after")
    def _consistent(self) -> StoreLayout:
        ids = [z.id for z in self.zones]
        if len(set(ids)) != len(ids):
            raise ValueError("zone ids must be unique")
        known = set(ids)
        for p in self.portals:
            for end in (p.a, p.b):
                if end not in known:
                    raise ValueError(f"portal {p.id!r} names unknown zone {end!r}")
        placed: list[tuple[str, str]] = [(g.id, g.zone_id) for g in self.gateways]
        placed += [(b.id, b.zone_id) for b in self.beacons]
        for thing, zone_id in placed:
            if zone_id not in known:
                raise ValueError(f"{thing!r} is in unknown zone {zone_id!r}")
        if not any(z.kind == "outside" for z in self.zones):
            raise ValueError("a layout needs an 'outside' zone (the street)")
        fronts = [b for b in self.beacons if b.zone_id in self.outside_zone_ids]
        for b in fronts:
            if b.app_min_rssi is not None:
                raise ValueError(
                    f"beacon {b.id!r} is a storefront beacon (its zone is outside): every "
                    "enter of its region is an approach, app_min_rssi has nothing to decide"
                )
            if b.kind != "ibeacon":
                raise ValueError(
                    f"beacon {b.id!r} is a storefront beacon: it must be an iBeacon (the "
                    "app ranges the store's iBeacons; iOS cannot range Eddystone)"
                )
        paired = [b.id for b in self.beacons if b.app_pair_margin_db is not None]
        if paired and not fronts:
            raise ValueError(
                f"{paired[0]!r} has app_pair_margin_db but the layout has no storefront "
                "beacon (a beacon in the street zone) to compare with"
            )
        if not self.doors:
            raise ValueError("a layout needs a portal from an 'outside' zone to an 'entrance'")
        return self

    # --- geometry ---------------------------------------------------------------------
    def zone(self, zone_id: str) -> ZoneSpec:
        for z in self.zones:
            if z.id == zone_id:
                return z
        raise KeyError(zone_id)

    def zone_at(self, floor: int, x: float, y: float) -> str | None:
        for z in self.zones:
            if z.contains(floor, x, y):
                return z.id
        return None

    @cached_property
    def street(self) -> ZoneSpec:
        return next(z for z in self.zones if z.kind == "outside")

    @cached_property
    def outside_zone_ids(self) -> frozenset[str]:
        """The zones of kind ``outside``: a beacon in one is a storefront beacon."""
        return frozenset(z.id for z in self.zones if z.kind == "outside")

    @cached_property
    def doors(self) -> list[PortalSpec]:
        """Portals between the street and an entrance, oriented street → entrance."""
        kinds = {z.id: z.kind for z in self.zones}
        out = []
        for p in self.portals:
            if kinds[p.a] == "outside" and kinds[p.b] == "entrance":
                out.append(p)
            elif kinds[p.b] == "outside" and kinds[p.a] == "entrance":
                out.append(p.model_copy(update={"a": p.b, "b": p.a}))
        return out

    def route(self, src: str, dst: str) -> list[tuple[PortalSpec, str]]:
        """Portals to pass from ``src`` to ``dst`` (each with the zone it leads to), fewest first."""
        if src == dst:
            return []
        prev: dict[str, tuple[str, PortalSpec]] = {}
        seen = {src}
        queue = deque([src])
        while queue:
            here = queue.popleft()
            for p in self.portals:
                for a, b in ((p.a, p.b), (p.b, p.a)):
                    if a == here and b not in seen:
                        seen.add(b)
                        prev[b] = (a, p)
                        queue.append(b)
        if dst not in prev:
            raise LayoutError(self.name, f"no way from zone {src!r} to {dst!r}")
        path: list[tuple[PortalSpec, str]] = []
        node = dst
        while node != src:
            a, p = prev[node]
            path.append((p, node))
            node = a
        return path[::-1]

    def trace_layout(self) -> dict[str, Any]:
        """The header's ``layout``: the contract's fields plus geometry and calibration."""
        return {
            "name": self.name,
            "zones": [
                {
                    "id": z.id,
                    "kind": z.kind,
                    **({"name": z.name} if z.name else {}),
                    "floor": z.floor,
                    "rect": list(z.rect),
                }
                for z in self.zones
            ],
            "gateways": [
                {
                    "id": g.id,
                    "zone_id": g.zone_id,
                    "x": g.x,
                    "y": g.y,
                    "floor": g.floor,
                    "rssi_offset_db": g.rssi_offset_db,
                    "rssi_1m": g.rssi_1m,
                    "path_loss_n": g.path_loss_n,
                }
                for g in self.gateways
            ],
            # A beacon's identity lets a replay tell the ingest which regions are the
            # store's (docs/trace-format.md: the app path).
            "beacons": [
                {
                    "id": b.id,
                    "kind": b.kind,
                    "zone_id": b.zone_id,
                    "x": b.x,
                    "y": b.y,
                    **(
                        {"uuid": b.uuid, "major": b.major, "minor": b.minor}
                        if b.kind == "ibeacon"
                        else {"namespace": b.namespace, "instance": b.instance}
                    ),
                    **({"app_min_rssi": b.app_min_rssi} if b.app_min_rssi is not None else {}),
                    **(
                        {"app_pair_margin_db": b.app_pair_margin_db}
                        if b.app_pair_margin_db is not None
                        else {}
                    ),
                    **(
                        {"app_sustained_min_rssi": b.app_sustained_min_rssi}
                        if b.app_sustained_min_rssi is not None
                        else {}
                    ),
                }
                for b in self.beacons
            ],
            "geofence": {**self.geofence.model_dump(), "id": self.geofence.id or self.store_id},
        }


def layout_names() -> list[str]:
    """Names of the layouts shipped with the package."""
    files = resources.files("simulators").joinpath("layouts")
    return sorted(p.name.removesuffix(".json") for p in files.iterdir() if p.name.endswith(".json"))


def _layout_data(name_or_path: str | Path) -> tuple[str, dict[str, Any]]:
    """A layout file's JSON object, by shipped name or path, and how to name it in errors."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise LayoutError(source, f"cannot read: {exc.strerror}") from exc
    else:
        source = str(name_or_path)
        res = resources.files("simulators").joinpath("layouts", f"{name_or_path}.json")
        if not res.is_file():
            raise LayoutError(source, f"no such layout; shipped: {', '.join(layout_names())}")
        text = res.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LayoutError(source, f"not JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(data, dict):
        raise LayoutError(source, "a layout is a JSON object")
    return source, data


def load_layout(name_or_path: str | Path) -> StoreLayout:
    """A shipped layout by name (``boutique``) or a layout file by path.

    A layout may be a variant of a shipped one: ``"extends": "boutique"`` takes that
    layout, replaces the keys the variant gives and appends its ``"add_gateways"`` to the
    base's gateways (``boutique-pair``: the boutique with a gateway outside its door).
    """
    source, data = _layout_data(name_or_path)
    base_name = data.pop("extends", None)
    extra = data.pop("add_gateways", None)
    if base_name is not None:
        if not isinstance(base_name, str) or Path(base_name).suffix or "/" in base_name:
            raise LayoutError(source, "'extends' names a shipped layout (e.g. \"boutique\")")
        _, base = _layout_data(base_name)
        if "extends" in base:
            raise LayoutError(source, f"{base_name!r} is itself a variant: extend its base")
        data = {**base, "crowd": base.get("crowd", base_name), **data}
    if extra is not None:
        if not isinstance(extra, list):
            raise LayoutError(source, "'add_gateways' is a list of gateways")
        data["gateways"] = [*data.get("gateways", []), *extra]
    try:
        return StoreLayout.model_validate(data)
    except ValidationError as exc:
        raise LayoutError(source, describe_validation(exc, "(file)", first=True)) from exc
