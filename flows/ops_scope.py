"""Which locations an operator alert is about: ``flows.ops.scope``, under its older name."""

from __future__ import annotations

from flows.ops.scope import alert_locations

__all__ = ["alert_locations"]
