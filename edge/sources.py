"""Scanner sources behind one interface: bleak (a real radio), trace replay, the simulator.

A source yields :class:`Advertisement` values shaped like bleak's ``AdvertisementData``
and owns the clock the agent runs on: wall time for a radio, the trace's own time for a
replay (so ``--speed max`` runs a day on a virtual clock and decides exactly as live).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol
from uuid import UUID

from beacons.presence import Transition
from contracts.trace import (
    PIPELINE_KINDS,
    AdvRecord,
    TraceHeader,
    TraceProblems,
    TraceRecord,
    read_trace,
)
from edge.exceptions import SourceError

log = logging.getLogger(__name__)


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


class ClockedAgent(Protocol):
    """What a source whose clock drives its agent needs of it (EdgeAgent has these)."""

    def fire_timers(self, now: float) -> None:
        """Fire presence timers due by ``now`` into the agent's pending transitions."""

    def take_transitions(self) -> list[Transition]:
        """The transitions decided since the last call, in the order they were decided."""

    async def publish_transitions(self, transitions: list[Transition]) -> list[UUID]:
        """Store them in the outbox and return their event ids once the broker has them."""


class ScannerSource(ABC):
    """Where advertisements come from. ``now()`` is the clock the agent decides on.

    ``adverts()`` opens one scanning session; closing the iterator (``aclose``) ends it,
    and calling ``adverts()`` again starts a new one (the watchdog relies on that).
    ``state`` is for the status: ``idle``, ``scanning``, ``restarting``, ``finished``,
    ``failed``. This class is the whole contract between a source and the agent: the
    agent asks it, never which class it is.
    """

    name: str = "source"
    state: str = "idle"
    supervised: bool = False
    """True for a source that restarts its own stalled scans (the watchdog); the agent
    wraps every other endless source in one."""
    restarts: int = 0
    """Scanning sessions restarted after a stall (the watchdog's count)."""
    header: TraceHeader | None = None
    """The trace's header for a source that replays one (its layout places the gateway:
    ``edge.cli.from_trace_layout``); None for a radio."""

    def bind(self, agent: ClockedAgent) -> bool:
        """Called once by the agent that reads this source. True when the source's clock
        drives the agent (fires its timers, publishes its events): a max-speed replay."""
        return False

    def set_stall_timeout(self, seconds: float) -> None:  # noqa: B027 - optional hook
        """Live config: how long without an advertisement is a stalled scan, for a source
        that watches for that (others have nothing to set)."""

    @abstractmethod
    def adverts(self) -> AsyncIterator[Advertisement]:
        """Advertisements in arrival order; a finite source ends, a radio never does."""

    @abstractmethod
    def now(self) -> float:
        """Current time on this source's clock (Unix seconds)."""

    @property
    def finite(self) -> bool:
        return False

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        """Release what the source holds (an open trace file) if it never ran to its end."""


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
        self.header: TraceHeader = header
        self._records = records
        self.gateway_id = gateway_id
        self.speed = speed
        self.start = header.start.timestamp()
        self._now = self.start
        self._wall0: float | None = None
        self.skipped_other_gateways = 0
        self._file: IO[bytes] | None = None
        self.delivered = 0
        self.bad_records = 0
        # Set when this source alone reads its file: it then says at the end what it skipped.
        self.problems: TraceProblems | None = None

    @classmethod
    def from_file(
        cls,
        path: Path,
        gateway_id: str,
        speed: float | None = None,
        problems: TraceProblems | None = None,
    ) -> TraceSource:
        """A gateway's adverts from a trace file; a malformed line is skipped and counted in
        ``problems`` (shared by the readers of one replay; a fresh one if not given)."""
        try:
            fh = path.open("rb")  # bytes: a line that is not UTF-8 costs that line only
        except OSError as exc:
            raise SourceError(f"cannot open trace {path}: {exc.strerror}") from exc
        own = problems is None
        problems = problems or TraceProblems(str(path))
        try:
            header, records = read_trace(fh, problems, kinds=PIPELINE_KINDS)
        except BaseException:
            fh.close()
            raise
        source = cls(header, records, gateway_id, speed)
        source._file = fh
        if own:
            source.problems = problems
        return source

    @property
    def finite(self) -> bool:
        return True

    def now(self) -> float:
        if self.speed is not None and self._wall0 is not None:
            return max(self._now, self.start + (time.monotonic() - self._wall0) * self.speed)
        return self._now

    async def adverts(self) -> AsyncIterator[Advertisement]:
        self._wall0 = time.monotonic()
        self.state = "scanning"
        n_before = self.delivered
        try:
            async for advert in self._replay():
                self.delivered += 1
                yield advert
        finally:
            if self._file is not None:
                self._file.close()
        self.state = "finished"
        if self.problems is not None and (summary := self.problems.summary()):
            log.warning("%s", summary)
        if n_before == self.delivered:
            known = [g.id for g in self.header.layout.gateways] if self.header.layout else []
            log.warning(
                "trace has no adverts for gateway %r (its layout has %s)",
                self.gateway_id,
                ", ".join(known) or "no gateways",
            )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    async def _replay(self) -> AsyncIterator[Advertisement]:
        assert self._wall0 is not None
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
            try:
                advert = advert_from_record(record, self.start)
            except SourceError as exc:
                # One bad line is counted and skipped; the adverts around it still count.
                self.bad_records += 1
                log.warning("%s; skipped", exc)
                continue
            yield advert


class SimulatorSource(TraceSource):
    """A simulated scenario's adverts for this gateway, on the scenario's own clock.

    The caller builds the scenario (``simulators`` is never imported by production code:
    ``simulators.sources`` registers the ``sim`` scheme, edge.source_registry) and hands
    over its header and records.
    """

    name = "sim"


# Patterns for BlueZ passive scanning (AdvertisementMonitor): what a gateway needs to hear.
EDDYSTONE_SERVICE_DATA = (0, 0x16, b"\xaa\xfe")  # 16-bit service data, UUID 0xFEAA (LE)
IBEACON_MANUFACTURER = (0, 0xFF, b"\x4c\x00\x02\x15")  # Apple company id + iBeacon type
ALTBEACON_MANUFACTURER = (2, 0xFF, b"\xbe\xac")  # any company id, then the beacon code
PASSIVE_PATTERNS = (EDDYSTONE_SERVICE_DATA, IBEACON_MANUFACTURER, ALTBEACON_MANUFACTURER)


class BleakSource(ScannerSource):
    """A real radio through bleak's BleakScanner (BlueZ on a Linux gateway).

    ``scanning_mode="passive"`` uses BlueZ advertisement monitors with or-patterns
    (Eddystone service data, iBeacon, AltBeacon): no scan requests go out and BlueZ
    filters in the controller where it can. It needs ``bluetoothd --experimental`` on
    BlueZ ≥ 5.56; ``auto`` tries passive and falls back to active scanning when BlueZ
    refuses. Each ``adverts()`` call is one scanning session; closing it stops the scan.
    """

    name = "bleak"

    def __init__(
        self,
        adapter: str | None = None,
        queue_size: int = 10_000,
        scanning_mode: str = "auto",
    ) -> None:
        if scanning_mode not in ("auto", "passive", "active"):
            raise SourceError(
                f"scanning mode must be auto, passive or active, not {scanning_mode!r}"
            )
        self.adapter = adapter
        self.scanning_mode = scanning_mode
        self.active_mode: str | None = None  # what the last session really used
        self._queue: asyncio.Queue[Advertisement] = asyncio.Queue(maxsize=queue_size)
        self.dropped = 0

    def now(self) -> float:
        return time.time()

    async def _start(self, on_advert: Any, mode: str) -> Any:
        from bleak import BleakScanner
        from bleak.args.bluez import BlueZScannerArgs, OrPattern
        from bleak.assigned_numbers import AdvertisementDataType

        bluez: BlueZScannerArgs = {}
        if self.adapter:
            bluez["adapter"] = self.adapter
        if mode == "passive":
            bluez["or_patterns"] = [
                OrPattern(pos, AdvertisementDataType(kind), content)
                for pos, kind, content in PASSIVE_PATTERNS
            ]
        scanner = BleakScanner(on_advert, scanning_mode=mode, bluez=bluez)  # type: ignore[arg-type]
        await scanner.start()
        return scanner

    async def adverts(self) -> AsyncIterator[Advertisement]:
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

        modes = ["passive", "active"] if self.scanning_mode == "auto" else [self.scanning_mode]
        scanner: Any = None
        errors: list[str] = []
        for mode in modes:
            try:
                scanner = await self._start(on_advert, mode)
            except Exception as exc:  # bleak raises BleakError, D-Bus errors, OSError ...
                errors.append(f"{mode}: {exc}")
                log.warning("BLE %s scanning did not start: %s", mode, exc)
                continue
            self.active_mode = mode
            break
        if scanner is None:
            self.state = "failed"
            raise SourceError(f"cannot start BLE scanning: {'; '.join(errors)}")
        self.state = "scanning"
        try:
            while True:
                yield await self._queue.get()
        finally:
            self.state = "idle"
            try:
                await scanner.stop()
            except Exception as exc:  # a stalled BlueZ may not even stop cleanly
                log.warning("BLE scanner did not stop cleanly: %s", exc)


async def _anext(iterator: AsyncIterator[Advertisement]) -> Advertisement:
    return await anext(iterator)


class WatchdogSource(ScannerSource):
    """Restarts a source's scanning session when nothing arrives for ``timeout_s``.

    BlueZ scans stall silently (the most reported failure of gateway projects): the
    session stays "on" and no advertisement comes. Every ``poll_s`` the watchdog checks
    the time since the last advertisement on ``clock``; past ``timeout_s`` it closes the
    session and opens a new one after ``restart_delay_s``. A session that fails to start
    is retried the same way. ``clock`` and ``sleep`` are injectable for tests.
    """

    supervised = True

    def __init__(
        self,
        inner: ScannerSource,
        timeout_s: float,
        *,
        poll_s: float | None = None,
        restart_delay_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if timeout_s <= 0:
            raise SourceError(f"watchdog timeout must be > 0, got {timeout_s}")
        self.inner = inner
        self.name = inner.name
        self.timeout_s = timeout_s
        self.poll_s = poll_s if poll_s is not None else min(timeout_s / 4, 5.0)
        self.restart_delay_s = restart_delay_s
        self.clock = clock
        self.sleep = sleep
        self.restarts = 0
        self.start_failures = 0

    @property
    def state(self) -> str:  # type: ignore[override]
        return self.inner.state

    @property
    def finite(self) -> bool:
        return self.inner.finite

    def set_stall_timeout(self, seconds: float) -> None:
        self.timeout_s = seconds

    def now(self) -> float:
        return self.inner.now()

    def close(self) -> None:
        self.inner.close()

    async def adverts(self) -> AsyncIterator[Advertisement]:
        while True:
            iterator = aiter(self.inner.adverts())
            last = self.clock()
            pending: asyncio.Task[Advertisement] | None = None
            try:
                while True:
                    if pending is None:
                        pending = asyncio.ensure_future(_anext(iterator))
                    sleeper = asyncio.ensure_future(self.sleep(self.poll_s))
                    try:
                        await asyncio.wait({pending, sleeper}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        sleeper.cancel()
                    if pending.done():
                        task, pending = pending, None
                        try:
                            advert = task.result()
                        except StopAsyncIteration:
                            return
                        last = self.clock()
                        yield advert
                    elif self.clock() - last >= self.timeout_s:
                        self.restarts += 1
                        log.warning(
                            "%s: no advertisement for %.0f s; restarting the scan (restart %d)",
                            self.name,
                            self.clock() - last,
                            self.restarts,
                        )
                        break
            except SourceError as exc:
                self.start_failures += 1
                log.error("%s: %s; retrying in %.1f s", self.name, exc, self.restart_delay_s)
            finally:
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(BaseException):
                        await pending
                await _aclose(iterator)
            await self.sleep(self.restart_delay_s)


async def _aclose(iterator: AsyncIterator[Advertisement]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception as exc:
            log.warning("closing a scan session failed: %s", exc)
