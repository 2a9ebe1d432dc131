"""Raw AD structures: parsing, building, decode_raw and error offsets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beacons.adstruct import (
    AdvertisementFields,
    build_advertisement,
    decode_raw,
    iter_ad_structures,
    parse_advertisement,
)
from beacons.exceptions import BeaconError, FrameDecodeError
from beacons.frames import (
    EDDYSTONE_SERVICE_UUID,
    AltBeaconFrame,
    EddystoneUidFrame,
    IBeaconFrame,
    UnknownFrame,
    encode_fields,
)
from tests.beacons.factories import make_advertisement, make_eid, make_ibeacon, make_tlm

# Eddystone-UID as it goes over the air: flags, complete 16-bit UUID list, service data.
EDDYSTONE_UID_ADV = "0201060303aafe1716aafe00e8edd1ebeac04e5defa0170123456789ab0000"
# The AltBeacon spec's sample advertisement (after the flags).
ALTBEACON_ADV = "0201061bff1801beac2f234454cf6d4a0fadf2f4911ba9ffa600010002c500"
IBEACON_ADV = "0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5"


def test_parse_eddystone_uid_advertisement() -> None:
    fields = parse_advertisement(EDDYSTONE_UID_ADV)
    assert fields.flags == 0x06
    assert fields.service_uuids == [EDDYSTONE_SERVICE_UUID]
    assert fields.service_data == {
        EDDYSTONE_SERVICE_UUID: bytes.fromhex("00e8edd1ebeac04e5defa0170123456789ab0000")
    }
    assert fields.manufacturer_data == {}


@pytest.mark.parametrize(
    ("raw", "frames"),
    [
        (
            EDDYSTONE_UID_ADV,
            [
                EddystoneUidFrame(
                    -24, bytes.fromhex("edd1ebeac04e5defa017"), bytes.fromhex("0123456789ab")
                )
            ],
        ),
        (
            ALTBEACON_ADV,
            [
                AltBeaconFrame(
                    0x0118, bytes.fromhex("2f234454cf6d4a0fadf2f4911ba9ffa600010002"), -59
                )
            ],
        ),
        (IBEACON_ADV, [make_ibeacon()]),
        ("0x" + IBEACON_ADV.upper(), [make_ibeacon()]),
        ("02 01 06 05 ff 06 00 01 09", [UnknownFrame(b"\x01\x09", 6)]),
        # A zero length byte ends the data; what follows is padding.
        (IBEACON_ADV + "00" + "ffffff", [make_ibeacon()]),
        ("", []),
        ("020106", []),
    ],
)
def test_decode_raw(raw: str, frames: list[object]) -> None:
    assert decode_raw(raw) == frames


def test_decode_raw_accepts_bytes() -> None:
    assert decode_raw(bytes.fromhex(IBEACON_ADV)) == [make_ibeacon()]


@pytest.mark.parametrize(
    ("raw", "frame_type", "offset"),
    [
        # Structure length runs past the end: offset of its length byte.
        ("0201061aff4c000215e2c5", "ad_structure", 3),
        ("02", "ad_structure", 0),
        # iBeacon truncated inside a well-formed AD structure: offset into the advertisement.
        ("0201060bff4c000215e2c56db5dffb48", "ibeacon", 15),
        # Eddystone EID with a wrong length: offset counted from the start of the raw bytes.
        ("0e16aafe30f2a9b76a71c5f8929000", "eddystone_eid", 14),
        ("02ff4c", "ad_structure", 3),
        ("0216aa", "ad_structure", 3),
    ],
)
def test_decode_raw_errors_carry_offset_into_advertisement(
    raw: str, frame_type: str, offset: int
) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_raw(raw)
    assert (info.value.frame_type, info.value.offset) == (frame_type, offset)
    assert info.value.raw == bytes.fromhex(raw)


@pytest.mark.parametrize(
    ("raw", "offset"), [("0403aafe01", 2), ("0101", 2), ("010a", 2), ("1107aabb", 0)]
)
def test_parse_errors_carry_offset(raw: str, offset: int) -> None:
    with pytest.raises(FrameDecodeError) as info:
        parse_advertisement(raw)
    assert info.value.offset == offset


def test_not_hex_is_a_beacon_error() -> None:
    with pytest.raises(BeaconError):
        decode_raw("zz")


def test_parse_all_field_kinds() -> None:
    raw = bytes.fromhex(
        "020106"
        "05030f180a18"  # 16-bit UUIDs 0x180f, 0x180a
        "0505aabbccdd"  # 32-bit UUID 0xddccbbaa
        "1107" + bytes(range(16)).hex() + "050873686f72"  # 128-bit UUID, short name "shor"
        "06096c6f6e6721"  # complete name "long!"
        "020af4"  # tx power -12
        "0620aabbccdd01"  # 32-bit service data 0xddccbbaa
        "1221" + bytes(range(16)).hex() + "02"  # 128-bit service data
    )
    fields = parse_advertisement(raw)
    assert fields.service_uuids == [
        "0000180f-0000-1000-8000-00805f9b34fb",
        "0000180a-0000-1000-8000-00805f9b34fb",
        "ddccbbaa-0000-1000-8000-00805f9b34fb",
        "0f0e0d0c-0b0a-0908-0706-050403020100",
    ]
    assert fields.local_name == "long!"
    assert fields.tx_power == -12
    assert fields.service_data == {
        "ddccbbaa-0000-1000-8000-00805f9b34fb": b"\x01",
        "0f0e0d0c-0b0a-0908-0706-050403020100": b"\x02",
    }


def test_build_then_parse_round_trip() -> None:
    manufacturer, service = encode_fields([make_ibeacon(), make_eid()])
    fields = make_advertisement(
        manufacturer_data=manufacturer,
        service_data=service,
        service_uuids=[EDDYSTONE_SERVICE_UUID, "0f0e0d0c-0b0a-0908-0706-050403020100"],
        tx_power=-4,
        local_name="proxima",
    )
    raw = build_advertisement(fields)
    assert parse_advertisement(raw) == fields
    assert decode_raw(raw) == [make_eid(), make_ibeacon()]


def test_build_legacy_limit() -> None:
    _, service = encode_fields([make_tlm()])
    raw = build_advertisement(service_data=service, max_length=31)
    assert decode_raw(raw) == [make_tlm()]
    with pytest.raises(BeaconError):
        build_advertisement(make_advertisement(local_name="x" * 40), max_length=31)


def test_iter_ad_structures_offsets() -> None:
    offsets = [s.offset for s in iter_ad_structures(bytes.fromhex(EDDYSTONE_UID_ADV))]
    assert offsets == [0, 3, 7]


def test_fields_validate_themselves() -> None:
    with pytest.raises(BeaconError):
        AdvertisementFields(tx_power=300)
    with pytest.raises(BeaconError):
        AdvertisementFields(manufacturer_data={70000: b""})


uuid16 = st.integers(0, 0xFFFF).map(lambda v: f"0000{v:04x}-0000-1000-8000-00805f9b34fb")
adverts = st.builds(
    AdvertisementFields,
    manufacturer_data=st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=20), max_size=3),
    service_data=st.dictionaries(uuid16, st.binary(max_size=20), max_size=3),
    service_uuids=st.lists(uuid16, unique=True, max_size=4),
    tx_power=st.none() | st.integers(-128, 127),
    local_name=st.none() | st.text(max_size=10),
    flags=st.none() | st.integers(0, 255),
)


@settings(max_examples=150, deadline=None)
@given(fields=adverts)
def test_round_trip_property(fields: AdvertisementFields) -> None:
    assert parse_advertisement(build_advertisement(fields)) == fields


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=62))
def test_random_bytes_only_raise_our_errors(raw: bytes) -> None:
    error: FrameDecodeError | None = None
    try:
        parse_advertisement(raw)
        frames = decode_raw(raw)
    except FrameDecodeError as exc:
        error = exc
    except BeaconError:
        return
    else:
        assert all(hasattr(f, "to_json_dict") for f in frames)
        return
    assert error.raw == raw
    assert 0 <= error.offset <= len(raw)


def test_ibeacon_frame_in_raw_matches_fields() -> None:
    fields = parse_advertisement(IBEACON_ADV)
    assert fields.manufacturer_data == {0x004C: bytes.fromhex(IBEACON_ADV[14:])}
    assert isinstance(decode_raw(IBEACON_ADV)[0], IBeaconFrame)
