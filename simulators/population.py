"""Who comes to the store and what they do: customers, visitors, staff, their plans.

Arrivals are a non-homogeneous Poisson process (thinning over the layout's hourly rates);
each arrival is a group. Each enrolled customer (who consents, does not, or revokes during
the day) has a device class drawn once by the layout's shares: our app on an Android phone
(advertises its EID), our app on an iPhone (advertises nothing of ours; reports beacon
regions and geofences), a VIP tag, or no app at all. Everyone else is ``unknown`` (maybe
our app without enrollment here, another phone, a wearable); staff carry handhelds. The
hard cases are drawn per group: window shoppers who pass the door, lingerers at the
entrance, a customer standing between two zones, and one who comes back within the hour.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import Literal

from simulators.layout import DeviceClass, StoreLayout
from simulators.movement import INDOOR_SPEED, WALK_SPEED, TruthEvent, Walker

Role = Literal["customer", "unknown", "staff"]
Carry = Literal["hand", "pocket", "bag"]
CARRY_WEIGHTS = (0.3, 0.4, 0.3)  # hand, pocket, bag
APP_CLASSES = frozenset({"android_app", "iphone_app"})
Behaviour = Literal["visit", "window_shopper", "lingerer", "between", "returner", "staff"]

FIRST = [
    "Ana",
    "Bruno",
    "Carla",
    "Diogo",
    "Eva",
    "Filipe",
    "Greta",
    "Hugo",
    "Ines",
    "Joao",
    "Karin",
    "Luis",
    "Marta",
    "Nuno",
    "Olga",
    "Pedro",
    "Rita",
    "Sara",
    "Tiago",
    "Vera",
    "Yara",
    "Zoe",
    "Amelie",
    "Louis",
    "Chloe",
    "Malik",
    "Leonie",
    "Noah",
]
LAST = [
    "Silva",
    "Costa",
    "Moreau",
    "Dubois",
    "Schmidt",
    "Rossi",
    "Santos",
    "Martin",
    "Bernard",
    "Lopes",
    "Weber",
    "Ferreira",
    "Laurent",
    "Nunes",
]
WISHLIST = [
    "green linen dress",
    "camel wool coat",
    "white sneakers 39",
    "silk scarf",
    "leather tote",
    "navy blazer",
    "cashmere jumper",
    "black ankle boots",
    "straw hat",
    "pleated skirt",
]
VISIBLE_CHOICES = ("tier", "sizes", "wishlist", "notes")


@dataclass(frozen=True, slots=True)
class Customer:
    """An enrolled customer (the attributes ``--enroll`` writes into the registry)."""

    customer_id: str
    name: str
    identity_key: bytes
    rotation_exponent: int
    consent: tuple[str, ...]
    visible: tuple[str, ...]
    tier: str
    sizes: dict[str, str]
    wishlist: tuple[str, ...]
    assigned_associate: str | None
    revoke_at: float | None
    device_class: DeviceClass
    device_id: str
    """The app install's id (32 hex digits): subject of its app events, signs its requests."""
    device_key: bytes = field(repr=False)
    """The app's Ed25519 private key (32 raw bytes); only ``--enroll`` writes it out."""
    shares_location: bool = False

    @property
    def has_app(self) -> bool:
        return self.device_class in APP_CLASSES

    @property
    def consent_class(self) -> str:
        if self.revoke_at is not None:
            return "revokes"
        return "consents" if "arrival_alerts" in self.consent else "no_consent"

    def consents_at(self, t: float) -> bool:
        if "arrival_alerts" not in self.consent:
            return False
        return self.revoke_at is None or t < self.revoke_at


@dataclass(slots=True)
class Person:
    """Someone on the scene: their trajectory, truth, and what they carry."""

    pid: str
    role: Role
    behaviour: Behaviour
    walker: Walker
    customer: Customer | None = None
    carries: list[str] = field(default_factory=list)  # device kinds: eid, tag, phone, ...
    group: int = 0
    device_class: DeviceClass = "unknown"
    carry: Carry = "hand"  # where their phone is: a pocket or bag muffles it both ways

    @property
    def truth(self) -> list[TruthEvent]:
        return self.walker.truth


def key_for(seed: int, label: str) -> bytes:
    return hashlib.sha256(f"proxima-sim/{seed}/{label}".encode()).digest()[:16]


def device_id_for(seed: int, customer_id: str) -> str:
    return hashlib.sha256(f"proxima-sim/{seed}/device/{customer_id}".encode()).hexdigest()[:32]


def device_key_for(seed: int, customer_id: str) -> bytes:
    return hashlib.sha256(f"proxima-sim/{seed}/device-key/{customer_id}".encode()).digest()


def make_customers(layout: StoreLayout, seed: int, duration_s: float) -> list[Customer]:
    """The store's enrolled customers (a fixed pool; visitors are drawn from it)."""
    pop = layout.population
    rng = random.Random(f"{seed}/customers/{layout.crowd_name}")
    out: list[Customer] = []
    for i in range(pop.customers):
        cid = f"cust-{layout.crowd_name[:4]}-{i:04d}"
        u = rng.random()
        revoke_at = None
        if u < pop.p_consent:
            consent: tuple[str, ...] = ("arrival_alerts", "personalization")
        elif u < pop.p_consent + pop.p_revoke:
            consent = ("arrival_alerts",)
            revoke_at = round(rng.uniform(0.15, 0.85) * duration_s, 3)
        else:
            consent = ()  # enrolled (loyalty card) but no consent to arrival alerts
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        visible = ("name", *sorted(rng.sample(VISIBLE_CHOICES, rng.randint(0, 3))))
        out.append(
            Customer(
                customer_id=cid,
                name=name,
                identity_key=key_for(seed, cid),
                rotation_exponent=rng.choice([8, 9, 10, 11, 12]),
                consent=consent,
                visible=visible,
                tier=rng.choices(["standard", "silver", "gold", "platinum"], [50, 30, 15, 5])[0],
                sizes={
                    "dress": str(rng.choice([34, 36, 38, 40, 42])),
                    "shoe": str(rng.randint(36, 44)),
                },
                wishlist=tuple(rng.sample(WISHLIST, rng.randint(0, 3))),
                assigned_associate=rng.choice(pop.associates) if pop.associates else None,
                revoke_at=revoke_at,
                device_class=pop.draw_class(rng.random()),
                device_id=device_id_for(seed, cid),
                device_key=device_key_for(seed, cid),
                # A draw of its own, so the other attributes stay what they were per seed.
                shares_location=random.Random(f"{seed}/location/{cid}").random()
                < pop.p_shares_location,
            )
        )
    return out


def arrival_times(
    layout: StoreLayout, rng: random.Random, offset_s: float, duration_s: float
) -> list[float]:
    """Group arrival times: a Poisson process with the layout's hourly rates (thinning).

    ``offset_s`` is the trace start's distance from opening time; rates are people per hour,
    divided by the mean group size to get groups per hour.
    """
    hourly = layout.arrivals.hourly
    weights = layout.population.group_sizes
    mean_group = sum((i + 1) * w for i, w in enumerate(weights)) / max(sum(weights), 1e-9)
    peak = max(hourly) / mean_group / 3600.0
    if peak <= 0:
        return []
    out: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= duration_s:
            return out
        hour = math.floor((offset_s + t) / 3600.0)
        rate = hourly[hour] / mean_group / 3600.0 if 0 <= hour < len(hourly) else 0.0
        if rng.random() < rate / peak:
            out.append(t)


class Crowd:
    """Draws the whole population of a run, deterministically for a seed."""

    def __init__(self, layout: StoreLayout, seed: int, offset_s: float, duration_s: float) -> None:
        self.layout = layout
        self.seed = seed
        self.offset_s = offset_s
        self.duration_s = duration_s
        self.customers = make_customers(layout, seed, duration_s)
        self._busy_until: dict[str, float] = {}
        self._anon = 0

    def people(self) -> list[Person]:
        rng = random.Random(f"{self.seed}/arrivals/{self.layout.crowd_name}")
        out: list[Person] = [self._staff(i) for i in range(self.layout.population.staff)]
        for g, t in enumerate(arrival_times(self.layout, rng, self.offset_s, self.duration_s)):
            out.extend(self._group(g + 1, t, rng))
        return out

    # --- members ------------------------------------------------------------------------
    def _pick_customer(self, t: float, rng: random.Random) -> Customer | None:
        free = [c for c in self.customers if self._busy_until.get(c.customer_id, -1.0) < t]
        return rng.choice(free) if free else None

    def _group(self, g: int, t: float, rng: random.Random) -> list[Person]:
        pop = self.layout.population
        size = rng.choices(range(1, len(pop.group_sizes) + 1), pop.group_sizes)[0]
        u = rng.random()
        behaviour: Behaviour = "visit"
        for name, p in (
            ("window_shopper", pop.p_window_shopper),
            ("lingerer", pop.p_lingerer),
            ("between", pop.p_between),
            ("returner", pop.p_return),
        ):
            if u < p:
                behaviour = name  # type: ignore[assignment]
                break
            u -= p
        plan_seed = rng.random()
        members = []
        for m in range(size):
            customer = self._pick_customer(t, rng) if rng.random() < pop.p_enrolled else None
            if customer is not None:
                pid, role = customer.customer_id, "customer"
            else:
                self._anon += 1
                pid, role = f"anon-{self._anon:05d}", "unknown"
            prng = random.Random(f"{self.seed}/person/{g}/{m}/{pid}")
            cls: DeviceClass = "unknown" if customer is None else customer.device_class
            carries = self._devices_of(cls, prng)
            if prng.random() < pop.p_wearable:
                carries.append(
                    prng.choice(["wearable:headphones", "wearable:watch", "wearable:tracker"])
                )
            start = t + m * prng.uniform(0.5, 2.0)
            walker = self._walk(
                behaviour, start, prng, random.Random(f"{self.seed}/plan/{plan_seed}")
            )
            carry: Carry = random.Random(f"{self.seed}/carry/{g}/{m}/{pid}").choices(
                ("hand", "pocket", "bag"), CARRY_WEIGHTS
            )[0]
            person = Person(pid, role, behaviour, walker, customer, carries, g, cls, carry)  # type: ignore[arg-type]
            if customer is not None:
                self._busy_until[customer.customer_id] = walker.traj.end + 60
            members.append(person)
        return members

    def _devices_of(self, cls: DeviceClass, prng: random.Random) -> list[str]:
        """What a member of ``cls`` carries that advertises (see simulators.engine)."""
        p_phone = self.layout.population.p_phone
        if cls == "android_app":
            return ["eid"]  # the app advertises the customer's EID
        if cls == "iphone_app":
            return ["phone"]  # iOS's own Continuity frames; the app advertises nothing
        if cls == "vip_tag":
            return ["tag", *(["phone"] if prng.random() < p_phone else [])]
        if cls == "no_app":
            return ["phone"] if prng.random() < p_phone else []
        if prng.random() < p_phone:  # unknown: maybe our app, enrolled elsewhere
            return ["eid" if prng.random() < 0.15 else "phone"]
        return []

    def _staff(self, i: int) -> Person:
        rng = random.Random(f"{self.seed}/staff/{i}")
        inside = [z for z in self.layout.zones if z.kind != "outside"]
        zone = rng.choice(inside)
        x, y = Walker(self.layout, rng, 0.0, 0.0, 0.0, zone.id).random_point(zone)
        walker = Walker(self.layout, rng, 0.0, x, y, zone.id)
        while walker.t < self.duration_s:
            target = rng.choice(inside)
            walker.go_to_zone(target.id, rng.uniform(*INDOOR_SPEED))
            walker.browse(rng.uniform(300, 1800))
        return Person(
            f"staff-{i + 1:02d}", "staff", "staff", walker, None, ["staff"], 0, "staff", "pocket"
        )

    # --- plans --------------------------------------------------------------------------
    def _walk(
        self, behaviour: Behaviour, t: float, rng: random.Random, plan: random.Random
    ) -> Walker:
        """A trajectory for one member; ``plan`` is shared by the group, ``rng`` is theirs."""
        lay = self.layout
        doors = lay.doors
        door = plan.choice(doors)
        street = lay.street
        side = plan.choice([-1, 1])
        lane = -plan.uniform(1.0, min(4.0, -street.rect[1] - 0.5)) - rng.uniform(-0.4, 0.4)
        x_start = max(
            street.rect[0] + 1, min(street.rect[2] - 1, door.x + side * plan.uniform(15, 35))
        )
        walker = Walker(lay, rng, t, x_start, lane, street.id)
        speed = plan.uniform(*WALK_SPEED)
        if behaviour == "window_shopper":
            if plan.random() < 0.5:  # stops at the window for a look
                wx = door.x + plan.choice([-1, 1]) * plan.uniform(1.5, 6.0) + rng.uniform(-0.5, 0.5)
                walker.walk_to(wx, -plan.uniform(0.4, 1.2), speed)
                walker.truth.append(TruthEvent(round(walker.t, 3), "pass_by", street.id))
                walker.pause(plan.lognormvariate(math.log(20), 0.8))
            else:
                walker.walk_to(door.x, lane, speed)
                walker.truth.append(TruthEvent(round(walker.t, 3), "pass_by", street.id))
            x_end = max(
                street.rect[0] + 1, min(street.rect[2] - 1, door.x - side * plan.uniform(15, 35))
            )
            walker.walk_to(x_end, lane, speed)
            return walker
        walker.walk_to(door.x + rng.uniform(-0.8, 0.8), lane * 0.3, speed)
        self._inside(walker, behaviour, door.b, plan, rng)
        if behaviour == "returner":
            away_from = walker.t
            x_out = max(street.rect[0] + 1, min(street.rect[2] - 1, door.x - side * 30))
            walker.walk_to(x_out, lane, speed)
            walker.pause(plan.uniform(900, 3000) - (walker.t - away_from))
            walker.walk_to(door.x + rng.uniform(-0.8, 0.8), lane * 0.3, speed)
            self._inside(walker, "visit", door.b, plan, rng, short=True)
        x_end = max(
            street.rect[0] + 1, min(street.rect[2] - 1, door.x - side * plan.uniform(15, 35))
        )
        walker.walk_to(x_end, lane, speed)
        return walker

    def _inside(
        self,
        walker: Walker,
        behaviour: Behaviour,
        entrance: str,
        plan: random.Random,
        rng: random.Random,
        short: bool = False,
    ) -> None:
        lay = self.layout
        speed = plan.uniform(*INDOOR_SPEED)
        door = next(d for d in lay.doors if d.b == entrance)
        walker.through(door, entrance, speed)
        ez = lay.zone(entrance)
        walker.walk_to(*walker.random_point(ez, 0.8), speed)
        if behaviour == "lingerer":
            walker.browse(plan.uniform(120, 420))
            if plan.random() < 0.5:
                walker.go_to_zone(lay.street.id, speed)
                return
        else:
            walker.pause(walker.dwell_for(ez) * 0.3)
        kind_order = {"floor": 0, "fitting_room": 1, "checkout": 2}
        targets = [
            z
            for z in lay.zones
            if z.kind in kind_order and plan.random() < (z.visit_prob * (0.5 if short else 1.0))
        ]
        if not targets:
            targets = [next(z for z in lay.zones if z.kind == "floor")]
        targets.sort(key=lambda z: (z.floor, kind_order[z.kind]))
        for i, zone in enumerate(targets):
            walker.go_to_zone(zone.id, speed)
            walker.walk_to(*walker.random_point(zone), speed)
            dwell = walker.dwell_for(zone) * (0.4 if short else 1.0)
            if behaviour == "between" and i == 0:
                self._stand_between(walker, zone.id, plan, rng)
            walker.browse(dwell)
        exit_door = plan.choice(lay.doors)
        walker.go_to_zone(exit_door.b, speed)
        walker.go_to_zone(lay.street.id, speed)

    def _stand_between(
        self, walker: Walker, zone_id: str, plan: random.Random, rng: random.Random
    ) -> None:
        """Stand half a metre inside ``zone_id`` next to a portal into another zone."""
        portals = [p for p in self.layout.portals if zone_id in (p.a, p.b) and p.to_floor is None]
        portals = [
            p for p in portals if self.layout.zone(p.b if p.a == zone_id else p.a).kind != "outside"
        ]
        if not portals:
            return
        p = plan.choice(portals)
        for dx, dy in ((0, -0.5), (0, 0.5), (-0.5, 0), (0.5, 0)):
            x, y = p.x + dx + rng.uniform(-0.1, 0.1), p.y + dy
            if self.layout.zone_at(walker.floor, x, y) == zone_id:
                walker.walk_to(x, y, 0.8)
                walker.pause(plan.uniform(180, 600))
                return
