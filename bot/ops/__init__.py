"""The operators' side in Telegram: alerts in the ops group, commands, buttons and hand-off.

``AlertSender``, ``ConditionReporter`` and ``StaffRelay`` run without Telegram too (they then do
nothing); what talks to Telegram (``OpsChat``, ``OpsUpdates``) is imported from its module, so
that a worker without Telegram never loads Telegram's library.
"""

from __future__ import annotations

from bot.ops.alerts import AlertSender
from bot.ops.condition_report import ConditionReporter
from bot.ops.relay import StaffRelay

__all__ = ["AlertSender", "ConditionReporter", "StaffRelay"]
