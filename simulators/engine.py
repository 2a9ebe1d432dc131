"""The simulation engine: a layout and a crowd rendered to a trace, line by line.

Every advertiser (a customer's app, another phone, a wearable, a staff handheld, a store
beacon, a neighbour's speaker) is scheduled on one heap by its next advertising time
(interval × its own clock error + the spec's 0-10 ms advDelay). Each advertisement is
offered to every gateway through :class:`simulators.radio.RadioModel`; each gateway that
hears it gets one ``adv`` line. ``truth`` and ``app`` lines are drawn up front per person
and merged in time order. Every random draw comes from a generator seeded by (seed, who),
so the same seed gives the same bytes.

The devices are built by :mod:`simulators.advertisers`, the truth and app lines drawn by
:mod:`simulators.side_lines`; this module schedules and hears them.
"""

from __future__ import annotations

import bisect
import heapq
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from simulators.advertisers import Advertisers, Device, random_address
from simulators.exceptions import SimulatorError
from simulators.layout import (
    FLOOR_HEIGHT_M,
    Population,
    StoreLayout,
    load_layout,
)
from simulators.movement import Trajectory
from simulators.population import Crowd, Customer, Person
from simulators.radio import BODY_LOSS_DB, PHONE_HEIGHT_M, LinkState, RadioModel, Storefront
from simulators.side_lines import SideLines


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
        street = {z.id for z in layout.zones if z.kind == "outside"}
        self.links = [self.radio.link(g, outside=g.zone_id in street) for g in layout.gateways]
        crowd = Crowd(layout, seed, self.offset_s, self.duration_s)
        self.customers: list[Customer] = crowd.customers
        self.people: list[Person] = crowd.people()
        self.devices = self._devices()
        self._ons = sorted(d.t_on for d in self.devices)
        self._offs = sorted(d.t_off for d in self.devices)
        self.storefront = Storefront(layout)
        self.side: SideLines | None = None
        """The run's truth and app lines, once drawn (:meth:`lines`)."""

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
    def median_dbm(self, gateway_id: str, traj: Trajectory, t: float) -> float:
        """The median level (dBm) at which a gateway hears a phone carried on ``traj`` at
        ``t``: the deterministic part of what :meth:`_advertise` draws (path loss, the shop
        front, floors, the gateway's antenna, the carrier's body), without the phone's own
        carry loss and transmit offset, which every gateway hears alike, and without the
        link's random parts (shadowing, the per-position offset, fading, losses). Keep in
        step with :meth:`_advertise`, whose hot loop has these terms inline."""
        link = next(k for k in self.links if k.gateway_id == gateway_id)
        x, y, z, zone, heading = traj.at(t)
        outside = zone == self.layout.street.id
        dx, dy, dz = link.x - x, link.y - y, link.z - z
        loss = self.storefront.loss_db(x, y, True) if outside != link.outside else 0.0
        loss += self.radio.env.floor_loss_db * abs(
            (z - PHONE_HEIGHT_M) / FLOOR_HEIGHT_M - link.floor
        )
        if link.facing is not None:
            loss += self.radio.antenna_loss_db(link, dx, dy)
        loss += self.radio.body_loss_db(heading, dx, dy, BODY_LOSS_DB)
        return self.radio.mean_rssi(link, math.sqrt(dx * dx + dy * dy + dz * dz), loss)

    def _devices(self) -> list[Device]:
        return Advertisers(self.layout, self.seed, self.duration_s, self.t0).all(self.people)

    def _side_lines(self) -> list[tuple[float, int, str]]:
        """The truth and app lines, (t, n, line) in time order (simulators.side_lines)."""
        self.side = SideLines(
            self.layout, self.radio, self.seed, self.duration_s, self.people, self.customers
        )
        return self.side.lines()

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
            dev.address = random_address(rng)
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
        # The shop front's loss on links that cross it: a gateway inside hearing a phone
        # outside, or one outside (a door pair's street gateway) hearing a phone inside.
        facade = self.storefront.loss_db(x, y, True)
        advertisers = bisect.bisect_right(self._ons, t) - bisect.bisect_right(self._offs, t)
        env = self.radio.env
        radio = self.radio
        frag: str | None = None
        for j, link in enumerate(self.links):
            dx, dy, dz = link.x - x, link.y - y, link.z - z
            d = math.sqrt(dx * dx + dy * dy + dz * dz)
            loss = dev.carry_db - dev.tx_offset_db + (facade if outside != link.outside else 0.0)
            loss += env.floor_loss_db * abs(level - link.floor)
            if link.facing is not None:
                loss += radio.antenna_loss_db(link, dx, dy)
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
    layout: str | Path | None = None,
) -> Simulation:
    """A named scenario; ``population`` overrides some of its population's fields (e.g.
    ``device_classes``); ``layout`` plays it in another store (e.g. ``boutique-pair``, the
    boutique with a door pair), with the scenario's population and arrivals."""
    try:
        sc = LAYOUT_SCENARIOS[name]
    except KeyError:
        # radio-survey is built by simulators.survey (the CLI dispatches it), which builds on
        # this module: naming it here keeps one list of what `--scenario` takes.
        known = ", ".join(["skeleton", *sorted([*LAYOUT_SCENARIOS, "radio-survey"])])
        raise SimulatorError(f"unknown scenario {name!r}; known: {known}") from None
    return build(
        layout or sc.layout,
        hours=hours or sc.hours,
        seed=seed,
        start=start,
        population={**sc.population, **(population or {})},
        arrivals=sc.arrivals,
    )


__all__ = ["LAYOUT_SCENARIOS", "RunStats", "Simulation", "build", "build_scenario"]
