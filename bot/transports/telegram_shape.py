"""Whether a Telegram update's fields have the Bot API's types, before anything reads them.

python-telegram-bot builds an ``Update`` from whatever the JSON holds: a ``text`` that is a
list, a chat ``id`` that is null or a ``language_code`` that is a number go through and fail
later, deep in a turn. The fields Keyturn (and the library, building the objects it reads)
relies on are checked here by name, wherever they appear; an update with a field of the wrong
type is not one Telegram sends, and the route answers 400.
"""

from __future__ import annotations

#: Fields that are strings wherever they appear in an update.
_TEXT = frozenset(
    {
        "text",
        "caption",
        "language_code",
        "first_name",
        "last_name",
        "username",
        "title",
        "type",
        "file_id",
        "file_unique_id",
        "mime_type",
        "file_name",
        "chat_instance",
    }
)
#: Fields that are whole numbers (never booleans) wherever they appear.
_WHOLE = frozenset(
    {
        "update_id",
        "message_id",
        "message_thread_id",
        "date",
        "edit_date",
        "file_size",
        "width",
        "height",
        "offset",
        "length",
    }
)
#: Fields that are objects.
_OBJECTS = frozenset(
    {
        "message",
        "edited_message",
        "callback_query",
        "chat",
        "from",
        "user",
        "reply_to_message",
        "document",
        "reply_markup",
    }
)
#: Fields that are arrays.
_ARRAYS = frozenset({"photo", "entities", "caption_entities", "inline_keyboard"})
#: Objects whose ``id`` is a string (a query's), and those whose ``id`` is a whole number (a
#: user's or a chat's); other objects' ``id`` (a poll's, a gift's) is not looked at.
_TEXT_IDS = frozenset({"callback_query", "inline_query", "shipping_query", "pre_checkout_query"})
_WHOLE_IDS = frozenset({"from", "chat", "user", "sender_chat", "via_bot"})


def well_shaped(update: dict[str, object]) -> bool:
    """True when every field of ``update`` that Keyturn knows has its Bot API type."""
    pending: list[tuple[str, object]] = [("", update)]
    while pending:
        parent, value = pending.pop()
        if isinstance(value, list):
            pending.extend((parent, item) for item in value)
            continue
        if not isinstance(value, dict):
            continue
        for name, field in value.items():
            if not _field_ok(parent, str(name), field):
                return False
            pending.append((str(name), field))
    return True


def _field_ok(parent: str, name: str, value: object) -> bool:
    """Null fails too: Telegram leaves an absent field out rather than send null."""
    if name == "id" and parent in _TEXT_IDS:
        return isinstance(value, str)
    if name == "id" and parent in _WHOLE_IDS:
        return _whole(value)
    if name == "data" and parent == "callback_query":  # a button's; a passport's is a list
        return isinstance(value, str)
    if name in _TEXT:
        return isinstance(value, str)
    if name in _WHOLE:
        return _whole(value)
    if name in _OBJECTS:
        return isinstance(value, dict)
    if name in _ARRAYS:
        return isinstance(value, list)
    return True


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
