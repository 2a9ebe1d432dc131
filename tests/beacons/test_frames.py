"""Frame codecs: spec vectors, error offsets, JSON fields, round trips and fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beacons.enums import CompanyId, EddystoneFrameType, TlmVersion
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
    decode_eddystone,
    decode_fields,
    decode_manufacturer,
    decode_service,
    encode_altbeacon,
    encode_eddystone,
    encode_eddystone_eid,
    encode_fields,
    encode_frame,
    encode_ibeacon,
    encode_url,
)
from tests.beacons.factories import make_eid, make_ibeacon, make_tlm, make_uid

FEAA = EDDYSTONE_SERVICE_UUID
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (company id, payload hex, expected frame): layouts written out by hand from the specs.
MANUFACTURER_VECTORS = [
    pytest.param(
        0x004C,
        "0215e2c56db5dffb48d2b060d0f5a71096e000010002c5",
        IBeaconFrame(bytes.fromhex("e2c56db5dffb48d2b060d0f5a71096e0"), 1, 2, -59),
        id="ibeacon",
    ),
    pytest.param(
        0x004C,
        "0215e2c56db5dffb48d2b060d0f5a71096e0ffff0000",
        IBeaconFrame(bytes.fromhex("e2c56db5dffb48d2b060d0f5a71096e0"), 65535, 0, None),
        id="ibeacon-without-power",
    ),
    pytest.param(
        0x0118,
        "beac2f234454cf6d4a0fadf2f4911ba9ffa600010002c500",
        AltBeaconFrame(0x0118, bytes.fromhex("2f234454cf6d4a0fadf2f4911ba9ffa600010002"), -59, 0),
        id="altbeacon-spec-sample",
    ),
    pytest.param(
        0x0059,
        "beac" + "11" * 20 + "b401",
        AltBeaconFrame(0x0059, b"\x11" * 20, -76, 1),
        id="altbeacon-other-company",
    ),
    pytest.param(
        0x004C, "10051a1c", UnknownFrame(bytes.fromhex("10051a1c"), 0x004C), id="apple-nearby"
    ),
    pytest.param(0x0006, "0109", UnknownFrame(b"\x01\x09", 0x0006), id="microsoft"),
    pytest.param(0x004C, "", UnknownFrame(b"", 0x004C), id="empty"),
    pytest.param(
        0x0075,
        "0215" + "00" * 21,
        UnknownFrame(bytes.fromhex("0215" + "00" * 21), 0x0075),
        id="ibeacon-layout-not-apple",
    ),
]

EDDYSTONE_VECTORS = [
    pytest.param(
        "00e8edd1ebeac04e5defa0170123456789ab0000",
        EddystoneUidFrame(
            -24, bytes.fromhex("edd1ebeac04e5defa017"), bytes.fromhex("0123456789ab")
        ),
        id="uid",
    ),
    pytest.param(
        "00e8edd1ebeac04e5defa0170123456789ab",
        EddystoneUidFrame(
            -24, bytes.fromhex("edd1ebeac04e5defa017"), bytes.fromhex("0123456789ab"), None
        ),
        id="uid-without-rfu",
    ),
    pytest.param(
        "30f2a9b76a71c5f89290", EddystoneEidFrame(-14, bytes.fromhex("a9b76a71c5f89290")), id="eid"
    ),
    pytest.param(
        "20000bb8188000000064000003e8",
        EddystoneTlmFrame(3000, 24.5, 100, 100.0),
        id="tlm-plain",
    ),
    pytest.param(
        "200000008000ffffffff00000001",
        EddystoneTlmFrame(0, None, 0xFFFFFFFF, 0.1),
        id="tlm-temperature-unsupported",
    ),
    pytest.param(
        "20000c80ff80000000000000000a",
        EddystoneTlmFrame(3200, -0.5, 0, 1.0),
        id="tlm-negative-temperature",
    ),
    pytest.param(
        "2001" + "aa" * 12 + "bbbb" + "cccc",
        EddystoneEncryptedTlmFrame(b"\xaa" * 12, b"\xbb\xbb", b"\xcc\xcc"),
        id="tlm-encrypted",
    ),
    pytest.param(
        "10eb01676f6f676c6507", EddystoneUrlFrame(-21, "https://www.google.com"), id="url"
    ),
    pytest.param(
        "10ec0377656200782f79", EddystoneUrlFrame(-20, "https://web.com/x/y"), id="url-expansion"
    ),
    pytest.param("10000261620d", EddystoneUrlFrame(0, "http://ab.gov"), id="url-http"),
    pytest.param(
        "40aabbcc", UnknownFrame(bytes.fromhex("40aabbcc"), None, FEAA), id="unknown-type"
    ),
    pytest.param(
        "2002" + "00" * 12, UnknownFrame(bytes.fromhex("2002" + "00" * 12), None, FEAA), id="tlm-v2"
    ),
]

# (decoder input, frame type, offset) for truncated or inconsistent frames.
BROKEN_MANUFACTURER = [
    pytest.param(0x004C, "0215e2c56d", "ibeacon", 5, id="ibeacon-truncated"),
    pytest.param(0x004C, "0215" + "00" * 22, "ibeacon", 23, id="ibeacon-trailing"),
    pytest.param(0x004C, "0216" + "00" * 21, "ibeacon", 1, id="ibeacon-bad-length-byte"),
    pytest.param(0x0118, "beac" + "00" * 10, "altbeacon", 12, id="altbeacon-truncated"),
    pytest.param(0x0118, "beac" + "00" * 23, "altbeacon", 24, id="altbeacon-trailing"),
]
BROKEN_EDDYSTONE = [
    pytest.param("", "eddystone", 0, id="empty"),
    pytest.param("00e8edd1", "eddystone_uid", 4, id="uid-truncated"),
    pytest.param("00e8" + "00" * 17, "eddystone_uid", 19, id="uid-19-bytes"),
    pytest.param("00e8" + "00" * 19, "eddystone_uid", 20, id="uid-trailing"),
    pytest.param("30f2a9b76a", "eddystone_eid", 5, id="eid-truncated"),
    pytest.param("30f2" + "00" * 9, "eddystone_eid", 10, id="eid-trailing"),
    pytest.param("20", "eddystone_tlm", 1, id="tlm-no-version"),
    pytest.param("20000bb8", "eddystone_tlm", 4, id="tlm-truncated"),
    pytest.param("2001" + "00" * 10, "eddystone_tlm", 12, id="etlm-truncated"),
    pytest.param("10eb", "eddystone_url", 2, id="url-no-scheme"),
    pytest.param("10eb04", "eddystone_url", 2, id="url-bad-scheme"),
    pytest.param("10eb0161621f", "eddystone_url", 5, id="url-reserved-byte"),
    pytest.param("10eb0161ff", "eddystone_url", 4, id="url-high-byte"),
]


@pytest.mark.parametrize(("company_id", "payload", "expected"), MANUFACTURER_VECTORS)
def test_manufacturer_vectors(company_id: int, payload: str, expected: Frame) -> None:
    frame = decode_manufacturer(company_id, bytes.fromhex(payload))
    assert frame == expected
    assert decode_fields({company_id: bytes.fromhex(payload)}, {}) == [expected]
    assert encode_frame(frame) == (company_id, bytes.fromhex(payload))


@pytest.mark.parametrize(("payload", "expected"), EDDYSTONE_VECTORS)
def test_eddystone_vectors(payload: str, expected: Frame) -> None:
    frame = decode_eddystone(bytes.fromhex(payload))
    assert frame == expected
    assert decode_fields({}, {FEAA: bytes.fromhex(payload)}) == [expected]
    assert encode_frame(frame) == (FEAA, bytes.fromhex(payload))


@pytest.mark.parametrize(("company_id", "payload", "frame_type", "offset"), BROKEN_MANUFACTURER)
def test_broken_manufacturer_names_type_and_offset(
    company_id: int, payload: str, frame_type: str, offset: int
) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_manufacturer(company_id, bytes.fromhex(payload))
    assert (info.value.frame_type, info.value.offset) == (frame_type, offset)
    assert info.value.raw == bytes.fromhex(payload)
    assert frame_type in str(info.value)


@pytest.mark.parametrize(("payload", "frame_type", "offset"), BROKEN_EDDYSTONE)
def test_broken_eddystone_names_type_and_offset(payload: str, frame_type: str, offset: int) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_fields({}, {FEAA: bytes.fromhex(payload)})
    assert (info.value.frame_type, info.value.offset) == (frame_type, offset)


def test_eid_encoder_matches_spec_layout() -> None:
    uuid, data = encode_eddystone_eid(bytes.fromhex("a9b76a71c5f89290"), -18)
    assert uuid == "0000feaa-0000-1000-8000-00805f9b34fb"
    assert data.hex() == "30eea9b76a71c5f89290"


@pytest.mark.parametrize(("eid", "tx"), [(b"\x00" * 7, 0), (b"\x00" * 8, 128), (b"\x00" * 8, -129)])
def test_eid_encoder_rejects_bad_input(eid: bytes, tx: int) -> None:
    with pytest.raises(BeaconError):
        encode_eddystone_eid(eid, tx)


def test_service_uuid_match_is_case_insensitive_and_bytearray_ok() -> None:
    frames = decode_fields({}, {FEAA.upper(): bytearray.fromhex("30f2a9b76a71c5f89290")})
    assert frames == [EddystoneEidFrame(-14, bytes.fromhex("a9b76a71c5f89290"))]
    assert decode_service("0000fe2c-0000-1000-8000-00805f9b34fb", b"\x01") == UnknownFrame(
        b"\x01", None, "0000fe2c-0000-1000-8000-00805f9b34fb"
    )


def test_decode_fields_keeps_manufacturer_then_service_order() -> None:
    company, payload = encode_ibeacon(make_ibeacon())
    uuid, data = encode_eddystone(make_eid())
    frames = decode_fields({company: payload, 0x0006: b"\x01"}, {uuid: data})
    assert [f.type for f in frames] == ["ibeacon", "unknown", "eddystone_eid"]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            make_ibeacon(),
            {
                "type": "ibeacon",
                "uuid": "e2c56db5dffb48d2b060d0f5a71096e0",
                "major": 1,
                "minor": 2,
                "measured_power": -59,
                "manufacturer_id": 76,
            },
        ),
        (
            AltBeaconFrame(0x0118, b"\x01" * 20, -60),
            {
                "type": "altbeacon",
                "manufacturer_id": 0x0118,
                "beacon_id": "01" * 20,
                "reference_rssi": -60,
            },
        ),
        (
            make_uid(),
            {
                "type": "eddystone_uid",
                "tx_power": -20,
                "namespace": "edd1ebeac04e5defa017",
                "instance": "0123456789ab",
            },
        ),
        (make_eid(), {"type": "eddystone_eid", "tx_power": -18, "eid": "a9b76a71c5f89290"}),
        (
            make_tlm(temperature_c=None),
            {
                "type": "eddystone_tlm",
                "version": 0,
                "battery_mv": 3000,
                "temperature_c": None,
                "adv_count": 100,
                "uptime_s": 100.0,
            },
        ),
        (
            EddystoneUrlFrame(-20, "https://example.com"),
            {"type": "eddystone_url", "tx_power": -20, "url": "https://example.com"},
        ),
        (
            UnknownFrame(b"\x01\x02", 6),
            {"type": "unknown", "manufacturer_id": 6, "data": "0102"},
        ),
    ],
)
def test_to_json_dict(frame: Frame, expected: dict[str, object]) -> None:
    assert frame.to_json_dict() == expected


def test_subject_ids() -> None:
    assert make_ibeacon().subject_id == "e2c56db5dffb48d2b060d0f5a71096e0" + "0001" + "0002"
    assert make_eid().subject_id == "a9b76a71c5f89290"
    assert make_uid().subject_id == "edd1ebeac04e5defa0170123456789ab"
    assert make_tlm().subject_id is None


@pytest.mark.parametrize(
    "build",
    [
        lambda: IBeaconFrame(b"\x00" * 15, 1, 2, -59),
        lambda: IBeaconFrame(b"\x00" * 16, 65536, 2, -59),
        lambda: IBeaconFrame(b"\x00" * 16, 1, 2, 128),
        lambda: AltBeaconFrame(0x10000, b"\x00" * 20, -59),
        lambda: EddystoneUidFrame(-20, b"\x00" * 9, b"\x00" * 6),
        lambda: EddystoneUidFrame(-20, b"\x00" * 10, b"\x00" * 6, b"\x00"),
        lambda: EddystoneEidFrame(-20, bytearray(8)),
        lambda: EddystoneTlmFrame(70000, 20.0, 0, 0.0),
        lambda: EddystoneTlmFrame(3000, 200.0, 0, 0.0),
        lambda: EddystoneTlmFrame(3000, float("nan"), 0, 0.0),
        lambda: EddystoneTlmFrame(3000, 20.0, 0, -1.0),
        lambda: EddystoneUrlFrame(-20, "ftp://example.com"),
        lambda: EddystoneUrlFrame(-20, "https://exa mple.com"),
        lambda: UnknownFrame(b"", None, None),
        lambda: UnknownFrame(b"", 1, "x"),
    ],
)
def test_frames_validate_themselves(build: object) -> None:
    with pytest.raises(BeaconError):
        build()  # type: ignore[operator]


def test_frames_are_frozen_and_hashable() -> None:
    frame = make_ibeacon()
    with pytest.raises(AttributeError):
        frame.major = 3  # type: ignore[misc]
    assert len({frame, make_ibeacon()}) == 1


def test_url_encoding_prefers_longest_codes_and_enforces_length() -> None:
    assert encode_url("https://www.example.com/") == b"\x01example\x00"
    assert encode_url("http://a.info") == b"\x02a\x0b"
    with pytest.raises(BeaconError):
        encode_eddystone(EddystoneUrlFrame(-20, "https://" + "a" * 18))


def test_tolerant_enums() -> None:
    assert EddystoneFrameType(0x40).name == "UNKNOWN_0x0040"
    assert not EddystoneFrameType(0x40).known
    assert EddystoneFrameType(0x30) is EddystoneFrameType.EID
    assert CompanyId(0x1234) == 0x1234
    assert TlmVersion(1) is TlmVersion.ENCRYPTED


def test_encode_fields_rejects_two_frames_under_one_key() -> None:
    with pytest.raises(BeaconError):
        encode_fields([make_eid(), make_tlm()])
    manufacturer, service = encode_fields([make_ibeacon(), make_tlm()])
    assert decode_fields(manufacturer, service) == [make_ibeacon(), make_tlm()]
    assert encode_altbeacon(AltBeaconFrame(5, b"\x00" * 20, 0))[0] == 5


# ----------------------------------------------------------------------------------------
# Property tests
# ----------------------------------------------------------------------------------------

int8 = st.integers(-128, 127)
u16 = st.integers(0, 0xFFFF)

ibeacons = st.builds(
    IBeaconFrame, st.binary(min_size=16, max_size=16), u16, u16, st.one_of(st.none(), int8)
)
altbeacons = st.builds(
    AltBeaconFrame, u16, st.binary(min_size=20, max_size=20), int8, st.integers(0, 255)
)
uids = st.builds(
    EddystoneUidFrame,
    int8,
    st.binary(min_size=10, max_size=10),
    st.binary(min_size=6, max_size=6),
    st.one_of(st.none(), st.binary(min_size=2, max_size=2)),
)
eids = st.builds(EddystoneEidFrame, int8, st.binary(min_size=8, max_size=8))
tlms = st.builds(
    EddystoneTlmFrame,
    u16,
    st.one_of(st.none(), st.integers(-0x7FFF, 0x7FFF).map(lambda raw: raw / 256)),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF).map(lambda raw: raw / 10),
)
etlms = st.builds(
    EddystoneEncryptedTlmFrame,
    st.binary(min_size=12, max_size=12),
    st.binary(min_size=2, max_size=2),
    st.binary(min_size=2, max_size=2),
)
url_body = st.lists(
    st.sampled_from([*(chr(c) for c in range(0x21, 0x7F)), ".com/", ".org", ".info/"]),
    max_size=8,
).map("".join)
urls = st.builds(
    EddystoneUrlFrame,
    int8,
    st.builds(
        lambda s, b: s + b, st.sampled_from(["http://", "https://", "http://www."]), url_body
    ),
).filter(lambda f: len(encode_url(f.url)) - 1 <= 17)
unknown_manufacturer = st.builds(
    UnknownFrame,
    st.binary(max_size=24).filter(lambda b: not b.startswith((b"\xbe\xac", b"\x02"))),
    u16,
)

FRAME_STRATEGIES = {
    "ibeacon": ibeacons,
    "altbeacon": altbeacons,
    "eddystone_uid": uids,
    "eddystone_eid": eids,
    "eddystone_tlm": tlms,
    "eddystone_tlm_encrypted": etlms,
    "eddystone_url": urls,
    "unknown": unknown_manufacturer,
}


@pytest.mark.parametrize("name", FRAME_STRATEGIES)
@SETTINGS
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    frame = data.draw(FRAME_STRATEGIES[name])
    manufacturer, service = encode_fields([frame])
    assert decode_fields(manufacturer, service) == [frame]


noisy_payloads = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda p, b: p + b,
        st.sampled_from([b"\x02\x15", b"\xbe\xac", b"\x02"]),
        st.binary(max_size=30),
    ),
)
noisy_eddystone = st.one_of(
    st.binary(max_size=30),
    st.builds(
        lambda p, b: p + b,
        st.sampled_from([b"\x00", b"\x10", b"\x20\x00", b"\x20\x01", b"\x30"]),
        st.binary(max_size=24),
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    company_id=st.sampled_from([0x004C, 0x0118, 0x0006]) | u16,
    payload=noisy_payloads,
    service=noisy_eddystone,
)
def test_random_bytes_give_frames_or_our_errors(
    company_id: int, payload: bytes, service: bytes
) -> None:
    try:
        frames = decode_fields({company_id: payload}, {FEAA: service})
    except FrameDecodeError as exc:
        offset = exc.offset
    except BeaconError:
        return
    else:
        assert len(frames) == 2
        for frame in frames:
            assert isinstance(frame.to_json_dict(), dict)
        return
    assert 0 <= offset <= max(len(payload), len(service))
