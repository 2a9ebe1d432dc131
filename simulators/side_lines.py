"""The lines of a trace that are not advertisements: ``truth`` (what each person really
did, for scoring) and ``app`` (what a consenting customer's app reports: iOS beacon-region
transitions, OS geofence crossings, location fixes, a consent change). Drawn up front per
person, each from a generator seeded by (seed, who); :class:`simulators.engine.Simulation`
merges them with the advertisements in time order.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from simulators.advertisers import BEACON_HEIGHT_M
from simulators.devices import (
    IOS_BACKGROUND_SCAN_DUTY,
    Ranged,
    geofence_pass,
    location_fixes,
    ranged_enters,
    ranging_spans,
    region_transitions,
)
from simulators.layout import FLOOR_HEIGHT_M, BeaconSpec, GatewaySpec, StoreLayout
from simulators.movement import Position
from simulators.population import Customer, Person
from simulators.radio import (
    BODY_LOSS_DB,
    CARRY_LOSS_DB,
    PHONE_HEIGHT_M,
    Link,
    LinkState,
    RadioModel,
    Storefront,
)

Ranging = dict[str, list[tuple[float, list[tuple[float, float]]]]]
"""Per person, per trip: the phone's ranging phase and the spans iOS lets its app range in
(:attr:`SideLines.ranging`)."""


class SideLines:
    """The truth and app lines of one run's people and customers."""

    def __init__(
        self,
        layout: StoreLayout,
        radio: RadioModel,
        seed: int,
        duration_s: float,
        people: Sequence[Person],
        customers: Sequence[Customer],
    ) -> None:
        self.layout = layout
        self.radio = radio
        self.seed = seed
        self.duration_s = duration_s
        self.people = people
        self.customers = customers
        self.storefront = Storefront(layout)
        self._links: dict[str, Link] = {}
        self.ranging: Ranging = {}
        """Per iPhone app user (person id), for each of their trips (a group: a customer
        may come back): the phone's ranging phase and the spans in which iOS lets the app
        range (devices.ranging_spans), once :meth:`lines` has run. Ground truth for the
        bench (simulators.detection.ios_floors), never in a trace."""

    def lines(self) -> list[tuple[float, int, str]]:
        """(t, n, line) of every truth and app line in time order (n keeps equal times in
        the order they were drawn)."""
        out: list[tuple[float, int, str]] = []
        n = 0

        def add(t: float, obj: dict[str, Any]) -> None:
            nonlocal n
            if 0.0 <= t <= self.duration_s:
                n += 1
                out.append((round(t, 3), n, json.dumps(obj, separators=(",", ":"))))

        for person in self.people:
            cust = person.customer
            for ev in person.truth:
                line: dict[str, Any] = {
                    "t": round(ev.t, 3),
                    "kind": "truth",
                    "customer_id": person.pid,
                    "event": ev.event,
                    "zone_id": ev.zone_id,
                    "role": person.role,
                    "behaviour": person.behaviour,
                    "device_class": person.device_class,
                }
                if cust is not None:
                    line["consent"] = cust.consents_at(ev.t)
                add(ev.t, line)
            if cust is not None and cust.has_app:
                self._app_lines(person, cust, add)
        for cust in self.customers:
            if cust.revoke_at is not None:
                # A consent change is an account action that names its customer (the
                # replay applies it to the registry); the only app line that does.
                add(
                    cust.revoke_at,
                    {
                        "t": cust.revoke_at,
                        "kind": "app",
                        "device_id": cust.device_id,
                        "event": "consent_revoke",
                        "customer_id": cust.customer_id,
                        "purpose": "arrival_alerts",
                    },
                )
                add(
                    cust.revoke_at,
                    {
                        "t": cust.revoke_at,
                        "kind": "truth",
                        "customer_id": cust.customer_id,
                        "event": "revoke",
                        "purpose": "arrival_alerts",
                        "device_class": cust.device_class,
                    },
                )
        out.sort()
        return out

    def _app_lines(
        self, person: Person, cust: Customer, add: Callable[[float, dict[str, Any]], None]
    ) -> None:
        """What the app reports (simulators.devices): iOS beacon regions; OS geofence
        transitions and location fixes for those who share their location. App lines name
        the device only: who it belongs to is the registry's to know, and the truth's."""
        rng = random.Random(f"{self.seed}/app/{person.pid}/{person.group}")
        base: dict[str, Any] = {"kind": "app", "device_id": cust.device_id}
        gf = self.layout.geofence
        traj = person.walker.traj
        # Drawn first: an app woken by the geofence keeps a location session (and ranges
        # beacons) while the phone is inside it (devices.ranged_enters).
        gpass = (
            geofence_pass(traj, gf.radius_m, cust.device_class, rng)
            if cust.shares_location
            else None
        )
        running = [] if gpass is None else [(gpass.t_enter, gpass.t_exit)]
        if cust.device_class == "iphone_app":
            # One CLBeaconRegion per store iBeacon; on a wake the app ranges them all.
            monitored = [b for b in self.layout.beacons if b.kind == "ibeacon"]
            ranged = [
                Ranged(
                    self._heard_by_phone(person, b, rng),
                    b.app_min_rssi,
                    b.app_pair_margin_db,
                    storefront=b.zone_id in self.layout.outside_zone_ids,
                    sustained_min_rssi=b.app_sustained_min_rssi,
                )
                for b in monitored
            ]
            regions = [{"uuid": b.uuid, "major": b.major, "minor": b.minor} for b in monitored]
            # One ranging clock per phone (its own draw: the others' stay as they were).
            phase = random.Random(f"{self.seed}/ranging/{person.pid}/{person.group}").random()
            reported: set[tuple[float, int]] = set()
            spans: list[tuple[float, float]] = []
            self.ranging.setdefault(person.pid, []).append((phase, spans))
            for woke, r in enumerate(ranged):
                stays = region_transitions([t for t, _ in r.heard], rng)
                for enter, leave in zip(stays[::2], stays[1::2], strict=True):
                    spans += ranging_spans(enter.t, leave.t, running)
                    for t, i, rssi, held in ranged_enters(
                        ranged, woke, enter.t, t_exit=leave.t, running=running, phase=phase
                    ):
                        if (t, i) in reported:
                            continue  # the same ranging second, found by another region's stay
                        reported.add((t, i))
                        reading = {} if rssi is None else {"rssi": rssi}
                        if held:
                            reading["sustained"] = True
                        add(t, {"t": round(t, 3), **base, "event": "beacon_region_enter",
                                **regions[i], **reading})  # fmt: skip
                    add(leave.t, {"t": round(leave.t, 3), **base, "event": "beacon_region_exit",
                                  **regions[woke]})  # fmt: skip
        if gpass is None:
            return
        fence = gf.id or self.layout.store_id
        who = {"customer_id": person.pid, "zone_id": fence, "device_class": person.device_class}
        for t, event in ((gpass.t_in, "enter_geofence"), (gpass.t_out, "leave_geofence")):
            add(t, {"t": round(t, 3), "kind": "truth", **who, "event": event})
        for t, event in ((gpass.t_enter, "geofence_enter"), (gpass.t_exit, "geofence_exit")):
            add(t, {"t": round(t, 3), **base, "event": event, "region": fence})
        indoor: list[tuple[float, float]] = []
        arrived: float | None = None
        for ev in person.truth:
            if ev.event == "arrive":
                arrived = ev.t
            elif ev.event == "leave" and arrived is not None:
                indoor.append((arrived, ev.t))
                arrived = None
        if arrived is not None:
            indoor.append((arrived, traj.end))
        cos_lat = math.cos(math.radians(gf.lat))
        for fix in location_fixes(traj, gpass, cust.device_class, indoor, rng):
            add(
                fix.t,
                {
                    "t": round(fix.t, 3),
                    **base,
                    "event": "location",
                    "lat": round(gf.lat + fix.y / 111_320.0, 6),
                    "lon": round(gf.lon + fix.x / (111_320.0 * cos_lat), 6),
                    "accuracy_m": round(fix.accuracy_m, 1),
                },
            )

    def _link(self, b: BeaconSpec) -> Link:
        """Store beacon ``b`` as a link of the radio model run the other way: the beacon
        transmits, the phone listens with iOS's duty-cycled background scan."""
        link = self._links.get(b.id)
        if link is None:
            link = self._links[b.id] = self.radio.link(
                GatewaySpec(
                    id=b.id, zone_id=b.zone_id, x=b.x, y=b.y, floor=b.floor,
                    height_m=BEACON_HEIGHT_M, rssi_1m=b.measured_power,
                    scan_duty=IOS_BACKGROUND_SCAN_DUTY,
                )
            )  # fmt: skip
        return link

    def _median_at(self, link: Link, b: BeaconSpec, at: Position, carry_db: float) -> float:
        """The median level (dBm) at which a phone at ``at`` (a trajectory's position),
        muffled by ``carry_db``, hears beacon ``b`` (path loss, the shop front, floors, the
        carrier's body; no random part of the link)."""
        x, y, z, zone, heading = at
        dx, dy, dz = link.x - x, link.y - y, link.z - z
        level = (z - PHONE_HEIGHT_M) / FLOOR_HEIGHT_M
        # The shop front stands between the phone and the beacon when they are on
        # different sides of it (a storefront beacon is on the street's side).
        outside = (zone in self.layout.outside_zone_ids) != (
            b.zone_id in self.layout.outside_zone_ids
        )
        loss = carry_db + self.storefront.loss_db(x, y, outside)
        loss += self.radio.env.floor_loss_db * abs(level - b.floor)
        loss += self.radio.body_loss_db(heading, dx, dy, BODY_LOSS_DB)
        return self.radio.mean_rssi(link, math.sqrt(dx * dx + dy * dy + dz * dz), loss)

    def median_dbm(self, person: Person, b: BeaconSpec, t: float) -> float:
        """The median level (dBm) at which ``person``'s phone hears store beacon ``b`` at
        ``t``, carry loss included: the deterministic part of :meth:`_heard_by_phone`'s
        draws (simulators.detection.app_pair_floors)."""
        traj = person.walker.traj
        return self._median_at(self._link(b), b, traj.at(t), CARRY_LOSS_DB[person.carry])

    def _heard_by_phone(
        self, person: Person, b: BeaconSpec, rng: random.Random
    ) -> list[tuple[float, float]]:
        """When ``person``'s phone catches a packet of store beacon ``b``, and how loud (dBm)
        (the radio model, run the other way: the beacon transmits, the phone in hand,
        pocket or bag listens with iOS's duty-cycled background scan)."""
        radio = self.radio
        link = self._link(b)
        traj = person.walker.traj
        carry_db = CARRY_LOSS_DB[person.carry]
        # The same measured reception as a gateway's (soft edge, bursts, a per-position
        # offset that stays while the phone stands still), one link state per beacon.
        state = LinkState()
        heard: list[tuple[float, float]] = []
        t = traj.start + rng.uniform(0.0, b.interval_s)
        while t <= traj.end:
            at = traj.at(t)
            mean = self._median_at(link, b, at, carry_db)
            if radio.out_of_reach(link, mean):
                state = LinkState()  # out of reach: the link starts afresh when back
            elif (rssi := radio.receive(link, state, t, at[:3], mean, 0, rng)) is not None:
                heard.append((t, rssi))
            t += b.interval_s
        return heard
