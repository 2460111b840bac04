"""The declarative inventory: locations, assets, locks and staff described in one TOML file.

An operator keeps the business in a file under version control and applies it; the database
follows. Parsing is pure, so a bad file is refused with every problem and its line before anything
touches the database. Applying is idempotent, so it can run on every start and after every edit
without noise. Nothing a booking or an access code may still need is ever deleted: assets and staff
are deactivated, locks are retired (or kept while in use), and locations absent from the file stay.
"""

from flows.inventory.applying import InventoryChanges, apply_inventory
from flows.inventory.parsing import load_inventory, parse_inventory
from flows.inventory.showing import describe_inventory
from flows.inventory.spec import (
    AssetSpec,
    Inventory,
    InventoryError,
    InventoryProblem,
    LocationSpec,
    LockSpec,
    StaffSpec,
)

__all__ = [
    "AssetSpec",
    "Inventory",
    "InventoryChanges",
    "InventoryError",
    "InventoryProblem",
    "LocationSpec",
    "LockSpec",
    "StaffSpec",
    "apply_inventory",
    "describe_inventory",
    "load_inventory",
    "parse_inventory",
]
