"""Stripe Identity behind the IdentityProvider port: a document check the renter does on
Stripe's page, whose outcome arrives as a webhook (``stripe_events``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.payments.stripe_api import StripeApi, idempotent
from flows.payments import IdentityProvider, IdentitySession, PaymentRefused

if TYPE_CHECKING:
    from stripe.params.identity import VerificationSessionCreateParams


class StripeIdentity(StripeApi):
    """Stripe Identity document checks; the outcome arrives as a webhook."""

    name = "stripe_identity"

    async def start_verification(
        self, renter_reference: str, return_url: str, key: str
    ) -> IdentitySession:
        params: VerificationSessionCreateParams = {
            "type": "document",
            "client_reference_id": renter_reference,
            "metadata": {"renter": renter_reference},
            "return_url": return_url,
        }
        session = await self._call(
            "identity.verification_sessions.create",
            lambda: self._client.v1.identity.verification_sessions.create_async(
                params, idempotent(key)
            ),
        )
        if not session.url:
            raise PaymentRefused("stripe identity.verification_sessions.create: no url")
        return IdentitySession(session_id=session.id, url=session.url)


if TYPE_CHECKING:

    def _is_identity_provider(provider: StripeIdentity) -> IdentityProvider:
        return provider
