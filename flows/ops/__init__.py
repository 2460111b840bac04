"""The operators' commands and alert buttons: who may do what, and doing it through the flows.

``OpsDesk`` (``desk``) checks the member and the arguments and hands each command to its module:
``reading`` (/today, /booking, /find, /locks, /audit, /help), ``bookings`` (/cancel, /revoke,
/extend; ``money`` reads a typed refund), ``codes`` (/open, /staffcode), ``identity`` (/approve,
/reject), ``talk`` (/takeover, /release, /reply, topic messages) and ``alerts`` (the Resolve and
Retry buttons); ``scope`` finds the locations an alert is about. ``answers`` declares the
commands, the roles' permissions and what a command answers. Every command runs in the unit of
work its runner (the ops bot) hands it and returns its answer with the Outcome to commit.
"""

from __future__ import annotations

from flows.ops.answers import (
    BUTTON_PERMISSIONS,
    COMMANDS,
    MAX_STAFF_CODE_HOURS,
    ROLE_PERMISSIONS,
    CommandSpec,
    Context,
    OpsAnswer,
    Permission,
    ReasonAsked,
)
from flows.ops.desk import OpsDesk
from flows.ops.scope import alert_locations

__all__ = [
    "BUTTON_PERMISSIONS",
    "COMMANDS",
    "MAX_STAFF_CODE_HOURS",
    "ROLE_PERMISSIONS",
    "CommandSpec",
    "Context",
    "OpsAnswer",
    "OpsDesk",
    "Permission",
    "ReasonAsked",
    "alert_locations",
]
