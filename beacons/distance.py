"""Log-distance path-loss estimate of range from RSSI.

``rssi = rssi_at_1m − 10·n·log10(d)``, so ``d = 10^((rssi_at_1m − rssi) / (10·n))``.
``n`` is about 2 in free space and 2-4 indoors; a shop floor full of people and racks is
nearer 3. The result is a rough range for ranking and display, not a position.
"""

from __future__ import annotations

from beacons.frames import (
    AltBeaconFrame,
    EddystoneEidFrame,
    EddystoneUidFrame,
    EddystoneUrlFrame,
    Frame,
    IBeaconFrame,
)

# Eddystone advertises tx power at 0 m; the spec notes that 41 dB is the free-space loss
# over the first metre at 2.4 GHz, which turns it into the 1 m reference iBeacon uses.
EDDYSTONE_LOSS_AT_1M_DB = 41


def distance_m(rssi: float, rssi_at_1m: float, n: float = 2.0, offset_db: float = 0.0) -> float:
    """Range in metres; ``offset_db`` is a per-receiver calibration added to ``rssi_at_1m``."""
    if n <= 0:
        raise ValueError("path-loss exponent n must be > 0")
    return float(10.0 ** ((rssi_at_1m + offset_db - rssi) / (10.0 * n)))


def rssi_at_1m_from_ibeacon(measured_power: int) -> float:
    """iBeacon's measured power already is the RSSI at 1 m."""
    return float(measured_power)


def rssi_at_1m_from_eddystone(tx_power_at_0m: int) -> float:
    """Eddystone tx power at 0 m minus the 41 dB first-metre loss."""
    return float(tx_power_at_0m - EDDYSTONE_LOSS_AT_1M_DB)


def rssi_at_1m(frame: Frame) -> float | None:
    """The calibrated 1 m RSSI a frame advertises, if it carries one."""
    if isinstance(frame, IBeaconFrame):
        if frame.measured_power is None:
            return None
        return rssi_at_1m_from_ibeacon(frame.measured_power)
    if isinstance(frame, AltBeaconFrame):
        return float(frame.reference_rssi)
    if isinstance(frame, EddystoneUidFrame | EddystoneEidFrame | EddystoneUrlFrame):
        return rssi_at_1m_from_eddystone(frame.tx_power)
    return None


def frame_distance_m(
    frame: Frame, rssi: float, n: float = 2.0, offset_db: float = 0.0
) -> float | None:
    """Range to the sender of ``frame`` heard at ``rssi``, or None without a calibration."""
    ref = rssi_at_1m(frame)
    if ref is None:
        return None
    return distance_m(rssi, ref, n, offset_db)
