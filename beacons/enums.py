"""Assigned numbers as IntEnums that keep unknown values instead of raising."""

from __future__ import annotations

from enum import IntEnum


class TolerantIntEnum(IntEnum):
    """IntEnum whose unknown values decode to a pseudo-member instead of raising."""

    @classmethod
    def _missing_(cls, value: object) -> TolerantIntEnum | None:
        if isinstance(value, int) and not isinstance(value, bool):
            member = int.__new__(cls, value)
            member._name_ = f"UNKNOWN_{value:#06x}"
            member._value_ = value
            return member
        return None

    @property
    def known(self) -> bool:
        """True for a value the enum declares."""
        return self._name_ in type(self).__members__


class CompanyId(TolerantIntEnum):
    """Bluetooth SIG company identifiers we meet in stores."""

    MICROSOFT = 0x0006
    APPLE = 0x004C
    GOOGLE = 0x00E0
    RADIUS_NETWORKS = 0x0118
    SAMSUNG = 0x0075


class EddystoneFrameType(TolerantIntEnum):
    """The first byte of Eddystone service data."""

    UID = 0x00
    URL = 0x10
    TLM = 0x20
    EID = 0x30


class TlmVersion(TolerantIntEnum):
    """The second byte of an Eddystone TLM frame."""

    PLAIN = 0x00
    ENCRYPTED = 0x01


class AdType(TolerantIntEnum):
    """Assigned numbers for the AD types we read."""

    FLAGS = 0x01
    INCOMPLETE_UUID16 = 0x02
    COMPLETE_UUID16 = 0x03
    INCOMPLETE_UUID32 = 0x04
    COMPLETE_UUID32 = 0x05
    INCOMPLETE_UUID128 = 0x06
    COMPLETE_UUID128 = 0x07
    SHORT_NAME = 0x08
    COMPLETE_NAME = 0x09
    TX_POWER = 0x0A
    SERVICE_DATA_UUID16 = 0x16
    SERVICE_DATA_UUID32 = 0x20
    SERVICE_DATA_UUID128 = 0x21
    MANUFACTURER_DATA = 0xFF
