"""Sandbox payments: a local checkout page stands in for Stripe, so the demo needs no account.

Paying on the page produces the same normalized PaymentEvent a Stripe webhook would, and the
journey handles it the same way. Holds, refunds, releases and off-session charges (a claim, a
late fee) succeed and are recorded.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping

from flows.payments import ChargeState, Checkout, CheckoutRequest, OffSessionCharge
from storage.money import Money

PROVIDER = "sandbox"


def _stable(prefix: str, key: str) -> str:
    return f"{prefix}_{hashlib.sha256(key.encode()).hexdigest()[:24]}"


class SandboxPayments:
    name = PROVIDER

    def __init__(self, public_url: str) -> None:
        self.public_url = public_url.rstrip("/")

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        session = _stable("sbx_cs", request.idempotency_key)
        return Checkout(session, f"{self.public_url}/sandbox/pay/{session}", request.expires_at)

    async def expire_checkout(self, session_id: str) -> bool:
        return True  # the sandbox page takes no payment once Keyturn marks the checkout expired

    async def capture_hold(self, payment_intent: str, amount: Money | None, key: str) -> None:
        return None

    async def release_hold(self, payment_intent: str, key: str) -> None:
        return None

    async def refund(self, payment_intent: str, amount: Money | None, key: str) -> str:
        return _stable("sbx_re", key)

    async def saved_card(self, payment_intent: str) -> tuple[str, str] | None:
        return "sbx_cus_sandbox", "sbx_pm_card"

    async def place_hold(self, customer: str, payment_method: str, amount: Money, key: str) -> str:
        return _stable("sbx_pi_hold", key)

    async def charge_saved_card(
        self,
        customer: str,
        payment_method: str,
        amount: Money,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> OffSessionCharge:
        return OffSessionCharge(_stable("sbx_pi", key), paid=True)

    async def charge_state(self, payment_intent: str) -> ChargeState:
        return ChargeState.PAID  # the sandbox's charges are paid when they are made


def new_event_id() -> str:
    return f"sbx_evt_{uuid.uuid4().hex}"
