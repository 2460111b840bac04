"""igloohome locks through the igloohome API: algoPINs computed offline, unlock via a bridge."""

from locks.igloohome.adapter import IgloohomeLockProvider, plan_algopin_window

__all__ = ["IgloohomeLockProvider", "plan_algopin_window"]
