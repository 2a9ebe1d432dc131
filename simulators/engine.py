"""The simulation engine: a layout and a crowd rendered to a trace, line by line.

Every advertiser (a customer's app, another phone, a wearable, a staff handheld, a store
beacon, a neighbour's speaker) is scheduled on one heap by its next advertising time
(interval × its own clock error + the spec's 0-10 ms advDelay). Each advertisement is
offered to every gateway through :class:`simulators.radio.RadioModel`; each gateway that
hears it gets one ``adv`` line. ``truth`` and ``app`` lines are drawn up front per person
and merged in time order. Every random draw comes from a generator seeded by (seed, who),
so the same seed gives the same bytes.
"""

from __future__ import annotations

import bisect
import heapq
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from beacons.eid import compute_eid
from beacons.frames import (
    EDDYSTONE_SERVICE_UUID,
    EddystoneTlmFrame,
    EddystoneUidFrame,
    IBeaconFrame,
    encode_eddystone_eid,
    encode_eddystone_tlm,
    encode_eddystone_uid,
    encode_ibeacon,
)
from simulators.devices import (
    IOS_BACKGROUND_SCAN_DUTY,
    geofence_pass,
    location_fixes,
    region_transitions,
)
from simulators.exceptions import SimulatorError
from simulators.layout import (
    FLOOR_HEIGHT_M,
    BeaconSpec,
    GatewaySpec,
    Population,
    StoreLayout,
    load_layout,
)
from simulators.movement import Trajectory
from simulators.population import Crowd, Customer, Person
from simulators.radio import BODY_LOSS_DB, CARRY_LOSS_DB, PHONE_HEIGHT_M, LinkState, RadioModel

TILE_UUID = "0000feed-0000-1000-8000-00805f9b34fb"
FAST_PAIR_UUID = "0000fe2c-0000-1000-8000-00805f9b34fb"
STAFF_NAMESPACE = bytes.fromhex("50726f78696d61537466")  # "ProximaStf"
EID_TX_AT_0M = {"phone": -18, "tag": -20}
DOOR_OPENING_M = 1.2
BEACON_HEIGHT_M = 2.2  # as _beacon hangs them


def _fmt_t(t: float) -> str:
    return repr(round(t, 3))


def _random_address(rng: random.Random) -> str:
    first = rng.randrange(0xC0, 0x100)  # random static / resolvable-looking
    return ":".join(f"{b:02X}" for b in [first, *(rng.randrange(256) for _ in range(5))])


def _fragment(
    manufacturer: dict[int, bytes] | None = None,
    service: dict[str, bytes] | None = None,
    uuids: list[str] | None = None,
    tx_power: int | None = None,
    local_name: str | None = None,
) -> str:
    """The JSON tail of an ``adv`` line after ``rssi`` (bleak's field shapes)."""
    parts = []
    if manufacturer:
        parts.append(
            '"manufacturer_data":'
            + json.dumps({str(k): v.hex() for k, v in manufacturer.items()}, separators=(",", ":"))
        )
    if service:
        parts.append(
            '"service_data":'
            + json.dumps({k: v.hex() for k, v in service.items()}, separators=(",", ":"))
        )
    if uuids:
        parts.append('"service_uuids":' + json.dumps(uuids, separators=(",", ":")))
    if tx_power is not None:
        parts.append(f'"tx_power":{tx_power}')
    if local_name is not None:
        parts.append('"local_name":' + json.dumps(local_name))
    return ("," + ",".join(parts)) if parts else ""


@dataclass(slots=True)
class Device:
    """One advertiser: where it is, how it advertises, what it says."""

    did: str
    kind: str
    rng: random.Random
    interval: float
    t_on: float
    t_off: float
    payload: Callable[[Device, float], str]
    traj: Trajectory | None = None
    static_pos: tuple[float, float, float] = (0.0, 0.0, PHONE_HEIGHT_M)
    static_outside: bool = False
    static_level: float = 0.0
    carry_db: float = 0.0
    body: bool = True
    tx_offset_db: float = 0.0
    address: str = ""
    address_period: float | None = None
    address_next: float = math.inf
    clock: float = 1.0
    count: int = 0
    links: list[LinkState] = field(default_factory=list)
    cache: dict[int, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunStats:
    lines: int
    adv_lines: int
    truth_lines: int
    app_lines: int
    devices: int
    people: int
    arrivals: int
    bytes: int


class Simulation:
    """One run: a layout, a start, a duration and a seed (see module docstring)."""

    def __init__(self, layout: StoreLayout, start: datetime, hours: float, seed: int) -> None:
        if start.tzinfo is None:
            raise ValueError("start must carry a timezone")
        if hours <= 0:
            raise ValueError(f"hours must be > 0, got {hours}")
        self.layout = layout
        self.start = start
        self.seed = seed
        self.duration_s = hours * 3600.0
        self.t0 = int(start.timestamp())
        oh, om = (int(v) for v in layout.arrivals.open.split(":"))
        opening = start.replace(hour=oh, minute=om, second=0, microsecond=0)
        self.offset_s = (start - opening).total_seconds()
        self.radio = RadioModel(layout.radio)
        self.links = [self.radio.link(g) for g in layout.gateways]
        crowd = Crowd(layout, seed, self.offset_s, self.duration_s)
        self.customers: list[Customer] = crowd.customers
        self.people: list[Person] = crowd.people()
        self.devices = self._devices()
        self._ons = sorted(d.t_on for d in self.devices)
        self._offs = sorted(d.t_off for d in self.devices)
        self._door_xs = [(d.x, d.y) for d in layout.doors]

    def stage(self, people: list[Person], customers: list[Customer]) -> None:
        """Replace the drawn crowd with a staged scene (tests, demonstrations of one case)."""
        self.customers = customers
        self.people = people
        self.devices = self._devices()
        self._ons = sorted(d.t_on for d in self.devices)
        self._offs = sorted(d.t_off for d in self.devices)

    # --- header -------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        return {
            "format": "proxima-trace",
            "version": 1,
            "store_id": self.layout.store_id,
            "start": self.start.strftime("%Y-%m-%dT%H:%M:%S") + "Z",
            "layout": self.layout.trace_layout(),
            "layout_name": self.layout.name,
            "generator": "proxima simulate",
            "seed": self.seed,
            "duration_s": self.duration_s,
            "customers": [
                {
                    "customer_id": c.customer_id,
                    "consent": list(c.consent),
                    **({"revoke_at": c.revoke_at} if c.revoke_at is not None else {}),
                }
                for c in self.customers
            ],
        }

    # --- devices ------------------------------------------------------------------------
    def _devices(self) -> list[Device]:
        out: list[Device] = []
        for b in self.layout.beacons:
            out.append(self._beacon(b))
        for i in range(self.layout.population.static_noise):
            out.append(self._static_noise(i))
        for person in self.people:
            for kind in person.carries:
                out.append(self._carried(person, kind))
        return out

    def _beacon(self, spec: BeaconSpec) -> Device:
        rng = random.Random(f"{self.seed}/beacon/{spec.id}")
        if spec.kind == "ibeacon":
            assert spec.uuid is not None
            cid, data = encode_ibeacon(
                IBeaconFrame(bytes.fromhex(spec.uuid), spec.major, spec.minor, spec.measured_power)
            )
            main = _fragment(manufacturer={cid: data})
        else:
            assert spec.namespace is not None
            assert spec.instance is not None
            uuid, data = encode_eddystone_uid(
                EddystoneUidFrame(
                    spec.measured_power, bytes.fromhex(spec.namespace), bytes.fromhex(spec.instance)
                )
            )
            main = _fragment(service={uuid: data}, uuids=[EDDYSTONE_SERVICE_UUID])
        every = spec.tlm_every
        temp = rng.uniform(19.0, 24.0)
        uptime0 = rng.uniform(1e5, 5e6)

        def payload(dev: Device, t: float) -> str:
            if every and dev.count % every == every - 1:
                _, tlm = encode_eddystone_tlm(
                    EddystoneTlmFrame(
                        spec.battery_mv - int(t / 3600),
                        round(temp + math.sin(t / 5000.0), 2),
                        dev.count,
                        round(uptime0 + t, 1),
                    )
                )
                return _fragment(
                    service={EDDYSTONE_SERVICE_UUID: tlm}, uuids=[EDDYSTONE_SERVICE_UUID]
                )
            return main

        return Device(
            did=spec.id,
            kind="beacon",
            rng=rng,
            interval=spec.interval_s,
            t_on=0.0,
            t_off=self.duration_s,
            payload=payload,
            static_pos=(spec.x, spec.y, spec.floor * FLOOR_HEIGHT_M + 2.2),
            static_level=float(spec.floor),
            carry_db=0.0,
            body=False,
            address=_random_address(rng),
            clock=1.0 + rng.uniform(-2e-4, 2e-4),
        )

    def _static_noise(self, i: int) -> Device:
        rng = random.Random(f"{self.seed}/noise/{i}")
        street = self.layout.street
        outside = rng.random() < 0.6
        if outside:  # a speaker in the shop next door, a tracker in a parked car
            x = rng.uniform(street.rect[0] + 2, street.rect[2] - 2)
            y = rng.uniform(street.rect[1] + 0.5, -0.5)
            z, level = PHONE_HEIGHT_M, 0.0
        else:  # a till's card reader, a speaker, a forgotten tracker
            zone = rng.choice([z for z in self.layout.zones if z.kind != "outside"])
            x = rng.uniform(zone.rect[0], zone.rect[2])
            y = rng.uniform(zone.rect[1], zone.rect[3])
            z, level = zone.floor * FLOOR_HEIGHT_M + 1.0, float(zone.floor)
        kind = rng.choice(["speaker", "tracker", "fastpair"])
        if kind == "speaker":
            frag = _fragment(
                manufacturer={0x0057: bytes([rng.randrange(256) for _ in range(6)])},
                local_name=rng.choice(["JBL Flip 5", "Bose SoundLink", "SRS-XB13"]),
            )
        elif kind == "tracker":
            frag = _fragment(service={TILE_UUID: rng.randbytes(10)}, uuids=[TILE_UUID])
        else:
            frag = _fragment(service={FAST_PAIR_UUID: rng.randbytes(3)}, uuids=[FAST_PAIR_UUID])
        return Device(
            did=f"noise-{i:02d}",
            kind=f"noise:{kind}",
            rng=rng,
            interval=rng.uniform(0.8, 2.0),
            t_on=0.0,
            t_off=self.duration_s,
            payload=lambda dev, t: frag,
            static_pos=(x, y, z),
            static_outside=outside,
            static_level=level,
            body=False,
            carry_db=rng.uniform(0, 6),
            address=_random_address(rng),
            clock=1.0 + rng.uniform(-2e-4, 2e-4),
        )

    def _carried(self, person: Person, kind: str) -> Device:
        rng = random.Random(f"{self.seed}/device/{person.pid}/{person.group}/{kind}")
        traj = person.walker.traj
        base: dict[str, Any] = {
            "did": f"{person.pid}/{kind}",
            "kind": kind,
            "rng": rng,
            "t_on": max(0.0, traj.start),
            "t_off": min(self.duration_s, traj.end),
            "traj": traj,
            "tx_offset_db": rng.gauss(0.0, 2.0),
            "clock": 1.0 + rng.uniform(-5e-4, 5e-4),
            "address": _random_address(rng),
            "address_period": rng.uniform(600, 900),
        }
        pop = self.layout.population
        if kind in ("eid", "tag"):  # our Android app, or a VIP tag: the customer's EID
            if person.customer is not None:
                key, k = person.customer.identity_key, person.customer.rotation_exponent
            else:  # our app, but not enrolled here: an EID that resolves to nobody
                key = rng.randbytes(16)
                k = rng.choice([9, 10])
            tx = EID_TX_AT_0M["tag" if kind == "tag" else "phone"]
            t0 = self.t0

            def eid_payload(dev: Device, t: float) -> str:
                window = (t0 + int(t)) >> k
                frag = dev.cache.get(window)
                if frag is None:
                    eid = compute_eid(key, k, t0 + int(t))
                    uuid, data = encode_eddystone_eid(eid, tx)
                    frag = _fragment(service={uuid: data}, uuids=[EDDYSTONE_SERVICE_UUID])
                    dev.cache.clear()
                    dev.cache[window] = frag
                return frag

            if kind == "tag":  # on a key ring: fixed interval, in a pocket or a bag
                return Device(
                    **base,
                    interval=pop.tag_interval_s,
                    payload=eid_payload,
                    carry_db=CARRY_LOSS_DB[rng.choice(["pocket", "bag"])],
                )
            # Android lets an app on screen advertise at 100-250 ms; in the background (a
            # foreground service) apps choose 250 ms or 1 s to spare the battery.
            on_screen = person.carry == "hand" and rng.random() < pop.p_android_on_screen
            intervals = (
                pop.android_foreground_intervals_s
                if on_screen
                else pop.android_background_intervals_s
            )
            return Device(
                **base,
                interval=rng.choice(intervals),
                payload=eid_payload,
                carry_db=CARRY_LOSS_DB[person.carry],
            )
        if kind == "phone":  # a phone's OS (Apple Continuity style), rotating with the address

            def phone_payload(dev: Device, t: float) -> str:
                return _fragment(manufacturer={0x004C: b"\x10\x05" + dev.extra["salt"]})

            dev = Device(
                **base,
                interval=1.0,
                payload=phone_payload,
                carry_db=CARRY_LOSS_DB[person.carry],
            )
            dev.extra["salt"] = rng.randbytes(5)
            return dev
        if kind == "staff":
            instance = rng.randbytes(6)
            uuid, data = encode_eddystone_uid(EddystoneUidFrame(-20, STAFF_NAMESPACE, instance))
            frag = _fragment(service={uuid: data}, uuids=[EDDYSTONE_SERVICE_UUID])
            base["address_period"] = None
            return Device(**base, interval=1.0, payload=lambda d, t: frag, carry_db=2.0)
        wearable = kind.split(":", 1)[1]
        if wearable == "headphones":
            frag = _fragment(
                manufacturer={0x012D: rng.randbytes(8)},
                local_name=rng.choice(["WH-1000XM4", "WF-1000XM5"]),
            )
            return Device(
                **base,
                interval=rng.uniform(1.0, 2.0),
                payload=lambda d, t: frag,
                carry_db=CARRY_LOSS_DB["ceiling"],
            )
        if wearable == "watch":
            frag = _fragment(manufacturer={0x004C: b"\x10\x05" + rng.randbytes(5)})
            return Device(
                **base,
                interval=rng.uniform(1.0, 2.0),
                payload=lambda d, t: frag,
                carry_db=CARRY_LOSS_DB["wrist"],
            )
        frag = _fragment(service={TILE_UUID: rng.randbytes(10)}, uuids=[TILE_UUID])
        return Device(
            **base, interval=2.0, payload=lambda d, t: frag, carry_db=CARRY_LOSS_DB["bag"]
        )

    # --- truth and app lines --------------------------------------------------------------
    def _side_lines(self) -> list[tuple[float, int, str]]:
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
        if cust.device_class == "iphone_app":
            for b in (b for b in self.layout.beacons if b.kind == "ibeacon"):
                heard = self._heard_by_phone(person, b, rng)
                for tr in region_transitions(heard, rng):
                    event = "beacon_region_enter" if tr.entered else "beacon_region_exit"
                    add(tr.t, {"t": round(tr.t, 3), **base, "event": event,
                               "uuid": b.uuid, "major": b.major, "minor": b.minor})  # fmt: skip
        if not cust.shares_location:
            return
        gf = self.layout.geofence
        region = gf.id or self.layout.store_id
        traj = person.walker.traj
        gpass = geofence_pass(traj, gf.radius_m, cust.device_class, rng)
        who = {"customer_id": person.pid, "zone_id": region, "device_class": person.device_class}
        for t, event in ((gpass.t_in, "enter_geofence"), (gpass.t_out, "leave_geofence")):
            add(t, {"t": round(t, 3), "kind": "truth", **who, "event": event})
        for t, event in ((gpass.t_enter, "geofence_enter"), (gpass.t_exit, "geofence_exit")):
            add(t, {"t": round(t, 3), **base, "event": event, "region": region})
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

    def _heard_by_phone(self, person: Person, b: BeaconSpec, rng: random.Random) -> list[float]:
        """When ``person``'s phone catches a packet of store beacon ``b`` (the radio model,
        run the other way: the beacon transmits, the phone in hand, pocket or bag listens
        with iOS's duty-cycled background scan)."""
        radio, env = self.radio, self.radio.env
        link = radio.link(
            GatewaySpec(
                id=b.id, zone_id=b.zone_id, x=b.x, y=b.y, floor=b.floor,
                height_m=BEACON_HEIGHT_M, rssi_1m=b.measured_power,
                scan_duty=IOS_BACKGROUND_SCAN_DUTY,
            )
        )  # fmt: skip
        traj = person.walker.traj
        carry_db = CARRY_LOSS_DB[person.carry]
        # The same measured reception as a gateway's (soft edge, bursts, a per-position
        # offset that stays while the phone stands still), one link state per beacon.
        state = LinkState()
        heard: list[float] = []
        t = traj.start + rng.uniform(0.0, b.interval_s)
        while t <= traj.end:
            x, y, z, zone, heading = traj.at(t)
            dx, dy, dz = link.x - x, link.y - y, link.z - z
            d = math.sqrt(dx * dx + dy * dy + dz * dz)
            level = (z - PHONE_HEIGHT_M) / FLOOR_HEIGHT_M
            loss = carry_db + self._facade_db(x, y, zone) + env.floor_loss_db * abs(level - b.floor)
            loss += radio.body_loss_db(heading, dx, dy, BODY_LOSS_DB)
            mean = radio.mean_rssi(link, d, loss)
            if radio.out_of_reach(link, mean):
                state = LinkState()  # out of reach: the link starts afresh when back
            elif radio.receive(link, state, t, (x, y, z), mean, 0, rng) is not None:
                heard.append(t)
            t += b.interval_s
        return heard

    def _facade_db(self, x: float, y: float, zone: str) -> float:
        """The shop front's loss for someone on the street (none in the door's opening)."""
        if zone != self.layout.street.id:
            return 0.0
        if any(abs(x - dx) < DOOR_OPENING_M and abs(y - dy) < 2.0 for dx, dy in self._door_xs):
            return 0.0
        return self.radio.env.facade_loss_db

    # --- the run --------------------------------------------------------------------------
    def lines(self, progress: Callable[[float], None] | None = None) -> Iterator[str]:
        """The trace, line by line (header first), each without its newline."""
        yield json.dumps(self.header(), separators=(",", ":"))
        side = self._side_lines()
        si = 0
        heap: list[tuple[float, int, int]] = []
        for i, dev in enumerate(self.devices):
            dev.links = [LinkState() for _ in self.links]
            if dev.address_period is not None:
                dev.address_next = dev.t_on + dev.rng.uniform(0, dev.address_period)
            first = dev.t_on + dev.rng.uniform(0, dev.interval)
            heapq.heappush(heap, (first, i, i))
        seq = len(self.devices)
        next_progress = 0.0
        while heap:
            t, _, i = heapq.heappop(heap)
            tr = round(t, 3)
            while si < len(side) and side[si][0] <= tr:
                yield side[si][2]
                si += 1
            dev = self.devices[i]
            if t > dev.t_off:
                continue
            if progress is not None and t >= next_progress:
                progress(t)
                next_progress = t + 60.0
            yield from self._advertise(dev, t, tr)
            dev.count += 1
            seq += 1
            nxt = t + dev.interval * dev.clock + dev.rng.uniform(0.0, 0.01)
            heapq.heappush(heap, (nxt, seq, i))
        while si < len(side):
            yield side[si][2]
            si += 1
        if progress is not None:
            progress(self.duration_s)

    def _advertise(self, dev: Device, t: float, tr: float) -> Iterator[str]:
        rng = dev.rng
        if dev.address_period is not None and t >= dev.address_next:
            dev.address = _random_address(rng)
            dev.address_next = t + dev.address_period
            if "salt" in dev.extra:
                dev.extra["salt"] = rng.randbytes(5)
        if dev.traj is not None:
            x, y, z, zone, heading = dev.traj.at(t)
            outside = zone == self.layout.street.id
            level = (z - PHONE_HEIGHT_M) / FLOOR_HEIGHT_M  # continuous on an escalator
        else:
            x, y, z = dev.static_pos
            heading, outside, level = None, dev.static_outside, dev.static_level
        facade = 0.0
        if outside and not any(
            abs(x - dx) < DOOR_OPENING_M and abs(y - dy) < 2.0 for dx, dy in self._door_xs
        ):
            facade = self.radio.env.facade_loss_db
        advertisers = bisect.bisect_right(self._ons, t) - bisect.bisect_right(self._offs, t)
        env = self.radio.env
        radio = self.radio
        frag: str | None = None
        for j, link in enumerate(self.links):
            dx, dy, dz = link.x - x, link.y - y, link.z - z
            d = math.sqrt(dx * dx + dy * dy + dz * dz)
            loss = dev.carry_db - dev.tx_offset_db + facade
            loss += env.floor_loss_db * abs(level - link.floor)
            if dev.body:
                loss += radio.body_loss_db(heading, dx, dy, BODY_LOSS_DB)
            mean = radio.mean_rssi(link, d, loss)
            if radio.out_of_reach(link, mean):
                if dev.links[j].shadow is not None:
                    dev.links[j] = LinkState()
                continue
            rssi = radio.receive(link, dev.links[j], t, (x, y, z), mean, advertisers, rng)
            if rssi is None:
                continue
            if frag is None:
                frag = dev.payload(dev, t)
            value = max(-127, min(0, round(rssi)))
            yield (
                f'{{"t":{tr!r},"kind":"adv","gateway_id":"{link.gateway_id}",'
                f'"address":"{dev.address}","rssi":{value}{frag}}}'
            )

    def write(self, path: Path, progress: Callable[[float], None] | None = None) -> RunStats:
        counts = {"adv": 0, "truth": 0, "app": 0}
        size = 0
        n = 0
        with path.open("w", encoding="utf-8", newline="\n") as fh:
            for line in self.lines(progress):
                n += 1
                if n > 1:
                    kind = line[line.index('"kind":"') + 8 : line.index('"kind":"') + 11]
                    counts["adv" if kind == "adv" else "app" if kind == "app" else "truth"] += 1
                fh.write(line)
                fh.write("\n")
                size += len(line) + 1
        return RunStats(
            lines=n,
            adv_lines=counts["adv"],
            truth_lines=counts["truth"],
            app_lines=counts["app"],
            devices=len(self.devices),
            people=len(self.people),
            arrivals=sum(1 for p in self.people for e in p.truth if e.event == "arrive"),
            bytes=size,
        )


DEFAULT_START = "2026-01-05T10:00:00+00:00"


@dataclass(frozen=True, slots=True)
class LayoutScenario:
    layout: str
    hours: float
    description: str
    population: dict[str, Any] = field(default_factory=dict)
    arrivals: dict[str, Any] = field(default_factory=dict)


# Every scenario mixes device classes by its layout's shares (simulators/layouts/*.json,
# population.device_classes: 55% iPhone app, 30% Android app, 5% VIP tag, 10% no app of
# the enrolled customers; 60% of app users share their location) unless it says otherwise.
LAYOUT_SCENARIOS: dict[str, LayoutScenario] = {
    "boutique-hour": LayoutScenario("boutique", 1.0, "the boutique's first opening hour"),
    "boutique-day": LayoutScenario("boutique", 9.0, "a whole boutique day, 10:00-19:00"),
    "boutique-rush": LayoutScenario(
        "boutique",
        1 / 3,
        "20 busy minutes: many enrolled customers, every hard case, for end-to-end tests",
        population={
            "p_enrolled": 0.7,
            "p_window_shopper": 0.25,
            "p_lingerer": 0.1,
            "p_between": 0.1,
            "p_return": 0.0,
            "p_revoke": 0.1,
            "customers": 60,
        },
        arrivals={"hourly": [180]},
    ),
    "hard-cases": LayoutScenario(
        "boutique",
        2.0,
        "two boutique hours where every other group is a hard case",
        population={
            "p_window_shopper": 0.3,
            "p_lingerer": 0.15,
            "p_between": 0.15,
            "p_return": 0.15,
            "p_enrolled": 0.5,
        },
    ),
    "flagship-hour": LayoutScenario("flagship", 1.0, "the flagship's first opening hour"),
    "flagship-day": LayoutScenario("flagship", 10.0, "a whole flagship day, 10:00-20:00"),
}


def build(
    layout: str | Path | StoreLayout,
    *,
    hours: float,
    seed: int,
    start: datetime | None = None,
    population: dict[str, Any] | None = None,
    arrivals: dict[str, Any] | None = None,
) -> Simulation:
    lay = layout if isinstance(layout, StoreLayout) else load_layout(layout)
    if population:  # validated: a share of a class no customer can have is refused
        pop = Population.model_validate({**lay.population.model_dump(), **population})
        lay = lay.model_copy(update={"population": pop})
    if arrivals:
        lay = lay.model_copy(update={"arrivals": lay.arrivals.model_copy(update=arrivals)})
    begin = start or datetime.fromisoformat(DEFAULT_START)
    if start is None:
        oh, om = (int(v) for v in lay.arrivals.open.split(":"))
        begin = begin.replace(hour=oh, minute=om)
    return Simulation(lay, begin, hours, seed)


def build_scenario(
    name: str,
    seed: int,
    start: datetime | None = None,
    hours: float | None = None,
    population: dict[str, Any] | None = None,
) -> Simulation:
    """A named scenario; ``population`` overrides some of its population's fields (e.g.
    ``device_classes``)."""
    try:
        sc = LAYOUT_SCENARIOS[name]
    except KeyError:
        # radio-survey is built by simulators.survey (the CLI dispatches it), which builds on
        # this module: naming it here keeps one list of what `--scenario` takes.
        known = ", ".join(["skeleton", *sorted([*LAYOUT_SCENARIOS, "radio-survey"])])
        raise SimulatorError(f"unknown scenario {name!r}; known: {known}") from None
    return build(
        sc.layout,
        hours=hours or sc.hours,
        seed=seed,
        start=start,
        population={**sc.population, **(population or {})},
        arrivals=sc.arrivals,
    )


__all__ = ["LAYOUT_SCENARIOS", "RunStats", "Simulation", "build", "build_scenario"]
