"""Zone presence for one gateway: RSSI smoothing, hysteresis, enter/dwell/exit.

Interim implementation for the walking skeleton; beacons.presence supersedes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TransitionKind = Literal["zone_enter", "zone_dwell", "zone_exit"]


@dataclass(frozen=True, slots=True)
class Transition:
    subject: str
    zone_id: str
    kind: TransitionKind
    at: float
    rssi: float
    confidence: float


@dataclass(slots=True)
class _Track:
    ewma: float
    first_above: float | None
    last_seen: float
    entered_at: float | None = None
    dwelled: bool = False


class PresenceTracker:
    """EWMA-smoothed RSSI per subject with enter/exit thresholds (hysteresis)."""

    def __init__(
        self,
        zone_id: str,
        *,
        enter_rssi: float,
        exit_rssi: float,
        enter_min_s: float,
        exit_timeout_s: float,
        dwell_s: float,
        alpha: float = 0.4,
    ) -> None:
        if exit_rssi >= enter_rssi:
            raise ValueError("exit_rssi must be below enter_rssi (hysteresis)")
        self.zone_id = zone_id
        self.enter_rssi = enter_rssi
        self.exit_rssi = exit_rssi
        self.enter_min_s = enter_min_s
        self.exit_timeout_s = exit_timeout_s
        self.dwell_s = dwell_s
        self.alpha = alpha
        self._tracks: dict[str, _Track] = {}

    def __len__(self) -> int:
        return len(self._tracks)

    def observe(self, subject: str, rssi: float, t: float) -> list[Transition]:
        track = self._tracks.get(subject)
        if track is None:
            track = self._tracks[subject] = _Track(ewma=rssi, first_above=None, last_seen=t)
        else:
            track.ewma += self.alpha * (rssi - track.ewma)
            track.last_seen = t
        out: list[Transition] = []
        if track.entered_at is None:
            if track.ewma >= self.enter_rssi:
                if track.first_above is None:
                    track.first_above = t
                if t - track.first_above >= self.enter_min_s:
                    track.entered_at = t
                    out.append(self._transition(subject, "zone_enter", t, track))
            else:
                track.first_above = None
        elif track.ewma < self.exit_rssi:
            out.append(self._transition(subject, "zone_exit", t, track))
            track.entered_at = None
            track.first_above = None
            track.dwelled = False
        elif not track.dwelled and t - track.entered_at >= self.dwell_s:
            track.dwelled = True
            out.append(self._transition(subject, "zone_dwell", t, track))
        return out

    def tick(self, t: float) -> list[Transition]:
        """Exits for subjects silent longer than the exit timeout; forgets them."""
        out: list[Transition] = []
        for subject, track in list(self._tracks.items()):
            if t - track.last_seen >= self.exit_timeout_s:
                if track.entered_at is not None:
                    out.append(self._transition(subject, "zone_exit", t, track))
                del self._tracks[subject]
        return out

    def _transition(
        self, subject: str, kind: TransitionKind, t: float, track: _Track
    ) -> Transition:
        margin = (track.ewma - self.exit_rssi) / max(1.0, self.enter_rssi - self.exit_rssi)
        confidence = min(1.0, max(0.0, 0.5 + 0.5 * margin))
        return Transition(
            subject, self.zone_id, kind, t, round(track.ewma, 1), round(confidence, 3)
        )
