"""An item's pickup and return rules and its tracker, and a location's home geofence, in the
inventory file: read with line-numbered refusals, stored on apply, and unchanged by a second."""

from __future__ import annotations

import pytest

from flows.inventory import InventoryError, apply_inventory, describe_inventory, parse_inventory
from storage.models import Asset, Location
from storage.uow import unit_of_work
from tests.conftest import FakeClock

FILE = """\
[[locations]]
slug = "harbor"
name = "Harbor Yard"
timezone = "America/New_York"
home_geofence_id = 7

[[assets]]
code = "T1"
label = "Utility trailer"
location = "harbor"
currency = "USD"
price_per_hour = "12.50"
price_per_day = "60.00"
deposit = "100.00"
traccar_device_id = 42
pickup_checklist = ["Lights work?", "Tyres look inflated?"]
return_checklist = ["Swept clean?"]
pickup_photos = ["the hitch", "the left side"]
return_photos = ["the hitch"]
pin_after_checklist = true
late_fee_per_hour = "15.00"
late_grace_minutes = 20
early_return_ends_codes = true

[[assets]]
code = "B1"
label = "City bike"
location = "harbor"
currency = "USD"
price_per_hour = "4.00"
price_per_day = "20.00"
"""


def test_every_handover_key_is_read() -> None:
    inventory = parse_inventory(FILE)

    t1, b1 = inventory.assets
    assert inventory.locations[0].home_geofence_id == 7
    assert t1.traccar_device_id == 42
    assert t1.handover.pickup_checklist == ("Lights work?", "Tyres look inflated?")
    assert t1.handover.return_checklist == ("Swept clean?",)
    assert t1.handover.pickup_photos == ("the hitch", "the left side")
    assert t1.handover.return_photos == ("the hitch",)
    assert t1.handover.pin_after_checklist
    assert t1.handover.late_fee_per_hour_cents == 1500
    assert t1.handover.late_grace_minutes == 20
    assert t1.handover.early_return_ends_codes
    # An item that names none asks nothing and charges nothing, with a 15-minute grace.
    assert b1.traccar_device_id is None
    assert b1.handover.pickup_checklist == () and b1.handover.return_photos == ()
    assert not b1.handover.pin_after_checklist
    assert (b1.handover.late_fee_per_hour_cents, b1.handover.late_grace_minutes) == (0, 15)


def without(text: str, line: str) -> str:
    assert line in text
    return text.replace(line, "")


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        pytest.param(
            without(
                without(FILE, 'pickup_checklist = ["Lights work?", "Tyres look inflated?"]\n'),
                'pickup_photos = ["the hitch", "the left side"]\n',
            ),
            18,
            "asset 'T1': pin_after_checklist needs a pickup_checklist or pickup_photos",
            id="pin-waits-for-nothing",
        ),
        pytest.param(
            FILE.replace('return_checklist = ["Swept clean?"]', 'return_checklist = "Swept"'),
            17,
            "asset 'T1': return_checklist must be a list of texts in quotes",
            id="checklist-not-a-list",
        ),
        pytest.param(
            FILE.replace('return_photos = ["the hitch"]', 'return_photos = ["the hitch", " "]'),
            19,
            "asset 'T1': return_photos has an empty entry",
            id="empty-prompt",
        ),
        pytest.param(
            FILE.replace(
                'price_per_day = "20.00"\n', 'price_per_day = "20.00"\ntraccar_device_id = 42\n'
            ),
            32,
            "asset 'B1': traccar device 42 is already the tracker of asset 'T1'",
            id="one-tracker-two-items",
        ),
        pytest.param(
            FILE.replace("traccar_device_id = 42", "traccar_device_id = 0"),
            15,
            "asset 'T1': traccar_device_id must be at least 1, got 0",
            id="tracker-zero",
        ),
        pytest.param(
            FILE.replace('late_fee_per_hour = "15.00"', 'late_fee_per_hour = "15.001"'),
            21,
            "asset 'T1': late_fee_per_hour",
            id="fee-beyond-cents",
        ),
        pytest.param(
            FILE.replace("home_geofence_id = 7", 'home_geofence_id = "yard"'),
            5,
            "location 'harbor': home_geofence_id must be a whole number",
            id="geofence-not-a-number",
        ),
        pytest.param(
            FILE.replace("early_return_ends_codes = true", 'early_return_ends_codes = "yes"'),
            23,
            "asset 'T1': early_return_ends_codes must be true or false",
            id="flag-not-a-boolean",
        ),
    ],
)
def test_bad_handover_keys_are_refused_with_line_and_reason(
    text: str, line: int, reason: str
) -> None:
    with pytest.raises(InventoryError) as refused:
        parse_inventory(text)

    shown = str(refused.value).splitlines()
    assert any(
        entry.startswith(f"inventory.toml:{line}: ") and reason in entry for entry in shown
    ), shown


async def test_the_rules_are_stored_and_a_second_apply_changes_nothing(
    database: str, clock: FakeClock
) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, parse_inventory(FILE), now=clock.now())

    t1 = await Asset.get(code="T1")
    assert (await Location.get(slug="harbor")).home_geofence_id == 7
    assert t1.traccar_device_id == 42
    assert t1.pickup_checklist == ["Lights work?", "Tyres look inflated?"]
    assert t1.return_photos == ["the hitch"]
    assert t1.pin_after_checklist and t1.early_return_ends_codes
    assert (t1.late_fee_per_hour_cents, t1.late_grace_minutes) == (1500, 20)

    async with unit_of_work() as conn:
        again = await apply_inventory(conn, parse_inventory(FILE), now=clock.now())
    assert not again.changed

    changed = FILE.replace('return_checklist = ["Swept clean?"]', 'return_checklist = ["Swept?"]')
    async with unit_of_work() as conn:
        third = await apply_inventory(conn, parse_inventory(changed), now=clock.now())
    assert third.changed
    assert any("T1" in line and "return_checklist" in line for line in third.changes), third.changes
    assert (await Asset.get(code="T1")).return_checklist == ["Swept?"]


async def test_show_says_what_each_item_asks_at_pickup_and_return(
    database: str, clock: FakeClock
) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, parse_inventory(FILE), now=clock.now())

    shown = await describe_inventory()

    assert "  home geofence: traccar geofence 7" in shown
    assert (
        "    pickup: photo of the hitch; photo of the left side; Lights work?; Tyres look inflated?"
        in shown
    )
    assert "    return: photo of the hitch; Swept clean?" in shown
    assert "    its own PIN is sent once the pickup checklist is done" in shown
    assert "    late fee: $15.00 per started hour after 20 min' grace" in shown
    assert "    tracker: traccar device 42" in shown
    bike = shown.index(next(line for line in shown if line.startswith("  asset B1")))
    assert shown[bike + 1].startswith("    opens:")
    assert not shown[bike + 2].startswith("    ")  # the bike asks nothing and tracks nothing
