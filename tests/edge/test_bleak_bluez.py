"""The bleak source through bleak's real BlueZ backend, against a BlueZ stand-in.

bleak's ``BleakScanner`` (its D-Bus BlueZ backend, not a fake of ours) runs inside
``edge.sources.BleakSource`` and talks to python-dbusmock's ``bluez5`` template on a
private ``dbus-daemon`` system bus. The test plays bluetoothd: it parses on-air
advertisements (hand-written bytes) with ``beacons.adstruct`` into the ``org.bluez.Device1``
properties bluetoothd would expose, and the adverts that come out of BleakSource must
decode through ``beacons.frames`` to the literal frames those bytes carry.

Both scanning modes run: passive (an AdvertisementMonitor with or-patterns, which the
template offers by default) and active (StartDiscovery, also the fallback when BlueZ has
no monitor API). Not emulated: a radio, the kernel's scanning, and bluetoothd's own
behaviour: the mock applies no or-patterns (the test checks the patterns bleak exports
against on-air bytes instead), never calls the monitor back, needs no ``--experimental``,
and has no duplicate filtering, device expiry or scan stalls. The ``bluez5`` template's
``AddDevice`` announces ``ManufacturerData``/``ServiceData`` as lists, which bleak
rejects, so devices here are announced dict-typed as bluetoothd does.

Needs ``dbus-daemon`` (deploy/ensure-bluez-mock.sh) and python-dbusmock/dbus-python (the
``dev`` extra). ``make test`` sets PROXIMA_REQUIRE_BLUEZ_MOCK=1 so there a missing piece
fails the run instead of skipping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from beacons.adstruct import AdvertisementFields, iter_ad_structures, parse_advertisement
from beacons.frames import EddystoneEidFrame, IBeaconFrame, decode_fields
from edge.sources import Advertisement, BleakSource

ARTIFACTS = Path(os.environ.get("PROXIMA_TEST_ARTIFACTS", "artifacts")) / "edge"
REQUIRED = os.environ.get("PROXIMA_REQUIRE_BLUEZ_MOCK") == "1"
MISSING = [
    name
    for name, present in (
        ("dbus-daemon (apt-get install dbus)", shutil.which("dbus-daemon") is not None),
        (
            "python-dbusmock (pip install -e '.[dev]')",
            importlib.util.find_spec("dbusmock") is not None,
        ),
        ("dbus-python (pip install -e '.[dev]')", importlib.util.find_spec("dbus") is not None),
    )
    if not present
]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        bool(MISSING) and not REQUIRED,
        reason=f"bleak/BlueZ tests need {', '.join(MISSING)}; run deploy/ensure-bluez-mock.sh",
    ),
]

DEVICE_IFACE = "org.bluez.Device1"
ADAPTER_IFACE = "org.bluez.Adapter1"
EDDYSTONE = "0000feaa-0000-1000-8000-00805f9b34fb"
WAIT = 10.0  # upper bound for one D-Bus round trip to arrive; never reached when all is well

# On-air advertisements, byte by byte. iBeacon: flags; manufacturer data (0xFF), Apple
# (0x004C little-endian), type 0x02 length 0x15, proximity UUID, major 100, minor 7,
# measured power -59 dBm.
RAW_IBEACON = bytes.fromhex("020106 1aff4c00 0215 e2c56db5dffb48d2b060d0f5a71096e0 0064 0007 c5")
IBEACON = IBeaconFrame(
    uuid=bytes.fromhex("e2c56db5dffb48d2b060d0f5a71096e0"), major=100, minor=7, measured_power=-59
)
# Eddystone-EID: flags; complete 16-bit service UUIDs (0xFEAA); service data (0x16) for
# 0xFEAA, frame type 0x30, tx power -18 dBm at 0 m, the 8-byte EID.
RAW_EID = bytes.fromhex("020106 0303aafe 0d16aafe 30 ee 0123456789abcdef")
EID = EddystoneEidFrame(tx_power=-18, eid=bytes.fromhex("0123456789abcdef"))
# Not a beacon: Microsoft (0x0006) Swift Pair manufacturer data. A gateway need not hear it.
RAW_OTHER = bytes.fromhex("020106 0bff0600 0309 0180 01020304")


def _matches(patterns: list[tuple[int, int, bytes]], raw: bytes) -> bool:
    """BlueZ's or-pattern rule: some AD structure of the pattern's type holds the pattern's
    content at its start position."""
    return any(
        st.ad_type == kind and st.data[start : start + len(content)] == content
        for start, kind, content in patterns
        for st in iter_ad_structures(raw)
    )


def _dbus_advert_props(fields: AdvertisementFields) -> dict[str, Any]:
    """The Device1 properties bluetoothd sets from one parsed advertisement, dict-typed."""
    import dbus

    props: dict[str, Any] = {}
    if fields.manufacturer_data:
        props["ManufacturerData"] = dbus.Dictionary(
            {
                dbus.UInt16(cid): dbus.Array(data, signature="y")
                for cid, data in fields.manufacturer_data.items()
            },
            signature="qv",
        )
    if fields.service_data:
        props["ServiceData"] = dbus.Dictionary(
            {
                dbus.String(uuid): dbus.Array(data, signature="y")
                for uuid, data in fields.service_data.items()
            },
            signature="sv",
        )
    if fields.service_uuids:
        props["UUIDs"] = dbus.Array(fields.service_uuids, signature="s")
    if fields.flags is not None:
        props["AdvertisingFlags"] = dbus.Array([fields.flags], signature="y")
    return props


class BlueZStandIn:
    """Drives the bluez5 mock the way bluetoothd would report what it hears."""

    def __init__(self, root: Any, conn: Any) -> None:
        import dbus

        self._dbus = dbus
        self._conn = conn
        self._bluez_mock = dbus.Interface(root, "org.bluez.Mock")
        self._mock = dbus.Interface(root, "org.freedesktop.DBus.Mock")

    def add_adapter(self, name: str) -> None:
        self._bluez_mock.AddAdapter(name, f"proxima-test-{name}")

    def discovering(self, adapter: str) -> bool:
        """Active scanning: a client called StartDiscovery and has not stopped it."""
        obj = self._conn.get_object("org.bluez", f"/org/bluez/{adapter}")
        return bool(
            obj.Get(ADAPTER_IFACE, "Discovering", dbus_interface=self._dbus.PROPERTIES_IFACE)
        )

    def monitors(self, adapter: str) -> int:
        """Passive scanning: advertisement monitors registered and not yet unregistered."""
        calls = self._dbus.Interface(
            self._conn.get_object("org.bluez", f"/org/bluez/{adapter}"),
            "org.freedesktop.DBus.Mock",
        )
        return len(calls.GetMethodCalls("RegisterMonitor")) - len(
            calls.GetMethodCalls("UnregisterMonitor")
        )

    @property
    def unique_name(self) -> str:
        """This stand-in's own (blocking, mainloop-less) connection: never call into it."""
        return str(self._conn.get_unique_name())

    def monitor_paths(self, adapter: str) -> list[str]:
        """Object paths clients passed to RegisterMonitor on this adapter."""
        calls = self._dbus.Interface(
            self._conn.get_object("org.bluez", f"/org/bluez/{adapter}"),
            "org.freedesktop.DBus.Mock",
        )
        return [str(args[0]) for _, args in calls.GetMethodCalls("RegisterMonitor")]

    def scanning(self, adapter: str) -> bool:
        """Scanning either way: active discovery or a passive advertisement monitor."""
        return self.discovering(adapter) or self.monitors(adapter) > 0

    def known_device(self, adapter: str, address: str, fields: AdvertisementFields) -> str:
        """A device bluetoothd already knows (heard earlier): the template's AddDevice.

        Call it before scanning starts: AddDevice announces list-typed advertising data,
        which bleak would reject mid-scan. The data is then set dict-typed.
        """
        path = str(self._bluez_mock.AddDevice(adapter, address, ""))
        self._device_mock(path).UpdateProperties(
            DEVICE_IFACE,
            {
                "ManufacturerData": self._dbus.Dictionary({}, signature="qv"),
                "ServiceData": self._dbus.Dictionary({}, signature="sv"),
                **_dbus_advert_props(fields),
            },
        )
        return path

    def new_device(self, adapter: str, address: str, rssi: int, fields: AdvertisementFields) -> str:
        """bluetoothd hears a device for the first time: InterfacesAdded with its Device1."""
        dbus = self._dbus
        path = f"/org/bluez/{adapter}/dev_{address.replace(':', '_')}"
        props = {
            "Address": dbus.String(address),
            "AddressType": dbus.String("random"),
            "Alias": dbus.String(address.replace(":", "-")),
            "Adapter": dbus.ObjectPath(f"/org/bluez/{adapter}"),
            "Paired": dbus.Boolean(False),
            "Bonded": dbus.Boolean(False),
            "Trusted": dbus.Boolean(False),
            "Blocked": dbus.Boolean(False),
            "Connected": dbus.Boolean(False),
            "LegacyPairing": dbus.Boolean(False),
            "ServicesResolved": dbus.Boolean(False),
            "RSSI": dbus.Int16(rssi),
            "UUIDs": dbus.Array([], signature="s"),
            "ManufacturerData": dbus.Dictionary({}, signature="qv"),
            "ServiceData": dbus.Dictionary({}, signature="sv"),
            **_dbus_advert_props(fields),
        }
        self._mock.AddObject(path, DEVICE_IFACE, props, dbus.Array([], signature="(ssss)"))
        self._mock.EmitSignal(
            "org.freedesktop.DBus.ObjectManager",
            "InterfacesAdded",
            "oa{sa{sv}}",
            [
                dbus.ObjectPath(path),
                dbus.Dictionary(
                    {DEVICE_IFACE: dbus.Dictionary(props, signature="sv")}, signature="sa{sv}"
                ),
            ],
        )
        return path

    def advertise(self, path: str, fields: AdvertisementFields, rssi: int) -> None:
        """bluetoothd hears a new advertisement: PropertiesChanged with RSSI and the data."""
        props = {"RSSI": self._dbus.Int16(rssi), **_dbus_advert_props(fields)}
        self._device_mock(path).UpdateProperties(DEVICE_IFACE, props)

    def rssi(self, path: str, rssi: int) -> None:
        """A repeated advertisement: bluetoothd reports only the new RSSI."""
        self._device_mock(path).UpdateProperties(DEVICE_IFACE, {"RSSI": self._dbus.Int16(rssi)})

    def _device_mock(self, path: str) -> Any:
        return self._dbus.Interface(
            self._conn.get_object("org.bluez", path), "org.freedesktop.DBus.Mock"
        )


@pytest.fixture
def system_bus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A private dbus-daemon of type system; DBUS_SYSTEM_BUS_ADDRESS points at it."""
    if MISSING:
        pytest.fail(f"PROXIMA_REQUIRE_BLUEZ_MOCK=1 but missing: {', '.join(MISSING)}")
    config = tmp_path / "system-bus.conf"
    config.write_text(
        f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={tmp_path / "system_bus_socket"}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
""",
        encoding="utf-8",
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = (ARTIFACTS / f"{request.node.name}.dbus-daemon.log").open("wb")
    daemon = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().strip()
        daemon.stdout.close()
        assert address.startswith("unix:"), f"dbus-daemon printed no address (exit {daemon.poll()})"
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield address
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        log.close()


@pytest.fixture
def bluez_parameters() -> dict[str, Any]:
    """bluez5 template parameters; the default offers the AdvertisementMonitor API."""
    return {}


@pytest.fixture
def bluez(
    system_bus: str, bluez_parameters: dict[str, Any], request: pytest.FixtureRequest
) -> Iterator[BlueZStandIn]:
    """python-dbusmock's bluez5 template as org.bluez, with adapter hci0; log in artifacts/."""
    from dbusmock.testcase import BusType, SpawnedMock

    with (ARTIFACTS / f"{request.node.name}.bluez-mock.log").open("wb") as log:
        mock = SpawnedMock.spawn_with_template(
            "bluez5", bluez_parameters, BusType.SYSTEM, stdout=log, stderr=subprocess.STDOUT
        )
        conn = BusType.SYSTEM.get_connection()
        try:
            standin = BlueZStandIn(mock.obj, conn)
            standin.add_adapter("hci0")
            yield standin
        finally:
            conn.close()
            mock.terminate()


@pytest.fixture
async def bleak_bus_closed(bluez: BlueZStandIn) -> AsyncIterator[None]:
    """Close bleak's per-loop BlueZ manager connection before the loop and bus go away."""
    yield
    from bleak.backends.bluezdbus import manager

    instance = manager._global_instances.pop(asyncio.get_running_loop(), None)
    if instance is not None and instance._bus is not None:
        instance._bus.disconnect()
        await instance._bus.wait_for_disconnect()


class Scan:
    """BleakSource.adverts() started for real: returns once the adapter is scanning.

    Scanning is active discovery or a passive advertisement monitor, whichever the source
    chose; the mock reports adverts the same way for both (it does not apply or-patterns).
    """

    def __init__(self, source: BleakSource, bluez: BlueZStandIn, adapter: str = "hci0") -> None:
        self.source = source
        self._bluez = bluez
        self._adapter = adapter
        self._adverts = source.adverts()
        self._pending: asyncio.Task[Advertisement] | None = None

    async def __aenter__(self) -> Scan:
        # The generator starts scanning on its first step, and that step waits for an advert.
        self._pending = asyncio.create_task(anext(self._adverts), name="bleak-first-advert")
        async with asyncio.timeout(WAIT):
            while not self._bluez.scanning(self._adapter):
                if self._pending.done():
                    self._pending.result()  # raises the SourceError that stopped it
                    raise AssertionError("BleakSource yielded before any advert was sent")
                await asyncio.sleep(0.02)
        return self

    async def next(self) -> Advertisement:
        task, self._pending = self._pending, None
        async with asyncio.timeout(WAIT):
            return await (task if task is not None else anext(self._adverts))

    async def __aexit__(self, *exc: object) -> None:
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pending
        await self._adverts.aclose()


def _frames(advert: Advertisement) -> list[Any]:
    return list(decode_fields(advert.manufacturer_data, advert.service_data))


@pytest.mark.usefixtures("bleak_bus_closed")
async def test_new_device_ibeacon_advert_decodes_to_its_frame(bluez: BlueZStandIn) -> None:
    async with Scan(BleakSource(adapter="hci0"), bluez) as scan:
        bluez.new_device("hci0", "C4:11:22:33:44:01", -61, parse_advertisement(RAW_IBEACON))
        advert = await scan.next()

    assert advert.address == "C4:11:22:33:44:01"
    assert advert.rssi == -61
    assert advert.manufacturer_data == {0x004C: RAW_IBEACON[7:]}
    assert _frames(advert) == [IBEACON]


@pytest.mark.usefixtures("bleak_bus_closed")
async def test_eddystone_eid_advert_decodes_next_to_the_cached_ibeacon(
    bluez: BlueZStandIn,
) -> None:
    async with Scan(BleakSource(adapter="hci0"), bluez) as scan:
        path = bluez.new_device("hci0", "C4:11:22:33:44:02", -70, parse_advertisement(RAW_IBEACON))
        first = await scan.next()
        bluez.advertise(path, parse_advertisement(RAW_EID), rssi=-66)
        second = await scan.next()

    assert _frames(first) == [IBEACON]
    # BlueZ keeps a device's data across adverts: the EID advert comes with the iBeacon.
    assert second.rssi == -66
    assert second.service_data == {EDDYSTONE: RAW_EID[11:]}
    assert EDDYSTONE in second.service_uuids
    assert _frames(second) == [IBEACON, EID]


@pytest.mark.usefixtures("bleak_bus_closed")
async def test_rssi_updates_of_a_known_device_produce_further_adverts(
    bluez: BlueZStandIn,
) -> None:
    both = AdvertisementFields(
        manufacturer_data=parse_advertisement(RAW_IBEACON).manufacturer_data,
        service_data=parse_advertisement(RAW_EID).service_data,
        service_uuids=[EDDYSTONE],
    )
    path = bluez.known_device("hci0", "C4:11:22:33:44:03", both)
    async with Scan(BleakSource(adapter="hci0"), bluez) as scan:
        adverts = []
        for rssi in (-80, -72, -65, -71):
            bluez.rssi(path, rssi)
            adverts.append(await scan.next())

    assert [a.rssi for a in adverts] == [-80, -72, -65, -71]
    assert {a.address for a in adverts} == {"C4:11:22:33:44:03"}
    assert all(_frames(a) == [IBEACON, EID] for a in adverts)
    assert adverts[0].at <= adverts[-1].at


async def _exported_patterns(
    bus_address: str, monitor_path: str, skip: str
) -> list[tuple[int, int, bytes]]:
    """The Patterns property of the monitor bleak exported, read back over D-Bus as
    bluetoothd would (from this process's bleak connection, found through the bus)."""
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=bus_address).connect()
    try:

        async def call(
            destination: str, path: str, iface: str, member: str, sig: str, body: list[Any]
        ) -> Any:
            reply = await bus.call(
                Message(
                    destination=destination,
                    path=path,
                    interface=iface,
                    member=member,
                    signature=sig,
                    body=body,
                )
            )
            assert reply is not None
            assert reply.message_type == MessageType.METHOD_RETURN, reply.body
            return reply.body[0]

        daemon = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
        names = await call(*daemon, "ListNames", "", [])
        for name in names:
            if not name.startswith(":") or name in (bus.unique_name, skip):
                continue
            if await call(*daemon, "GetConnectionUnixProcessID", "s", [name]) != os.getpid():
                continue
            reply = await bus.call(
                Message(
                    destination=name,
                    path=monitor_path,
                    interface="org.freedesktop.DBus.Properties",
                    member="Get",
                    signature="ss",
                    body=["org.bluez.AdvertisementMonitor1", "Patterns"],
                )
            )
            if reply is not None and reply.message_type == MessageType.METHOD_RETURN:
                return [
                    (start, kind, bytes(content)) for start, kind, content in reply.body[0].value
                ]
        raise AssertionError(f"no connection of this process exports {monitor_path}")
    finally:
        bus.disconnect()


@pytest.mark.usefixtures("bleak_bus_closed")
async def test_auto_mode_scans_passively_with_patterns_that_pass_beacons(
    bluez: BlueZStandIn, system_bus: str
) -> None:
    source = BleakSource(adapter="hci0")
    async with Scan(source, bluez):
        assert source.active_mode == "passive"
        assert not bluez.discovering("hci0")
        [monitor] = bluez.monitor_paths("hci0")
        patterns = await _exported_patterns(system_bus, monitor, skip=bluez.unique_name)

    assert _matches(patterns, RAW_IBEACON)
    assert _matches(patterns, RAW_EID)
    assert not _matches(patterns, RAW_OTHER)


@pytest.mark.usefixtures("bleak_bus_closed")
@pytest.mark.parametrize("mode", ["active", "passive"])
async def test_adapter_choice_scans_only_that_adapter(bluez: BlueZStandIn, mode: str) -> None:
    bluez.add_adapter("hci1")
    async with Scan(BleakSource(adapter="hci1", scanning_mode=mode), bluez, adapter="hci1") as scan:
        assert not bluez.scanning("hci0")
        # Sent in this order by one sender, so a leak from hci0 would arrive first.
        bluez.new_device("hci0", "C4:11:22:33:44:04", -50, parse_advertisement(RAW_EID))
        bluez.new_device("hci1", "C4:11:22:33:44:05", -55, parse_advertisement(RAW_IBEACON))
        advert = await scan.next()

    assert advert.address == "C4:11:22:33:44:05"
    assert _frames(advert) == [IBEACON]


@pytest.mark.usefixtures("bleak_bus_closed")
async def test_closing_the_source_stops_scanning(bluez: BlueZStandIn) -> None:
    async with Scan(BleakSource(adapter="hci0"), bluez) as scan:
        bluez.new_device("hci0", "C4:11:22:33:44:06", -60, parse_advertisement(RAW_IBEACON))
        await scan.next()
        assert bluez.scanning("hci0")

    assert not bluez.discovering("hci0")
    assert bluez.monitors("hci0") == 0


@pytest.mark.usefixtures("bleak_bus_closed")
@pytest.mark.parametrize("bluez_parameters", [{"enable_monitor_api": False}])
async def test_without_the_monitor_api_adverts_come_from_active_discovery(
    bluez: BlueZStandIn,
) -> None:
    # BlueZ without --experimental (or older than 5.56) has no AdvertisementMonitorManager1.
    source = BleakSource(adapter="hci0")
    async with Scan(source, bluez) as scan:
        assert source.active_mode == "active"
        assert bluez.discovering("hci0")
        bluez.new_device("hci0", "C4:11:22:33:44:07", -58, parse_advertisement(RAW_EID))
        advert = await scan.next()

    assert _frames(advert) == [EID]


@pytest.mark.usefixtures("bleak_bus_closed")
async def test_unknown_adapter_is_a_source_error(bluez: BlueZStandIn) -> None:
    from edge.exceptions import SourceError

    adverts = BleakSource(adapter="hci7").adverts()
    with pytest.raises(SourceError, match="hci7"):
        await anext(adverts)
