"""EidResolver: drift windows, incremental refresh, add/remove, collisions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beacons.eid import compute_eid, window_start
from beacons.exceptions import BeaconError
from beacons.resolver import EidResolver, Match
from tests.beacons.factories import SPEC_IDENTITY_KEY

T = 1_700_000_000
KEYS = {f"c{i}": bytes([i]) * 16 for i in range(1, 6)}


def make_resolver(drift: int = 1, k: int = 10, **kwargs: int) -> EidResolver:
    resolver = EidResolver(drift_windows=drift, **kwargs)
    for identity_id, key in KEYS.items():
        resolver.add(identity_id, key, k)
    return resolver


def test_resolves_spec_vector() -> None:
    resolver = EidResolver()
    resolver.add("spec", SPEC_IDENTITY_KEY, 10)
    assert resolver.resolve(bytes.fromhex("4144413e45fefa58"), 2000) == Match("spec", 1024, 0)
    assert resolver.resolve(bytes.fromhex("a9b76a71c5f89290"), 2000) == Match("spec", 0, -1)
    assert resolver.resolve(bytes.fromhex("a9b76a71c5f89290"), 0) == Match("spec", 0, 0)


@pytest.mark.parametrize(
    ("drift", "offset", "resolves"),
    [
        (1, 0, True),
        (1, -1, True),
        (1, 1, True),
        (1, 2, False),
        (1, -2, False),
        (0, 1, False),
        (2, -2, True),
    ],
)
def test_drift_windows(drift: int, offset: int, resolves: bool) -> None:
    resolver = make_resolver(drift)
    advertised_at = T + offset * 1024
    match = resolver.resolve(compute_eid(KEYS["c3"], 10, advertised_at), T)
    if resolves:
        assert match == Match("c3", window_start(advertised_at, 10), offset)
    else:
        assert match is None


def test_unknown_eid_is_none() -> None:
    assert make_resolver().resolve(b"\x00" * 8, T) is None


def test_refresh_only_when_a_new_window_is_needed() -> None:
    resolver = make_resolver()
    resolver.resolve(b"\x00" * 8, T)
    assert resolver.refreshes == 1
    for dt in range(0, 1024 - (T % 1024), 97):
        resolver.resolve(b"\x00" * 8, T + dt)
    assert resolver.refreshes == 1
    nxt = window_start(T, 10) + 1024
    resolver.resolve(b"\x00" * 8, nxt)
    assert resolver.refreshes == 2
    # A late event one window back is still covered by the slack: no slide back.
    assert resolver.resolve(compute_eid(KEYS["c1"], 10, nxt - 2048), nxt - 1024) is not None
    assert resolver.refreshes == 2
    # Steady state: drift windows each side plus one window of slack.
    assert resolver.index_size == len(KEYS) * 4


def test_late_event_resolves_against_its_own_time() -> None:
    resolver = make_resolver()
    resolver.resolve(b"\x00" * 8, T + 10 * 1024)
    old_eid = compute_eid(KEYS["c2"], 10, T)
    assert resolver.resolve(old_eid, T) == Match("c2", window_start(T, 10), 0)
    assert resolver.resolve(old_eid, T + 10 * 1024) is None


def test_mixed_rotation_exponents() -> None:
    resolver = EidResolver()
    for k in (0, 4, 10, 15):
        resolver.add(f"k{k}", bytes([k + 1]) * 16, k)
    for k in (0, 4, 10, 15):
        for t in (T, T + 5, T + 40_000):
            eid = compute_eid(bytes([k + 1]) * 16, k, t)
            assert resolver.resolve(eid, t) == Match(f"k{k}", window_start(t, k), 0)


def test_add_after_build_and_remove() -> None:
    resolver = make_resolver()
    resolver.resolve(b"\x00" * 8, T)
    new_key = b"\x77" * 16
    resolver.add("late", new_key, 10)
    assert resolver.resolve(compute_eid(new_key, 10, T), T) == Match("late", window_start(T, 10), 0)
    assert resolver.remove("late")
    assert not resolver.remove("late")
    assert resolver.resolve(compute_eid(new_key, 10, T), T) is None
    assert "late" not in resolver
    assert len(resolver) == len(KEYS)
    assert resolver.index_size == len(KEYS) * 3


def test_re_adding_an_identity_replaces_its_key() -> None:
    resolver = make_resolver()
    resolver.resolve(b"\x00" * 8, T)
    resolver.add("c1", b"\x99" * 16, 12)
    assert resolver.resolve(compute_eid(KEYS["c1"], 10, T), T) is None
    assert resolver.resolve(compute_eid(b"\x99" * 16, 12, T), T) == Match(
        "c1", window_start(T, 12), 0
    )


def test_removing_the_last_identity_of_a_group() -> None:
    resolver = EidResolver()
    resolver.add("only", b"\x01" * 16, 8)
    resolver.resolve(b"\x00" * 8, T)
    resolver.remove("only")
    assert resolver.index_size == 0
    assert resolver.resolve(b"\x00" * 8, T + 1_000_000) is None


def test_eid_collision_between_identities_is_kept() -> None:
    resolver = make_resolver()
    resolver.resolve(b"\x00" * 8, T)
    # Force a collision by hand: c2's EID for the next window becomes c1's current EID.
    eid = compute_eid(KEYS["c1"], 10, T)
    c2 = resolver._identities["c2"]
    resolver._index_discard(c2.eids[2], c2)
    c2.eids[2] = eid
    resolver._index_add(eid, c2)
    assert resolver._extra
    assert resolver.resolve(eid, T) == Match("c1", window_start(T, 10), 0)
    resolver.remove("c1")
    assert resolver.resolve(eid, T) == Match("c2", window_start(T, 10) + 1024, 1)
    resolver.remove("c2")
    assert resolver.resolve(eid, T) is None
    assert not resolver._extra
    assert resolver.index_size == (len(KEYS) - 2) * 3


def test_rejects_bad_input() -> None:
    with pytest.raises(BeaconError):
        EidResolver().add("x", b"\x00" * 15, 10)
    with pytest.raises(ValueError, match="drift_windows"):
        EidResolver(drift_windows=-1)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.integers(-3000, 5000), min_size=1, max_size=12),
    offset=st.integers(-1, 1),
    k=st.sampled_from([0, 3, 8, 10]),
)
def test_any_walk_of_query_times_resolves_within_drift(
    steps: list[int], offset: int, k: int
) -> None:
    resolver = EidResolver(drift_windows=1)
    resolver.add("a", b"\x0a" * 16, k)
    resolver.add("b", b"\x0b" * 16, k)
    t = T
    for step in steps:
        t += step
        advertised = t + offset * (1 << k)
        match = resolver.resolve(compute_eid(b"\x0b" * 16, k, advertised), t)
        assert match == Match("b", window_start(advertised, k), offset)
        far = resolver.resolve(compute_eid(b"\x0a" * 16, k, t + 3 * (1 << k)), t)
        assert far is None
