"""Throughput benchmarks for the beacons library (``proxima bench beacons``).

The advertisement mix is what a busy store entrance hears: customers' phones sending
Eddystone-EID, the store's own iBeacons and Eddystone-UID beacons with interleaved TLM,
and a crowd of unrelated devices (Apple Continuity, Microsoft CDP, Google Fast Pair,
arbitrary manufacturer data). Every advert is built with this package's encoders.
Nothing here does I/O; the caller prints the figures.
"""

from __future__ import annotations

import json
import math
import random
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from beacons.eid import compute_eid
from beacons.frames import (
    AltBeaconFrame,
    EddystoneTlmFrame,
    EddystoneUidFrame,
    IBeaconFrame,
    decode_fields,
    encode_altbeacon,
    encode_eddystone_eid,
    encode_eddystone_tlm,
    encode_eddystone_uid,
    encode_ibeacon,
)
from beacons.presence import PresenceTracker
from beacons.resolver import EidResolver
from beacons.uuids import uuid16_to_str

T0 = 1_700_000_000

_Fields = tuple[dict[int, bytes], dict[str, bytes]]


def _const(manufacturer: dict[int, bytes], service: dict[str, bytes]) -> Callable[[float], _Fields]:
    """An advert maker whose payload never changes."""
    fields = (manufacturer, service)
    return lambda _t: fields


@dataclass(frozen=True, slots=True)
class BenchAdvert:
    """One advertisement as a scanner hands it over (bleak's field shapes)."""

    address: str
    manufacturer_data: dict[int, bytes]
    service_data: dict[str, bytes]
    rssi: float
    t: float


def build_mix(adverts: int = 20_000, seed: int = 7, span_s: float = 60.0) -> list[BenchAdvert]:
    """A reproducible store-entrance mix of ``adverts`` advertisements over ``span_s``."""
    rng = random.Random(seed)
    sources: list[tuple[float, str, Callable[[float], _Fields]]]
    sources = []

    def add(
        weight: float,
        address: str,
        make: Callable[[float], _Fields],
    ) -> None:
        sources.append((weight, address, make))

    for i in range(60):  # customers' phones: EID rotating every 2**10 s
        key = rng.randbytes(16)

        def eid_adv(t: float, key: bytes = key) -> _Fields:
            uuid, data = encode_eddystone_eid(compute_eid(key, 10, int(T0 + t)), -18)
            return {}, {uuid: data}

        add(0.30 / 60, f"phone-{i}", eid_adv)
    store_uuid = rng.randbytes(16)
    for i in range(30):  # store iBeacons
        payload = dict([encode_ibeacon(IBeaconFrame(store_uuid, 100, i, -59))])
        add(0.25 / 30, f"ibeacon-{i}", _const(payload, {}))
    namespace = rng.randbytes(10)
    for i in range(10):  # Eddystone-UID beacons with interleaved TLM
        uid = dict([encode_eddystone_uid(EddystoneUidFrame(-20, namespace, rng.randbytes(6)))])
        add(0.05 / 10, f"uid-{i}", _const({}, uid))

        def tlm_adv(t: float) -> _Fields:
            frame = EddystoneTlmFrame(3000 - int(t), 21.5, int(t * 10), round(t, 1))
            return {}, dict([encode_eddystone_tlm(frame)])

        add(0.05 / 10, f"uid-{i}", tlm_adv)
    for i in range(5):
        alt = dict([encode_altbeacon(AltBeaconFrame(0x0118, rng.randbytes(20), -60))])
        add(0.02 / 5, f"alt-{i}", _const(alt, {}))
    fast_pair = uuid16_to_str(0xFE2C)
    for i in range(150):  # unrelated devices
        kind = i % 4
        if kind == 0:
            noise: _Fields = (
                {0x004C: b"\x10\x05" + rng.randbytes(4)},
                {},
            )
        elif kind == 1:
            noise = ({0x0006: b"\x01\x09\x20" + rng.randbytes(24)}, {})
        elif kind == 2:
            noise = ({}, {fast_pair: rng.randbytes(6)})
        else:
            noise = ({rng.randrange(0x1000, 0xFFFF): rng.randbytes(rng.randrange(2, 20))}, {})
        add(0.33 / 150, f"noise-{i}", _const(*noise))
    weights = [w for w, _, _ in sources]
    levels = {address: rng.uniform(-95.0, -50.0) for _, address, _ in sources}
    times = sorted(rng.uniform(0.0, span_s) for _ in range(adverts))
    picks = rng.choices(range(len(sources)), weights=weights, k=adverts)
    out: list[BenchAdvert] = []
    for t, pick in zip(times, picks, strict=True):
        _, address, make = sources[pick]
        level = levels[address] = min(-35.0, max(-100.0, levels[address] + rng.gauss(0, 1.0)))
        manufacturer, service = make(t)
        out.append(BenchAdvert(address, manufacturer, service, round(level + rng.gauss(0, 4)), t))
    return out


_CHUNK = 500


def _timed(seconds: float, total: int, run_chunk: Callable[[int, int, int], None]) -> float:
    """Items per second of ``run_chunk(repeat, start, stop)`` cycling over ``total`` items.

    Work goes in chunks so a slow decoder still stops close to ``seconds``.
    """
    items = 0
    repeat = 0
    begin = time.perf_counter()
    while True:
        for start in range(0, total, _CHUNK):
            stop = min(total, start + _CHUNK)
            run_chunk(repeat, start, stop)
            items += stop - start
            elapsed = time.perf_counter() - begin
            if elapsed >= seconds:
                return items / elapsed
        repeat += 1


def bench_decode(mix: list[BenchAdvert], seconds: float) -> float:
    """decode_fields calls per second over the mix."""
    pairs = [(a.manufacturer_data, a.service_data) for a in mix]

    def chunk(_repeat: int, start: int, stop: int) -> None:
        decode = decode_fields
        for manufacturer, service in pairs[start:stop]:
            decode(manufacturer, service)

    return _timed(seconds, len(pairs), chunk)


def bench_pipeline(mix: list[BenchAdvert], seconds: float, span_s: float = 60.0) -> float:
    """Adverts per second through decode → Kalman filter → presence tracker (+1 Hz ticks)."""
    rows = [(a.manufacturer_data, a.service_data, a.rssi, a.t) for a in mix]
    tracker = PresenceTracker("entrance")
    # Each pass over the mix is shifted in time so the clock never runs backwards.
    period = span_s + 30.0
    next_tick = [1.0]

    def chunk(repeat: int, start: int, stop: int) -> None:
        decode = decode_fields
        observe = tracker.observe
        offset = repeat * period
        if start == 0 and repeat:
            tracker.tick(offset)
        for manufacturer, service, rssi, t0 in rows[start:stop]:
            t = t0 + offset
            if t >= next_tick[0]:
                tracker.tick(t)
                next_tick[0] = t + 1.0
            for frame in decode(manufacturer, service):
                subject = frame.subject_id
                if subject is not None:
                    observe(subject, rssi, t)

    return _timed(seconds, len(rows), chunk)


def theengs_payloads(mix: list[BenchAdvert]) -> list[str]:
    """The mix as TheengsDecoder input JSON (company id little-endian inside manufacturerdata)."""
    payloads = []
    for a in mix:
        doc: dict[str, object] = {"id": "AA:BB:CC:DD:EE:FF", "rssi": a.rssi}
        for company_id, payload in a.manufacturer_data.items():
            doc["manufacturerdata"] = (company_id.to_bytes(2, "little") + payload).hex()
        for uuid, data in a.service_data.items():
            doc["servicedata"] = data.hex()
            doc["servicedatauuid"] = uuid[4:8]
        payloads.append(json.dumps(doc))
    return payloads


def bench_theengs(mix: list[BenchAdvert], seconds: float) -> float:
    """decodeBLE calls per second over the mix (JSON built beforehand); NaN if not installed."""
    try:
        from TheengsDecoder import decodeBLE
    except ImportError:
        return math.nan
    payloads = theengs_payloads(mix)

    def chunk(_repeat: int, start: int, stop: int) -> None:
        for doc in payloads[start:stop]:
            decodeBLE(doc)

    return _timed(seconds, len(payloads), chunk)


def measure_resolver(
    identities: int = 100_000,
    rotation_exponent: int = 10,
    drift_windows: int = 1,
    memory_identities: int | None = None,
    seed: int = 11,
) -> dict[str, float]:
    """Index build time, one-window refresh time, resolves/s and index bytes per identity.

    Bytes are counted with tracemalloc over the resolver's own structures (the caller's
    identity id strings and keys are excluded), on ``memory_identities`` identities
    (default: the same number).
    """
    rng = random.Random(seed)
    ids = [f"customer-{i:07d}" for i in range(identities)]
    keys = [rng.randbytes(16) for _ in range(identities)]
    resolver = EidResolver(drift_windows=drift_windows)
    for identity_id, key in zip(ids, keys, strict=True):
        resolver.add(identity_id, key, rotation_exponent)
    start = time.perf_counter()
    resolver.refresh(T0)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    resolver.refresh(T0 + (1 << rotation_exponent))
    refresh_s = time.perf_counter() - start
    t = T0 + (1 << rotation_exponent)
    probes = [compute_eid(keys[i], rotation_exponent, t) for i in range(min(1000, identities))]
    probes += [rng.randbytes(8) for _ in range(len(probes))]
    start = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        for eid in probes:
            resolver.resolve(eid, t)
    resolve_per_s = rounds * len(probes) / (time.perf_counter() - start)
    del resolver

    n_mem = identities if memory_identities is None else memory_identities
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    mem_resolver = EidResolver(drift_windows=drift_windows)
    for identity_id, key in zip(ids[:n_mem], keys[:n_mem], strict=True):
        mem_resolver.add(identity_id, key, rotation_exponent)
    mem_resolver.refresh(T0)
    mem_resolver.refresh(T0 + (1 << rotation_exponent))
    used = tracemalloc.get_traced_memory()[0] - before
    if not was_tracing:
        tracemalloc.stop()
    return {
        "build_s": build_s,
        "refresh_s": refresh_s,
        "resolve_per_s": resolve_per_s,
        "bytes_per_identity": used / max(1, n_mem),
        "index_entries_per_identity": mem_resolver.index_size / max(1, n_mem),
    }


def run_beacons_bench(
    seconds: float = 2.0,
    *,
    adverts: int = 20_000,
    resolver_identities: int = 100_000,
) -> dict[str, float]:
    """All beacons figures: decode_per_s, pipeline_per_s, theengs_per_s and resolver costs.

    ``seconds`` is the time spent on each throughput figure; the resolver part takes a
    few seconds more at 100,000 identities. ``theengs_per_s`` is NaN when TheengsDecoder
    is not installed.
    """
    mix = build_mix(adverts)
    figures = {
        "decode_per_s": bench_decode(mix, seconds),
        "pipeline_per_s": bench_pipeline(mix, seconds),
        "theengs_per_s": bench_theengs(mix, seconds),
    }
    resolver = measure_resolver(resolver_identities)
    # Key names are fixed for the CLI; resolver_identities says how many were used.
    figures["resolver_refresh_s_100k"] = resolver["refresh_s"]
    figures["resolver_build_s_100k"] = resolver["build_s"]
    figures["resolver_bytes_per_identity"] = resolver["bytes_per_identity"]
    figures["resolver_resolve_per_s"] = resolver["resolve_per_s"]
    figures["resolver_identities"] = float(resolver_identities)
    return figures
