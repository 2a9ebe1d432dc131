"""Resolve Eddystone EIDs to enrolled identities through a precomputed index.

The resolver keeps, for every identity, the EIDs of the windows around the time being
resolved, in one ``dict`` from EID to (identity, window). Resolving is one dict lookup.
Identities are grouped by rotation exponent K, because a group shares its window
boundaries: when a query's time needs a window a group does not cover, only that group
is refreshed, and only the windows it lacks are computed (one AES pair per identity per
new window; the temporary key is cached per identity for its 2**16 s period).

A group covers at least ``[w - drift, w + drift]`` around the query's window ``w`` and
keeps up to ``slack_windows`` more on each side, so queries that step back a window
(late events from another gateway) do not make the index slide back and forth.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from beacons.eid import EID_LENGTH, _check, temporary_key

_MASK32 = 0xFFFFFFFF
_ZERO11 = bytes(11)


@dataclass(frozen=True, slots=True)
class Match:
    """An EID resolved to an identity: the window it belongs to and how far it is from t's."""

    identity_id: str
    window_start: int
    window_offset: int = 0


class _Identity:
    __slots__ = ("eids", "identity_id", "key", "rotation_exponent", "tk", "tk_period")

    def __init__(self, identity_id: str, key: bytes, rotation_exponent: int) -> None:
        self.identity_id = identity_id
        self.key = key
        self.rotation_exponent = rotation_exponent
        self.tk_period = -1
        self.tk = b""
        # EIDs of the group's covered windows, lo first.
        self.eids: list[bytes] = []

    def temporary_key(self, period: int) -> bytes:
        if period != self.tk_period:
            self.tk = temporary_key(self.key, period << 16)
            self.tk_period = period
        return self.tk


class _Group:
    __slots__ = ("hi", "lo", "members", "rotation_exponent")

    def __init__(self, rotation_exponent: int) -> None:
        self.rotation_exponent = rotation_exponent
        self.lo: int | None = None
        self.hi = -1
        self.members: dict[str, _Identity] = {}


def _compute_eids(ident: _Identity, windows: range) -> list[bytes]:
    """EIDs for consecutive window indices, batching windows that share a temporary key."""
    if not windows:
        return []
    k = ident.rotation_exponent
    out: list[bytes] = []
    batch: list[bytes] = []
    period = -1
    for w in windows:
        start = (w << k) & _MASK32
        p = start >> 16
        if p != period and batch:
            out.extend(_encrypt_blocks(ident.temporary_key(period), batch))
            batch = []
        period = p
        batch.append(_ZERO11 + bytes((k,)) + start.to_bytes(4, "big"))
    if batch:
        out.extend(_encrypt_blocks(ident.temporary_key(period), batch))
    return out


def _encrypt_blocks(key: bytes, blocks: list[bytes]) -> list[bytes]:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - spec: one-block ECB
    data = encryptor.update(b"".join(blocks))
    return [data[i : i + EID_LENGTH] for i in range(0, len(data), 16)]


class EidResolver:
    """Maps EIDs seen at time ``t`` back to identities, within ±``drift_windows`` windows."""

    def __init__(self, drift_windows: int = 1, *, slack_windows: int = 1) -> None:
        if drift_windows < 0 or slack_windows < 0:
            raise ValueError("drift_windows and slack_windows must be >= 0")
        self.drift_windows = drift_windows
        self.slack_windows = slack_windows
        self._groups: dict[int, _Group] = {}
        self._identities: dict[str, _Identity] = {}
        # EID → identity; the window is the EID's position in identity.eids, which saves a
        # (identity, window) tuple per entry.
        self._index: dict[bytes, _Identity] = {}
        # EID collisions between identities (2**-64 per pair) park here, off the hot path.
        self._extra: dict[bytes, list[_Identity]] = {}
        self._last_t: int | None = None
        self.refreshes = 0

    def __len__(self) -> int:
        return len(self._identities)

    def __contains__(self, identity_id: object) -> bool:
        return identity_id in self._identities

    def __iter__(self) -> Iterator[str]:
        return iter(self._identities)

    @property
    def index_size(self) -> int:
        """Number of EID → identity entries currently held."""
        return len(self._index) + sum(len(v) for v in self._extra.values())

    def add(self, identity_id: str, identity_key: bytes, rotation_exponent: int) -> None:
        """Enroll (or re-key) an identity; its EIDs join the index at once if it is built."""
        _check(identity_key, rotation_exponent)
        if identity_id in self._identities:
            self.remove(identity_id)
        ident = _Identity(identity_id, bytes(identity_key), rotation_exponent)
        self._identities[identity_id] = ident
        group = self._groups.get(rotation_exponent)
        if group is None:
            group = self._groups[rotation_exponent] = _Group(rotation_exponent)
            # The new group covers no window yet, so the next resolve must not skip the check.
            self._last_t = None
        group.members[identity_id] = ident
        if group.lo is not None:
            ident.eids = _compute_eids(ident, range(group.lo, group.hi + 1))
            for eid in ident.eids:
                self._index_add(eid, ident)

    def remove(self, identity_id: str) -> bool:
        """Forget an identity; True if it was enrolled."""
        ident = self._identities.pop(identity_id, None)
        if ident is None:
            return False
        group = self._groups[ident.rotation_exponent]
        del group.members[identity_id]
        for eid in ident.eids:
            self._index_discard(eid, ident)
        ident.eids = []
        if not group.members:
            del self._groups[ident.rotation_exponent]
        return True

    def resolve(self, eid: bytes, t: int) -> Match | None:
        """The identity whose EID at a window within ±drift of ``t``'s window is ``eid``."""
        t &= _MASK32
        if t != self._last_t:
            self._ensure_covered(t)
            self._last_t = t
        ident = self._index.get(eid)
        if ident is None:
            return None
        if eid in self._extra:
            return self._resolve_slow(eid, t)
        return self._match(ident, eid, t)

    def refresh(self, t: int) -> None:
        """Make sure the index covers ``t`` (resolve does this itself; for warming up)."""
        t &= _MASK32
        self._ensure_covered(t)
        self._last_t = t

    def _match(self, ident: _Identity, eid: bytes, t: int) -> Match | None:
        k = ident.rotation_exponent
        lo = self._groups[k].lo
        if lo is None:
            return None
        w = lo + ident.eids.index(eid)
        offset = w - (t >> k)
        if -self.drift_windows <= offset <= self.drift_windows:
            return Match(ident.identity_id, (w << k) & _MASK32, offset)
        return None

    def _resolve_slow(self, eid: bytes, t: int) -> Match | None:
        best: Match | None = None
        for ident in [self._index[eid], *self._extra.get(eid, ())]:
            match = self._match(ident, eid, t)
            if match is not None and (
                best is None or abs(match.window_offset) < abs(best.window_offset)
            ):
                best = match
        return best

    def _ensure_covered(self, t: int) -> None:
        drift = self.drift_windows
        for group in self._groups.values():
            w = t >> group.rotation_exponent
            lo = group.lo
            if lo is not None and lo <= w - drift and w + drift <= group.hi:
                continue
            self._slide(group, w)

    def _slide(self, group: _Group, w: int) -> None:
        drift, slack = self.drift_windows, self.slack_windows
        old_lo, old_hi = group.lo, group.hi
        if old_lo is None or w + drift < old_lo or w - drift > old_hi:
            new_lo, new_hi = w - drift, w + drift
            kept_from, kept_to = new_lo, new_lo - 1
        else:
            new_lo = max(min(old_lo, w - drift), w - drift - slack)
            new_hi = min(max(old_hi, w + drift), w + drift + slack)
            kept_from, kept_to = max(old_lo, new_lo), min(old_hi, new_hi)
        self.refreshes += 1
        index_add, index_discard = self._index_add, self._index_discard
        if kept_from > kept_to:
            for ident in group.members.values():
                for eid in ident.eids:
                    index_discard(eid, ident)
                ident.eids = eids = _compute_eids(ident, range(new_lo, new_hi + 1))
                for eid in eids:
                    index_add(eid, ident)
        else:
            assert old_lo is not None  # kept windows imply an old range
            keep_start, keep_stop = kept_from - old_lo, kept_to - old_lo + 1
            before_windows = range(new_lo, kept_from)
            after_windows = range(kept_to + 1, new_hi + 1)
            for ident in group.members.values():
                old = ident.eids
                for eid in old[:keep_start]:
                    index_discard(eid, ident)
                for eid in old[keep_stop:]:
                    index_discard(eid, ident)
                before = _compute_eids(ident, before_windows)
                after = _compute_eids(ident, after_windows)
                for eid in before:
                    index_add(eid, ident)
                for eid in after:
                    index_add(eid, ident)
                ident.eids = before + old[keep_start:keep_stop] + after
        group.lo, group.hi = new_lo, new_hi

    def _index_add(self, eid: bytes, ident: _Identity) -> None:
        existing = self._index.setdefault(eid, ident)
        if existing is not ident:
            self._extra.setdefault(eid, []).append(ident)

    def _index_discard(self, eid: bytes, ident: _Identity) -> None:
        current = self._index.get(eid)
        if current is None:
            return
        extra = self._extra.get(eid)
        if current is ident:
            if extra:
                self._index[eid] = extra.pop()
            else:
                del self._index[eid]
        elif extra and ident in extra:
            extra.remove(ident)
        if extra is not None and not extra:
            del self._extra[eid]
