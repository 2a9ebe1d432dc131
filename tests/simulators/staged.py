"""Staged boutique scenes on the simulator's radio: one case at a time, fixed seeds.

``door_cases`` writes two consenting customers with the Android app (it advertises their
EID): a window shopper who stands 40 s beside the shop door with the phone in hand, then
walks on; and, later, a customer with the phone in a bag who walks in, pauses in the
entrance, browses the floor and leaves.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from simulators.engine import Simulation, build
from simulators.movement import TruthEvent, Walker
from simulators.population import Customer, Person


@dataclasses.dataclass(frozen=True)
class DoorCases:
    trace: Path
    shopper: Customer
    visitor: Customer
    sim: Simulation


def door_cases(
    path: Path,
    seed: int,
    *,
    shopper_x: float = 1.5,
    shopper_y: float = -0.6,
    layout: str = "boutique",
) -> DoorCases:
    sim: Simulation = build(
        layout,
        hours=5 / 60,
        seed=seed,
        population={"customers": 2, "staff": 0, "static_noise": 2},
        arrivals={"hourly": [0]},
    )
    lay = sim.layout
    door = lay.doors[0]
    street = lay.street.id
    shopper, visitor = (
        dataclasses.replace(
            c, consent=("arrival_alerts",), revoke_at=None, device_class="android_app"
        )
        for c in sim.customers
    )
    rng = random.Random(f"staged/{seed}")

    # A window shopper: stops right in front of the door, phone in hand, and walks on.
    w = Walker(lay, rng, 5.0, door.x - 25.0, -1.5, street)
    w.walk_to(door.x + shopper_x, shopper_y, 1.2)
    w.truth.append(TruthEvent(round(w.t, 3), "pass_by", street))
    w.pause(40.0)
    w.walk_to(door.x + 25.0, -1.5, 1.2)

    # A visitor with the phone in a bag: in through the door, a pause, the floor, out.
    v = Walker(lay, rng, 90.0, door.x + 25.0, -1.5, street)
    v.walk_to(door.x + 0.2, -0.6, 1.2)
    v.through(door, door.b, 0.9)
    v.walk_to(door.x + 0.8, 1.8, 0.9)
    v.pause(2.5)
    v.go_to_zone("floor", 0.9)
    v.walk_to(door.x + 3.0, 12.0, 0.9)
    v.browse(120.0)
    v.go_to_zone(street, 0.9)
    v.walk_to(door.x - 25.0, -1.5, 1.2)

    sim.stage(
        [
            Person(
                shopper.customer_id, "customer", "window_shopper", w, shopper, ["eid"], 1,
                device_class="android_app", carry="hand",
            ),
            Person(
                visitor.customer_id, "customer", "visit", v, visitor, ["eid"], 2,
                device_class="android_app", carry="bag",
            ),
        ],
        [shopper, visitor],
    )  # fmt: skip
    sim.write(path)
    return DoorCases(path, shopper, visitor, sim)
