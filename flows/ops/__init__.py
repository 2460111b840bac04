"""The operators' commands and alert buttons: who may do what, and doing it through the flows.

``OpsDesk`` (``desk``) checks the member and the arguments and hands each command to its module:
``reading`` (/today, /booking, /find, /locks, /audit, /help), ``bookings`` (/cancel, /revoke,
/extend; ``money`` reads a typed refund), ``codes`` (/open, /staffcode), ``identity`` (/approve,
/reject), ``talk`` (/takeover, /release, /reply, topic messages), ``alerts`` (the Resolve and
Retry buttons) and ``claims`` (/claim and a return report's Damage? button); ``condition``
renders a pickup's or return's condition report and ``scope`` finds the locations an alert is
about. ``answers`` declares the commands, the roles' permissions and what a command answers.
Every command runs in the unit of work its runner (the ops bot) hands it and returns its answer
with the Outcome to commit.
"""

from __future__ import annotations

from flows.ops.answers import (
    BUTTON_PERMISSIONS,
    COMMANDS,
    MAX_STAFF_CODE_HOURS,
    ROLE_PERMISSIONS,
    BadArguments,
    CommandSpec,
    Context,
    DepositClaim,
    OpsAnswer,
    Permission,
    PositionAsked,
    ReasonAsked,
    Refused,
)
from flows.ops.condition import (
    DAMAGE_ACTION,
    REPORT_EFFECT,
    REPORT_SETTLED_EFFECT,
    ConditionReport,
    ReportPhoto,
    condition_report,
    report_kind,
)
from flows.ops.desk import OpsDesk
from flows.ops.scope import alert_locations

__all__ = [
    "BUTTON_PERMISSIONS",
    "COMMANDS",
    "DAMAGE_ACTION",
    "MAX_STAFF_CODE_HOURS",
    "REPORT_EFFECT",
    "REPORT_SETTLED_EFFECT",
    "ROLE_PERMISSIONS",
    "BadArguments",
    "CommandSpec",
    "ConditionReport",
    "Context",
    "DepositClaim",
    "OpsAnswer",
    "OpsDesk",
    "Permission",
    "PositionAsked",
    "ReasonAsked",
    "Refused",
    "ReportPhoto",
    "alert_locations",
    "condition_report",
    "report_kind",
]
