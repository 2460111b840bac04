"""What a file a renter sent is, read from its own first bytes.

The type a browser, a phone or a provider declares comes from the sender (a file's name, a
client's say-so) and is trusted for nothing: a PDF or a page of script declared image/jpeg
would otherwise be sealed as an ID or a condition photo and shown to operators as an image.
Every way a photo arrives (an upload link, MMS, a chat photo, the sandbox) stores the type
decided here. Five signatures need no library: the standard one (``imghdr``) is gone,
Pillow knows no PDF and no HEIC without a plugin, and neither is a dependency.
"""

from __future__ import annotations

from collections.abc import Collection

JPEG = "image/jpeg"
PNG = "image/png"
HEIC = "image/heic"
WEBP = "image/webp"
PDF = "application/pdf"

#: What an ID may be sent as: a photo a phone takes, or a scan as PDF (MMS carries both).
ID_DOCUMENT_TYPES = frozenset({JPEG, PNG, HEIC, PDF})
#: The ISO base-media ``ftyp`` brands of a HEIF image as phones write it.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"mif1", b"msf1"})


def sniffed_type(content: bytes) -> str | None:
    """The type the content's magic bytes show: JPEG, PNG, HEIC, WebP or PDF; None for
    anything else (a GIF, a page of HTML, a script, nothing)."""
    if content.startswith(b"\xff\xd8\xff"):
        return JPEG
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if content[4:8] == b"ftyp" and content[8:12] in _HEIF_BRANDS:
        return HEIC
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return WEBP
    if content.startswith(b"%PDF-"):
        return PDF
    return None


def stored_type(content: bytes, declared: str, accepted: Collection[str]) -> str | None:
    """The type to store a sent file as, or None to refuse it: the type its bytes show, when
    that is one of ``accepted`` and of the declared kind. A photo whose image type was declared
    wrongly (a JPEG a browser named image/png by its file's name) is stored as what it is; a
    PDF declared as an image, or an image as a PDF, is not what the sender said it sent."""
    found = sniffed_type(content)
    if found is None or found not in accepted:
        return None
    if found.partition("/")[0] != declared.lower().partition("/")[0]:
        return None
    return found
