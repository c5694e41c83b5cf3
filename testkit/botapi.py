"""A loopback Telegram Bot API: the bot under test talks HTTP to it exactly as to
api.telegram.org, through `AiohttpSession(api=TelegramAPIServer.from_base(api.base_url))`.

    async with BotApiStub() as api:
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))
        await api.push_update(api.message_update(42, "/start"))      # polling
        status = await api.post_webhook(url, api.callback_update(42, "nps:9", message_id=2))
        await api.wait_sent(42, 2)

It answers like Telegram does, errors included, so the bot meets the failures it will meet
in production: a 400 for what Telegram rejects (empty or too long text, bad HTML, a
callback_data over 64 bytes, a button without an action, a second answer to one callback
query, an edit of a missing or unchanged message), a 409 for getUpdates while a webhook is
set or when a second poller takes over, and any fault a test injects with `fail`, `delay`
or `drop`.
Every request is kept in `calls`, every error response in `errors`.

Chats are private chats with a user whose id is the chat id. Message ids are per chat and
shared by the user's and the bot's messages, as in Telegram. MarkdownV2 text is stored as
sent: only HTML is parsed (and checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import html
import itertools
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, NoReturn, TypeVar

from aiogram.client.session.aiohttp import AiohttpSession
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.web_request import FileField

from testkit.loopback import Loopback

JSON = dict[str, Any]
T = TypeVar("T")

BOT_USERNAME = "otklik_test_bot"
BOT_FIRST_NAME = "Otklik Test"
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64
MAX_CALLBACK_ANSWER = 200
MAX_CAPTION = 1024
MAX_PHOTO_BYTES = 10 * 2**20  # Telegram's limits for a bot's uploads
MAX_DOCUMENT_BYTES = 50 * 2**20
# What Telegram (like any image library) recognises a photo by.
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")

# Form bodies carry every value as a string: these are turned back into what Telegram reads.
_JSON_FIELDS = frozenset({
    "reply_markup", "entities", "caption_entities", "allowed_updates", "commands", "scope",
    "menu_button", "link_preview_options", "reply_parameters", "media", "results", "options",
    "permissions",
})
_INT_FIELDS = frozenset({
    "chat_id", "message_id", "offset", "limit", "timeout", "cache_time", "user_id",
    "from_chat_id", "max_connections", "reply_to_message_id", "message_thread_id",
})
_BOOL_FIELDS = frozenset({
    "show_alert", "disable_notification", "protect_content", "drop_pending_updates",
    "allow_sending_without_reply", "disable_web_page_preview", "allow_paid_broadcast",
})
_TOKEN = re.compile(r"(\d+):[A-Za-z0-9_-]+")
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
# Telegram's HTML: these tags (and <span class="tg-spoiler">); nothing else.
_HTML_TAGS = frozenset({
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
    "tg-spoiler", "tg-emoji", "blockquote",
})
_TAG = re.compile(r"<[^<>]*>")
_BARE_AMPERSAND = re.compile(r"&(?!(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);)")
_BUTTON_ACTIONS = frozenset({
    "callback_data", "url", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "callback_game",
    "pay", "web_app", "copy_text",
})
_DEFAULT_UPDATE_TYPES = frozenset({
    "message", "edited_message", "channel_post", "edited_channel_post", "inline_query",
    "chosen_inline_result", "callback_query", "shipping_query", "pre_checkout_query", "poll",
    "poll_answer", "my_chat_member", "chat_join_request", "business_connection",
    "business_message", "edited_business_message", "deleted_business_messages",
    "purchased_paid_media", "removed_chat_boost", "chat_boost", "message_reaction_count",
})
_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; "
         "make sure that only one bot instance is running",
    500: "Internal Server Error",
    502: "Bad Gateway",
}
_QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
_NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply "
                 "markup are exactly the same as a current content and reply markup of the message")


class LoopbackSession(AiohttpSession):
    """aiogram's AiohttpSession without the 250 ms sleep in close(), which waits for TLS
    connections to wind down: a loopback HTTP server has none, and a test suite closes
    many bots."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


@dataclass(frozen=True, slots=True)
class Call:
    """One request the bot made. `error` is the description of the error it got back
    (injected or a rejection), None when it got a result."""

    method: str
    params: dict[str, Any]
    at: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Upload:
    """A file sent in a multipart body (sendPhoto, sendDocument)."""

    filename: str
    content_type: str
    content: bytes

    def __repr__(self) -> str:  # transcripts show the file, not its bytes
        return f"<file {self.filename} {len(self.content)} bytes>"


@dataclass(frozen=True, slots=True)
class ApiError:
    """An error response: `injected` by `fail`, or a rejection Telegram would also make."""

    method: str
    params: dict[str, Any]
    status: int
    description: str
    at: float
    injected: bool = False


@dataclass(slots=True)
class _Fault:
    method: str
    chat_id: int | None
    times: int | None  # None: every matching call until clear_faults()
    status: int = 500
    description: str = ""
    retry_after: int | None = None
    seconds: float = 0.0

    def matches(self, method: str, params: JSON) -> bool:
        return (self.method in ("*", method.lower())
                and (self.chat_id is None or params.get("chat_id") == self.chat_id))

    def use(self) -> None:
        if self.times is not None:
            self.times -= 1


_DROPPED = 0  # the status _serve gives a dropped call: no answer at all


class _Reject(Exception):
    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> _Reject:
    return _Reject(400, f"Bad Request: {description}")


class BotApiStub(Loopback):
    """See the module docstring. Not thread-safe: use it from the event loop it started on."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.errors: list[ApiError] = []
        self.updates: list[tuple[float, JSON]] = []  # every update pushed or posted, in order
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self._changed = asyncio.Condition()  # notified on every call, update and close
        self._closed = asyncio.Event()
        self._began = time.monotonic()
        self._update_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._queue: list[JSON] = []
        self._allowed_updates: frozenset[str] = _DEFAULT_UPDATE_TYPES
        self._poller = 0  # bumped by each getUpdates: an older long poll then ends with a 409
        self._messages: dict[int, dict[int, JSON]] = {}
        self._sources: dict[tuple[int, int], tuple[str, str | None]] = {}
        self._last_message_id: dict[int, int] = {}
        self._users: dict[int, JSON] = {}
        self._open_queries: set[str] = set()
        self._commands: dict[str, list[JSON]] = {}
        self._faults: list[_Fault] = []
        self._delays: list[_Fault] = []
        self._drops: list[_Fault] = []
        self._last_token: str | None = None
        self._files: dict[str, Upload] = {}  # by file_id: what the bot uploaded
        self._file_ids = itertools.count(1)
        self._methods: dict[str, tuple[str, Callable[[JSON, JSON], Any]]] = {
            name.lower(): (name, handler) for name, handler in {
                "getMe": self._get_me,
                "sendMessage": self._send_message,
                "editMessageText": self._edit_message_text,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "deleteMessage": self._delete_message,
                "answerCallbackQuery": self._answer_callback_query,
                "setMyCommands": self._set_my_commands,
                "deleteMyCommands": self._delete_my_commands,
                "getMyCommands": self._get_my_commands,
                "setChatMenuButton": _true,
                "getChatMenuButton": lambda bot, params: {"type": "commands"},
                "sendPhoto": self._send_photo,
                "sendDocument": self._send_document,
                "sendChatAction": _true,
                "setMyDescription": _true,
                "setMyShortDescription": _true,
                "setMyName": _true,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "getUpdates": _true,  # served by _get_updates, which waits
            }.items()
        }

    # -- lifecycle ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=50 * 2**20)
        app.router.add_route("POST", "/bot{token}/{method}", self._handle)
        app.router.add_route("GET", "/bot{token}/{method}", self._handle)
        return app

    async def start(self) -> str:
        if self._base_url is None:
            self._began = time.monotonic()  # the transcript's times count from here
        return await super().start()

    async def close(self) -> None:
        self._closed.set()  # every long poll and delay lets go
        async with self._changed:
            self._changed.notify_all()
        await super().close()

    # -- what the bot did -----------------------------------------------------------------

    def calls_of(self, method: str) -> list[Call]:
        """Every call of `method` (any case), failed ones included."""
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def sent(self, chat_id: int) -> list[JSON]:
        """The params of each sendMessage to `chat_id` that succeeded, in order."""
        return [call.params for call in self.calls if call.ok and call.method == "sendMessage"
                and call.params.get("chat_id") == chat_id]

    def uploads(self, chat_id: int, method: str) -> list[tuple[JSON, Upload]]:
        """Each successful sendPhoto or sendDocument (`method`) to `chat_id`, in order: its
        params and the file it uploaded."""
        found = []
        for call in self.calls:
            if call.ok and call.method == method and call.params.get("chat_id") == chat_id:
                field = "photo" if method == "sendPhoto" else "document"
                found.append((call.params, self._upload(call.params, field)))
        return found

    def messages(self, chat_id: int) -> list[JSON]:
        """The bot's messages in the chat as they are now: edited, and without deleted ones."""
        chat = self._messages.get(chat_id, {})
        return [copy.deepcopy(chat[message_id]) for message_id in sorted(chat)
                if chat[message_id]["from"]["is_bot"]]

    def message(self, chat_id: int, message_id: int) -> JSON:
        """One stored message (the bot's or the user's) as it is now."""
        try:
            return copy.deepcopy(self._messages[chat_id][message_id])
        except KeyError:
            raise LookupError(f"chat {chat_id} has no message {message_id}\n"
                              f"{self.transcript()}") from None

    # A timeout argument rather than asyncio.timeout around the call: on expiry the test
    # gets an AssertionError with the transcript, not a bare TimeoutError.
    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:  # noqa: ASYNC109
        """Wait until `predicate()` is true, re-checked on each call, update or error the stub
        sees; returns its value. Conditions the stub cannot see (rows in a database) should
        be awaited through the call the bot makes after them."""
        return await self._wait(predicate, timeout, "the condition (re-checked only when the "
                                "stub records a call or an update)")

    async def wait_sent(self, chat_id: int, count: int,
                        timeout: float = 5.0) -> list[JSON]:  # noqa: ASYNC109
        """Wait until at least `count` messages went to `chat_id`; returns them all."""
        await self._wait(lambda: len(self.sent(chat_id)) >= count, timeout,
                         f"{count} message(s) to chat {chat_id}")
        return self.sent(chat_id)

    def transcript(self) -> str:
        """The updates and calls so far, one line each, for assertion messages."""
        events: list[tuple[float, str]] = [(at, "-> " + _describe_update(update))
                                           for at, update in self.updates]
        polls = 0
        for call in self.calls:
            if call.method == "getUpdates" and call.ok:
                polls += 1
                continue
            line = f"<- {call.method} {_describe_params(call.params)}".rstrip()
            events.append((call.at, line + (f"  !! {call.error}" if call.error else "")))
        lines = [f"  +{at - self._began:7.3f}s {text}" for at, text in sorted(events, key=_first)]
        if polls:
            lines.append(f"  ({polls} successful getUpdates not shown)")
        return "transcript:\n" + ("\n".join(lines) if lines else "  (nothing yet)")

    # -- what the user does ---------------------------------------------------------------

    def message_update(self, chat_id: int, text: str, *, first_name: str = "Anna",
                       language_code: str = "en", reply_to_message_id: int | None = None) -> JSON:
        """A text message from the user of a private chat; stored, so the bot can reply to
        it. A leading /command gets its bot_command entity."""
        user = {"id": chat_id, "is_bot": False, "first_name": first_name,
                "language_code": language_code}
        self._users[chat_id] = user
        message: JSON = {"message_id": self._next_message_id(chat_id), "from": user,
                         "chat": self._chat(chat_id), "date": int(time.time()), "text": text}
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0,
                                    "length": _utf16_len(command)}]
        if reply_to_message_id is not None:
            replied = self.message(chat_id, reply_to_message_id)
            replied.pop("reply_to_message", None)
            message["reply_to_message"] = replied
        self._messages.setdefault(chat_id, {})[message["message_id"]] = message
        return {"update_id": next(self._update_ids), "message": copy.deepcopy(message)}

    def callback_update(self, chat_id: int, data: str, message_id: int, *,
                        check_button: bool = True) -> JSON:
        """A tap on a button of the bot's message `message_id`, carrying that message as it
        is now. Unless `check_button` is false, the message must show a button with this
        callback_data: a user cannot tap a keyboard that was edited away."""
        message = self.message(chat_id, message_id)
        if not message["from"]["is_bot"]:
            raise LookupError(f"message {message_id} in chat {chat_id} is the user's")
        if check_button:
            buttons = [button.get("callback_data") for button in iter_buttons(message)]
            if data not in buttons:
                raise AssertionError(f"message {message_id} in chat {chat_id} has no button "
                                     f"{data!r}; its buttons: {buttons}\n{self.transcript()}")
        query_id = str(4_200_000_000_000_000 + next(self._query_ids))
        self._open_queries.add(query_id)
        user = self._users.get(chat_id) or {"id": chat_id, "is_bot": False,
                                            "first_name": "Anna", "language_code": "en"}
        return {"update_id": next(self._update_ids), "callback_query": {
            "id": query_id, "from": copy.deepcopy(user), "message": message,
            "chat_instance": str(abs(hash(("chat_instance", chat_id)))), "data": data}}

    async def push_update(self, update: JSON) -> None:
        """Queue an update for getUpdates (an update_id is added when it has none)."""
        update = copy.deepcopy(update)
        if "update_id" not in update:
            update["update_id"] = next(self._update_ids)
        self._queue.append(update)
        self.updates.append((time.monotonic(), update))
        await self._notify()

    async def post_webhook(self, url: str, update: JSON, secret: str | None = None) -> int:
        """POST the update to the bot's webhook as Telegram does; returns the HTTP status.
        A method in the webhook's reply is executed, as Telegram executes it."""
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        self.updates.append((time.monotonic(), copy.deepcopy(update)))
        await self._notify()
        async with self.client.post(url, json=update, headers=headers) as response:
            if response.status == 200 and response.content_type == "multipart/form-data":
                fields: JSON = {}
                reader = MultipartReader.from_response(response)
                while (part := await reader.next()) is not None:
                    if isinstance(part, BodyPartReader) and part.name is not None:
                        fields[part.name] = await part.text()
                if method := fields.pop("method", None):
                    await self._serve(self._last_token or "0:webhook", method, fields)
            return response.status

    # -- faults ---------------------------------------------------------------------------

    def fail(self, method: str, *, status: int, chat_id: int | None = None,
             description: str | None = None, retry_after: int | None = None,
             times: int | None = 1) -> None:
        """Answer the next `times` calls of `method` ("*": any method; to `chat_id` only when
        given) with this error instead of doing them; times=None: until clear_faults().
        A 429 always carries retry_after (1 by default), as Telegram's do."""
        _check_times(times)
        if status == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            description = (f"Too Many Requests: retry after {retry_after}" if status == 429
                           else _DESCRIPTIONS.get(status, "Error"))
        self._faults.append(_Fault(method.lower(), chat_id, times, status, description,
                                   retry_after))

    def delay(self, method: str, seconds: float, times: int | None = 1, *,
              chat_id: int | None = None) -> None:
        """Hold the response to the next `times` calls of `method` for `seconds`. The call
        takes effect at once (the message is sent): only the answer is late, as when
        Telegram is slow or the network drops the response."""
        _check_times(times)
        self._delays.append(_Fault(method.lower(), chat_id, times, seconds=seconds))

    def drop(self, method: str, times: int | None = 1, *, chat_id: int | None = None) -> None:
        """Close the connection of the next `times` calls of `method` without an answer and
        without doing them: what the bot sees of a request lost on the way or timed out
        (a network error). Recorded in `calls` with the error "dropped"."""
        _check_times(times)
        self._drops.append(_Fault(method.lower(), chat_id, times))

    def clear_faults(self) -> None:
        self._faults.clear()
        self._delays.clear()
        self._drops.clear()

    # -- HTTP -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        if not _TOKEN.fullmatch(token):
            return _error_response(404, "Not Found")
        try:
            raw = await _read_params(request)
        except ValueError as error:
            return _error_response(400, f"Bad Request: {error}")
        def connected() -> bool:
            return request.transport is not None and not request.transport.is_closing()

        status, body, params = await self._serve(token, method, raw, connected)
        if status == _DROPPED:
            if request.transport is not None:
                request.transport.abort()
            return web.Response()  # written to a closed connection: nobody gets it
        if (delay := _take(self._delays, method, params)) is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay.seconds):
                    await self._closed.wait()
        return web.json_response(body, status=status)

    async def _serve(self, token: str, method: str, raw: JSON,
                     connected: Callable[[], bool] = lambda: True) -> tuple[int, JSON, JSON]:
        """Do one call; returns the HTTP status, the response body and the decoded params."""
        at = time.monotonic()
        self._last_token = token
        name, handler = self._methods.get(method.lower(), (method, None))
        params: JSON = {}
        injected = False
        try:
            params = {key: _decode(key, value) for key, value in raw.items()}
            if _take(self._drops, name, params) is not None:
                await self._record(Call(name, params, at, "dropped"))
                return _DROPPED, {}, params
            if (fault := _take(self._faults, name, params)) is not None:
                injected = True
                raise _Reject(fault.status, fault.description,
                              {"retry_after": fault.retry_after} if fault.retry_after else None)
            if handler is None:
                raise _Reject(404, "Not Found: method not found")
            bot = _bot_user(token)
            if name == "getUpdates":
                result = await self._get_updates(params, connected)
                if result is None:  # its client has gone: nobody to answer or to record
                    return 200, {"ok": True, "result": []}, params
            else:
                result = handler(bot, params)
        except _Reject as rejection:
            self.errors.append(ApiError(name, params, rejection.status, rejection.description,
                                        at, injected))
            await self._record(Call(name, params, at, rejection.description))
            body: JSON = {"ok": False, "error_code": rejection.status,
                          "description": rejection.description}
            if rejection.parameters:
                body["parameters"] = rejection.parameters
            return rejection.status, body, params
        await self._record(Call(name, params, at))
        return 200, {"ok": True, "result": result}, params

    async def _record(self, call: Call) -> None:
        self.calls.append(call)
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait(self, predicate: Callable[[], T], seconds: float, what: str) -> T:
        async with self._changed:
            try:
                async with asyncio.timeout(seconds):
                    return await self._changed.wait_for(predicate)
            except TimeoutError:
                raise AssertionError(f"timed out after {seconds}s waiting for {what}\n"
                                     f"{self.transcript()}") from None

    # -- methods --------------------------------------------------------------------------

    def _get_me(self, bot: JSON, params: JSON) -> JSON:
        return {**bot, "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False, "can_connect_to_business": False,
                "has_main_web_app": False}

    def _send_message(self, bot: JSON, params: JSON) -> JSON:
        chat_id = _chat_id(params)
        text = _text(params)
        markup = _markup(params)
        reply_to = self._replied(chat_id, params)
        message: JSON = {"message_id": self._next_message_id(chat_id), "from": bot,
                         "chat": self._chat(chat_id), "date": int(time.time()), "text": text}
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if markup is not None:
            message["reply_markup"] = markup
        self._messages.setdefault(chat_id, {})[message["message_id"]] = message
        self._sources[chat_id, message["message_id"]] = (params["text"], params.get("parse_mode"))
        return copy.deepcopy(message)

    def _send_photo(self, bot: JSON, params: JSON) -> JSON:
        upload = self._upload(params, "photo")
        if len(upload.content) > MAX_PHOTO_BYTES:
            raise _bad("file is too big")
        if not upload.content.startswith(_IMAGE_MAGIC):
            raise _bad("IMAGE_PROCESS_FAILED")
        file_id = self._store(upload)
        return self._send_media(bot, params, {"photo": [{
            "file_id": file_id, "file_unique_id": f"u{file_id}", "width": 1, "height": 1,
            "file_size": len(upload.content)}]})

    def _send_document(self, bot: JSON, params: JSON) -> JSON:
        upload = self._upload(params, "document")
        if len(upload.content) > MAX_DOCUMENT_BYTES:
            raise _Reject(413, "Request Entity Too Large")
        file_id = self._store(upload)
        return self._send_media(bot, params, {"document": {
            "file_id": file_id, "file_unique_id": f"u{file_id}", "file_name": upload.filename,
            "mime_type": upload.content_type, "file_size": len(upload.content)}})

    def _upload(self, params: JSON, field: str) -> Upload:
        """The file a media method sends: uploaded in the body under `field` itself or
        under the name `attach://<name>` gives, or a file_id sent before."""
        value = params.get(field)
        if isinstance(value, str) and value.startswith("attach://"):
            value = params.get(value.removeprefix("attach://"))
        elif isinstance(value, str):
            value = self._files.get(value)
            if value is None:
                raise _bad("wrong file identifier/HTTP URL specified")
        if value is None or value == "":
            raise _bad(f"there is no {field} in the request")
        if not isinstance(value, Upload):
            raise _bad(f"wrong remote file identifier specified: can't unserialize {field}")
        if not value.content:
            raise _bad("file must be non-empty")
        return value

    def _store(self, upload: Upload) -> str:
        file_id = f"file-{next(self._file_ids)}"
        self._files[file_id] = upload
        return file_id

    def _send_media(self, bot: JSON, params: JSON, media: JSON) -> JSON:
        chat_id = _chat_id(params)
        caption = params.get("caption")
        reply_to = self._replied(chat_id, params)
        message: JSON = {"message_id": self._next_message_id(chat_id), "from": bot,
                         "chat": self._chat(chat_id), "date": int(time.time()), **media}
        if caption:
            text = _text({"text": caption, "parse_mode": params.get("parse_mode")})
            if len(text) > MAX_CAPTION:
                raise _bad("message caption is too long")
            message["caption"] = text
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        self._messages.setdefault(chat_id, {})[message["message_id"]] = message
        return copy.deepcopy(message)

    def _edit_message_text(self, bot: JSON, params: JSON) -> JSON:
        chat_id, message = self._editable(params)
        text = _text(params)
        markup = _markup(params)
        source = (params["text"], params.get("parse_mode"))
        key = (chat_id, message["message_id"])
        if (text == message["text"] and self._sources.get(key) == source
                and markup == message.get("reply_markup")):
            raise _Reject(400, _NOT_MODIFIED)
        message["text"] = text
        self._sources[key] = source
        return self._edited(message, markup)

    def _edit_message_reply_markup(self, bot: JSON, params: JSON) -> JSON:
        _, message = self._editable(params)
        markup = _markup(params)
        if markup == message.get("reply_markup"):
            raise _Reject(400, _NOT_MODIFIED)
        return self._edited(message, markup)

    def _delete_message(self, bot: JSON, params: JSON) -> bool:
        chat_id = _chat_id(params)
        if self._messages.get(chat_id, {}).pop(params.get("message_id", 0), None) is None:
            raise _bad("message to delete not found")
        return True

    def _answer_callback_query(self, bot: JSON, params: JSON) -> bool:
        query_id = params.get("callback_query_id")
        if query_id not in self._open_queries:
            raise _Reject(400, _QUERY_INVALID)
        if len(params.get("text", "")) > MAX_CALLBACK_ANSWER:
            raise _bad("MESSAGE_TOO_LONG")
        self._open_queries.discard(query_id)
        return True

    def _set_my_commands(self, bot: JSON, params: JSON) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("parameter \"commands\" is required")
        for command in commands:
            if not _COMMAND.fullmatch(str(command.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad("command description must be 1-256 characters")
        self._commands[_commands_key(params)] = commands
        return True

    def _delete_my_commands(self, bot: JSON, params: JSON) -> bool:
        self._commands.pop(_commands_key(params), None)
        return True

    def _get_my_commands(self, bot: JSON, params: JSON) -> list[JSON]:
        return copy.deepcopy(self._commands.get(_commands_key(params), []))

    def _set_webhook(self, bot: JSON, params: JSON) -> bool:
        url = str(params.get("url", ""))
        secret = params.get("secret_token")
        if url and not url.startswith(("http://", "https://")):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if secret is not None and not _SECRET.fullmatch(str(secret)):
            raise _bad("secret token contains unallowed characters")
        self.webhook_url, self.webhook_secret = url, secret if url else None
        self._allowed(params)
        if params.get("drop_pending_updates"):
            self._queue.clear()
        return True

    def _delete_webhook(self, bot: JSON, params: JSON) -> bool:
        self.webhook_url, self.webhook_secret = "", None
        if params.get("drop_pending_updates"):
            self._queue.clear()
        return True

    def _get_webhook_info(self, bot: JSON, params: JSON) -> JSON:
        info: JSON = {"url": self.webhook_url, "has_custom_certificate": False,
                      "pending_update_count": len(self._queue)}
        if self.webhook_url:
            info |= {"max_connections": 40, "ip_address": "127.0.0.1",
                     "allowed_updates": sorted(self._allowed_updates)}
        return info

    async def _get_updates(self, params: JSON,
                           connected: Callable[[], bool]) -> list[JSON] | None:
        if self.webhook_url:
            raise _Reject(409, "Conflict: can't use getUpdates method while webhook is active; "
                               "use deleteWebhook to delete the webhook first")
        self._allowed(params)
        offset = params.get("offset")
        if isinstance(offset, int) and offset < 0:
            self._queue = self._queue[offset:]
        elif isinstance(offset, int):
            # A later offset confirms every update before it: they are never sent again.
            self._queue = [update for update in self._queue if update["update_id"] >= offset]
        limit = min(max(int(params.get("limit", 100)), 1), 100)
        timeout = max(float(params.get("timeout", 0)), 0.0)
        self._poller += 1
        me = self._poller
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(
                        lambda: bool(self._deliverable()) or self._poller != me
                        or self._closed.is_set())
        if self._poller != me:
            # A poller that stopped (its request cancelled) and started again is not a
            # second bot instance: only a poll still listening gets the conflict.
            if not connected():
                return None
            raise _Reject(409, _DESCRIPTIONS[409])
        return copy.deepcopy(self._deliverable()[:limit])

    def _deliverable(self) -> list[JSON]:
        # Telegram never queues an update of a type the bot did not ask for.
        self._queue = [update for update in self._queue
                       if _update_type(update) in self._allowed_updates]
        return self._queue

    def _allowed(self, params: JSON) -> None:
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) or _DEFAULT_UPDATE_TYPES

    # -- helpers --------------------------------------------------------------------------

    def _next_message_id(self, chat_id: int) -> int:
        self._last_message_id[chat_id] = self._last_message_id.get(chat_id, 0) + 1
        return self._last_message_id[chat_id]

    def _chat(self, chat_id: int) -> JSON:
        first_name = self._users.get(chat_id, {}).get("first_name", "Anna")
        return {"id": chat_id, "type": "private", "first_name": first_name}

    def _editable(self, params: JSON) -> tuple[int, JSON]:
        if "inline_message_id" in params:
            raise _bad("message to edit not found")  # no inline mode here
        chat_id = _chat_id(params)
        message = self._messages.get(chat_id, {}).get(params.get("message_id", 0))
        if message is None:
            raise _bad("message to edit not found")
        if not message["from"]["is_bot"]:
            raise _bad("message can't be edited")
        return chat_id, message

    def _edited(self, message: JSON, markup: JSON | None) -> JSON:
        # An edit without reply_markup removes the inline keyboard, as in Telegram.
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _replied(self, chat_id: int, params: JSON) -> JSON | None:
        reply = params.get("reply_parameters") or {}
        if not isinstance(reply, dict):
            raise _bad("can't parse reply parameters JSON object")
        message_id = reply.get("message_id", params.get("reply_to_message_id"))
        if message_id is None:
            return None
        replied = self._messages.get(chat_id, {}).get(message_id)
        if replied is None:
            if reply.get("allow_sending_without_reply", params.get("allow_sending_without_reply")):
                return None
            raise _bad("message to be replied not found")
        replied = copy.deepcopy(replied)
        replied.pop("reply_to_message", None)
        return replied


# -- module helpers -----------------------------------------------------------------------


def _true(bot: JSON, params: JSON) -> bool:
    return True


def _first(event: tuple[float, str]) -> float:
    return event[0]


def _check_times(times: int | None) -> None:
    if times is not None and times < 1:
        raise ValueError(f"times must be at least 1, or None for every call: {times}")


def _take(faults: list[_Fault], method: str, params: JSON) -> _Fault | None:
    for fault in faults:
        if fault.matches(method, params):
            fault.use()
            if fault.times == 0:
                faults.remove(fault)
            return fault
    return None


def _error_response(status: int, description: str) -> web.Response:
    return web.json_response({"ok": False, "error_code": status, "description": description},
                             status=status)


async def _read_params(request: web.Request) -> JSON:
    params: JSON = dict(request.query)
    if request.method != "POST" or not request.body_exists:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise ValueError("can't parse JSON body") from None
        if not isinstance(body, dict):
            raise ValueError("JSON body must be an object")
        params.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        for key, value in (await request.post()).items():
            if isinstance(value, FileField):
                params[key] = Upload(value.filename, value.content_type, value.file.read())
            else:
                params[key] = value if isinstance(value, str) else bytes(value).decode()
    return params


def _decode(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in _JSON_FIELDS:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise _bad(f"can't parse {key} JSON object") from None
    if key in _INT_FIELDS and re.fullmatch(r"-?\d+", value):
        return int(value)
    if key in _BOOL_FIELDS and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    return value


def _bot_user(token: str) -> JSON:
    match = _TOKEN.fullmatch(token)
    assert match is not None
    return {"id": int(match.group(1)), "is_bot": True, "first_name": BOT_FIRST_NAME,
            "username": BOT_USERNAME}


def _chat_id(params: JSON) -> int:
    chat_id = params.get("chat_id")
    if chat_id is None or chat_id == "":
        raise _bad("chat_id is empty")
    if not isinstance(chat_id, int):
        raise _bad("chat not found")
    return chat_id


def _text(params: JSON) -> str:
    """The text as the user will see it, after Telegram's checks."""
    source = params.get("text")  # aiogram leaves out an empty text altogether
    if not isinstance(source, str) or not source.strip():
        raise _bad("message text is empty")
    parse_mode = params.get("parse_mode")
    if parse_mode is None or parse_mode == "":
        text = source
    elif str(parse_mode).lower() == "html":
        text = _TelegramHtml(source).text()
    elif str(parse_mode).lower() in ("markdown", "markdownv2"):
        text = source  # not parsed: see the module docstring
    else:
        raise _bad("unsupported parse_mode")
    if not text.strip():
        raise _bad("message text is empty")
    if len(text) > MAX_TEXT:
        raise _bad("message is too long")
    return text


def _markup(params: JSON) -> JSON | None:
    """The inline keyboard to keep on the message, if any, after Telegram's checks."""
    markup = params.get("reply_markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return None  # a reply keyboard, or its removal: not part of the message
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad("field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array "
                   "of Arrays")
    for button in itertools.chain.from_iterable(rows):
        if not isinstance(button, dict) or not isinstance(button.get("text"), str):
            raise _bad("can't parse inline keyboard button: Field \"text\" must be of type String")
        actions = _BUTTON_ACTIONS & button.keys()
        if not actions:
            raise _bad("can't parse inline keyboard button: Text buttons are unallowed in the "
                       "inline keyboard")
        data = button.get("callback_data")
        if "callback_data" in actions and not (
                isinstance(data, str) and 1 <= len(data.encode()) <= MAX_CALLBACK_DATA):
            raise _bad("BUTTON_DATA_INVALID")
        url = button.get("url")
        if "url" in actions and not (
                isinstance(url, str) and url.startswith(("http://", "https://", "tg://"))):
            raise _bad(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
    return copy.deepcopy(markup)


def _commands_key(params: JSON) -> str:
    scope = params.get("scope") or {"type": "default"}
    return json.dumps([scope, params.get("language_code", "")], sort_keys=True)


def _update_type(update: JSON) -> str:
    return next((key for key in update if key != "update_id"), "")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _describe_update(update: JSON) -> str:
    kind = _update_type(update)
    body = update.get(kind) or {}
    if kind == "message":
        return (f"update {update.get('update_id')}: message "
                f"chat={body.get('chat', {}).get('id')} {body.get('text')!r}")
    if kind == "callback_query":
        message = body.get("message") or {}
        return (f"update {update.get('update_id')}: tap {body.get('data')!r} on message "
                f"{message.get('message_id')} chat={message.get('chat', {}).get('id')}")
    return f"update {update.get('update_id')}: {kind}"


def _describe_params(params: JSON) -> str:
    parts = [f"{key}={value!r}" for key, value in params.items()
             if key not in ("text", "reply_markup")]
    if "text" in params:
        parts.append(repr(_shorten(str(params["text"]))))
    markup = params.get("reply_markup")
    if isinstance(markup, dict) and isinstance(markup.get("inline_keyboard"), list):
        parts.append(" ".join("[" + "|".join(str(button.get("callback_data", button.get("url")))
                                             for button in row) + "]"
                              for row in markup["inline_keyboard"] if isinstance(row, list)))
    elif markup is not None:
        parts.append(f"reply_markup={markup!r}")
    return " ".join(parts)


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _TelegramHtml(HTMLParser):
    """Telegram's parse_mode=HTML: the allowed tags, properly nested, and every other `<`
    and `&` escaped. `text()` is what the user sees (tags gone, entities decoded)."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)
        self._source = source
        self._line_starts = [0, *(index + 1 for index, char in enumerate(source) if char == "\n")]
        self._plain: list[str] = []
        self._open: list[str] = []

    def text(self) -> str:
        # html.parser quietly drops some bare '&' ("a&b" becomes "ab"): look for them in the
        # text outside tags first, and let the parser find the rest.
        outside_tags = _TAG.sub(lambda tag: " " * len(tag.group()), self._source)
        if bare := _BARE_AMPERSAND.search(outside_tags):
            offset = len(self._source[:bare.start()].encode())
            raise _bad(f"can't parse entities: unescaped '&' (write &amp;) at byte offset {offset}")
        self.feed(self._source)
        self.close()
        if self._open:
            raise _bad(f"can't parse entities: Can't find end tag corresponding to start tag "
                       f"\"{self._open[-1]}\"")
        return "".join(self._plain)

    def _fail(self, what: str, extra: int = 0) -> NoReturn:
        line, column = self.getpos()
        index = self._line_starts[line - 1] + column + extra
        offset = len(self._source[:index].encode())
        raise _bad(f"can't parse entities: {what} at byte offset {offset}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_TAGS and not (tag == "span" and ("class", "tg-spoiler") in attrs):
            self._fail(f"Unsupported start tag \"{tag}\"")
        self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._fail(f"Unsupported start tag \"{tag}/\"")

    def handle_endtag(self, tag: str) -> None:
        if not self._open:
            self._fail(f"Unexpected end tag \"{tag}\"")
        if self._open[-1] != tag:
            self._fail(f"Unmatched end tag, expected \"</{self._open[-1]}>\", found \"</{tag}>\"")
        self._open.pop()

    def handle_data(self, data: str) -> None:
        unescaped = [index for index in (data.find("<"), data.find("&")) if index >= 0]
        if unescaped:
            char = data[min(unescaped)]
            self._fail(f"unescaped {char!r} (write {html.escape(char)})", min(unescaped))
        self._plain.append(data)

    def handle_entityref(self, name: str) -> None:
        self._plain.append(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self._plain.append(html.unescape(f"&#{name};"))

    def handle_comment(self, data: str) -> None:
        self._fail("Unsupported start tag \"!--\"")

    def handle_decl(self, decl: str) -> None:
        self._fail(f"Unsupported start tag \"!{decl.split()[0] if decl else ''}\"")

    def handle_pi(self, data: str) -> None:
        self._fail("Unsupported start tag \"?\"")

    def unknown_decl(self, data: str) -> None:
        self._fail("Unsupported start tag \"![\"")


def iter_buttons(message: JSON) -> Iterator[JSON]:
    """The inline buttons of a stored or sent message, row by row."""
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return itertools.chain.from_iterable(rows)


async def close_bot(bot: Any) -> None:
    """bot.session.close() without the quarter of a second it then waits for TLS
    connections to end: the Bot API stub speaks plain HTTP."""
    assert isinstance(bot.session, AiohttpSession)
    await (await bot.session.create_session()).close()
