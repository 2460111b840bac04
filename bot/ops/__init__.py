"""The operators' side in Telegram: alerts in the ops group, commands, buttons and hand-off."""

from __future__ import annotations

from bot.ops.alerts import AlertSender
from bot.ops.chat import OpsChat
from bot.ops.commands import OpsUpdates, parse_command
from bot.ops.relay import StaffRelay

__all__ = ["AlertSender", "OpsChat", "OpsUpdates", "StaffRelay", "parse_command"]
