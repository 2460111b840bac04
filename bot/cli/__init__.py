"""The ``keyturn`` command: serve, demo, migrate, inventory, locks, staff codes, deposits, and
``connect`` / ``doctor`` for going live (``bot.golive``).

``keyturn`` parses the command line and runs a command; ``serving`` runs the service and the
demo, ``database`` the database's migrations and inventory, ``operations`` what an operator does
with locks, codes, deposits and GPS trackers.
"""

from bot.cli.keyturn import main
from bot.cli.serving import DEMO_INVENTORY

__all__ = ["DEMO_INVENTORY", "main"]
