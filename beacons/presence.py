"""Zone presence: enter / dwell / exit per (subject, zone) from filtered RSSI.

The model, for one subject near one gateway:

* **absent → arming** when the filtered RSSI reaches ``enter_rssi``;
* **arming → present** (``zone_enter``) once it has stayed at or above ``enter_rssi`` for
  ``enter_min_s`` *and* ``enter_min_sightings`` sightings; a sample below ``enter_rssi``
  while arming disarms;
* **absent → present** also by *lingering* (optional, ``linger_rssi``): a slow average of
  the filtered RSSI (time constant ``linger_min_s / 3``) that has stayed at or above the
  lower ``linger_rssi`` for ``linger_min_s``. A phone in a bag or behind its carrier reads
  10-15 dB weaker than a held one; it never reaches ``enter_rssi`` but stays. Someone who
  only passes (a window shopper, a pass-by) does not stay long enough;
* **present → dwelling** (``zone_dwell``) ``dwell_s`` after the enter;
* **present/dwelling → absent** (``zone_exit``) when the RSSI has stayed below the lower
  ``exit_rssi`` for ``exit_min_s`` (with lingering on: the hysteresis under
  ``linger_rssi``), or nothing was heard for ``exit_timeout_s``.

``enter_rssi − exit_rssi`` is the hysteresis: noise whose peak-to-peak swing is smaller
than it cannot produce an exit after an enter. Time is always passed in (seconds, any
epoch, non-decreasing per subject), so replays on a virtual clock behave exactly like
live runs. Timed transitions carry the time they became due (e.g. last heard + timeout),
not the time they were noticed, so the output does not depend on how often ``tick`` is
called.

Confidence in [0, 1] combines how far the RSSI is past the threshold, in units of the
hysteresis (0.5 at the threshold, 1 one full hysteresis beyond), with how much evidence
there is (sightings for an enter; a silence exit scores 0.9, since the beacon may just
have been shadowed).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

from beacons.filters import KalmanRssiFilter, RssiFilter

TransitionKind = Literal["zone_enter", "zone_dwell", "zone_exit", "sighting"]


@dataclass(frozen=True, slots=True)
class Why:
    """Why a fused zone decision was taken: the rule, and the gateways' readings it used."""

    rule: str
    readings: tuple[tuple[str, float], ...] = ()
    """(gateway id, filtered RSSI in dBm) of each gateway that decided."""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """One presence event for a subject in a zone (``sighting``: a level, no decision)."""

    subject: str
    zone_id: str
    kind: TransitionKind
    at: float
    rssi: float
    confidence: float
    why: Why | None = None


class PresenceState(IntEnum):
    """Where one (subject, zone) machine stands."""

    ABSENT = 0
    ARMING = 1
    PRESENT = 2
    DWELLING = 3


_ABSENT, _ARMING, _PRESENT, _DWELLING = 0, 1, 2, 3
SILENCE_EXIT_CONFIDENCE = 0.9


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    """Thresholds (dBm, filtered) and timers (seconds) of the zone state machine."""

    enter_rssi: float = -70.0
    exit_rssi: float = -80.0
    enter_min_s: float = 1.0
    enter_min_sightings: int = 2
    dwell_s: float = 30.0
    exit_min_s: float = 3.0
    exit_timeout_s: float = 10.0
    linger_rssi: float | None = None
    linger_min_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.exit_rssi < self.enter_rssi:
            raise ValueError("exit_rssi must be below enter_rssi (hysteresis)")
        if self.linger_rssi is not None and not self.linger_rssi <= self.enter_rssi:
            raise ValueError("linger_rssi must be at or below enter_rssi")
        if self.linger_rssi is not None and self.linger_min_s <= 0:
            raise ValueError("linger_min_s must be > 0 (one sample must not enter)")
        for name in ("enter_min_s", "dwell_s", "exit_min_s", "linger_min_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.exit_timeout_s <= 0:
            raise ValueError("exit_timeout_s must be > 0")
        if self.enter_min_sightings < 1:
            raise ValueError("enter_min_sightings must be >= 1")

    @property
    def hysteresis_db(self) -> float:
        """The gap between the enter and exit thresholds."""
        return self.enter_rssi - self.exit_rssi


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


class ZonePresence:
    """The state machine for one (subject, zone); feed it filtered RSSI."""

    __slots__ = (
        "below_since",
        "cfg",
        "clear_since",
        "entered_at",
        "last_rssi",
        "last_seen",
        "linger_since",
        "sightings",
        "since",
        "slow",
        "state",
        "subject",
        "zone_id",
    )

    def __init__(self, subject: str, zone_id: str, cfg: PresenceConfig) -> None:
        self.subject = subject
        self.zone_id = zone_id
        self.cfg = cfg
        self.state = _ABSENT
        self.since = 0.0
        self.sightings = 0
        self.entered_at = 0.0
        self.clear_since = 0.0
        self.below_since: float | None = None
        self.last_seen = -float("inf")
        self.last_rssi = -float("inf")
        self.slow: float | None = None
        self.linger_since: float | None = None

    @property
    def presence_state(self) -> PresenceState:
        """The current state as an enum."""
        return PresenceState(self.state)

    @property
    def is_present(self) -> bool:
        """True between an enter and its exit."""
        return self.state >= _PRESENT

    def observe(self, rssi: float, t: float, out: list[Transition]) -> None:
        """Feed one filtered sample; append any transitions to ``out``."""
        cfg = self.cfg
        state = self.state
        if state >= _PRESENT:
            # Anything that fell due before this sample happened first.
            self.tick(t, out)
            state = self.state
        elif state == _ARMING and t - self.last_seen >= cfg.exit_timeout_s:
            state = self.state = _ABSENT
        if state < _PRESENT and cfg.linger_rssi is not None and self._linger(rssi, t, out):
            return
        self.last_seen = t
        self.last_rssi = rssi
        if state == _ABSENT:
            if rssi >= cfg.enter_rssi:
                self.state = _ARMING
                self.since = t
                self.sightings = 1
                self._maybe_enter(t, out)
        elif state == _ARMING:
            if rssi >= cfg.enter_rssi:
                self.sightings += 1
                self._maybe_enter(t, out)
            else:
                self.state = _ABSENT
        else:
            if rssi < (cfg.exit_rssi if cfg.linger_rssi is None else self._linger_exit()):
                if self.below_since is None:
                    self.below_since = t
                if t - self.below_since >= cfg.exit_min_s:
                    self._exit(self.below_since + cfg.exit_min_s, self._below_confidence(), out)
                return
            if self.below_since is not None:
                self.below_since = None
                self.clear_since = t
            if state == _PRESENT:
                dwell_at = max(self.entered_at + cfg.dwell_s, self.clear_since)
                if dwell_at <= t:
                    self._dwell(dwell_at, out)

    def tick(self, now: float, out: list[Transition]) -> None:
        """Fire the timers due by ``now``: dwell, and exits by weak signal or silence."""
        state = self.state
        cfg = self.cfg
        if state < _PRESENT:
            if state == _ARMING and now - self.last_seen >= cfg.exit_timeout_s:
                self.state = _ABSENT
            return
        exit_at = self.last_seen + cfg.exit_timeout_s
        confidence = SILENCE_EXIT_CONFIDENCE
        below = self.below_since
        if below is not None and below + cfg.exit_min_s < exit_at:
            exit_at = below + cfg.exit_min_s
            confidence = self._below_confidence()
        if state == _PRESENT and below is None:
            dwell_at = max(self.entered_at + cfg.dwell_s, self.clear_since)
            if dwell_at <= now and dwell_at < exit_at:
                self._dwell(dwell_at, out)
        if exit_at <= now:
            self._exit(exit_at, confidence, out)

    def _linger_exit(self) -> float:
        """Exit threshold where lingering is on: the hysteresis under ``linger_rssi``.

        Whichever way the subject entered: lingering says a subject heard at the linger
        level stays, so exiting at ``exit_rssi`` would only make it enter again by lingering
        (enter, exit, enter for someone standing between the two levels).
        """
        cfg = self.cfg
        assert cfg.linger_rssi is not None
        return min(cfg.exit_rssi, cfg.linger_rssi - cfg.hysteresis_db)

    def _linger(self, rssi: float, t: float, out: list[Transition]) -> bool:
        """Update the slow average; enter (and return True) once it has lingered long enough."""
        cfg = self.cfg
        assert cfg.linger_rssi is not None
        slow = self.slow
        dt = t - self.last_seen
        if slow is None or dt >= cfg.exit_timeout_s:
            slow = rssi  # first sample, or after a silence: start again
            self.linger_since = None
        elif dt > 0.0:
            tau = max(cfg.linger_min_s / 3.0, 1e-3)
            slow += (rssi - slow) * (1.0 - math.exp(-dt / tau))
        self.slow = slow
        if slow < cfg.linger_rssi:
            self.linger_since = None
            return False
        if self.linger_since is None:
            self.linger_since = t
        if t - self.linger_since < cfg.linger_min_s:
            return False
        self.last_seen = t
        self.last_rssi = rssi
        self.state = _PRESENT
        self.entered_at = self.clear_since = t
        self.below_since = None
        self.linger_since = None
        # Weaker evidence than a strong enter: 0.5 at the linger threshold, up to 0.75.
        strength = _clamp01((slow - cfg.linger_rssi) / max(cfg.enter_rssi - cfg.linger_rssi, 1.0))
        out.append(
            Transition(
                self.subject, self.zone_id, "zone_enter", t, rssi, round(0.5 + 0.25 * strength, 3)
            )
        )
        return True

    def _maybe_enter(self, t: float, out: list[Transition]) -> None:
        cfg = self.cfg
        if self.sightings < cfg.enter_min_sightings or t - self.since < cfg.enter_min_s:
            return
        self.state = _PRESENT
        self.entered_at = self.clear_since = t
        self.below_since = None
        strength = _clamp01((self.last_rssi - cfg.exit_rssi) / (2.0 * cfg.hysteresis_db))
        evidence = _clamp01(self.sightings / (2.0 * cfg.enter_min_sightings))
        out.append(
            Transition(
                self.subject,
                self.zone_id,
                "zone_enter",
                t,
                self.last_rssi,
                round(0.5 * strength + 0.5 * evidence, 3),
            )
        )

    def _dwell(self, at: float, out: list[Transition]) -> None:
        cfg = self.cfg
        self.state = _DWELLING
        strength = _clamp01((self.last_rssi - cfg.exit_rssi) / (2.0 * cfg.hysteresis_db))
        out.append(
            Transition(
                self.subject,
                self.zone_id,
                "zone_dwell",
                at,
                self.last_rssi,
                round(0.5 + 0.5 * strength, 3),
            )
        )

    def _below_confidence(self) -> float:
        cfg = self.cfg
        return round(_clamp01((cfg.enter_rssi - self.last_rssi) / (2.0 * cfg.hysteresis_db)), 3)

    def _exit(self, at: float, confidence: float, out: list[Transition]) -> None:
        self.state = _ABSENT
        self.below_since = None
        self.sightings = 0
        self.slow = None
        self.linger_since = None
        out.append(
            Transition(self.subject, self.zone_id, "zone_exit", at, self.last_rssi, confidence)
        )


class _Track:
    __slots__ = ("evidence", "filter", "machine")

    def __init__(
        self, rssi_filter: RssiFilter, machine: ZonePresence, evidence: RssiFilter | None
    ) -> None:
        self.filter = rssi_filter
        self.machine = machine
        self.evidence = evidence


class PresenceTracker:
    """Presence of many subjects in one gateway's zone, with bounded memory.

    Each subject gets its own RSSI filter (``filter_factory``, Kalman by default) and
    :class:`ZonePresence`. ``tick`` fires timers and forgets subjects that are absent and
    silent for ``evict_after_s`` (default: the exit timeout). Beyond ``max_subjects``
    the longest-silent subjects are forgotten, with a ``zone_exit`` if they were present,
    so a flood of random addresses cannot grow memory without bound.

    ``evidence_filter_factory``: a second filter per subject whose level is what
    :meth:`evidence_rssi` reports to the store's fusion (``edge.pipeline``'s sightings). The
    zone machine's filter is slow on purpose (a standing subject must not flap across its
    threshold); the fusion compares gateways while someone walks through the door, where a
    slow filter lags the walk by several dB.
    """

    def __init__(
        self,
        zone_id: str,
        config: PresenceConfig | None = None,
        *,
        filter_factory: Callable[[], RssiFilter] | None = None,
        evidence_filter_factory: Callable[[], RssiFilter] | None = None,
        evict_after_s: float | None = None,
        max_subjects: int = 50_000,
        enter_rssi: float | None = None,
        exit_rssi: float | None = None,
        enter_min_s: float | None = None,
        enter_min_sightings: int | None = None,
        dwell_s: float | None = None,
        exit_min_s: float | None = None,
        exit_timeout_s: float | None = None,
    ) -> None:
        overrides: dict[str, Any] = {
            name: value
            for name, value in (
                ("enter_rssi", enter_rssi),
                ("exit_rssi", exit_rssi),
                ("enter_min_s", enter_min_s),
                ("enter_min_sightings", enter_min_sightings),
                ("dwell_s", dwell_s),
                ("exit_min_s", exit_min_s),
                ("exit_timeout_s", exit_timeout_s),
            )
            if value is not None
        }
        self.config = dataclasses.replace(config or PresenceConfig(), **overrides)
        if max_subjects < 1:
            raise ValueError("max_subjects must be >= 1")
        self.zone_id = zone_id
        self.filter_factory: Callable[[], RssiFilter] = filter_factory or KalmanRssiFilter
        self.evidence_filter_factory = evidence_filter_factory
        self.evict_after_s = self.config.exit_timeout_s if evict_after_s is None else evict_after_s
        self.max_subjects = max_subjects
        self._tracks: dict[str, _Track] = {}
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._tracks)

    def __contains__(self, subject: object) -> bool:
        return subject in self._tracks

    def state(self, subject: str) -> PresenceState:
        """Where ``subject`` stands (ABSENT if unknown)."""
        track = self._tracks.get(subject)
        return PresenceState.ABSENT if track is None else track.machine.presence_state

    def present(self) -> list[str]:
        """Subjects currently in the zone."""
        return [s for s, tr in self._tracks.items() if tr.machine.state >= _PRESENT]

    def filtered_rssi(self, subject: str) -> float | None:
        """The subject's current filtered RSSI."""
        track = self._tracks.get(subject)
        return None if track is None else track.filter.value

    def evidence_rssi(self, subject: str) -> float | None:
        """The subject's level for the store's fusion: the evidence filter's (if there is
        one, else the zone machine's filtered RSSI)."""
        track = self._tracks.get(subject)
        if track is None:
            return None
        return (track.evidence if track.evidence is not None else track.filter).value

    def observe(self, subject: str, rssi: float, t: float) -> list[Transition]:
        """Feed one raw RSSI sample of ``subject`` heard at ``t``."""
        out: list[Transition] = []
        track = self._tracks.get(subject)
        if track is None:
            if len(self._tracks) >= self.max_subjects:
                self._shed(t, out)
            evidence = self.evidence_filter_factory
            track = self._tracks[subject] = _Track(
                self.filter_factory(),
                ZonePresence(subject, self.zone_id, self.config),
                None if evidence is None else evidence(),
            )
        if track.evidence is not None:
            track.evidence.update(rssi, t)
        track.machine.observe(track.filter.update(rssi, t), t, out)
        return out

    def tick(self, t: float) -> list[Transition]:
        """Fire timers due by ``t`` and forget subjects absent and silent long enough."""
        out: list[Transition] = []
        evict_before = t - self.evict_after_s
        stale: list[str] = []
        for subject, track in self._tracks.items():
            machine = track.machine
            if machine.state:
                machine.tick(t, out)
            if machine.state == _ABSENT and machine.last_seen <= evict_before:
                stale.append(subject)
        for subject in stale:
            del self._tracks[subject]
        self.evictions += len(stale)
        return out

    def _shed(self, t: float, out: list[Transition]) -> None:
        """Forget the longest-silent tenth of the subjects to make room."""
        by_age = sorted(self._tracks.items(), key=lambda item: item[1].machine.last_seen)
        for subject, track in by_age[: max(1, len(by_age) // 10)]:
            machine = track.machine
            machine.tick(t, out)
            if machine.state >= _PRESENT:
                machine._exit(t, 0.0, out)
            del self._tracks[subject]
            self.evictions += 1


class _Contest:
    __slots__ = ("challenger", "challenger_since", "incumbent", "last_seen", "readings")

    def __init__(self) -> None:
        self.readings: dict[str, tuple[float, float]] = {}
        self.incumbent: str | None = None
        self.challenger: str | None = None
        self.challenger_since = 0.0
        self.last_seen = 0.0


class ZoneContest:
    """Which single zone a subject is in, when several gateways hear it.

    The zone with the strongest recent filtered RSSI wins, but an incumbent is only
    displaced by a challenger that beats it by ``margin_db`` continuously for ``hold_s``,
    so a shopper standing between two zones does not flap. Readings older than
    ``stale_s`` do not count; a subject unheard everywhere for ``stale_s`` exits (on
    ``tick``). A first zone is only taken at ``min_rssi`` or stronger.
    """

    def __init__(
        self,
        margin_db: float = 6.0,
        hold_s: float = 2.0,
        stale_s: float = 10.0,
        min_rssi: float = -85.0,
    ) -> None:
        if margin_db < 0 or hold_s < 0 or stale_s <= 0:
            raise ValueError("margin_db >= 0, hold_s >= 0 and stale_s > 0 are required")
        self.margin_db = margin_db
        self.hold_s = hold_s
        self.stale_s = stale_s
        self.min_rssi = min_rssi
        self._subjects: dict[str, _Contest] = {}

    def __len__(self) -> int:
        return len(self._subjects)

    def zone_of(self, subject: str) -> str | None:
        """The zone ``subject`` is currently in, if any."""
        contest = self._subjects.get(subject)
        return None if contest is None else contest.incumbent

    def update(self, subject: str, zone_id: str, rssi: float, t: float) -> list[Transition]:
        """Record a filtered RSSI of ``subject`` at ``zone_id``'s gateway."""
        out: list[Transition] = []
        contest = self._subjects.get(subject)
        if contest is None:
            contest = self._subjects[subject] = _Contest()
        contest.readings[zone_id] = (rssi, t)
        contest.last_seen = t
        horizon = t - self.stale_s
        best_zone, best_rssi = zone_id, rssi
        for zone, (r, rt) in contest.readings.items():
            if rt > horizon and r > best_rssi:
                best_zone, best_rssi = zone, r
        incumbent = contest.incumbent
        if incumbent is None:
            if best_rssi >= self.min_rssi:
                contest.incumbent = best_zone
                confidence = _clamp01(0.5 + (best_rssi - self.min_rssi) / (4 * self.margin_db))
                out.append(
                    Transition(subject, best_zone, "zone_enter", t, best_rssi, round(confidence, 3))
                )
            return out
        if best_zone == incumbent:
            contest.challenger = None
            return out
        inc_rssi, inc_t = contest.readings[incumbent]
        if inc_t <= horizon:
            inc_rssi = -float("inf")
        if best_rssi < inc_rssi + self.margin_db:
            contest.challenger = None
            return out
        if contest.challenger != best_zone:
            contest.challenger = best_zone
            contest.challenger_since = t
        if t - contest.challenger_since < self.hold_s:
            return out
        lead = best_rssi - inc_rssi
        confidence = (
            1.0
            if lead == float("inf")
            else _clamp01(0.5 + (lead - self.margin_db) / (2 * self.margin_db))
        )
        exit_rssi = contest.readings[incumbent][0]
        out.append(Transition(subject, incumbent, "zone_exit", t, exit_rssi, round(confidence, 3)))
        out.append(Transition(subject, best_zone, "zone_enter", t, best_rssi, round(confidence, 3)))
        contest.incumbent = best_zone
        contest.challenger = None
        return out

    def tick(self, t: float) -> list[Transition]:
        """Exit and forget subjects no gateway has heard for ``stale_s``."""
        out: list[Transition] = []
        gone = [s for s, c in self._subjects.items() if t - c.last_seen >= self.stale_s]
        for subject in gone:
            contest = self._subjects.pop(subject)
            if contest.incumbent is not None:
                rssi = contest.readings[contest.incumbent][0]
                out.append(
                    Transition(
                        subject,
                        contest.incumbent,
                        "zone_exit",
                        contest.last_seen + self.stale_s,
                        rssi,
                        SILENCE_EXIT_CONFIDENCE,
                    )
                )
        return out
