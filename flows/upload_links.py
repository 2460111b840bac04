"""Upload links: how an SMS renter whose route cannot carry a photo sends Keyturn an ID.

Twilio receives MMS only on US and Canadian numbers, and a carrier abroad rarely sends one to
them: a renter there is sent ``<KEYTURN_PUBLIC_URL>/upload/<token>`` instead of being asked for
an MMS. The token names the renter and the booking, encrypted and authenticated with a key
derived from ``KEYTURN_ENCRYPTION_KEY`` (Fernet), so it cannot be forged or altered and stops
working after 30 minutes. It works once: its use is recorded in the database under its digest.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

import phonenumbers
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flows.clock import Clock

#: How long an upload link works after it was sent.
UPLOAD_LINK_LIFETIME = timedelta(minutes=30)
#: Under this name the digests of used links are recorded (with provider event ids).
UPLOAD_LINK_USES = "upload-link"
#: What a link is for: an ID photo for review, or a photo of the item at a pickup or return. A
#: link for one is refused for the other.
ID_PHOTO = "id"
CONDITION_PHOTO = "condition"


@dataclass(frozen=True)
class UploadGrant:
    """What an upload link lets its holder do: send one ID photo for one renter's booking."""

    renter_id: int
    booking_id: int
    #: Recorded when the link is used, so it is refused the second time.
    digest: str
    #: ``ID_PHOTO`` or ``CONDITION_PHOTO`` (links made before purposes existed are ID links).
    purpose: str = ID_PHOTO


class UploadLinks:
    def __init__(self, public_url: str, encryption_key: str, clock: Clock) -> None:
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"keyturn upload links"
        ).derive(base64.urlsafe_b64decode(encryption_key))
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def url_for(self, renter_id: int, booking_id: int, purpose: str = ID_PHOTO) -> str:
        claims = {
            "renter": renter_id,
            "booking": booking_id,
            "purpose": purpose,
            "nonce": secrets.token_hex(8),
        }
        now = int(self.clock.now().timestamp())
        token = self._fernet.encrypt_at_time(json.dumps(claims).encode(), now).decode()
        return f"{self.public_url}/upload/{token}"

    def open(self, token: str) -> UploadGrant | None:
        """What a token grants, or None when it is forged, altered or expired."""
        now = int(self.clock.now().timestamp())
        ttl = int(UPLOAD_LINK_LIFETIME.total_seconds())
        try:
            claims = json.loads(self._fernet.decrypt_at_time(token.encode(), ttl, now))
            renter_id, booking_id = int(claims["renter"]), int(claims["booking"])
            purpose = str(claims.get("purpose", ID_PHOTO))
        except (InvalidToken, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        return UploadGrant(renter_id, booking_id, digest, purpose)


def mms_reaches_us(
    keyturn_number: str | None, renter_number: str, countries: Collection[str]
) -> bool:
    """Whether a photo the renter sends by MMS arrives: both Keyturn's SMS number and the
    renter's number must be in a country where MMS is asked for (``TWILIO_MMS_COUNTRIES``).
    Without a known Keyturn number (a Messaging Service) the renter's number decides."""
    regions = [_region(renter_number)]
    if keyturn_number is not None:
        regions.append(_region(keyturn_number))
    return all(region in countries for region in regions)


@functools.lru_cache(maxsize=4096)
def _region(number: str) -> str | None:
    """The number's country; for a number no plan lists (test ranges such as 555-01xx), the
    main country of its calling code."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    if region is None and parsed.country_code is not None:
        region = phonenumbers.region_code_for_country_code(parsed.country_code)
    return region
