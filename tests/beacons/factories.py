"""Factories for beacons tests: sensible defaults, override what the test is about."""

from __future__ import annotations

from typing import Any

from beacons.adstruct import AdvertisementFields
from beacons.frames import (
    AltBeaconFrame,
    EddystoneEidFrame,
    EddystoneTlmFrame,
    EddystoneUidFrame,
    IBeaconFrame,
)

SPEC_IDENTITY_KEY = bytes.fromhex("0102030405060708090A111213141516")


def make_ibeacon(**overrides: Any) -> IBeaconFrame:
    fields: dict[str, Any] = {
        "uuid": bytes.fromhex("e2c56db5dffb48d2b060d0f5a71096e0"),
        "major": 1,
        "minor": 2,
        "measured_power": -59,
    }
    return IBeaconFrame(**(fields | overrides))


def make_altbeacon(**overrides: Any) -> AltBeaconFrame:
    fields: dict[str, Any] = {
        "manufacturer_id": 0x0118,
        "beacon_id": bytes.fromhex("2f234454cf6d4a0fadf2f4911ba9ffa600010002"),
        "reference_rssi": -59,
        "reserved": 0,
    }
    return AltBeaconFrame(**(fields | overrides))


def make_uid(**overrides: Any) -> EddystoneUidFrame:
    fields: dict[str, Any] = {
        "tx_power": -20,
        "namespace": bytes.fromhex("edd1ebeac04e5defa017"),
        "instance": bytes.fromhex("0123456789ab"),
    }
    return EddystoneUidFrame(**(fields | overrides))


def make_eid(**overrides: Any) -> EddystoneEidFrame:
    fields: dict[str, Any] = {"tx_power": -18, "eid": bytes.fromhex("a9b76a71c5f89290")}
    return EddystoneEidFrame(**(fields | overrides))


def make_tlm(**overrides: Any) -> EddystoneTlmFrame:
    fields: dict[str, Any] = {
        "battery_mv": 3000,
        "temperature_c": 24.5,
        "adv_count": 100,
        "uptime_s": 100.0,
    }
    return EddystoneTlmFrame(**(fields | overrides))


def make_advertisement(**overrides: Any) -> AdvertisementFields:
    fields: dict[str, Any] = {
        "manufacturer_data": {},
        "service_data": {},
        "service_uuids": [],
        "tx_power": None,
        "local_name": None,
        "flags": 0x06,
    }
    return AdvertisementFields(**(fields | overrides))
