"""Beacon frame codecs: iBeacon, AltBeacon and Eddystone UID/EID/TLM/URL, decode and encode.

Frames are frozen, slotted value objects that check themselves. Decoding works on
bleak's ``AdvertisementData`` shape (manufacturer data keyed by company id with the id
bytes removed, service data keyed by 128-bit UUID text) and never raises for data it
does not recognise: that becomes an :class:`UnknownFrame`. Bytes that claim to be a
known frame but are truncated or inconsistent raise :class:`FrameDecodeError` with the
byte offset (into the payload) where the problem is.

Layouts (payload bytes, company id / service UUID excluded):

* iBeacon (company 0x004C): ``02 15`` UUID(16) major(2, BE) minor(2, BE) power(1, int8);
  some tags omit the power byte.
* AltBeacon (any company): ``BE AC`` beacon id(20) reference RSSI(1, int8) reserved(1).
* Eddystone (service 0xFEAA): frame type(1) then UID ``00`` tx(1) namespace(10)
  instance(6) [RFU(2)], URL ``10`` tx(1) scheme(1) encoded URL, TLM ``20`` version(1) …,
  EID ``30`` tx(1) EID(8).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias

from beacons.enums import CompanyId, EddystoneFrameType, TlmVersion
from beacons.exceptions import BeaconError, FrameDecodeError

JsonScalar: TypeAlias = str | int | float | bool | None

EDDYSTONE_SERVICE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"
APPLE_COMPANY_ID = CompanyId.APPLE.value
IBEACON_PREFIX = b"\x02\x15"
ALTBEACON_PREFIX = b"\xbe\xac"
# The Eddystone URL spec caps the encoded URL (after the scheme byte) at 17 bytes.
MAX_URL_ENCODED_BYTES = 17


URL_SCHEMES: tuple[str, ...] = ("http://www.", "https://www.", "http://", "https://")
URL_EXPANSIONS: tuple[str, ...] = (
    ".com/",
    ".org/",
    ".edu/",
    ".net/",
    ".info/",
    ".biz/",
    ".gov/",
    ".com",
    ".org",
    ".edu",
    ".net",
    ".info",
    ".biz",
    ".gov",
)


def _int8(value: int) -> int:
    return value - 256 if value > 127 else value


def _check_int(name: str, value: int, lo: int, hi: int) -> None:
    if type(value) is not int or not lo <= value <= hi:
        raise BeaconError(f"{name} must be an int in {lo}..{hi}, got {value!r}")


def _check_bytes(name: str, value: bytes, length: int) -> None:
    if type(value) is not bytes or len(value) != length:
        raise BeaconError(f"{name} must be {length} bytes, got {value!r}")


def _url_text_ok(url: str) -> bool:
    # Bytes 0x0E..0x20 and 0x7F..0xFF are reserved by the spec, so a decodable URL is
    # printable ASCII only (expansions included).
    return all("\x21" <= ch <= "\x7e" for ch in url)


@dataclass(frozen=True, slots=True)
class IBeaconFrame:
    """Apple iBeacon: proximity UUID, major, minor and measured RSSI at 1 m (None if absent)."""

    uuid: bytes
    major: int
    minor: int
    measured_power: int | None = None

    type: ClassVar[Literal["ibeacon"]] = "ibeacon"
    manufacturer_id: ClassVar[int] = APPLE_COMPANY_ID

    def __post_init__(self) -> None:
        _check_bytes("uuid", self.uuid, 16)
        _check_int("major", self.major, 0, 0xFFFF)
        _check_int("minor", self.minor, 0, 0xFFFF)
        if self.measured_power is not None:
            _check_int("measured_power", self.measured_power, -128, 127)

    @property
    def subject_id(self) -> str:
        """Hex id of this beacon: UUID ‖ major ‖ minor."""
        return f"{self.uuid.hex()}{self.major:04x}{self.minor:04x}"

    def to_json_dict(self) -> dict[str, JsonScalar]:
        """Plain JSON fields."""
        return {
            "type": self.type,
            "uuid": self.uuid.hex(),
            "major": self.major,
            "minor": self.minor,
            "measured_power": self.measured_power,
            "manufacturer_id": APPLE_COMPANY_ID,
        }


@dataclass(frozen=True, slots=True)
class AltBeaconFrame:
    """AltBeacon: 20-byte beacon id, reference RSSI at 1 m, reserved byte, any company id."""

    manufacturer_id: int
    beacon_id: bytes
    reference_rssi: int
    reserved: int = 0

    type: ClassVar[Literal["altbeacon"]] = "altbeacon"

    def __post_init__(self) -> None:
        _check_int("manufacturer_id", self.manufacturer_id, 0, 0xFFFF)
        _check_bytes("beacon_id", self.beacon_id, 20)
        _check_int("reference_rssi", self.reference_rssi, -128, 127)
        _check_int("reserved", self.reserved, 0, 0xFF)

    @property
    def subject_id(self) -> str:
        """Hex id of this beacon."""
        return self.beacon_id.hex()

    def to_json_dict(self) -> dict[str, JsonScalar]:
        """Plain JSON fields."""
        return {
            "type": self.type,
            "manufacturer_id": self.manufacturer_id,
            "beacon_id": self.beacon_id.hex(),
            "reference_rssi": self.reference_rssi,
        }


@dataclass(frozen=True, slots=True)
class EddystoneUidFrame:
    """Eddystone-UID: tx power at 0 m, 10-byte namespace, 6-byte instance.

    ``rfu`` holds the two trailing reserved bytes, or None for tags that omit them.
    """

    tx_power: int
    namespace: bytes
    instance: bytes
    rfu: bytes | None = b"\x00\x00"

    type: ClassVar[Literal["eddystone_uid"]] = "eddystone_uid"

    def __post_init__(self) -> None:
        _check_int("tx_power", self.tx_power, -128, 127)
        _check_bytes("namespace", self.namespace, 10)
        _check_bytes("instance", self.instance, 6)
        if self.rfu is not None:
            _check_bytes("rfu", self.rfu, 2)

    @property
    def subject_id(self) -> str:
        """Hex id of this beacon: namespace ‖ instance."""
        return self.namespace.hex() + self.instance.hex()

    def to_json_dict(self) -> dict[str, JsonScalar]:
        """Plain JSON fields."""
        return {
            "type": self.type,
            "tx_power": self.tx_power,
            "namespace": self.namespace.hex(),
            "instance": self.instance.hex(),
        }


@dataclass(frozen=True, slots=True)
class EddystoneEidFrame:
    """Eddystone-EID: tx power at 0 m and the current 8-byte ephemeral identifier."""

    tx_power: int
    eid: bytes

    type: ClassVar[Literal["eddystone_eid"]] = "eddystone_eid"

    def __post_init__(self) -> None:
        _check_int("tx_power", self.tx_power, -128, 127)
        _check_bytes("eid", self.eid, 8)

    @property
    def subject_id(self) -> str:
        """Hex of the EID."""
        return self.eid.hex()

    def to_json_dict(self) -> dict[str, JsonScalar]:
        """Plain JSON fields."""
        return {"type": self.type, "tx_power": self.tx_power, "eid": self.eid.hex()}


@dataclass(frozen=True, slots=True)
class EddystoneTlmFrame:
    """Plain (version 0) Eddystone-TLM telemetry.

    ``battery_mv`` 0 means the beacon does not report it (spec); ``temperature_c`` is None
    when the beacon sends 0x8000. Encoding rounds temperature to 1/256 °C and uptime to
    0.1 s, the on-air resolution.
    """

    battery_mv: int
    temperature_c: float | None
    adv_count: int
    uptime_s: float

    type: ClassVar[Literal["eddystone_tlm"]] = "eddystone_tlm"
    version: ClassVar[int] = TlmVersion.PLAIN.value

    def __post_init__(self) -> None:
        _check_int("battery_mv", self.battery_mv, 0, 0xFFFF)
        _check_int("adv_count", self.adv_count, 0, 0xFFFFFFFF)
        temp = self.temperature_c
        if temp is not None and not (
            isinstance(temp, int | float) and -32767 / 256 <= temp <= 32767 / 256
        ):
            raise BeaconError(f"temperature_c must be in -127.99..127.99 or None, got {temp!r}")
        up = self.uptime_s
        if not (isinstance(up, int | float) and up >= 0.0 and round(up * 10) <= 0xFFFFFFFF):
            raise BeaconError(f"uptime_s must be in 0..429496729.5, got {up!r}")

    @property
    def subject_id(self) -> None:
        """TLM frames identify no one."""
        return None

    def to_json_dict(self) -> dict[str, JsonScalar]:
        """Plain JSON fields."""
        return {
            "type": self.type,
            "version": self.version,
            "battery_mv": self.battery_mv,
            "temperature_c": self.temperature_c,
            "adv_count": self.adv_count,
            "uptime_s": self.uptime_s,
        }


@dataclass(frozen=True, slots=True)
class EddystoneEncryptedTlmFrame:
    """Encrypted (version 1) Eddystone-TLM: kept as ciphertext, salt and MIC."""

    etlm: bytes
    salt: bytes
    mic: bytes

    type: ClassVar[Literal["eddystone_tlm"]] = "eddystone_tlm"
    version: ClassVar[int] = TlmVersion.ENCRYPTED.value

    def __post_init__(self) -> None:
        _check_bytes("etlm", self.etlm, 12)
        _check_bytes("salt", self.salt, 2)
        _check_bytes("mic", self.mic, 2)

    @property
    def subject_id(self) -> None:
        """TLM frames identify no one."""
        return None

    def to_json_dict(self) -> dict[str, JsonScalar]:
        """Plain JSON fields."""
        return {
            "type": self.type,
            "version": self.version,
            "etlm": self.etlm.hex(),
            "salt": self.salt.hex(),
            "mic": self.mic.hex(),
        }


@dataclass(frozen=True, slots=True)
class EddystoneUrlFrame:
    """Eddystone-URL: tx power at 0 m and the expanded URL."""

    tx_power: int
    url: str

    type: ClassVar[Literal["eddystone_url"]] = "eddystone_url"

    def __post_init__(self) -> None:
        _check_int("tx_power", self.tx_power, -128, 127)
        if not isinstance(self.url, str) or not self.url.startswith(URL_SCHEMES[2:]):
            raise BeaconError(f"url must start with http:// or https://, got {self.url!r}")
        if not _url_text_ok(self.url):
            raise BeaconError(f"url has characters Eddystone-URL cannot carry: {self.url!r}")

    @property
    def subject_id(self) -> None:
        """URL frames identify a page, not a subject."""
        return None

    def to_json_dict(self) -> dict[str, JsonScalar]:
        """Plain JSON fields."""
        return {"type": self.type, "tx_power": self.tx_power, "url": self.url}


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """Manufacturer or service data we do not decode, passed on as is.

    Exactly one of ``manufacturer_id`` and ``service_uuid`` is set.
    """

    data: bytes
    manufacturer_id: int | None = None
    service_uuid: str | None = None

    type: ClassVar[Literal["unknown"]] = "unknown"

    def __post_init__(self) -> None:
        if type(self.data) is not bytes:
            raise BeaconError(f"data must be bytes, got {type(self.data).__name__}")
        if (self.manufacturer_id is None) == (self.service_uuid is None):
            raise BeaconError("exactly one of manufacturer_id and service_uuid must be set")
        if self.manufacturer_id is not None:
            _check_int("manufacturer_id", self.manufacturer_id, 0, 0xFFFF)
        if self.service_uuid is not None and not isinstance(self.service_uuid, str):
            raise BeaconError(f"service_uuid must be a string, got {self.service_uuid!r}")

    @property
    def subject_id(self) -> None:
        """Unknown data identifies no one we know."""
        return None

    def to_json_dict(self) -> dict[str, JsonScalar]:
        """Plain JSON fields."""
        out: dict[str, JsonScalar] = {"type": self.type}
        if self.manufacturer_id is not None:
            out["manufacturer_id"] = self.manufacturer_id
        else:
            out["service_uuid"] = self.service_uuid
        out["data"] = self.data.hex()
        return out


EddystoneFrame: TypeAlias = (
    EddystoneUidFrame
    | EddystoneEidFrame
    | EddystoneTlmFrame
    | EddystoneEncryptedTlmFrame
    | EddystoneUrlFrame
)
Frame: TypeAlias = IBeaconFrame | AltBeaconFrame | EddystoneFrame | UnknownFrame
FrameType = Literal[
    "ibeacon",
    "altbeacon",
    "eddystone_uid",
    "eddystone_eid",
    "eddystone_tlm",
    "eddystone_url",
    "unknown",
]

# ---------------------------------------------------------------------------------------
# Decoding. This is the edge hot path: precompiled structs, dict dispatch, and frames
# built without re-running __post_init__ where the layout already guarantees validity.
# ---------------------------------------------------------------------------------------

_IBEACON = struct.Struct(">16sHHb")
_IBEACON_NO_POWER = struct.Struct(">16sHH")
_ALTBEACON = struct.Struct(">20sbB")
_UID = struct.Struct(">b10s6s")
_TLM0 = struct.Struct(">HhII")
_EID = struct.Struct(">b8s")

_new = object.__new__
_set = object.__setattr__


def _decode_ibeacon(payload: bytes) -> IBeaconFrame:
    n = len(payload)
    if payload[1:2] != b"\x15":
        raise FrameDecodeError("ibeacon", payload, 1, "length byte is not 0x15")
    frame: IBeaconFrame = _new(IBeaconFrame)
    if n == 23:
        uuid, major, minor, power = _IBEACON.unpack_from(payload, 2)
        _set(frame, "measured_power", power)
    elif n == 22:
        uuid, major, minor = _IBEACON_NO_POWER.unpack_from(payload, 2)
        _set(frame, "measured_power", None)
    elif n < 22:
        raise FrameDecodeError("ibeacon", payload, n, "truncated: need 22 or 23 bytes")
    else:
        raise FrameDecodeError("ibeacon", payload, 23, f"{n - 23} unexpected trailing bytes")
    _set(frame, "uuid", uuid)
    _set(frame, "major", major)
    _set(frame, "minor", minor)
    return frame


def _decode_altbeacon(company_id: int, payload: bytes) -> AltBeaconFrame:
    n = len(payload)
    if n != 24:
        if n < 24:
            raise FrameDecodeError("altbeacon", payload, n, "truncated: need 24 bytes")
        raise FrameDecodeError("altbeacon", payload, 24, f"{n - 24} unexpected trailing bytes")
    beacon_id, ref, reserved = _ALTBEACON.unpack_from(payload, 2)
    frame: AltBeaconFrame = _new(AltBeaconFrame)
    _set(frame, "manufacturer_id", company_id)
    _set(frame, "beacon_id", beacon_id)
    _set(frame, "reference_rssi", ref)
    _set(frame, "reserved", reserved)
    return frame


def _unknown_manufacturer(company_id: int, payload: bytes) -> UnknownFrame:
    frame: UnknownFrame = _new(UnknownFrame)
    _set(frame, "data", payload)
    _set(frame, "manufacturer_id", company_id)
    _set(frame, "service_uuid", None)
    return frame


def _unknown_service(uuid: str, payload: bytes) -> UnknownFrame:
    frame: UnknownFrame = _new(UnknownFrame)
    _set(frame, "data", payload)
    _set(frame, "manufacturer_id", None)
    _set(frame, "service_uuid", uuid)
    return frame


def decode_manufacturer(company_id: int, payload: bytes) -> Frame:
    """Decode one manufacturer-data entry (company id bytes already removed)."""
    if type(payload) is not bytes:
        payload = bytes(payload)
    if not 0 <= company_id <= 0xFFFF:
        raise BeaconError(f"company id out of range: {company_id}")
    head = payload[:2]
    if head == IBEACON_PREFIX:
        if company_id == APPLE_COMPANY_ID:
            return _decode_ibeacon(payload)
    elif head == ALTBEACON_PREFIX:
        return _decode_altbeacon(company_id, payload)
    elif company_id == APPLE_COMPANY_ID and head[:1] == b"\x02":
        # Apple's type 0x02 is iBeacon; a wrong length byte is a broken iBeacon.
        return _decode_ibeacon(payload)
    return _unknown_manufacturer(company_id, payload)


def _check_len(frame_type: str, payload: bytes, full: int) -> None:
    n = len(payload)
    if n < full:
        raise FrameDecodeError(frame_type, payload, n, f"truncated: need {full} bytes")
    if n > full:
        raise FrameDecodeError(frame_type, payload, full, f"{n - full} unexpected trailing bytes")


def _decode_uid(payload: bytes) -> EddystoneUidFrame:
    n = len(payload)
    if n == 20:
        rfu: bytes | None = payload[18:20]
    elif n == 18:
        rfu = None
    elif n < 20:
        raise FrameDecodeError("eddystone_uid", payload, n, "truncated: need 18 or 20 bytes")
    else:
        raise FrameDecodeError("eddystone_uid", payload, 20, f"{n - 20} unexpected trailing bytes")
    tx, namespace, instance = _UID.unpack_from(payload, 1)
    frame: EddystoneUidFrame = _new(EddystoneUidFrame)
    _set(frame, "tx_power", tx)
    _set(frame, "namespace", namespace)
    _set(frame, "instance", instance)
    _set(frame, "rfu", rfu)
    return frame


def _decode_eid(payload: bytes) -> EddystoneEidFrame:
    if len(payload) != 10:
        _check_len("eddystone_eid", payload, 10)
    tx, eid = _EID.unpack_from(payload, 1)
    frame: EddystoneEidFrame = _new(EddystoneEidFrame)
    _set(frame, "tx_power", tx)
    _set(frame, "eid", eid)
    return frame


def _decode_tlm(payload: bytes) -> EddystoneTlmFrame | EddystoneEncryptedTlmFrame | UnknownFrame:
    if len(payload) < 2:
        raise FrameDecodeError("eddystone_tlm", payload, len(payload), "truncated: no version")
    version = payload[1]
    if version == TlmVersion.PLAIN:
        _check_len("eddystone_tlm", payload, 14)
        battery, temp_raw, count, uptime = _TLM0.unpack_from(payload, 2)
        frame: EddystoneTlmFrame = _new(EddystoneTlmFrame)
        _set(frame, "battery_mv", battery)
        _set(frame, "temperature_c", None if temp_raw == -0x8000 else temp_raw / 256)
        _set(frame, "adv_count", count)
        _set(frame, "uptime_s", uptime / 10)
        return frame
    if version == TlmVersion.ENCRYPTED:
        _check_len("eddystone_tlm", payload, 18)
        return EddystoneEncryptedTlmFrame(payload[2:14], payload[14:16], payload[16:18])
    return _unknown_service(EDDYSTONE_SERVICE_UUID, payload)


_URL_SCHEME_COUNT = len(URL_SCHEMES)
# Byte → text for every byte a URL body may hold: expansion codes and printable ASCII.
_URL_DECODE: dict[int, str] = dict(enumerate(URL_EXPANSIONS)) | {
    b: chr(b) for b in range(0x21, 0x7F)
}


def _decode_url(payload: bytes) -> EddystoneUrlFrame:
    n = len(payload)
    if n < 3:
        raise FrameDecodeError("eddystone_url", payload, n, "truncated: need 3 bytes or more")
    scheme = payload[2]
    if scheme >= _URL_SCHEME_COUNT:
        raise FrameDecodeError("eddystone_url", payload, 2, f"unknown URL scheme {scheme:#04x}")
    parts = [URL_SCHEMES[scheme]]
    table = _URL_DECODE
    for offset in range(3, n):
        text = table.get(payload[offset])
        if text is None:
            raise FrameDecodeError(
                "eddystone_url", payload, offset, f"reserved URL byte {payload[offset]:#04x}"
            )
        parts.append(text)
    frame: EddystoneUrlFrame = _new(EddystoneUrlFrame)
    _set(frame, "tx_power", _int8(payload[1]))
    _set(frame, "url", "".join(parts))
    return frame


_EDDYSTONE_DECODERS: dict[int, Callable[[bytes], Frame]] = {
    EddystoneFrameType.UID.value: _decode_uid,
    EddystoneFrameType.URL.value: _decode_url,
    EddystoneFrameType.TLM.value: _decode_tlm,
    EddystoneFrameType.EID.value: _decode_eid,
}


def decode_eddystone(payload: bytes) -> Frame:
    """Decode Eddystone service data (the bytes under UUID 0xFEAA)."""
    if type(payload) is not bytes:
        payload = bytes(payload)
    if not payload:
        raise FrameDecodeError("eddystone", payload, 0, "empty service data")
    decoder = _EDDYSTONE_DECODERS.get(payload[0])
    if decoder is None:
        return _unknown_service(EDDYSTONE_SERVICE_UUID, payload)
    return decoder(payload)


_SERVICE_DECODERS: dict[str, Callable[[bytes], Frame]] = {
    EDDYSTONE_SERVICE_UUID: decode_eddystone,
}


def decode_service(service_uuid: str, payload: bytes) -> Frame:
    """Decode one service-data entry keyed by its 128-bit UUID text."""
    decoder = _SERVICE_DECODERS.get(service_uuid)
    if decoder is None:
        lowered = service_uuid.lower()
        decoder = _SERVICE_DECODERS.get(lowered)
        if decoder is None:
            if type(payload) is not bytes:
                payload = bytes(payload)
            return _unknown_service(service_uuid, payload)
    return decoder(payload)


def decode_fields(
    manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes]
) -> list[Frame]:
    """Every frame in one advertisement, in bleak's ``AdvertisementData`` shape.

    Manufacturer entries come first, then service data, each in mapping order.
    Raises :class:`FrameDecodeError` for a truncated or inconsistent known frame.
    """
    frames: list[Frame] = []
    if manufacturer_data:
        for company_id, payload in manufacturer_data.items():
            frames.append(decode_manufacturer(company_id, payload))
    if service_data:
        decoders = _SERVICE_DECODERS
        for service_uuid, payload in service_data.items():
            decoder = decoders.get(service_uuid)
            if decoder is None:
                frames.append(decode_service(service_uuid, payload))
            else:
                frames.append(decoder(payload))
    return frames


# ---------------------------------------------------------------------------------------
# Encoding.
# ---------------------------------------------------------------------------------------


def encode_ibeacon(frame: IBeaconFrame) -> tuple[int, bytes]:
    """(company id 0x004C, manufacturer payload) for an iBeacon frame."""
    if frame.measured_power is None:
        body = _IBEACON_NO_POWER.pack(frame.uuid, frame.major, frame.minor)
    else:
        body = _IBEACON.pack(frame.uuid, frame.major, frame.minor, frame.measured_power)
    return APPLE_COMPANY_ID, IBEACON_PREFIX + body


def encode_altbeacon(frame: AltBeaconFrame) -> tuple[int, bytes]:
    """(company id, manufacturer payload) for an AltBeacon frame."""
    body = _ALTBEACON.pack(frame.beacon_id, frame.reference_rssi, frame.reserved)
    return frame.manufacturer_id, ALTBEACON_PREFIX + body


def encode_eddystone_eid(eid: bytes, tx_power: int) -> tuple[str, bytes]:
    """(Eddystone service UUID, service data) advertising ``eid`` at ``tx_power`` dBm @ 0 m."""
    _check_bytes("eid", eid, 8)
    _check_int("tx_power", tx_power, -128, 127)
    return EDDYSTONE_SERVICE_UUID, b"\x30" + _EID.pack(tx_power, eid)


def encode_eddystone_uid(frame: EddystoneUidFrame) -> tuple[str, bytes]:
    """(Eddystone service UUID, service data) for a UID frame."""
    data = b"\x00" + _UID.pack(frame.tx_power, frame.namespace, frame.instance)
    if frame.rfu is not None:
        data += frame.rfu
    return EDDYSTONE_SERVICE_UUID, data


def encode_eddystone_tlm(
    frame: EddystoneTlmFrame | EddystoneEncryptedTlmFrame,
) -> tuple[str, bytes]:
    """(Eddystone service UUID, service data) for a plain or encrypted TLM frame."""
    if isinstance(frame, EddystoneEncryptedTlmFrame):
        return EDDYSTONE_SERVICE_UUID, b"\x20\x01" + frame.etlm + frame.salt + frame.mic
    if frame.temperature_c is None:
        temp_raw = -0x8000
    else:
        temp_raw = max(-0x7FFF, min(0x7FFF, round(frame.temperature_c * 256)))
    body = _TLM0.pack(frame.battery_mv, temp_raw, frame.adv_count, round(frame.uptime_s * 10))
    return EDDYSTONE_SERVICE_UUID, b"\x20\x00" + body


# Longest expansion first so ".com/" wins over ".com".
_URL_ENCODE: tuple[tuple[str, int], ...] = tuple(
    sorted(((s, i) for i, s in enumerate(URL_EXPANSIONS)), key=lambda p: -len(p[0]))
)


def encode_url(url: str) -> bytes:
    """Scheme byte and compressed URL body, as carried in an Eddystone-URL frame."""
    for code in (1, 0, 3, 2):  # longest scheme first
        if url.startswith(URL_SCHEMES[code]):
            rest = url[len(URL_SCHEMES[code]) :]
            break
    else:
        raise BeaconError(f"url must start with http:// or https://, got {url!r}")
    out = bytearray([code])
    i = 0
    while i < len(rest):
        for text, expansion in _URL_ENCODE:
            if rest.startswith(text, i):
                out.append(expansion)
                i += len(text)
                break
        else:
            ch = ord(rest[i])
            if not 0x21 <= ch <= 0x7E:
                raise BeaconError(f"url has a character Eddystone-URL cannot carry: {rest[i]!r}")
            out.append(ch)
            i += 1
    return bytes(out)


def encode_eddystone_url(frame: EddystoneUrlFrame, *, strict: bool = True) -> tuple[str, bytes]:
    """(Eddystone service UUID, service data) for a URL frame.

    With ``strict`` the encoded URL must fit the spec's 17 bytes.
    """
    encoded = encode_url(frame.url)
    if strict and len(encoded) - 1 > MAX_URL_ENCODED_BYTES:
        raise BeaconError(
            f"encoded URL is {len(encoded) - 1} bytes, over {MAX_URL_ENCODED_BYTES}: {frame.url!r}"
        )
    return EDDYSTONE_SERVICE_UUID, b"\x10" + struct.pack(">b", frame.tx_power) + encoded


def encode_eddystone(frame: EddystoneFrame) -> tuple[str, bytes]:
    """(Eddystone service UUID, service data) for any Eddystone frame."""
    if isinstance(frame, EddystoneEidFrame):
        return encode_eddystone_eid(frame.eid, frame.tx_power)
    if isinstance(frame, EddystoneUidFrame):
        return encode_eddystone_uid(frame)
    if isinstance(frame, EddystoneUrlFrame):
        return encode_eddystone_url(frame)
    return encode_eddystone_tlm(frame)


def encode_frame(frame: Frame) -> tuple[int | str, bytes]:
    """(company id, manufacturer payload) or (service UUID, service data) for any frame."""
    if isinstance(frame, IBeaconFrame):
        return encode_ibeacon(frame)
    if isinstance(frame, AltBeaconFrame):
        return encode_altbeacon(frame)
    if isinstance(frame, UnknownFrame):
        key = frame.manufacturer_id if frame.manufacturer_id is not None else frame.service_uuid
        assert key is not None  # __post_init__ guarantees one of the two
        return key, frame.data
    return encode_eddystone(frame)


def encode_fields(frames: Iterable[Frame]) -> tuple[dict[int, bytes], dict[str, bytes]]:
    """(manufacturer_data, service_data) carrying ``frames``: the inverse of decode_fields.

    Two frames under one company id or service UUID cannot share an advertisement, so
    that raises :class:`BeaconError`.
    """
    manufacturer: dict[int, bytes] = {}
    service: dict[str, bytes] = {}
    for frame in frames:
        key, payload = encode_frame(frame)
        if isinstance(key, int):
            if key in manufacturer:
                raise BeaconError(f"two frames under company id {key:#06x}")
            manufacturer[key] = payload
        else:
            if key in service:
                raise BeaconError(f"two frames under service UUID {key}")
            service[key] = payload
    return manufacturer, service
