"""``radio-survey``: a still phone held at fixed distances from one gateway, to check the radio.

The ``survey`` layout is an empty hall with one ceiling gateway at the reference
calibration. A phone, held still at 1.2 m, advertises an iBeacon frame once a second; it
stands ``STAY_S`` seconds at each of ``DISTANCES_M`` (horizontal distance from the
gateway), one after the other. A ``truth`` line (``event: survey``, ``distance_m``)
starts each stretch, so a trace is easy to bin the way a field survey is: per distance,
detection in 2 s scans, RSSI spread, runs of misses (``tests/simulators/test_radio.py``
does exactly that against measured figures). Nobody else is in the hall: no crowd, no
collisions, no body or pocket loss, so what the trace shows is the radio model alone.
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from typing import Any

from beacons.frames import IBeaconFrame, encode_ibeacon
from simulators.advertisers import Device, fragment, random_address
from simulators.engine import DEFAULT_START, Simulation
from simulators.layout import load_layout
from simulators.movement import Trajectory
from simulators.radio import PHONE_HEIGHT_M

DISTANCES_M = (1.0, 2.0, 4.0, 8.0, 16.0, 24.0, 32.0)
STAY_S = 60.0
INTERVAL_S = 1.0
SURVEY_UUID = "5072786d6153757276657950686f6e65"  # "PrxmaSurveyPhone"
SUBJECT = "survey-phone"


class SurveySimulation(Simulation):
    """The survey walk on the ``survey`` layout (see module docstring)."""

    def _devices(self) -> list[Device]:
        gw = self.layout.gateways[0]
        zone = self.layout.zone(gw.zone_id)
        traj = Trajectory()
        for i, d in enumerate(DISTANCES_M):
            x = gw.x + d
            traj.add(i * STAY_S, x, gw.y, PHONE_HEIGHT_M, zone.id)
            traj.add((i + 1) * STAY_S, x, gw.y, PHONE_HEIGHT_M, zone.id)
        rng = random.Random(f"{self.seed}/survey/{SUBJECT}")
        cid, data = encode_ibeacon(IBeaconFrame(bytes.fromhex(SURVEY_UUID), 1, 1, -59))
        frag = fragment(manufacturer={cid: data})
        return [
            Device(
                did=SUBJECT,
                kind="survey",
                rng=rng,
                interval=INTERVAL_S,
                t_on=0.0,
                t_off=self.duration_s,
                payload=lambda dev, t: frag,
                traj=traj,
                body=False,
                address=random_address(rng),
            )
        ]

    def _side_lines(self) -> list[tuple[float, int, str]]:
        gw = self.layout.gateways[0]
        out = []
        for i, d in enumerate(DISTANCES_M):
            t = i * STAY_S
            line: dict[str, Any] = {
                "t": t,
                "kind": "truth",
                "customer_id": SUBJECT,
                "event": "survey",
                "zone_id": gw.zone_id,
                "gateway_id": gw.id,
                "distance_m": d,
                "interval_s": INTERVAL_S,
            }
            out.append((t, i, json.dumps(line, separators=(",", ":"))))
        return out


def radio_survey(seed: int, start: datetime | None = None) -> SurveySimulation:
    """The ``radio-survey`` scenario: 7 stretches of 60 s, 1 to 32 m from the gateway."""
    layout = load_layout("survey")
    begin = start or datetime.fromisoformat(DEFAULT_START)
    return SurveySimulation(layout, begin, len(DISTANCES_M) * STAY_S / 3600.0, seed)
