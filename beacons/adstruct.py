"""Raw advertising data (AD structures, Core Spec Supplement Part A) to bleak-shaped fields.

An advertisement is a run of ``length, AD type, data…`` structures; ``length`` counts the
type byte and the data. A zero length ends the data (the rest is padding). Multi-octet
values on air are little-endian. AD types this module does not know are skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from beacons.enums import AdType
from beacons.exceptions import BeaconError, FrameDecodeError
from beacons.frames import Frame, decode_manufacturer, decode_service
from beacons.uuids import (
    uuid16_to_str,
    uuid32_to_str,
    uuid128_to_str,
    uuid_short,
    uuid_to_le_bytes,
)

LEGACY_ADV_MAX = 31


@dataclass(frozen=True, slots=True)
class AdStructure:
    """One AD structure: its type, its data and where the length byte sits in the raw bytes."""

    offset: int
    ad_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class AdvertisementFields:
    """The fields bleak's ``AdvertisementData`` exposes, parsed from raw AD structures."""

    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    service_uuids: list[str] = field(default_factory=list)
    tx_power: int | None = None
    local_name: str | None = None
    flags: int | None = None

    def __post_init__(self) -> None:
        for company_id, payload in self.manufacturer_data.items():
            if not 0 <= company_id <= 0xFFFF or not isinstance(payload, bytes):
                raise BeaconError(f"bad manufacturer data entry {company_id!r}: {payload!r}")
        for uuid, payload in self.service_data.items():
            if not isinstance(uuid, str) or not isinstance(payload, bytes):
                raise BeaconError(f"bad service data entry {uuid!r}: {payload!r}")
        if self.tx_power is not None and not -128 <= self.tx_power <= 127:
            raise BeaconError(f"tx_power must be -128..127, got {self.tx_power}")
        if self.flags is not None and not 0 <= self.flags <= 0xFF:
            raise BeaconError(f"flags must be one byte, got {self.flags}")


def _hex_to_bytes(hex_or_bytes: str | bytes | bytearray | memoryview) -> bytes:
    if isinstance(hex_or_bytes, bytes | bytearray | memoryview):
        return bytes(hex_or_bytes)
    text = hex_or_bytes.strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    text = "".join(text.replace(":", "").replace("-", "").split())
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise BeaconError(f"not hex: {hex_or_bytes!r}") from exc


def iter_ad_structures(raw: bytes) -> Iterator[AdStructure]:
    """The AD structures in ``raw``, stopping at a zero length byte or the end."""
    n = len(raw)
    i = 0
    while i < n:
        length = raw[i]
        if length == 0:
            return
        end = i + 1 + length
        if end > n:
            raise FrameDecodeError(
                "ad_structure", raw, i, f"length {length} runs past the end ({n - i - 1} left)"
            )
        yield AdStructure(i, raw[i + 1], raw[i + 2 : end])
        i = end


def _uuid_list(raw: bytes, st: AdStructure, size: int) -> list[str]:
    data = st.data
    if len(data) % size:
        raise FrameDecodeError(
            "ad_structure", raw, st.offset + 2, f"UUID list of {len(data)} bytes, not {size}×n"
        )
    if size == 2:
        return [uuid16_to_str(v) for (v,) in struct.iter_unpack("<H", data)]
    if size == 4:
        return [uuid32_to_str(v) for (v,) in struct.iter_unpack("<I", data)]
    return [uuid128_to_str(data[j : j + 16]) for j in range(0, len(data), 16)]


def _need(raw: bytes, st: AdStructure, size: int, what: str) -> None:
    if len(st.data) < size:
        raise FrameDecodeError(
            "ad_structure",
            raw,
            st.offset + 2 + len(st.data),
            f"{what} needs {size} bytes, has {len(st.data)}",
        )


def _service_key(raw: bytes, st: AdStructure) -> tuple[str, int] | None:
    """(128-bit UUID text, data start within st.data) for a service-data structure."""
    t = st.ad_type
    if t == AdType.SERVICE_DATA_UUID16:
        _need(raw, st, 2, "16-bit service data")
        return uuid16_to_str(int.from_bytes(st.data[:2], "little")), 2
    if t == AdType.SERVICE_DATA_UUID32:
        _need(raw, st, 4, "32-bit service data")
        return uuid32_to_str(int.from_bytes(st.data[:4], "little")), 4
    if t == AdType.SERVICE_DATA_UUID128:
        _need(raw, st, 16, "128-bit service data")
        return uuid128_to_str(st.data[:16]), 16
    return None


_UUID_LIST_SIZES = {
    AdType.INCOMPLETE_UUID16.value: 2,
    AdType.COMPLETE_UUID16.value: 2,
    AdType.INCOMPLETE_UUID32.value: 4,
    AdType.COMPLETE_UUID32.value: 4,
    AdType.INCOMPLETE_UUID128.value: 16,
    AdType.COMPLETE_UUID128.value: 16,
}


def parse_advertisement(hex_or_bytes: str | bytes | bytearray | memoryview) -> AdvertisementFields:
    """Parse raw AD bytes (or their hex) into bleak-shaped fields.

    A later structure of the same company id or service UUID replaces an earlier one, as
    in bleak. A complete local name wins over a shortened one.
    """
    raw = _hex_to_bytes(hex_or_bytes)
    manufacturer: dict[int, bytes] = {}
    service: dict[str, bytes] = {}
    uuids: list[str] = []
    tx_power: int | None = None
    short_name: str | None = None
    complete_name: str | None = None
    flags: int | None = None
    for st in iter_ad_structures(raw):
        t = st.ad_type
        if t == AdType.MANUFACTURER_DATA:
            _need(raw, st, 2, "manufacturer data")
            manufacturer[int.from_bytes(st.data[:2], "little")] = st.data[2:]
        elif (key := _service_key(raw, st)) is not None:
            service[key[0]] = st.data[key[1] :]
        elif (size := _UUID_LIST_SIZES.get(t)) is not None:
            for uuid in _uuid_list(raw, st, size):
                if uuid not in uuids:
                    uuids.append(uuid)
        elif t == AdType.FLAGS:
            _need(raw, st, 1, "flags")
            flags = st.data[0]
        elif t == AdType.TX_POWER:
            _need(raw, st, 1, "tx power level")
            tx_power = st.data[0] - 256 if st.data[0] > 127 else st.data[0]
        elif t == AdType.COMPLETE_NAME:
            complete_name = st.data.decode("utf-8", errors="replace")
        elif t == AdType.SHORT_NAME:
            short_name = st.data.decode("utf-8", errors="replace")
    return AdvertisementFields(
        manufacturer_data=manufacturer,
        service_data=service,
        service_uuids=uuids,
        tx_power=tx_power,
        local_name=complete_name if complete_name is not None else short_name,
        flags=flags,
    )


def _structure(ad_type: int, data: bytes) -> bytes:
    if len(data) > 254:
        raise BeaconError(f"AD type {ad_type:#04x} data is {len(data)} bytes, over 254")
    return bytes((len(data) + 1, ad_type)) + data


def build_advertisement(
    fields: AdvertisementFields | None = None,
    *,
    manufacturer_data: Mapping[int, bytes] | None = None,
    service_data: Mapping[str, bytes] | None = None,
    max_length: int | None = None,
) -> bytes:
    """Raw AD bytes carrying ``fields`` (or just the given data maps).

    Order: flags, service UUID lists (16-, 32-, 128-bit, as complete lists), complete
    local name, tx power, service data, manufacturer data. Service UUIDs on the Base UUID
    use their 16- or 32-bit form. ``max_length`` (31 for legacy advertising) is enforced
    when given.
    """
    if fields is None:
        fields = AdvertisementFields(
            manufacturer_data=dict(manufacturer_data or {}),
            service_data=dict(service_data or {}),
        )
    out = bytearray()
    if fields.flags is not None:
        out += _structure(AdType.FLAGS, bytes((fields.flags,)))
    by_size: dict[int, bytearray] = {2: bytearray(), 4: bytearray(), 16: bytearray()}
    for uuid in fields.service_uuids:
        short = uuid_short(uuid.lower())
        if short is not None and short <= 0xFFFF:
            by_size[2] += short.to_bytes(2, "little")
        elif short is not None:
            by_size[4] += short.to_bytes(4, "little")
        else:
            by_size[16] += uuid_to_le_bytes(uuid)
    for size, ad_type in (
        (2, AdType.COMPLETE_UUID16),
        (4, AdType.COMPLETE_UUID32),
        (16, AdType.COMPLETE_UUID128),
    ):
        if by_size[size]:
            out += _structure(ad_type, bytes(by_size[size]))
    if fields.local_name is not None:
        out += _structure(AdType.COMPLETE_NAME, fields.local_name.encode("utf-8"))
    if fields.tx_power is not None:
        out += _structure(AdType.TX_POWER, fields.tx_power.to_bytes(1, "little", signed=True))
    for uuid, payload in fields.service_data.items():
        short = uuid_short(uuid.lower())
        if short is not None and short <= 0xFFFF:
            out += _structure(AdType.SERVICE_DATA_UUID16, short.to_bytes(2, "little") + payload)
        elif short is not None:
            out += _structure(AdType.SERVICE_DATA_UUID32, short.to_bytes(4, "little") + payload)
        else:
            out += _structure(AdType.SERVICE_DATA_UUID128, uuid_to_le_bytes(uuid) + payload)
    for company_id, payload in fields.manufacturer_data.items():
        out += _structure(AdType.MANUFACTURER_DATA, company_id.to_bytes(2, "little") + payload)
    if max_length is not None and len(out) > max_length:
        raise BeaconError(f"advertisement is {len(out)} bytes, over {max_length}")
    return bytes(out)


def decode_raw(hex_or_bytes: str | bytes | bytearray | memoryview) -> list[Frame]:
    """Every beacon frame in one raw advertisement, in on-air order.

    A :class:`FrameDecodeError` carries the whole advertisement and the offset into it.
    """
    raw = _hex_to_bytes(hex_or_bytes)
    frames: list[Frame] = []
    for st in iter_ad_structures(raw):
        data_at = st.offset + 2
        try:
            if st.ad_type == AdType.MANUFACTURER_DATA:
                _need(raw, st, 2, "manufacturer data")
                company_id = int.from_bytes(st.data[:2], "little")
                data_at += 2
                frames.append(decode_manufacturer(company_id, st.data[2:]))
            elif (key := _service_key(raw, st)) is not None:
                data_at += key[1]
                frames.append(decode_service(key[0], st.data[key[1] :]))
        except FrameDecodeError as exc:
            if exc.raw is raw:
                raise
            raise FrameDecodeError(exc.frame_type, raw, data_at + exc.offset, exc.reason) from exc
    return frames
