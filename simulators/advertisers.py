"""Every advertiser of a simulated store and what it says: the store's beacons (iBeacon,
Eddystone-UID, with TLM), the neighbours' noise (speakers, trackers, Fast Pair), and what
people carry (our app's rotating EID on Android, a VIP tag, a phone's OS, a staff
handheld, wearables). :class:`simulators.engine.Simulation` schedules them; this module
only builds them. Each device's draws come from a generator seeded by (seed, who), so a
device is the same whatever else is in the store.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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
from simulators.layout import FLOOR_HEIGHT_M, BeaconSpec, StoreLayout
from simulators.movement import Trajectory
from simulators.population import Person
from simulators.radio import CARRY_LOSS_DB, PHONE_HEIGHT_M, LinkState

TILE_UUID = "0000feed-0000-1000-8000-00805f9b34fb"
FAST_PAIR_UUID = "0000fe2c-0000-1000-8000-00805f9b34fb"
STAFF_NAMESPACE = bytes.fromhex("50726f78696d61537466")  # "ProximaStf"
EID_TX_AT_0M = {"phone": -18, "tag": -20}
BEACON_HEIGHT_M = 2.2
"""Where a store beacon hangs above its floor (m)."""


def random_address(rng: random.Random) -> str:
    first = rng.randrange(0xC0, 0x100)  # random static / resolvable-looking
    return ":".join(f"{b:02X}" for b in [first, *(rng.randrange(256) for _ in range(5))])


def fragment(
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


class Advertisers:
    """Builds the devices of one run: ``layout``'s beacons and noise, and each person's."""

    def __init__(self, layout: StoreLayout, seed: int, duration_s: float, t0: int) -> None:
        self.layout = layout
        self.seed = seed
        self.duration_s = duration_s
        self.t0 = t0

    def all(self, people: Iterable[Person]) -> list[Device]:
        """Beacons, then static noise, then what each person carries (a fixed order: the
        scheduler breaks ties by it)."""
        out: list[Device] = [self.beacon(b) for b in self.layout.beacons]
        out.extend(self.static_noise(i) for i in range(self.layout.population.static_noise))
        for person in people:
            out.extend(self.carried(person, kind) for kind in person.carries)
        return out

    def beacon(self, spec: BeaconSpec) -> Device:
        rng = random.Random(f"{self.seed}/beacon/{spec.id}")
        if spec.kind == "ibeacon":
            assert spec.uuid is not None
            cid, data = encode_ibeacon(
                IBeaconFrame(bytes.fromhex(spec.uuid), spec.major, spec.minor, spec.measured_power)
            )
            main = fragment(manufacturer={cid: data})
        else:
            assert spec.namespace is not None
            assert spec.instance is not None
            uuid, data = encode_eddystone_uid(
                EddystoneUidFrame(
                    spec.measured_power, bytes.fromhex(spec.namespace), bytes.fromhex(spec.instance)
                )
            )
            main = fragment(service={uuid: data}, uuids=[EDDYSTONE_SERVICE_UUID])
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
                return fragment(
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
            static_pos=(spec.x, spec.y, spec.floor * FLOOR_HEIGHT_M + BEACON_HEIGHT_M),
            static_level=float(spec.floor),
            carry_db=0.0,
            body=False,
            address=random_address(rng),
            clock=1.0 + rng.uniform(-2e-4, 2e-4),
        )

    def static_noise(self, i: int) -> Device:
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
            frag = fragment(
                manufacturer={0x0057: bytes([rng.randrange(256) for _ in range(6)])},
                local_name=rng.choice(["JBL Flip 5", "Bose SoundLink", "SRS-XB13"]),
            )
        elif kind == "tracker":
            frag = fragment(service={TILE_UUID: rng.randbytes(10)}, uuids=[TILE_UUID])
        else:
            frag = fragment(service={FAST_PAIR_UUID: rng.randbytes(3)}, uuids=[FAST_PAIR_UUID])
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
            address=random_address(rng),
            clock=1.0 + rng.uniform(-2e-4, 2e-4),
        )

    def carried(self, person: Person, kind: str) -> Device:
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
            "address": random_address(rng),
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
                    frag = fragment(service={uuid: data}, uuids=[EDDYSTONE_SERVICE_UUID])
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
                return fragment(manufacturer={0x004C: b"\x10\x05" + dev.extra["salt"]})

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
            frag = fragment(service={uuid: data}, uuids=[EDDYSTONE_SERVICE_UUID])
            base["address_period"] = None
            return Device(**base, interval=1.0, payload=lambda d, t: frag, carry_db=2.0)
        wearable = kind.split(":", 1)[1]
        if wearable == "headphones":
            frag = fragment(
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
            frag = fragment(manufacturer={0x004C: b"\x10\x05" + rng.randbytes(5)})
            return Device(
                **base,
                interval=rng.uniform(1.0, 2.0),
                payload=lambda d, t: frag,
                carry_db=CARRY_LOSS_DB["wrist"],
            )
        frag = fragment(service={TILE_UUID: rng.randbytes(10)}, uuids=[TILE_UUID])
        return Device(
            **base, interval=2.0, payload=lambda d, t: frag, carry_db=CARRY_LOSS_DB["bag"]
        )
