"""Scanner sources behind one interface: bleak (a real radio), trace replay, the simulator.

A source yields :class:`Advertisement` values shaped like bleak's ``AdvertisementData``
and owns the clock the agent runs on: wall time for a radio, the trace's own time for a
replay (so ``--speed max`` runs a day on a virtual clock and decides exactly as live).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from contracts.trace import AdvRecord, TraceHeader, TraceRecord, read_trace
from edge.exceptions import SourceError


@dataclass(frozen=True, slots=True)
class Advertisement:
    """One advertisement heard by this gateway, in bleak's field shapes."""

    address: str
    rssi: int
    at: float  # Unix seconds (UTC) on the source's clock
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    service_uuids: tuple[str, ...] = ()
    tx_power: int | None = None
    local_name: str | None = None


class ScannerSource(ABC):
    """Where advertisements come from. ``now()`` is the clock the agent decides on."""

    name: str = "source"

    @abstractmethod
    def adverts(self) -> AsyncIterator[Advertisement]:
        """Advertisements in arrival order; a finite source ends, a radio never does."""

    @abstractmethod
    def now(self) -> float:
        """Current time on this source's clock (Unix seconds)."""

    @property
    def finite(self) -> bool:
        return False


def advert_from_record(record: AdvRecord, start: float) -> Advertisement:
    """Map a trace ``adv`` line to an Advertisement (hex strings become bytes)."""
    try:
        manufacturer = {int(k): bytes.fromhex(v) for k, v in record.manufacturer_data.items()}
        service = {k.lower(): bytes.fromhex(v) for k, v in record.service_data.items()}
    except ValueError as exc:
        raise SourceError(f"trace adv at t={record.t}: bad hex or company id: {exc}") from exc
    return Advertisement(
        address=record.address,
        rssi=record.rssi,
        at=start + record.t,
        manufacturer_data=manufacturer,
        service_data=service,
        service_uuids=tuple(record.service_uuids),
        tx_power=record.tx_power,
        local_name=record.local_name,
    )


class TraceSource(ScannerSource):
    """Replays the ``adv`` lines of one gateway from a trace, paced or as fast as possible.

    ``speed=None`` runs on the trace's clock as fast as the consumer takes it; ``speed=N``
    sleeps so that trace time advances N× faster than wall time.
    """

    name = "replay"

    def __init__(
        self,
        header: TraceHeader,
        records: Iterable[TraceRecord],
        gateway_id: str,
        speed: float | None = None,
    ) -> None:
        if speed is not None and speed <= 0:
            raise SourceError(f"speed must be > 0 or max, got {speed}")
        self.header = header
        self._records = records
        self.gateway_id = gateway_id
        self.speed = speed
        self.start = header.start.timestamp()
        self._now = self.start
        self._wall0: float | None = None
        self.skipped_other_gateways = 0

    @classmethod
    def from_file(cls, path: Path, gateway_id: str, speed: float | None = None) -> TraceSource:
        try:
            fh = path.open(encoding="utf-8")
        except OSError as exc:
            raise SourceError(f"cannot open trace {path}: {exc.strerror}") from exc
        header, records = read_trace(fh)
        return cls(header, records, gateway_id, speed)

    @property
    def finite(self) -> bool:
        return True

    def now(self) -> float:
        if self.speed is not None and self._wall0 is not None:
            return max(self._now, self.start + (time.monotonic() - self._wall0) * self.speed)
        return self._now

    async def adverts(self) -> AsyncIterator[Advertisement]:
        self._wall0 = time.monotonic()
        n = 0
        for record in self._records:
            if not isinstance(record, AdvRecord):
                continue
            if record.gateway_id != self.gateway_id:
                self.skipped_other_gateways += 1
                continue
            if self.speed is not None:
                delay = self._wall0 + record.t / self.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                n += 1
                if n % 512 == 0:
                    await asyncio.sleep(0)  # let the publisher run during a max-speed replay
            self._now = self.start + record.t
            yield advert_from_record(record, self.start)


class BleakSource(ScannerSource):
    """A real radio through bleak's BleakScanner (BlueZ on a Linux gateway)."""

    name = "bleak"

    def __init__(self, adapter: str | None = None, queue_size: int = 10_000) -> None:
        self.adapter = adapter
        self._queue: asyncio.Queue[Advertisement] = asyncio.Queue(maxsize=queue_size)
        self.dropped = 0

    def now(self) -> float:
        return time.time()

    async def adverts(self) -> AsyncIterator[Advertisement]:
        from bleak import BleakScanner
        from bleak.backends.device import BLEDevice
        from bleak.backends.scanner import AdvertisementData

        def on_advert(device: BLEDevice, data: AdvertisementData) -> None:
            advert = Advertisement(
                address=device.address,
                rssi=data.rssi,
                at=time.time(),
                manufacturer_data=dict(data.manufacturer_data),
                service_data={k.lower(): v for k, v in data.service_data.items()},
                service_uuids=tuple(data.service_uuids),
                tx_power=data.tx_power,
                local_name=data.local_name,
            )
            try:
                self._queue.put_nowait(advert)
            except asyncio.QueueFull:
                self.dropped += 1

        kwargs: dict[str, object] = {"detection_callback": on_advert}
        if self.adapter:
            kwargs["bluez"] = {"adapter": self.adapter}
        try:
            scanner = BleakScanner(**kwargs)  # type: ignore[arg-type]
            await scanner.start()
        except Exception as exc:
            raise SourceError(f"cannot start BLE scanning: {exc}") from exc
        try:
            while True:
                yield await self._queue.get()
        finally:
            await scanner.stop()
