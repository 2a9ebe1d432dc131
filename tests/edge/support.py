"""Helpers for the edge integration tests: synthetic traces, an event collector, Mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from beacons.frames import EddystoneTlmFrame, encode_eddystone_eid, encode_eddystone_tlm
from contracts.models import Event, parse_batch
from transport.mqtt import MqttClient
from transport.net import free_port

STORE = "store-e"
GATEWAY = "gw-e"
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)

# Presence tuned so each synthetic visitor gives exactly one enter and one exit.
FAST_PRESENCE = {
    "PROXIMA_EDGE_ENTER_MIN_S": "0",
    "PROXIMA_EDGE_ENTER_MIN_SIGHTINGS": "1",
    "PROXIMA_EDGE_EXIT_TIMEOUT_S": "1",
    "PROXIMA_EDGE_EXIT_MIN_S": "1",
    "PROXIMA_EDGE_DWELL_S": "3600",
    "PROXIMA_EDGE_TICK_S": "0.2",
}


def write_trace(
    path: Path,
    visitors: int,
    *,
    every_s: float = 0.05,
    first: int = 0,
    gateway: str = GATEWAY,
    tlm_battery_mv: int | None = None,
) -> Path:
    """One visitor (its own EID) every ``every_s``: two strong adverts 0.3 s apart, then gone."""
    header = {
        "format": "proxima-trace",
        "version": 1,
        "store_id": STORE,
        "start": "2026-01-01T10:00:00Z",
        "layout": {
            "zones": [{"id": "entrance", "kind": "entrance"}],
            "gateways": [{"id": gateway, "zone_id": "entrance"}],
        },
    }
    lines = []
    for i in range(visitors):
        uuid, data = encode_eddystone_eid((first + i).to_bytes(8, "big"), -20)
        t0 = i * every_s
        for dt in (0.0, 0.3):
            lines.append(
                (
                    round(t0 + dt, 3),
                    {
                        "kind": "adv",
                        "gateway_id": gateway,
                        "address": f"C0:00:00:00:{(first + i) >> 8 & 0xFF:02X}:{(first + i) & 0xFF:02X}",
                        "rssi": -50,
                        "service_data": {uuid: data.hex()},
                    },
                )
            )
    if tlm_battery_mv is not None:  # a store beacon's telemetry every second
        for k in range(int(visitors * every_s) + 1):
            uuid, data = encode_eddystone_tlm(EddystoneTlmFrame(tlm_battery_mv, 20.0, k, float(k)))
            lines.append(
                (
                    float(k),
                    {
                        "kind": "adv",
                        "gateway_id": gateway,
                        "address": "D0:00:00:00:00:01",
                        "rssi": -70,
                        "service_data": {uuid: data.hex()},
                    },
                )
            )
    lines.sort(key=lambda item: item[0])
    with path.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(header) + "\n")
        for t, rec in lines:
            fh.write(json.dumps({"t": t, **rec}) + "\n")
    return path


@dataclass
class Collector:
    """Every batch published on a topic filter, with its user properties."""

    url: str
    topic: str
    client_id: str | None = None
    clean: bool = True
    batches: list[tuple[str, bytes, tuple[tuple[str, str], ...]]] = field(default_factory=list)
    _client: MqttClient | None = None
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Collector:
        self._client = MqttClient(self.url, client_id=self.client_id, clean_session=self.clean)
        await self._client.connect()
        await self._client.subscribe(self.topic, qos=1)
        self._task = asyncio.create_task(self._collect(), name="collector")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        assert self._client is not None
        self._task.cancel()
        await self._client.disconnect()

    async def _collect(self) -> None:
        assert self._client is not None
        while True:
            msg = await self._client.messages.get()
            self.batches.append((msg.topic, msg.payload, msg.user_properties))

    def events(self) -> list[Event]:
        return [e for _, payload, _ in self.batches for e in parse_batch(payload)]

    async def wait_for(self, n: int, timeout: float = 60.0) -> list[Event]:
        try:
            async with asyncio.timeout(timeout):
                while len({e.event_id for e in self.events()}) < n:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        except TimeoutError:
            seqs = {e.seq for e in self.events()}
            missing = sorted(set(range(1, n + 1)) - seqs)
            raise AssertionError(
                f"{len(seqs)} of {n} events after {timeout}s; missing seqs {missing[:10]}.."
                f"{missing[-3:]} ({len(missing)})"
            ) from None
        return self.events()


def outbox_meta(path: Path) -> tuple[int, int]:
    """(rows still stored, next seq) of an outbox file, read as another process would."""
    if not path.exists():
        return 0, 1
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        next_seq = int(conn.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])
    except sqlite3.OperationalError:  # the agent has created the file, not yet its tables
        return 0, 1
    finally:
        conn.close()
    return int(rows), next_seq


class Mosquitto:
    """A private Mosquitto child on its own port, with persistence, that can be stopped."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed")
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\n"
            "max_queued_messages 100000\n" + ("user root\n" if os.geteuid() == 0 else "")
            # As root, mosquitto drops to user "mosquitto", which cannot write in tmp_path.
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = (workdir / "mosquitto.log").open("ab")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert MOSQUITTO is not None
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=self.log, stderr=subprocess.STDOUT
        )
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"mosquitto exited: see {self.workdir}/mosquitto.log"
                    ) from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # graceful: it writes its persistence file
            self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.log.close()
