"""Seam: one cloud API for August, Yale, Schlage, Kwikset, igloohome, Nuki, TTLock and more."""

from locks.seam.adapter import SeamLockProvider
from locks.seam.client import (
    SeamAuthError,
    SeamEvent,
    SeamWebhookInvalid,
    SeamWebhookUnreadable,
    verify_seam_webhook,
)

__all__ = [
    "SeamAuthError",
    "SeamEvent",
    "SeamLockProvider",
    "SeamWebhookInvalid",
    "SeamWebhookUnreadable",
    "verify_seam_webhook",
]
