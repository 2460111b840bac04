"""A fake Telegram Bot API (https://core.telegram.org/bots/api) for driving python-telegram-bot.

Routes are the real ones: ``/bot<token>/<method>`` (GET or POST; parameters in the query string,
an urlencoded or multipart form — PTB 22 posts a form whose non-string values are JSON-encoded,
multipart when a file is uploaded — or a JSON body) and ``/file/bot<token>/<file_path>`` for
downloads. Answers use the Bot API envelope: ``{"ok": true, "result": ...}`` or ``{"ok": false,
"error_code": ..., "description": ...}`` (plus ``parameters.retry_after`` on 429).

It refuses what Telegram refuses:

- a malformed token or an unknown method → 404 ``Not Found``; a well-formed wrong token → 401
  ``Unauthorized``;
- a chat the bot has never seen → 400 ``Bad Request: chat not found``; a user who blocked the bot →
  403 ``Forbidden: bot was blocked by the user``;
- empty or over-4096-character text, malformed ``reply_markup`` (an inline keyboard, or a
  ``ForceReply`` on a new message), entities past the text's end, ``callback_data`` outside 1-64
  bytes (``BUTTON_DATA_INVALID``), an unknown ``message_thread_id``, forum topics in a chat that is
  not a forum, editing a message that does not exist or into the same content, answering a callback
  query twice or one that never existed, an unknown ``file_id``, a webhook that is not HTTPS or a
  secret token with characters Telegram does not allow, an update type Telegram does not know in
  ``allowed_updates``;
- an uploaded ``sendPhoto`` photo that is no image Telegram reads (a PDF: ``IMAGE_PROCESS_FAILED``);
  a ``sendMediaGroup`` whose ``media`` is not a JSON array of 2-10 InputMedia, or names an
  ``attach://<name>`` that is not a part of the upload (``media not found``);
- ``getChat`` / ``getChatMember`` of a chat the bot is not in → 400 ``chat not found``, of a user
  not in the chat → 400 ``user not found``.

What only Telegram knows about the webhook is set by the test: ``webhook_error(message)`` (the
``last_error_date`` / ``last_error_message`` of ``getWebhookInfo``) and ``pending_updates``. In a
group the bot is a plain member until ``make_admin(chat_id, can_manage_topics=...)``.

``fail_next`` / ``rate_limit_next`` / ``hang_next`` make the next calls of a method fail, answer 429
with ``retry_after``, or hang until the server shuts down. Every call is recorded in ``calls``.
The ``*_update`` builders make the Update JSON Telegram would POST to the webhook, for chats they
register with the fake (so sending back to them works).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "7301945562:AAGk3nQz8vR2wXy5tLmP0bC7dE9fH1jK4sU"
BOT_ID = 7301945562
BOT_USERNAME = "keyturn_test_bot"
MAX_TEXT = 4096
#: Items in one album (``sendMediaGroup``), at most.
MAX_ALBUM = 10
ATTACH = "attach://"
#: The first bytes of the images Telegram turns into a photo (JPEG, PNG, GIF, BMP; WebP by its
#: RIFF header's form type).
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM")

Json = dict[str, Any]
Method = Callable[["_Call"], Awaitable[Any]]

_TOKEN_SHAPE = re.compile(r"\d+:[A-Za-z0-9_-]{30,}")
_SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: The Update fields ``allowed_updates`` may name (Bot API, Update).
UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "message_reaction",
        "message_reaction_count",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)
#: A ChatMemberAdministrator's rights the Bot API always sends.
_ADMIN_RIGHTS = (
    "can_be_edited",
    "is_anonymous",
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
)


class BotApiError(Exception):
    def __init__(self, status: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


def bad_request(description: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {description}")


@dataclass
class ApiCall:
    """One request the fake answered (or refused)."""

    method: str
    params: Json
    files: dict[str, bytes] = field(default_factory=dict)
    status: int = 200


@dataclass
class _Call:
    params: Json
    files: dict[str, bytes]
    #: Each uploaded part's (file name, content type), by the part's name.
    uploads: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class _Fault:
    status: int
    description: str
    retry_after: int | None = None
    hang: bool = False
    #: Calls of the method that still succeed before this fault strikes.
    after: int = 0


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    #: What getFile reports; Telegram sometimes leaves it out (None).
    file_size: int | None
    #: A document's name and type as it was uploaded.
    file_name: str = ""
    mime_type: str = ""


class FakeTelegram:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.bot_user: Json = {
            "id": int(token.split(":")[0]),
            "is_bot": True,
            "first_name": "Keyturn",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.calls: list[ApiCall] = []
        self.chats: dict[int, Json] = {}
        self.blocked: set[int] = set()
        #: Messages in chats, by (chat id, message id), as the Bot API returns them.
        self.messages: dict[tuple[int, int], Json] = {}
        #: (chat id, message id) of every message the bot deleted.
        self.deleted: list[tuple[int, int]] = []
        #: (chat, message id) of each message sent with a ForceReply → that ForceReply.
        self.force_replies: dict[tuple[int, int], Json] = {}
        self.files: dict[str, StoredFile] = {}
        self.downloads: list[str] = []
        self.callback_queries: dict[str, bool] = {}  # id → answered
        self.topics: dict[int, dict[int, Json]] = {}
        self.webhook: Json | None = None
        #: ``getWebhookInfo``'s ``pending_update_count``: updates Telegram could not deliver yet.
        self.pending_updates = 0
        self._webhook_error: Json = {}
        #: ChatMember objects of the bot, by chat id (groups only).
        self.bot_members: dict[int, Json] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._release = asyncio.Event()
        self._update_ids = itertools.count(815_240_001)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._file_numbers = itertools.count(1)
        self._query_ids = itertools.count(4_411_937_288_501_110_001)
        self._media_groups = itertools.count(13_579_246_810_001)
        self._methods: dict[str, Method] = {
            "getme": self._get_me,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "getchat": self._get_chat,
            "getchatmember": self._get_chat_member,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "senddocument": self._send_document,
            "sendmediagroup": self._send_media_group,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "answercallbackquery": self._answer_callback_query,
            "getfile": self._get_file,
            "createforumtopic": self._create_forum_topic,
            "deletemessage": self._delete_message,
        }

    # -- the server ---------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        self._release.set()

    def _token_error(self, token: str) -> BotApiError | None:
        if not _TOKEN_SHAPE.fullmatch(token):
            return BotApiError(404, "Not Found")
        if token != self.token:
            return BotApiError(401, "Unauthorized")
        return None

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, files, uploads = await _parameters(request)
        call = ApiCall(method=method, params=params, files=files)
        self.calls.append(call)
        try:
            if err := self._token_error(request.match_info["token"]):
                raise err
            handler = self._methods.get(method.lower())
            if handler is None:
                raise BotApiError(404, "Not Found")
            await self._inject(method)
            result = await handler(_Call(params, files, uploads))
        except BotApiError as err:
            call.status = err.status
            return _error(err)
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.downloads.append(path)
        if self._token_error(request.match_info["token"]) is not None:
            return _error(BotApiError(404, "Not Found"))
        stored = next((f for f in self.files.values() if f.file_path == path), None)
        if stored is None:
            return _error(BotApiError(404, "Not Found"))
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _inject(self, method: str) -> None:
        faults = self._faults.get(method.lower())
        if not faults:
            return
        fault = faults[0]
        if fault.after > 0:
            fault.after -= 1
            return
        faults.pop(0)
        if fault.hang:
            await self._release.wait()
        raise BotApiError(fault.status, fault.description, retry_after=fault.retry_after)

    # -- what tests set up --------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        description: str = "Internal Server Error",
        after: int = 0,
    ) -> None:
        """The next call of ``method`` (after ``after`` more that succeed) fails."""
        fault = _Fault(status, description, after=after)
        self._faults.setdefault(method.lower(), []).append(fault)

    def rate_limit_next(self, method: str, *, retry_after: int) -> None:
        fault = _Fault(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        self._faults.setdefault(method.lower(), []).append(fault)

    def hang_next(self, method: str) -> None:
        """The next call never answers (until the server shuts down)."""
        self._faults.setdefault(method.lower(), []).append(_Fault(502, "Bad Gateway", hang=True))

    def private_chat(
        self,
        user_id: int,
        first_name: str = "Ada",
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> Json:
        """A user who started a private chat with the bot; returns the User object."""
        user: Json = {"id": user_id, "is_bot": False, "first_name": first_name}
        chat: Json = {"id": user_id, "type": "private", "first_name": first_name}
        for key, value in (("last_name", last_name), ("username", username)):
            if value is not None:
                user[key] = chat[key] = value
        if language_code is not None:
            user["language_code"] = language_code
        self.chats[user_id] = chat
        return user

    def group_chat(self, chat_id: int, title: str = "Keyturn ops", *, forum: bool = False) -> Json:
        chat: Json = {"id": chat_id, "type": "supergroup" if forum else "group", "title": title}
        if forum:
            chat["is_forum"] = True
            self.topics.setdefault(chat_id, {})
        self.chats[chat_id] = chat
        self.bot_members[chat_id] = {"status": "member", "user": self.bot_user}
        return chat

    def make_admin(self, chat_id: int, *, can_manage_topics: bool = True) -> None:
        """The bot is an administrator of the group (a ChatMemberAdministrator)."""
        rights = dict.fromkeys(_ADMIN_RIGHTS, False) | {
            "can_manage_chat": True,
            "can_delete_messages": True,
            "can_invite_users": True,
            "can_pin_messages": True,
        }
        self.bot_members[chat_id] = {
            "status": "administrator",
            "user": self.bot_user,
            **rights,
            "can_manage_topics": can_manage_topics,
        }

    def webhook_error(self, message: str, *, at: int | None = None) -> None:
        """The last delivery to the webhook failed with ``message`` (as Telegram words it,
        e.g. "Wrong response from the webhook: 502 Bad Gateway")."""
        self._webhook_error = {
            "last_error_date": at if at is not None else int(time.time()),
            "last_error_message": message,
        }

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: sending to them is forbidden from now on."""
        self.blocked.add(chat_id)

    def add_file(
        self, data: bytes, *, kind: str = "photos", extension: str = "jpg", report_size: bool = True
    ) -> StoredFile:
        number = next(self._file_numbers)
        stored = StoredFile(
            file_id=f"AgACAgIAAxkBAAI{number:05d}Zk9x{number * 7919:08d}AAHr",
            file_unique_id=f"AQAD{number:04d}yA",
            file_path=f"{kind}/file_{number}.{extension}",
            data=data,
            file_size=len(data) if report_size else None,
        )
        self.files[stored.file_id] = stored
        return stored

    # -- what Telegram would POST to the webhook ----------------------------------------------

    def text_update(
        self, user: Json, text: str, *, chat: Json | None = None, reply_to: Json | None = None
    ) -> Json:
        """``reply_to``: a message in the same chat this one answers (Telegram attaches it)."""
        message = self._incoming(user, chat)
        message["text"] = text
        if reply_to is not None:
            assert reply_to["chat"]["id"] == message["chat"]["id"], "a reply stays in its chat"
            message["reply_to_message"] = reply_to
            if "message_thread_id" in reply_to:
                message["message_thread_id"] = reply_to["message_thread_id"]
                message["is_topic_message"] = True
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"offset": 0, "length": len(command), "type": "bot_command"}]
        return {"update_id": next(self._update_ids), "message": message}

    def edited_text_update(self, user: Json, text: str) -> Json:
        message = self._incoming(user, None)
        message["text"] = text
        message["edit_date"] = message["date"] + 30
        return {"update_id": next(self._update_ids), "edited_message": message}

    def photo_update(
        self,
        user: Json,
        image: bytes,
        *,
        caption: str | None = None,
        width: int = 1280,
        height: int = 960,
        report_size: bool = True,
        chat: Json | None = None,
        thread: int | None = None,
    ) -> Json:
        """A photo as Telegram delivers it: several sizes, the largest last; in ``chat`` (the
        user's private chat by default) and forum topic ``thread``."""
        sizes = []
        for scale in (16, 4, 1):
            data = image if scale == 1 else image[: max(len(image) // (scale * scale), 1)]
            stored = self.add_file(data, report_size=report_size or scale != 1)
            size: Json = {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "width": width // scale,
                "height": height // scale,
            }
            if stored.file_size is not None:
                size["file_size"] = stored.file_size
            sizes.append(size)
        message = self._in_thread(self._incoming(user, chat), thread)
        message["photo"] = sizes
        if caption is not None:
            message["caption"] = caption
        return {"update_id": next(self._update_ids), "message": message}

    def document_update(
        self,
        user: Json,
        data: bytes,
        *,
        mime_type: str,
        file_name: str,
        chat: Json | None = None,
        thread: int | None = None,
    ) -> Json:
        stored = self.add_file(data, kind="documents", extension=file_name.rsplit(".", 1)[-1])
        message = self._in_thread(self._incoming(user, chat), thread)
        message["document"] = {
            "file_name": file_name,
            "mime_type": mime_type,
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(data),
        }
        return {"update_id": next(self._update_ids), "message": message}

    def callback_update(
        self, user: Json, *, label: str | None = None, data: str | None = None
    ) -> Json:
        """The user presses a button (by label or data) on the bot's latest message in the chat
        that has it; a button the bot never sent cannot be pressed."""
        chat_id = user["id"]
        for (chat, _), message in sorted(self.messages.items(), reverse=True):
            if chat != chat_id or message["from"]["id"] != self.bot_user["id"]:
                continue
            for row in message.get("reply_markup", {}).get("inline_keyboard", []):
                for button in row:
                    if (label is None or button["text"] == label) and (
                        data is None or button.get("callback_data") == data
                    ):
                        return self._press(user, message, button["callback_data"])
        raise AssertionError(f"no button {label or data!r} in chat {chat_id}")

    def _press(self, user: Json, message: Json, data: str) -> Json:
        query_id = str(next(self._query_ids))
        self.callback_queries[query_id] = False
        query = {
            "id": query_id,
            "from": user,
            "message": message,
            "chat_instance": f"-{abs(hash(message['chat']['id'])) % 10**19}",
            "data": data,
        }
        return {"update_id": next(self._update_ids), "callback_query": query}

    def _in_thread(self, message: Json, thread: int | None) -> Json:
        if thread is not None:
            assert thread in self.topics.get(message["chat"]["id"], {}), "no such forum topic"
            message["message_thread_id"] = thread
            message["is_topic_message"] = True
        return message

    def _incoming(self, user: Json, chat: Json | None) -> Json:
        chat = chat or self.chats[user["id"]]
        return {
            "message_id": self._next_message_id(chat["id"]),
            "from": user,
            "chat": chat,
            "date": int(time.time()),
        }

    # -- what tests look at -------------------------------------------------------------------

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    def sent(self, chat_id: int) -> list[Json]:
        """Messages the bot sent to the chat, oldest first."""
        return [
            m
            for (chat, _), m in sorted(self.messages.items())
            if chat == chat_id and m["from"]["id"] == self.bot_user["id"]
        ]

    # -- the methods --------------------------------------------------------------------------

    async def _get_me(self, call: _Call) -> Json:
        return self.bot_user

    async def _set_webhook(self, call: _Call) -> bool:
        url = _text(call.params, "url")
        if not url.startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = call.params.get("secret_token")
        if secret is not None and not _SECRET_SHAPE.fullmatch(str(secret)):
            raise bad_request("secret token contains unallowed characters")
        allowed = _json_value(call.params, "allowed_updates", default=[])
        if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
            raise bad_request("can't parse allowed updates")
        if unknown := [a for a in allowed if a not in UPDATE_TYPES]:
            raise bad_request(f"unsupported allowed update type: {unknown[0]}")
        if self.webhook is None or self.webhook["url"] != url:
            self._webhook_error = {}  # a new address starts with a clean record
        self.webhook = {"url": url, "secret_token": secret, "allowed_updates": allowed}
        return True

    async def _delete_webhook(self, call: _Call) -> bool:
        self.webhook = None
        return True

    async def _get_webhook_info(self, call: _Call) -> Json:
        info: Json = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": self.pending_updates,
        }
        if self.webhook:
            info["url"] = self.webhook["url"]
            info["max_connections"] = 40
            info["ip_address"] = "203.0.113.7"
            if self.webhook["allowed_updates"]:
                info["allowed_updates"] = self.webhook["allowed_updates"]
            info.update(self._webhook_error)
        return info

    def _group(self, params: Json) -> Json:
        chat = self._chat(params)
        if chat["type"] == "private" or chat["id"] not in self.bot_members:
            return chat
        if self.bot_members[chat["id"]]["status"] in ("left", "kicked"):
            raise bad_request("chat not found")
        return chat

    async def _get_chat(self, call: _Call) -> Json:
        """A ChatFullInfo, with the fields the Bot API always sends."""
        chat = self._group(call.params)
        gifts = dict.fromkeys(
            (
                "unlimited_gifts",
                "limited_gifts",
                "unique_gifts",
                "premium_subscription",
                "gifts_from_channels",
            ),
            False,
        )
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": gifts,
        }

    async def _get_chat_member(self, call: _Call) -> Json:
        chat = self._group(call.params)
        try:
            user_id = int(call.params.get("user_id", ""))
        except (TypeError, ValueError):
            raise bad_request("user not found") from None
        if user_id == self.bot_user["id"] and chat["id"] in self.bot_members:
            return self.bot_members[chat["id"]]
        if chat["type"] == "private" and user_id == chat["id"]:
            return {
                "status": "member",
                "user": {"id": user_id, "is_bot": False, "first_name": chat.get("first_name", "")},
            }
        raise bad_request("user not found")

    async def _send_message(self, call: _Call) -> Json:
        chat = self._chat(call.params)
        text = _text(call.params, "text")
        if not text.strip():
            raise bad_request("message text is empty")
        if len(text) > MAX_TEXT:
            raise bad_request("message is too long")
        content: Json = {"text": text}
        if entities := _entities(call.params, text):
            content["entities"] = entities
        return self._post(chat, call.params, content)

    async def _send_photo(self, call: _Call) -> Json:
        chat = self._chat(call.params)
        # An upload is the multipart part named ``photo``, or one ``attach://<name>`` names.
        media = ATTACH + "photo" if "photo" in call.files else _text(call.params, "photo")
        extra: Json = {"photo": self._photo_sizes(self._input_photo(call, media))}
        if "caption" in call.params:
            extra["caption"] = str(call.params["caption"])
        return self._post(chat, call.params, extra)

    async def _send_document(self, call: _Call) -> Json:
        chat = self._chat(call.params)
        if "document" in call.files:
            name, content_type = call.uploads.get("document", ("document", ""))
            stored = self.add_file(
                call.files["document"], kind="documents", extension=name.rpartition(".")[2]
            )
            stored.file_name, stored.mime_type = name, content_type or "application/octet-stream"
        else:
            stored = self._known_file(_text(call.params, "document"))
        document: Json = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
        }
        if stored.file_name:
            document["file_name"] = stored.file_name
        if stored.mime_type:
            document["mime_type"] = stored.mime_type
        extra: Json = {"document": document}
        if "caption" in call.params:
            extra["caption"] = str(call.params["caption"])
        return self._post(chat, call.params, extra)

    async def _send_media_group(self, call: _Call) -> list[Json]:
        """An album: ``media`` a JSON array of 2-10 InputMediaPhoto, each ``media`` a file id or
        ``attach://<name>`` of a multipart part. Albums carry no ``reply_markup``."""
        chat = self._chat(call.params)
        media = _json_value(call.params, "media")
        if media is None:
            raise bad_request('parameter "media" is required')
        if not isinstance(media, list):
            raise bad_request("Expected an Array of InputMedia")
        if not 2 <= len(media) <= MAX_ALBUM:
            raise bad_request(f"media must include 2-{MAX_ALBUM} items, not {len(media)}")
        contents = []
        for item in media:
            if not isinstance(item, dict) or item.get("type") != "photo":
                kind = item.get("type") if isinstance(item, dict) else item
                raise bad_request(f'Can\'t parse InputMedia: type "{kind}" is unsupported')
            content: Json = {
                "photo": self._photo_sizes(self._input_photo(call, str(item.get("media", ""))))
            }
            if "caption" in item:
                content["caption"] = str(item["caption"])
            contents.append(content)
        params = {k: v for k, v in call.params.items() if k != "reply_markup"}
        group_id = str(next(self._media_groups))
        return [self._post(chat, params, {**c, "media_group_id": group_id}) for c in contents]

    async def _edit_message_text(self, call: _Call) -> Json:
        message = self._own_message(call.params)
        text = _text(call.params, "text")
        if not text.strip():
            raise bad_request("message text is empty")
        markup = _markup(call.params, inline_only=True)
        if text == message.get("text") and markup == message.get("reply_markup"):
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        message["text"] = text
        _set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return message

    async def _delete_message(self, call: _Call) -> bool:
        chat = self._chat(call.params)
        try:
            message_id = int(call.params.get("message_id", ""))
        except (TypeError, ValueError):
            raise bad_request("message identifier is not specified") from None
        if self.messages.pop((chat["id"], message_id), None) is None:
            raise bad_request("message to delete not found")
        self.deleted.append((chat["id"], message_id))
        return True

    async def _edit_message_reply_markup(self, call: _Call) -> Json:
        message = self._own_message(call.params)
        markup = _markup(call.params, inline_only=True)
        if markup == message.get("reply_markup"):
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        _set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return message

    async def _answer_callback_query(self, call: _Call) -> bool:
        query_id = _text(call.params, "callback_query_id")
        if self.callback_queries.get(query_id, True):
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        self.callback_queries[query_id] = True
        return True

    async def _get_file(self, call: _Call) -> Json:
        stored = self.files.get(_text(call.params, "file_id"))
        if stored is None:
            raise bad_request("wrong file_id or the file is temporarily unavailable")
        if len(stored.data) > 20 * 1024 * 1024:
            raise bad_request("file is too big")
        result: Json = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_path": stored.file_path,
        }
        if stored.file_size is not None:
            result["file_size"] = stored.file_size
        return result

    async def _create_forum_topic(self, call: _Call) -> Json:
        chat = self._chat(call.params)
        if not chat.get("is_forum"):
            raise bad_request("the chat is not a forum")
        name = _text(call.params, "name")
        if not 1 <= len(name) <= 128:
            raise bad_request("TOPIC_NAME_INVALID")
        thread_id = self._next_message_id(chat["id"])  # a topic's id is its service message's
        topic: Json = {"message_thread_id": thread_id, "name": name, "icon_color": 7322096}
        self.topics[chat["id"]][thread_id] = topic
        return topic

    # -- shared checks ------------------------------------------------------------------------

    def _input_photo(self, call: _Call, media: str) -> StoredFile:
        """A photo as an InputFile: ``attach://<name>`` of an uploaded part (which must be an
        image Telegram can read), or the file id of one Telegram has."""
        if media.startswith(ATTACH):
            data = call.files.get(media.removeprefix(ATTACH))
            if data is None:
                raise bad_request("Can't parse InputMedia: media not found")
            if not data.startswith(_IMAGE_SIGNATURES) and data[8:12] != b"WEBP":
                raise bad_request("IMAGE_PROCESS_FAILED")
            return self.add_file(data)
        return self._known_file(media)

    def _known_file(self, file_id: str) -> StoredFile:
        if file_id not in self.files:
            raise bad_request("wrong file identifier/HTTP URL specified")
        return self.files[file_id]

    @staticmethod
    def _photo_sizes(stored: StoredFile) -> list[Json]:
        return [
            {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "width": 1280,
                "height": 960,
                "file_size": len(stored.data),
            }
        ]

    def _chat(self, params: Json) -> Json:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise bad_request("chat_id is empty")
        try:
            chat_id = int(raw)
        except (TypeError, ValueError):
            raise bad_request("chat not found") from None
        chat = self.chats.get(chat_id)
        if chat is None:
            raise bad_request("chat not found")
        if chat_id in self.blocked:
            raise BotApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _own_message(self, params: Json) -> Json:
        chat = self._chat(params)
        try:
            message_id = int(params.get("message_id", ""))
        except (TypeError, ValueError):
            raise bad_request("message identifier is not specified") from None
        message = self.messages.get((chat["id"], message_id))
        if message is None:
            raise bad_request("message to edit not found")
        if message["from"]["id"] != self.bot_user["id"]:
            raise bad_request("message can't be edited")
        return message

    def _post(self, chat: Json, params: Json, content: Json) -> Json:
        message: Json = {
            "message_id": self._next_message_id(chat["id"]),
            "from": self.bot_user,
            "chat": chat,
            "date": int(time.time()),
            **content,
        }
        thread = params.get("message_thread_id")
        if thread not in (None, ""):
            thread_id = int(thread)
            if thread_id not in self.topics.get(chat["id"], {}):
                raise bad_request("message thread not found")
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        markup = _markup(params)
        _set_markup(message, markup)
        if markup is not None and "force_reply" in markup:
            self.force_replies[(chat["id"], message["message_id"])] = markup
        self.messages[(chat["id"], message["message_id"])] = message
        return message

    def _next_message_id(self, chat_id: int) -> int:
        counter = self._message_ids.setdefault(chat_id, itertools.count(1))
        return next(counter)


async def _parameters(
    request: web.Request,
) -> tuple[Json, dict[str, bytes], dict[str, tuple[str, str]]]:
    params: Json = dict(request.query)
    files: dict[str, bytes] = {}
    uploads: dict[str, tuple[str, str]] = {}
    if request.method != "POST" or not request.can_read_body:
        return params, files, uploads
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, Mapping):
            params.update(body)
        return params, files, uploads
    form = await request.post()
    for key, value in form.items():
        if isinstance(value, web.FileField):
            files[key] = value.file.read()
            uploads[key] = (value.filename, value.content_type)
        else:
            params[key] = value
    return params, files, uploads


def _text(params: Json, name: str) -> str:
    value = params.get(name)
    if value is None:
        raise bad_request(f"{name} is empty")
    return str(value)


def _json_value(params: Json, name: str, *, default: Any = None) -> Any:
    value = params.get(name, default)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {name} JSON object") from None
    return value


def _markup(params: Json, *, inline_only: bool = False) -> Json | None:
    """An InlineKeyboardMarkup, or a ForceReply where a new message may carry one."""
    markup = _json_value(params, "reply_markup")
    if markup is None:
        return None
    if isinstance(markup, dict) and "force_reply" in markup and not inline_only:
        return _force_reply(markup)
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if inline_only and rows is None:
        raise bad_request("inline keyboard expected")
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request("can't parse reply keyboard markup JSON object")
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not str(button.get("text", "")).strip():
                raise bad_request("can't parse inline keyboard button: Text must be non-empty")
            if "callback_data" in button:
                size = len(str(button["callback_data"]).encode())
                if not 1 <= size <= 64:
                    raise bad_request("BUTTON_DATA_INVALID")
            elif not {"url", "switch_inline_query", "web_app", "login_url"} & button.keys():
                raise bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed in the "
                    "inline keyboard"
                )
    return {"inline_keyboard": rows}


def _force_reply(markup: Json) -> Json:
    if markup.get("force_reply") is not True:
        raise bad_request("can't parse reply keyboard markup JSON object")
    placeholder = markup.get("input_field_placeholder")
    if placeholder is not None and not 1 <= len(str(placeholder)) <= 64:
        raise bad_request("can't parse reply keyboard markup JSON object")
    if not isinstance(markup.get("selective", False), bool):
        raise bad_request("can't parse reply keyboard markup JSON object")
    return dict(markup)


def _entities(params: Json, text: str) -> list[Json]:
    """``entities`` as sent, checked against the text's length in UTF-16 code units."""
    entities = _json_value(params, "entities", default=[])
    length = len(text.encode("utf-16-le")) // 2
    if not isinstance(entities, list):
        raise bad_request("can't parse entities JSON object")
    for entity in entities:
        if not isinstance(entity, dict) or not {"type", "offset", "length"} <= entity.keys():
            raise bad_request("can't parse MessageEntity")
        offset, size = int(entity["offset"]), int(entity["length"])
        if offset < 0 or size <= 0 or offset + size > length:
            raise bad_request("entity beyond the end of the text")
        if entity["type"] == "text_mention" and not isinstance(entity.get("user"), dict):
            raise bad_request("can't parse MessageEntity: user is required for text_mention")
    return entities


def _set_markup(message: Json, markup: Json | None) -> None:
    if markup is None or "force_reply" in markup or not markup["inline_keyboard"]:
        message.pop("reply_markup", None)
    else:
        message["reply_markup"] = markup


def _error(err: BotApiError) -> web.Response:
    body: Json = {"ok": False, "error_code": err.status, "description": err.description}
    if err.retry_after is not None:
        body["parameters"] = {"retry_after": err.retry_after}
    return web.json_response(body, status=err.status)
