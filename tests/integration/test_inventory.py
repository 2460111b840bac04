"""The inventory file: bad files are refused with line and reason, applying it is idempotent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from flows.inventory import (
    InventoryError,
    apply_inventory,
    describe_inventory,
    load_inventory,
    parse_inventory,
)
from storage.models import (
    Asset,
    AssetLock,
    AuditEvent,
    Booking,
    BookingState,
    Location,
    Lock,
    Renter,
    StaffMember,
    StaffRole,
)
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.support import rental_times

DEMO = Path(__file__).resolve().parents[2] / "bot" / "demo" / "inventory.toml"

#: A small file whose line numbers the bad-file cases below refer to.
SMALL = """\
[[locations]]
slug = "harbor"
name = "Harbor Yard"
timezone = "America/New_York"

[[locks]]
key = "harbor-t1"
provider = "simulated"
device_id = "sim-harbor-t1"
label = "Trailer Bay 1"
location = "harbor"

[[assets]]
code = "T1"
label = "Utility trailer"
location = "harbor"
currency = "USD"
price_per_hour = "12.50"
price_per_day = "60.00"
locks = ["harbor-t1"]
"""

SECOND_LOCATION = """
[[locations]]
slug = "altstadt"
name = "Altstadt Depot"
timezone = "Europe/Berlin"

[[locks]]
key = "altstadt-gate"
provider = "simulated"
device_id = "sim-altstadt-gate"
label = "Courtyard gate"
location = "altstadt"
shared = true
"""


def demo() -> str:
    return DEMO.read_text(encoding="utf-8")


def replaced(text: str, old: str, new: str) -> str:
    """``text`` with the first ``old`` replaced; fails loudly if the fixture text drifted."""
    assert old in text, old
    return text.replace(old, new, 1)


def without_block(text: str, header: str) -> str:
    """``text`` without the TOML block that starts with ``header`` (up to the next blank line)."""
    start = text.index(header)
    end = text.index("\n\n", start) + 2
    return text[:start] + text[end:]


async def snapshot() -> dict[str, list[dict[str, object]]]:
    """Every row the inventory may touch, updated_at included."""
    models = (Location, Asset, Lock, AssetLock, StaffMember, AuditEvent)
    return {model.__name__: await model.all().order_by("id").values() for model in models}


async def confirmed_booking(code: str, clock: FakeClock, reference: str = "KTB001") -> Booking:
    renter = await Renter.create(phone=f"+1555010{reference[-4:]}", name="Dana")
    asset = await Asset.get(code=code)
    return await Booking.create(
        reference=reference,
        renter=renter,
        asset=asset,
        **await rental_times(
            asset.id, clock.now() + timedelta(hours=1), clock.now() + timedelta(hours=5)
        ),
        state=BookingState.CONFIRMED,
        currency=asset.currency,
        price_cents=5000,
    )


# --- Parsing, no database ----------------------------------------------------------------------


def test_demo_inventory_parses_with_money_in_cents() -> None:
    inventory = load_inventory(DEMO)

    assert {location.slug: location.timezone for location in inventory.locations} == {
        "harbor": "America/New_York",
        "altstadt": "Europe/Berlin",
    }
    assert len(inventory.assets) >= 4
    t1 = next(asset for asset in inventory.assets if asset.code == "T1")
    assert (t1.price_per_hour_cents, t1.price_per_day_cents, t1.deposit_cents) == (
        1250,
        6000,
        10000,
    )
    assert t1.locks == ("harbor-t1",)
    assert {asset.currency for asset in inventory.assets if asset.location == "altstadt"} == {"EUR"}
    gates = {lock.location for lock in inventory.locks if lock.shared}
    assert gates == {"harbor", "altstadt"}
    assert all(lock.provider == "simulated" for lock in inventory.locks)
    roles = {member.role: member.locations for member in inventory.staff}
    assert roles == {StaffRole.OWNER: (), StaffRole.SUPPORT: ("altstadt",)}


def test_lock_time_zone_defaults_to_its_location() -> None:
    inventory = parse_inventory(SMALL)

    assert inventory.locks[0].timezone == "America/New_York"


def test_amounts_written_as_numbers_are_exact() -> None:
    # 19.99 as a binary float is 19.989999…; money must not lose the cent.
    text = replaced(SMALL, 'price_per_hour = "12.50"', "price_per_hour = 19.99")
    text = replaced(text, 'price_per_day = "60.00"', "price_per_day = 60")

    asset = parse_inventory(text).assets[0]

    assert (asset.price_per_hour_cents, asset.price_per_day_cents) == (1999, 6000)


def test_a_location_may_set_how_far_ahead_it_takes_bookings() -> None:
    text = replaced(
        SMALL,
        'timezone = "America/New_York"\n\n',
        'timezone = "America/New_York"\nbooking_horizon_days = 14\n\n',
    )

    assert parse_inventory(text).locations[0].booking_horizon_days == 14
    assert parse_inventory(SMALL).locations[0].booking_horizon_days is None


def test_asset_code_is_normalised_to_upper_case() -> None:
    text = replaced(SMALL, 'code = "T1"', 'code = "t1"')

    assert parse_inventory(text).assets[0].code == "T1"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        pytest.param(
            replaced(SMALL, 'name = "Harbor Yard"', 'name = "Harbor Yard'),
            3,
            "not valid TOML",
            id="toml-syntax",
        ),
        pytest.param(
            replaced(SMALL, "America/New_York", "America/New_Yrok"),
            4,
            "location 'harbor': unknown time zone 'America/New_Yrok'",
            id="unknown-timezone",
        ),
        pytest.param(
            replaced(SMALL, 'location = "harbor"\ncurrency', 'location = "nowhere"\ncurrency'),
            16,
            "asset 'T1': location 'nowhere' is not defined",
            id="undefined-location",
        ),
        pytest.param(
            SMALL + '\n[[assets]]\ncode = "t1"\nlabel = "Another"\nlocation = "harbor"\n'
            'currency = "USD"\nprice_per_hour = "1"\nprice_per_day = "2"\n',
            23,
            "asset 'T1': defined twice (first at line 14)",
            id="duplicate-asset-code",
        ),
        pytest.param(
            replaced(SMALL, 'locks = ["harbor-t1"]', 'locks = ["harbor-t1"]\ndepositt = "100"'),
            21,
            "asset 'T1': unknown key 'depositt' (did you mean 'deposit'?)",
            id="unknown-key",
        ),
        pytest.param(
            replaced(SMALL, 'provider = "simulated"', 'provider = "simulatd"'),
            8,
            "lock 'harbor-t1': unknown provider 'simulatd'",
            id="unknown-provider",
        ),
        pytest.param(
            replaced(SMALL, 'currency = "USD"', 'currency = "USX"'),
            17,
            "asset 'T1': currency 'USX' is not an ISO 4217 code",
            id="unknown-currency",
        ),
        pytest.param(
            replaced(SMALL, 'price_per_day = "60.00"', 'price_per_day = "-60.00"'),
            19,
            "asset 'T1': price_per_day must not be negative",
            id="negative-price",
        ),
        pytest.param(
            replaced(SMALL, 'price_per_hour = "12.50"', 'price_per_hour = "12.505"'),
            18,
            "asset 'T1': price_per_hour 12.505 has more than 2 decimal places",
            id="fraction-of-a-cent",
        ),
        pytest.param(
            replaced(
                SMALL, 'locks = ["harbor-t1"]', 'locks = ["harbor-t1"]\nmin_duration_minutes = 600'
            )
            + "max_duration_minutes = 60\n",
            21,
            "asset 'T1': min_duration_minutes 600 is more than max_duration_minutes 60",
            id="min-over-max",
        ),
        pytest.param(
            replaced(SMALL + SECOND_LOCATION, 'locks = ["harbor-t1"]', 'locks = ["altstadt-gate"]'),
            20,
            "asset 'T1': lock 'altstadt-gate' is a shared gate",
            id="shared-gate-listed",
        ),
        pytest.param(
            replaced(
                SMALL,
                'timezone = "America/New_York"\n\n',
                'timezone = "America/New_York"\nbooking_horizon_days = 0\n\n',
            ),
            5,
            "location 'harbor': booking_horizon_days must be at least 1, got 0",
            id="no-horizon",
        ),
    ],
)
def test_bad_file_is_refused_with_line_and_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(InventoryError) as refused:
        parse_inventory(text)

    assert refused.value.line == line
    assert refused.value.path == "inventory.toml"
    assert any(
        shown.startswith(f"inventory.toml:{line}: ") and reason in shown
        for shown in str(refused.value).splitlines()
    ), str(refused.value)


def test_lock_at_another_location_than_its_asset_is_refused() -> None:
    text = replaced(SMALL + SECOND_LOCATION, "shared = true", "shared = false")
    text = replaced(text, 'locks = ["harbor-t1"]', 'locks = ["altstadt-gate"]')

    with pytest.raises(InventoryError) as refused:
        parse_inventory(text)

    assert str(refused.value) == (
        "inventory.toml:20: asset 'T1': lock 'altstadt-gate' is at location 'altstadt', "
        "not at 'harbor' like the asset"
    )


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = replaced(SMALL, "America/New_York", "Mars/Olympus")
    text = replaced(text, 'provider = "simulated"', 'provider = "acme"')
    text = replaced(text, 'locks = ["harbor-t1"]', 'locks = ["harbor-t9"]')

    with pytest.raises(InventoryError) as refused:
        parse_inventory(text, "site/inventory.toml")

    shown = str(refused.value).splitlines()
    assert [line.split(": ", 1)[0] for line in shown] == [
        "site/inventory.toml:4",
        "site/inventory.toml:8",
        "site/inventory.toml:20",
    ]
    assert "lock 'harbor-t9' is not defined (did you mean 'harbor-t1'?)" in shown[2]


def test_missing_required_key_names_the_block() -> None:
    text = replaced(SMALL, 'label = "Trailer Bay 1"\n', "")

    with pytest.raises(InventoryError) as refused:
        parse_inventory(text)

    assert str(refused.value) == "inventory.toml:6: lock 'harbor-t1': missing required key 'label'"


# --- Applying ----------------------------------------------------------------------------------


async def test_demo_applies_and_a_second_apply_changes_nothing(
    database: str, clock: FakeClock
) -> None:
    async with unit_of_work() as conn:
        first = await apply_inventory(conn, load_inventory(DEMO), now=clock.now())

    assert first.changed
    assert "created location harbor" in first.changes
    assert "created asset T1" in first.changes
    assert "mapped asset T1 to lock harbor-t1" in first.changes
    inventory = load_inventory(DEMO)
    assert await Location.all().count() == len(inventory.locations)
    assert await Asset.filter(active=True).count() == len(inventory.assets)
    assert await Lock.filter(retired_at=None).count() == len(inventory.locks)
    assert await AssetLock.all().count() == sum(len(asset.locks) for asset in inventory.assets)
    t1 = await Asset.get(code="T1").prefetch_related("location")
    assert (t1.location.slug, t1.currency, t1.price_per_hour_cents) == ("harbor", "USD", 1250)
    assert (await Lock.get(key="harbor-gate")).shared
    support = await StaffMember.get(role=StaffRole.SUPPORT)
    assert support.location_scope == ["altstadt"]
    assert await AuditEvent.filter(actor="inventory").count() == len(first.changes)

    before = await snapshot()
    clock.advance(timedelta(days=1))
    async with unit_of_work() as conn:
        second = await apply_inventory(conn, load_inventory(DEMO), now=clock.now())

    assert not second.changed
    assert second.lines == []
    assert await snapshot() == before


async def test_changed_price_is_reported_and_stored(database: str, clock: FakeClock) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO), now=clock.now())
    t2_before = await Asset.get(code="T2")
    text = replaced(demo(), 'price_per_hour = "12.50"', 'price_per_hour = "13.75"')

    async with unit_of_work() as conn:
        changes = await apply_inventory(conn, parse_inventory(text), now=clock.now())

    assert changes.changes == ["updated asset T1: price_per_hour_cents 1250 -> 1375"]
    assert (await Asset.get(code="T1")).price_per_hour_cents == 1375
    assert (await Asset.get(code="T2")).updated_at == t2_before.updated_at
    event = await AuditEvent.get(action="inventory.asset.updated")
    assert (event.subject, event.at) == ("asset:T1", clock.now())


async def test_removed_asset_is_deactivated_and_comes_back(database: str, clock: FakeClock) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO), now=clock.now())
    text = without_block(demo(), '[[assets]]\ncode = "S1"')

    async with unit_of_work() as conn:
        removed = await apply_inventory(conn, parse_inventory(text), now=clock.now())

    assert removed.changes == ["deactivated asset S1"]
    assert not (await Asset.get(code="S1")).active
    assert (await Asset.get(code="T1")).active

    async with unit_of_work() as conn:
        restored = await apply_inventory(conn, load_inventory(DEMO), now=clock.now())

    assert restored.changes == ["reactivated asset S1"]
    assert (await Asset.get(code="S1")).active


async def test_staff_changes_and_removal(database: str, clock: FakeClock) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO), now=clock.now())
    text = replaced(demo(), 'role = "support"', 'role = "manager"')
    text = without_block(text, "[[staff]]\ntelegram_user_id = 100000001")

    async with unit_of_work() as conn:
        changes = await apply_inventory(conn, parse_inventory(text), now=clock.now())

    assert changes.changes == [
        "updated staff 100000002: role support -> manager",
        "deactivated staff 100000001 (Ana Reyes)",
    ]
    assert (await StaffMember.get(telegram_user_id=100000002)).role == StaffRole.MANAGER
    assert not (await StaffMember.get(telegram_user_id=100000001)).active


async def test_removed_lock_with_an_active_booking_is_kept(database: str, clock: FakeClock) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO), now=clock.now())
    booking = await confirmed_booking("T1", clock)
    text = without_block(demo(), '[[locks]]\nkey = "harbor-t1"')
    text = replaced(text, 'locks = ["harbor-t1"]', "locks = []")

    async with unit_of_work() as conn:
        kept = await apply_inventory(conn, parse_inventory(text), now=clock.now())

    assert kept.kept == ["kept lock harbor-t1: 1 active booking uses it"]
    assert not kept.changed
    lock = await Lock.get(key="harbor-t1")
    assert lock.retired_at is None
    assert await AssetLock.filter(lock=lock).exists()

    booking.state = BookingState.COMPLETED
    await booking.save()
    clock.advance(timedelta(hours=6))
    async with unit_of_work() as conn:
        retired = await apply_inventory(conn, parse_inventory(text), now=clock.now())

    assert retired.changes == ["retired lock harbor-t1", "unmapped asset T1 from lock harbor-t1"]
    assert (await Lock.get(key="harbor-t1")).retired_at == clock.now()


async def test_removed_shared_gate_is_kept_while_a_booking_at_its_location_holds(
    database: str, clock: FakeClock
) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO), now=clock.now())
    await confirmed_booking("T2", clock)
    text = without_block(demo(), '[[locks]]\nkey = "harbor-gate"')

    async with unit_of_work() as conn:
        kept = await apply_inventory(conn, parse_inventory(text), now=clock.now())

    assert kept.kept == ["kept lock harbor-gate: 1 active booking uses it"]
    assert (await Lock.get(key="harbor-gate")).retired_at is None


async def test_removed_unused_lock_is_retired_not_deleted(database: str, clock: FakeClock) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO), now=clock.now())
    locks_before = await Lock.all().count()
    text = without_block(demo(), '[[locks]]\nkey = "altstadt-c1"')
    text = replaced(text, 'locks = ["altstadt-c1"]', "locks = []")

    async with unit_of_work() as conn:
        retired = await apply_inventory(conn, parse_inventory(text), now=clock.now())

    assert retired.changes == [
        "retired lock altstadt-c1",
        "unmapped asset C1 from lock altstadt-c1",
    ]
    assert await Lock.all().count() == locks_before
    assert (await Lock.get(key="altstadt-c1")).retired_at == clock.now()
    assert "  retired lock: Equipment cage (altstadt-c1, simulated, retired 2026-06-01)" in (
        await describe_inventory()
    )

    async with unit_of_work() as conn:
        back = await apply_inventory(conn, load_inventory(DEMO), now=clock.now())

    assert back.changes == ["restored lock altstadt-c1", "mapped asset C1 to lock altstadt-c1"]
    assert (await Lock.get(key="altstadt-c1")).retired_at is None


async def test_refused_file_changes_nothing(database: str, clock: FakeClock) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO), now=clock.now())
    before = await snapshot()
    bad = replaced(demo(), 'price_per_hour = "12.50"', 'price_per_hour = "13.75"')
    bad = replaced(bad, "Europe/Berlin", "Europe/Berln")

    with pytest.raises(InventoryError, match="unknown time zone 'Europe/Berln'"):
        async with unit_of_work() as conn:
            await apply_inventory(conn, parse_inventory(bad), now=clock.now())

    assert await snapshot() == before


async def test_device_of_a_dropped_lock_cannot_move_to_a_new_key(
    database: str, clock: FakeClock
) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO), now=clock.now())
    before = await snapshot()
    renamed = replaced(demo(), 'price_per_hour = "12.50"', 'price_per_hour = "13.75"')
    renamed = renamed.replace('"harbor-t1"', '"harbor-bay-1"')

    with pytest.raises(InventoryError) as refused:
        async with unit_of_work() as conn:
            await apply_inventory(conn, parse_inventory(renamed), now=clock.now())

    assert "use the key 'harbor-t1' again" in str(refused.value)
    assert await snapshot() == before


async def test_show_lists_prices_locks_and_staff(database: str, clock: FakeClock) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO), now=clock.now())

    lines = await describe_inventory()

    assert lines[0] == (
        "location altstadt: Altstadt Depot, Europe/Berlin, buffers 10 min before, 20 min after"
    )
    assert "  shared gate: Main gate (harbor-gate, simulated)" in lines
    assert (
        "  asset T1: Utility trailer 6x10, $12.50/hour, $60.00/day, deposit $100.00, 60-10080 min"
    ) in lines
    assert lines[lines.index(next(line for line in lines if "asset T1" in line)) + 1] == (
        "    opens: Trailer Bay 1 (harbor-t1, simulated)"
    )
    assert any("asset B1" in line and "€39.00/day" in line for line in lines)
    assert "  Ana Reyes (telegram 100000001): owner, every location" in lines
    assert "  Jonas Weber (telegram 100000002): support, altstadt" in lines
