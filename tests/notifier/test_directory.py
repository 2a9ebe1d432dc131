from __future__ import annotations

from datetime import timedelta

import pytest

from notifier.directory import Associate, Directory
from notifier.exceptions import AssociateExists, InvalidInput, UnknownAssociate
from tests.kit.clock import FakeUtcClock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


async def test_add_list_remove_round_trip(directory: Directory) -> None:
    maria = await directory.add(
        "store-1", "Maria Silva", "correct horse", role="manager", zones=["entrance", "floor"]
    )
    assert maria.associate_id == "maria-silva"
    await directory.add("store-1", "João", "battery staple", associate_id="joao")
    await directory.add("store-2", "Other", "battery staple")

    listed = await directory.staff("store-1")
    assert [a.associate_id for a in listed] == ["joao", "maria-silva"]
    got = listed[1]
    assert (got.name, got.role, got.zones, got.on_shift) == (
        "Maria Silva",
        "manager",
        ("entrance", "floor"),
        False,
    )
    assert got.password_hash.startswith("$argon2id$")
    assert "correct horse" not in repr(got)
    assert "password_hash" not in got.public()
    assert await directory.stores() == ["store-1", "store-2"]

    await directory.remove("store-1", "joao")
    assert [a.associate_id for a in await directory.staff("store-1")] == ["maria-silva"]
    with pytest.raises(UnknownAssociate):
        await directory.remove("store-1", "joao")


async def test_duplicate_id_is_refused(directory: Directory) -> None:
    await directory.add("store-1", "Ana", "password1")
    with pytest.raises(AssociateExists):
        await directory.add("store-1", "Ana", "password2")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"password": "short"}, "password"),
        ({"role": "boss"}, "role"),
        ({"zones": ["bad zone"]}, "zone"),
        ({"store_id": "no/slash"}, "store"),
        ({"name": "   "}, "name"),
    ],
)
async def test_bad_input_names_the_field(
    directory: Directory, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"store_id": "store-1", "name": "Ana", "password": "long enough"}
    args.update(kwargs)
    with pytest.raises(InvalidInput) as err:
        await directory.add(**args)  # type: ignore[arg-type]
    assert err.value.field == field


async def test_authenticate(directory: Directory) -> None:
    await directory.add("store-1", "Ana", "secret-pass")
    ok = await directory.authenticate("store-1", "ana", "secret-pass")
    assert ok is not None
    assert ok.associate_id == "ana"
    assert await directory.authenticate("store-1", "ana", "wrong-pass") is None
    assert await directory.authenticate("store-2", "ana", "secret-pass") is None
    assert await directory.authenticate("store-1", "nobody", "secret-pass") is None


async def test_shift_toggle_and_stale_shift(directory: Directory, clock: FakeUtcClock) -> None:
    await directory.add("store-1", "Ana", "secret-pass")
    ana = await directory.set_on_shift("store-1", "ana", True)
    assert ana.on_shift
    assert ana.shift_started_at == clock.now
    assert ana.is_on_shift(clock.now + timedelta(hours=11), timedelta(hours=12))
    assert not ana.is_on_shift(clock.now + timedelta(hours=12), timedelta(hours=12))
    off = await directory.set_on_shift("store-1", "ana", False)
    assert not off.is_on_shift(clock.now, timedelta(hours=12))
    with pytest.raises(UnknownAssociate):
        await directory.set_on_shift("store-1", "bruno", True)


def test_associate_validates_itself() -> None:
    with pytest.raises(InvalidInput):
        Associate(store_id="s", associate_id="a", name="A", role="king")  # type: ignore[arg-type]
