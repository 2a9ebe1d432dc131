"""Zone presence state machine, tracker and zone contest."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beacons.filters import PassThroughFilter
from beacons.presence import (
    PresenceConfig,
    PresenceState,
    PresenceTracker,
    Transition,
    ZoneContest,
    ZonePresence,
)

CFG = PresenceConfig(
    enter_rssi=-70.0,
    exit_rssi=-80.0,
    enter_min_s=1.0,
    enter_min_sightings=3,
    dwell_s=10.0,
    exit_min_s=2.0,
    exit_timeout_s=5.0,
)


LINGER = dataclasses.replace(CFG, linger_rssi=-85.0, linger_min_s=10.0)


def raw_tracker(config: PresenceConfig = CFG, **kwargs: int) -> PresenceTracker:
    """A tracker without smoothing, so tests drive the thresholds directly."""
    return PresenceTracker("door", config, filter_factory=PassThroughFilter, **kwargs)


def feed(
    tracker: PresenceTracker, samples: list[tuple[float, float]], subject: str = "s"
) -> list[Transition]:
    out: list[Transition] = []
    for t, rssi in samples:
        out += tracker.observe(subject, rssi, t)
    return out


def kinds(transitions: list[Transition]) -> list[tuple[str, float]]:
    return [(tr.kind, tr.at) for tr in transitions]


def test_enter_needs_time_and_sightings() -> None:
    tracker = raw_tracker()
    out = feed(tracker, [(0.0, -60), (0.5, -60), (0.9, -60)])
    assert out == []
    assert tracker.state("s") is PresenceState.ARMING
    out = feed(tracker, [(1.0, -60)])
    assert kinds(out) == [("zone_enter", 1.0)]
    assert out[0].zone_id == "door"
    assert 0.0 <= out[0].confidence <= 1.0


def test_a_weak_sample_disarms() -> None:
    tracker = raw_tracker()
    assert feed(tracker, [(0.0, -60), (0.5, -75), (1.0, -60), (1.5, -60)]) == []
    assert kinds(feed(tracker, [(2.0, -60)])) == [("zone_enter", 2.0)]


def test_dwell_then_exit_by_weak_signal() -> None:
    tracker = raw_tracker()
    feed(tracker, [(0.0, -60), (0.5, -60), (1.0, -60)])
    assert kinds(feed(tracker, [(5.0, -65), (9.0, -65), (11.0, -65)])) == [("zone_dwell", 11.0)]
    # Between the thresholds: still inside (hysteresis).
    assert feed(tracker, [(12.0, -75), (14.0, -77), (16.0, -79), (18.0, -79), (20.0, -79)]) == []
    assert feed(tracker, [(21.0, -85)]) == []
    assert kinds(feed(tracker, [(22.0, -85), (23.0, -86)])) == [("zone_exit", 23.0)]
    assert tracker.state("s") is PresenceState.ABSENT


def test_brief_dip_below_exit_does_not_exit() -> None:
    tracker = raw_tracker()
    feed(tracker, [(0.0, -60), (0.5, -60), (1.0, -60)])
    assert feed(tracker, [(2.0, -90), (3.0, -90), (3.5, -72), (4.0, -90)]) == []
    assert tracker.state("s") is PresenceState.PRESENT


def test_exit_by_silence_is_dated_at_last_seen_plus_timeout() -> None:
    tracker = raw_tracker()
    feed(tracker, [(0.0, -60), (0.5, -60), (1.0, -60), (3.0, -60)])
    assert tracker.tick(7.9) == []
    out = tracker.tick(50.0)
    assert kinds(out) == [("zone_exit", 8.0)]
    assert out[0].confidence == pytest.approx(0.9)
    # Absent and silent: forgotten.
    assert "s" not in tracker


def test_tick_cadence_does_not_change_the_output() -> None:
    samples = [(0.0, -60.0), (0.5, -60.0), (1.0, -60.0), (4.0, -62.0), (8.5, -64.0)]
    coarse = raw_tracker()
    fine = raw_tracker()
    out_coarse = feed(coarse, samples) + coarse.tick(100.0)
    out_fine = feed(fine, samples)
    for i in range(1000):
        out_fine += fine.tick(9.0 + i * 0.1)
    assert (
        kinds(out_coarse)
        == kinds(out_fine)
        == [
            ("zone_enter", 1.0),
            ("zone_dwell", 11.0),
            ("zone_exit", 13.5),
        ]
    )


def test_observe_after_long_silence_exits_first_then_rearms() -> None:
    tracker = raw_tracker()
    feed(tracker, [(0.0, -60), (0.5, -60), (1.0, -60)])
    out = feed(tracker, [(30.0, -60)])
    assert kinds(out) == [("zone_exit", 6.0)]
    assert tracker.state("s") is PresenceState.ARMING


def test_compatible_keyword_construction() -> None:
    tracker = PresenceTracker(
        "entrance", enter_rssi=-65, exit_rssi=-75, enter_min_s=0.0, exit_timeout_s=4.0, dwell_s=3.0
    )
    assert tracker.config.enter_rssi == -65
    assert tracker.config.exit_timeout_s == 4.0
    with pytest.raises(ValueError, match="hysteresis"):
        PresenceTracker("x", enter_rssi=-80, exit_rssi=-70)


def test_eviction_keeps_memory_bounded() -> None:
    tracker = raw_tracker(max_subjects=100)
    for i in range(1000):
        tracker.observe(f"noise-{i}", -95.0, i * 0.01)
    assert len(tracker) <= 100
    tracker.tick(1000.0)
    assert len(tracker) == 0
    assert tracker.evictions == 1000


def test_shedding_a_present_subject_emits_its_exit() -> None:
    tracker = raw_tracker(max_subjects=1)
    feed(tracker, [(0.0, -60), (0.5, -60), (1.0, -60)], subject="a")
    out = tracker.observe("b", -60, 1.5)
    assert kinds(out) == [("zone_exit", 1.5)]
    assert tracker.present() == []


def test_filtered_rssi_and_default_filter() -> None:
    tracker = PresenceTracker("door")
    tracker.observe("s", -60.0, 0.0)
    tracker.observe("s", -70.0, 0.1)
    value = tracker.filtered_rssi("s")
    assert value is not None
    assert -70.0 < value < -60.0
    assert tracker.filtered_rssi("nobody") is None


def test_zone_presence_enum_state() -> None:
    machine = ZonePresence("s", "z", CFG)
    assert machine.presence_state is PresenceState.ABSENT
    assert not machine.is_present


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------

VALID_SEQUENCE = re.compile(r"^(E(D)?X)*(E(D)?)?$")
LETTER = {"zone_enter": "E", "zone_dwell": "D", "zone_exit": "X"}

# Runs are built from segments (a subject heard at one level for a while, at some
# interval, or silent) around the thresholds and timers, so they enter, dwell and exit.
segments = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from([-50.0, -65.0, -72.0, -78.0, -85.0, -95.0, math.nan])
        | st.floats(-100.0, -40.0),
        st.floats(0.0, 15.0),
        st.sampled_from([0.1, 0.3, 1.0, 2.0]),
        st.booleans(),
    ),
    max_size=12,
)


def expand(
    segs: list[tuple[str, float, float, float, bool]],
) -> list[tuple[str, float, float, str]]:
    """(op, t, rssi, subject) events; NaN level means silence; ticks optionally interleaved."""
    out: list[tuple[str, float, float, str]] = []
    t = 0.0
    for subject, level, duration, interval, ticks in segs:
        end = t + duration
        while t < end:
            if not math.isnan(level):
                out.append(("observe", t, level, subject))
            if ticks:
                out.append(("tick", t, 0.0, subject))
            t += interval
    return out


events = segments.map(expand)


@settings(max_examples=200, deadline=None)
@given(events=events, smoothing=st.booleans(), linger=st.booleans())
def test_never_exit_without_enter_and_times_are_ordered(
    events: list[tuple[str, float, float, str]], smoothing: bool, linger: bool
) -> None:
    tracker = PresenceTracker(
        "z", LINGER if linger else CFG, filter_factory=None if smoothing else PassThroughFilter
    )
    t = 0.0
    out: list[Transition] = []
    for op, t, rssi, subject in events:
        out += tracker.observe(subject, rssi, t) if op == "observe" else tracker.tick(t)
    out += tracker.tick(t + 1000.0)
    for subject in ("a", "b"):
        mine = [tr for tr in out if tr.subject == subject]
        letters = "".join(LETTER[tr.kind] for tr in mine)
        assert VALID_SEQUENCE.match(letters), letters
        assert letters == "" or letters.endswith("X")
        assert [tr.at for tr in mine] == sorted(tr.at for tr in mine)
        assert all(0.0 <= tr.confidence <= 1.0 for tr in mine)


@settings(max_examples=200, deadline=None)
@given(
    level=st.floats(-95.0, -45.0),
    amplitude=st.floats(0.0, 4.99),
    noise=st.lists(st.floats(-1.0, 1.0), min_size=50, max_size=300),
)
def test_no_flapping_under_noise_smaller_than_hysteresis(
    level: float, amplitude: float, noise: list[float]
) -> None:
    # Peak-to-peak noise 2 × amplitude < 10 dB hysteresis.
    tracker = raw_tracker()
    out: list[Transition] = []
    for i, unit in enumerate(noise):
        t = i * 0.2
        out += tracker.observe("s", level + amplitude * unit, t)
        if i % 5 == 0:
            out += tracker.tick(t)
    enters = [tr for tr in out if tr.kind == "zone_enter"]
    exits = [tr for tr in out if tr.kind == "zone_exit"]
    assert len(enters) <= 1
    assert exits == []


# ---------------------------------------------------------------------------------------
# Zone contest
# ---------------------------------------------------------------------------------------


def test_contest_takes_first_zone_and_switches_only_after_margin_and_hold() -> None:
    contest = ZoneContest(margin_db=6.0, hold_s=2.0, stale_s=10.0)
    assert kinds(contest.update("s", "door", -60, 0.0)) == [("zone_enter", 0.0)]
    assert contest.zone_of("s") == "door"
    # Stronger, but within the margin: no change.
    assert contest.update("s", "floor", -57, 0.5) == []
    # Beyond the margin, but not yet for hold_s.
    assert contest.update("s", "floor", -50, 1.0) == []
    assert contest.update("s", "door", -60, 1.5) == []
    out = contest.update("s", "floor", -50, 3.0)
    assert [(tr.kind, tr.zone_id) for tr in out] == [("zone_exit", "door"), ("zone_enter", "floor")]
    assert contest.zone_of("s") == "floor"


def test_contest_challenger_must_lead_continuously() -> None:
    contest = ZoneContest(margin_db=6.0, hold_s=2.0)
    contest.update("s", "door", -60, 0.0)
    contest.update("s", "floor", -50, 1.0)
    contest.update("s", "door", -52, 2.0)  # lead drops under the margin: challenge resets
    contest.update("s", "door", -60, 2.5)
    assert contest.update("s", "floor", -50, 3.5) == []
    assert contest.zone_of("s") == "door"


def test_contest_stale_incumbent_loses_and_silence_exits() -> None:
    contest = ZoneContest(margin_db=6.0, hold_s=1.0, stale_s=5.0)
    contest.update("s", "door", -60, 0.0)
    contest.update("s", "floor", -75, 6.0)
    out = contest.update("s", "floor", -75, 7.5)
    assert [(tr.kind, tr.zone_id) for tr in out] == [("zone_exit", "door"), ("zone_enter", "floor")]
    out = contest.tick(20.0)
    assert [(tr.kind, tr.zone_id, tr.at) for tr in out] == [("zone_exit", "floor", 12.5)]
    assert len(contest) == 0


def test_contest_ignores_too_weak_first_reading() -> None:
    contest = ZoneContest(min_rssi=-85.0)
    assert contest.update("s", "door", -95, 0.0) == []
    assert contest.zone_of("s") is None


@settings(max_examples=100, deadline=None)
@given(noise=st.lists(st.tuples(st.floats(-2.9, 2.9), st.floats(-2.9, 2.9)), max_size=200))
def test_contest_no_flapping_between_equal_zones(noise: list[tuple[float, float]]) -> None:
    # Two gateways hearing the shopper equally well, each with < margin/2 noise.
    contest = ZoneContest(margin_db=6.0, hold_s=1.0)
    out = contest.update("s", "a", -65.0, 0.0)
    for i, (na, nb) in enumerate(noise):
        t = 0.1 + i * 0.2
        out += contest.update("s", "a", -65.0 + na, t)
        out += contest.update("s", "b", -65.0 + nb, t + 0.1)
    assert [tr.kind for tr in out] == ["zone_enter"]


def every_second(rssi: float, t0: float, t1: float) -> list[tuple[float, float]]:
    return [(float(t), rssi) for t in range(int(t0), int(t1) + 1)]


def test_a_weak_but_steady_signal_enters_by_lingering() -> None:
    # -83 dBm never reaches enter_rssi (-70) but stays above linger_rssi (-85) for 10 s.
    tracker = raw_tracker(LINGER)
    out = feed(tracker, every_second(-83.0, 0, 12))
    assert kinds(out) == [("zone_enter", 10.0)]
    assert 0.5 <= out[0].confidence <= 0.75  # weaker evidence than a strong enter
    assert tracker.state("s") is PresenceState.PRESENT


def test_lingering_is_off_by_default_and_a_passer_by_does_not_linger() -> None:
    assert feed(raw_tracker(), every_second(-83.0, 0, 30)) == []  # CFG has no linger tier
    # At the linger level for 8 s (< linger_min_s), then gone: a window shopper.
    tracker = raw_tracker(LINGER)
    out = feed(tracker, every_second(-83.0, 0, 8)) + tracker.tick(60.0)
    assert out == []


def test_the_slow_average_rides_out_a_dip_that_a_raw_threshold_would_not() -> None:
    # One reading 5 dB under the linger level (a body turned): the average barely moves.
    tracker = raw_tracker(LINGER)
    samples = [*every_second(-82.0, 0, 5), (6.0, -90.0), *every_second(-82.0, 7, 12)]
    assert kinds(feed(tracker, samples)) == [("zone_enter", 10.0)]
    # A sustained drop under the level restarts the count.
    tracker = raw_tracker(LINGER)
    samples = every_second(-82.0, 0, 6) + every_second(-95.0, 7, 14) + every_second(-82.0, 15, 24)
    assert feed(tracker, samples) == []


def test_a_lingered_subject_stays_until_it_falls_under_the_linger_hysteresis() -> None:
    tracker = raw_tracker(LINGER)
    feed(tracker, every_second(-83.0, 0, 10))
    # Under exit_rssi (-80) but above linger_rssi − hysteresis (-95): still present.
    assert kinds(feed(tracker, every_second(-88.0, 11, 30))) == [("zone_dwell", 20.0)]
    assert tracker.state("s") is PresenceState.DWELLING
    out = feed(tracker, every_second(-97.0, 31, 35))
    assert kinds(out) == [("zone_exit", 33.0)]  # below since 31 s, exit_min_s 2 s


def test_a_linger_threshold_above_enter_is_refused() -> None:
    with pytest.raises(ValueError, match="linger_rssi"):
        dataclasses.replace(CFG, linger_rssi=-60.0)


def test_with_lingering_on_a_strong_enter_does_not_flap_between_the_two_levels() -> None:
    # Entered the strong way, then heard between exit_rssi (-80) and linger_rssi (-85):
    # lingering says such a subject stays, so no exit (and no enter again a minute later).
    tracker = raw_tracker(LINGER)
    assert kinds(feed(tracker, every_second(-60.0, 0, 3))) == [("zone_enter", 2.0)]
    assert kinds(feed(tracker, every_second(-83.0, 4, 12))) == [("zone_dwell", 12.0)]
    # Without lingering the same readings leave the zone.
    plain = raw_tracker()
    feed(plain, every_second(-60.0, 0, 3))
    assert ("zone_exit", 6.0) in kinds(feed(plain, every_second(-83.0, 4, 12)))


def test_a_linger_hold_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="linger_min_s must be > 0"):
        dataclasses.replace(LINGER, linger_min_s=0.0)
