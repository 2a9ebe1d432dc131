"""Proxima beacons: a pure library of BLE beacon codecs, EID crypto, RSSI filters and presence.

Nothing in this package does I/O. The submodules are the API; the most used names are
re-exported here.
"""

from beacons.adstruct import (
    AdvertisementFields,
    build_advertisement,
    decode_raw,
    parse_advertisement,
)
from beacons.eid import compute_eid, temporary_key, window_start
from beacons.exceptions import BeaconError, FrameDecodeError
from beacons.frames import (
    EDDYSTONE_SERVICE_UUID,
    AltBeaconFrame,
    EddystoneEidFrame,
    EddystoneEncryptedTlmFrame,
    EddystoneTlmFrame,
    EddystoneUidFrame,
    EddystoneUrlFrame,
    Frame,
    IBeaconFrame,
    UnknownFrame,
    decode_fields,
    encode_eddystone,
    encode_eddystone_eid,
    encode_fields,
    encode_frame,
)
from beacons.presence import PresenceConfig, PresenceTracker, Transition, ZoneContest
from beacons.resolver import EidResolver, Match

__all__ = [
    "EDDYSTONE_SERVICE_UUID",
    "AdvertisementFields",
    "AltBeaconFrame",
    "BeaconError",
    "EddystoneEidFrame",
    "EddystoneEncryptedTlmFrame",
    "EddystoneTlmFrame",
    "EddystoneUidFrame",
    "EddystoneUrlFrame",
    "EidResolver",
    "Frame",
    "FrameDecodeError",
    "IBeaconFrame",
    "Match",
    "PresenceConfig",
    "PresenceTracker",
    "Transition",
    "UnknownFrame",
    "ZoneContest",
    "build_advertisement",
    "compute_eid",
    "decode_fields",
    "decode_raw",
    "encode_eddystone",
    "encode_eddystone_eid",
    "encode_fields",
    "encode_frame",
    "parse_advertisement",
    "temporary_key",
    "window_start",
]
