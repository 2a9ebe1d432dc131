"""Named scenarios: a layout, a population and their movements, rendered to a trace.

``skeleton``: one boutique with a gateway at the door; Ana (enrolled, consents to
arrival alerts), Bruno (enrolled, no consent) and one unknown phone walk in from the
street, each advertising Eddystone-EID about once a second with noisy RSSI.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from beacons.eid import compute_eid
from beacons.frames import encode_eddystone_eid
from contracts.trace import AdvRecord, GatewayPlacement, Layout, TraceHeader, TruthRecord, Zone

TX_AT_0M = -18  # typical phone Eddystone Tx power at 0 m; RSSI at 1 m is 41 dB lower
RSSI_AT_1M = TX_AT_0M - 41
PATH_LOSS_N = 2.2
SHADOWING_DB = 3.0


@dataclass(frozen=True, slots=True)
class SimPerson:
    """Someone carrying an advertiser; ``customer_id`` None means an unknown phone."""

    label: str
    identity_key: bytes
    rotation_exponent: int
    customer_id: str | None = None
    name: str | None = None
    consent: tuple[str, ...] = ()
    visible: tuple[str, ...] = ()
    tier: str | None = None
    sizes: dict[str, str] = field(default_factory=dict)
    wishlist: tuple[str, ...] = ()
    assigned_associate: str | None = None
    arrive_after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Scenario:
    header: TraceHeader
    records: list[AdvRecord | TruthRecord]
    people: list[SimPerson]

    @property
    def enrolled(self) -> list[SimPerson]:
        return [p for p in self.people if p.customer_id is not None]


def _key(seed: int, label: str) -> bytes:
    return hashlib.sha256(f"proxima-sim/{seed}/{label}".encode()).digest()[:16]


def _address(rng: random.Random) -> str:
    # A random static address (top two bits set), as phones rotate them.
    first = rng.randrange(0xC0, 0x100)
    rest = [rng.randrange(256) for _ in range(5)]
    return ":".join(f"{b:02X}" for b in [first, *rest])


DEMO_STORE = "demo-store"
# The associate Ana is assigned to; `proxima up` gives them a console account.
DEMO_ASSOCIATE = ("assoc-maria", "Maria")


def skeleton(start: datetime, seed: int = 7) -> Scenario:
    """The walking skeleton's scenario (see module docstring)."""
    rng = random.Random(seed)
    store_id = DEMO_STORE
    layout = Layout(
        zones=[Zone(id="street", kind="outside"), Zone(id="entrance", kind="entrance")],
        gateways=[GatewayPlacement(id="gw-door", zone_id="entrance", x=0.0, y=0.0)],
    )
    people = [
        SimPerson(
            label="ana",
            identity_key=_key(seed, "ana"),
            rotation_exponent=10,
            customer_id="cust-ana",
            name="Ana",
            consent=("arrival_alerts",),
            visible=("name", "tier", "sizes", "wishlist"),
            tier="gold",
            sizes={"dress": "38"},
            wishlist=("green linen dress",),
            assigned_associate=DEMO_ASSOCIATE[0],
            arrive_after_s=0.0,
        ),
        SimPerson(
            label="bruno",
            identity_key=_key(seed, "bruno"),
            rotation_exponent=10,
            customer_id="cust-bruno",
            name="Bruno",
            consent=(),
            visible=("name",),
            tier="silver",
            arrive_after_s=4.0,
        ),
        SimPerson(
            label="unknown-phone",
            identity_key=_key(seed, "unknown"),
            rotation_exponent=9,
            arrive_after_s=8.0,
        ),
    ]
    header = TraceHeader(
        format="proxima-trace",
        version=1,
        store_id=store_id,
        start=start,
        layout=layout,
        layout_name="skeleton-boutique",
    )
    t0 = start.timestamp()
    records: list[AdvRecord | TruthRecord] = []
    for person in people:
        records.extend(_walk_in(person, rng, t0))
    records.sort(key=lambda r: (r.t, r.kind))
    return Scenario(header=header, records=records, people=people)


def _walk_in(person: SimPerson, rng: random.Random, t0: float) -> list[AdvRecord | TruthRecord]:
    """Walk from 25 m down the street to 2 m inside the door, then browse near it."""
    speed = rng.uniform(1.0, 1.4)  # m/s, typical walking speed
    approach = 25.0
    walk_s = (approach + 2.0) / speed
    stay_s = 40.0
    address = _address(rng)
    out: list[AdvRecord | TruthRecord] = []
    t = person.arrive_after_s + rng.uniform(0, 1.0)
    end = person.arrive_after_s + walk_s + stay_s
    crossed = False
    while t < end:
        elapsed = t - person.arrive_after_s
        distance = (
            max(0.5, approach - speed * elapsed) if elapsed < walk_s else rng.uniform(1.5, 3.0)
        )
        if not crossed and elapsed >= approach / speed and person.customer_id:
            crossed = True
            out.append(
                TruthRecord(
                    t=round(t, 3),
                    kind="truth",
                    customer_id=person.customer_id,
                    event="arrive",
                    zone_id="entrance",
                    device_class="android_app",  # our app advertising the EID
                )
            )
        if rng.random() > 0.1:  # ~10% of advertisements are lost on air
            rssi = RSSI_AT_1M - 10 * PATH_LOSS_N * math.log10(distance) + rng.gauss(0, SHADOWING_DB)
            eid = compute_eid(person.identity_key, person.rotation_exponent, int(t0 + t))
            uuid, data = encode_eddystone_eid(eid, TX_AT_0M)
            out.append(
                AdvRecord(
                    t=round(t, 3),
                    kind="adv",
                    gateway_id="gw-door",
                    address=address,
                    rssi=max(-127, min(0, round(rssi))),
                    service_data={uuid: data.hex()},
                    service_uuids=["0000feaa-0000-1000-8000-00805f9b34fb"],
                )
            )
        t += rng.uniform(0.9, 1.1)  # ~1 Hz advertising with jitter
    return out


SCENARIOS: dict[str, Callable[[datetime, int], Scenario]] = {"skeleton": skeleton}


def scenario(name: str, start: datetime, seed: int = 7) -> Scenario:
    try:
        factory = SCENARIOS[name]
    except KeyError:
        raise ValueError(
            f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}"
        ) from None
    return factory(start, seed)
