"""The benchmark entry point runs and reports every figure (numbers are not asserted)."""

from __future__ import annotations

import math

from beacons.bench import build_mix, run_beacons_bench, theengs_payloads
from beacons.frames import decode_fields


def test_mix_decodes_cleanly() -> None:
    mix = build_mix(2_000)
    types = {f.type for a in mix for f in decode_fields(a.manufacturer_data, a.service_data)}
    assert {"eddystone_eid", "ibeacon", "eddystone_tlm", "eddystone_uid", "unknown"} <= types
    assert [a.t for a in mix] == sorted(a.t for a in mix)
    assert len(theengs_payloads(mix[:10])) == 10


def test_run_beacons_bench_reports_all_keys() -> None:
    figures = run_beacons_bench(0.05, adverts=1_000, resolver_identities=200)
    for key in (
        "decode_per_s",
        "pipeline_per_s",
        "theengs_per_s",
        "resolver_refresh_s_100k",
        "resolver_bytes_per_identity",
    ):
        assert key in figures
    assert figures["decode_per_s"] > 0
    assert figures["pipeline_per_s"] > 0
    assert figures["resolver_bytes_per_identity"] > 0
    assert math.isnan(figures["theengs_per_s"]) or figures["theengs_per_s"] > 0
