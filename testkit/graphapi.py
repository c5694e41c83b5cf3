"""A loopback WhatsApp Cloud API (Meta's Graph API): the bot under test talks HTTP to it
exactly as to https://graph.facebook.com, with `base_url` in its place.

    async with GraphApiStub() as api:
        # the client POSTs to f"{api.base_url}/v23.0/{api.phone_number_id}/messages"
        # with "Authorization: Bearer {api.token}"
        api.fail(131047, to="4915112345678")          # the next send there: window closed
        status = await api.post_webhook(url, api.text_update("4915112345678", "hi"), SECRET)
        [message] = await api.wait_sent("4915112345678", 1)

It answers like Graph does, errors included: HTTP 400 with Graph's error body for what
WhatsApp rejects (code 100 for a missing or malformed field, 131009 for a value outside
WhatsApp's limits: text over 4096 characters, more than 3 reply buttons, a button title
over 20 characters, more than 10 list rows...), 401 with code 190 for a missing or wrong
access token, and any Graph error a test injects with `fail`. Every request is kept in
`calls`, every error response in `errors`.

The webhook builders make Meta's documented payloads (the samples, with placeholders, are
in tests/contract/payloads/whatsapp/, whose README names the pages), and `post_webhook`
signs them with X-Hub-Signature-256 as Meta does.

Not served: media, other interactive types (cta_url, flow, product), template button
sub-types other than quick_reply, groups. Templates are not looked up: any name and
parameters go through, as if approved.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from testkit.loopback import Faults, Loopback

JSON = dict[str, Any]
T = TypeVar("T")

TOKEN = "otklik-graph-test-token"  # noqa: S105 - the loopback stub's own, not a secret
# The ids of Meta's own webhook samples.
WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE_NUMBER = "15550783881"
VERIFIED_NAME = "Otklik Test"
CONTACT_NAME = "Anna"

MAX_TEXT = 4096
MAX_INTERACTIVE_BODY = 1024
MAX_HEADER_FOOTER = 60
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_ID = 256
MAX_LIST_BUTTON = 20
MAX_SECTIONS = 10
MAX_SECTION_TITLE = 24
MAX_ROWS = 10  # across all sections
MAX_ROW_ID = 200
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72

ERROR_CODES_URL = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
# Graph's title (the `message` after "(#code) ") and `error_data.details` for the codes a
# test is likely to inject, from Meta's error codes page; HTTP status 400 unless listed.
_ERRORS: dict[int, tuple[str, str]] = {
    100: ("Invalid parameter", "Invalid parameter"),
    130429: ("Rate limit hit", "Cloud API message throughput has been reached."),
    131000: ("Something went wrong", "Message failed to send due to an unknown error."),
    131008: ("Required parameter is missing", "A required parameter is missing."),
    131009: ("Parameter value is not valid", "A parameter value is not valid."),
    131026: ("Message undeliverable", "Message Undeliverable."),
    131047: ("Re-engagement message", "Message failed to send because more than 24 hours have "
             "passed since the customer last replied to this number."),
    131049: ("This message was not delivered to maintain healthy ecosystem engagement.",
             "In order to maintain a healthy ecosystem engagement, the message failed to be "
             "delivered."),
    131056: ("(Business Account, Consumer Account) pair rate limit hit",
             "Message failed to send because there were too many messages sent from this "
             "phone number to the same phone number in a short period of time."),
}
_HTTP_STATUS = {131000: 500}
_STATUSES = ("sent", "delivered", "read", "failed")
_BEARER = re.compile(r"Bearer\s+(\S+)", re.IGNORECASE)
# Unique in the process, so that two stubs in one test never hand out the same wamid.
_ids = itertools.count(1)


def sign(body: bytes, app_secret: str) -> str:
    """The X-Hub-Signature-256 of a webhook body: HMAC-SHA256 keyed with the app secret."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(payload: JSON) -> bytes:
    """A payload's bytes as Meta sends them: compact, non-ASCII and "/" escaped. A client
    that checks the signature over its own re-encoding of the JSON fails on these."""
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).replace(
        "/", "\\/").encode()


@dataclass(frozen=True, slots=True)
class Call:
    """One request the client made and the answer it got."""

    method: str
    path: str
    body: JSON
    status: int
    response: JSON
    at: float

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True, slots=True)
class GraphError:
    """An error response: `injected` by `fail`, or a rejection Graph would also make."""

    path: str
    body: JSON
    status: int
    code: int
    message: str
    details: str
    at: float
    injected: bool = False


@dataclass(slots=True)
class _Fault:
    code: int
    to: str | None
    times: int | None  # None: every matching send until clear_faults()
    status: int
    message: str
    details: str


class _Reject(Exception):
    def __init__(self, status: int, code: int, message: str, details: str | None = None,
                 subcode: int | None = None, kind: str = "OAuthException") -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.subcode, self.kind = details, subcode, kind


def _invalid(details: str) -> _Reject:
    """A field missing or of the wrong kind."""
    return _Reject(400, 100, "(#100) Invalid parameter", details)


def _not_valid(details: str) -> _Reject:
    """A value outside WhatsApp's limits."""
    return _Reject(400, 131009, "(#131009) Parameter value is not valid", details)


class GraphApiStub(Loopback):
    """See the module docstring. Not thread-safe: use it from the event loop it started on."""

    def __init__(self, *, token: str = TOKEN, phone_number_id: str = PHONE_NUMBER_ID,
                 display_phone_number: str = DISPLAY_PHONE_NUMBER, waba_id: str = WABA_ID,
                 verified_name: str = VERIFIED_NAME) -> None:
        super().__init__()
        self.token = token
        self.phone_number_id = phone_number_id
        self.display_phone_number = display_phone_number
        self.waba_id = waba_id
        self.verified_name = verified_name
        self.calls: list[Call] = []
        self.errors: list[GraphError] = []
        self._accepted: list[JSON] = []  # request bodies, each with its "wamid"
        self._faults = Faults[_Fault]()
        self._traces = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(r"/{version:v\d+\.\d+}/{phone_number_id}/messages", self._messages)
        app.router.add_get(r"/{version:v\d+\.\d+}/{phone_number_id}", self._phone_number)
        return app

    # -- what the client did --------------------------------------------------------------

    def sent(self, to: str) -> list[JSON]:
        """The body of each message to `to` that Graph accepted, in order, with the wamid it
        returned under "wamid". "+4915..." and "4915..." are the same recipient."""
        return [copy.deepcopy(body) for body in self._accepted
                if _wa_id(str(body["to"])) == _wa_id(to)]


    # -- faults ---------------------------------------------------------------------------

    def fail(self, code: int, *, to: str | None = None, times: int | None = 1,
             http_status: int | None = None, message: str | None = None) -> None:
        """Answer the next `times` valid sends (to `to` only, when given) with Graph error
        `code` instead of accepting them; times=None: until clear_faults(). The HTTP status
        is Graph's for the code (500 for 131000, else 400) unless `http_status` says."""
        title, details = _ERRORS.get(code, ("Error", "Error"))
        self._faults.add(_Fault(
            code, None if to is None else _wa_id(to), times,
            http_status or _HTTP_STATUS.get(code, 400),
            message or f"(#{code}) {title}", details))

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- webhooks -------------------------------------------------------------------------

    @staticmethod
    def sign(body: bytes, app_secret: str) -> str:
        return sign(body, app_secret)

    async def post_webhook(self, url: str, payload: JSON, app_secret: str, *,
                           signature: str | None = None) -> int:
        """POST the payload to the app's webhook as Meta does, signed with `app_secret`
        (or carrying `signature` instead, to forge one); returns the HTTP status."""
        body = webhook_body(payload)
        headers = {"Content-Type": "application/json",
                   "X-Hub-Signature-256": signature or sign(body, app_secret)}
        async with self.client.post(url, data=body, headers=headers) as response:
            return response.status

    def text_update(self, wa_id: str, text: str, *, name: str = CONTACT_NAME) -> JSON:
        """The user `wa_id` wrote `text`."""
        return self._incoming(wa_id, name, {"type": "text", "text": {"body": text}})

    def button_reply_update(self, wa_id: str, reply_id: str, title: str, context_wamid: str,
                            *, name: str = CONTACT_NAME) -> JSON:
        """The user tapped the reply button `reply_id` of the message `context_wamid`."""
        return self._incoming(wa_id, name, {
            "context": self._context(context_wamid), "type": "interactive",
            "interactive": {"type": "button_reply",
                            "button_reply": {"id": reply_id, "title": title}}})

    def list_reply_update(self, wa_id: str, reply_id: str, title: str, context_wamid: str,
                          description: str | None = None, *,
                          name: str = CONTACT_NAME) -> JSON:
        """The user picked the row `reply_id` of the list message `context_wamid`."""
        reply = {"id": reply_id, "title": title}
        if description is not None:
            reply["description"] = description
        return self._incoming(wa_id, name, {
            "context": self._context(context_wamid), "type": "interactive",
            "interactive": {"type": "list_reply", "list_reply": reply}})

    def quick_reply_button_update(self, wa_id: str, payload: str, text: str,
                                  context_wamid: str, *, name: str = CONTACT_NAME) -> JSON:
        """The user tapped a quick-reply button of the template message `context_wamid`."""
        return self._incoming(wa_id, name, {
            "context": self._context(context_wamid), "type": "button",
            "button": {"payload": payload, "text": text}})

    def status_update(self, wamid: str, recipient_id: str, status: str,
                      errors: Sequence[int | JSON] | None = None, *,
                      conversation: bool = True) -> JSON:
        """A status of the message `wamid`: sent, delivered, read or failed. A failed one
        carries `errors`: Graph error codes (made into Meta's error objects) or the objects
        themselves. The others carry the `pricing` of a free service reply (per-message
        pricing, since July 2025) and a `conversation`, which Graph v24.0 and later leave
        out (conversation=False)."""
        if status not in _STATUSES:
            raise ValueError(f"status must be one of {_STATUSES}: {status!r}")
        if (status == "failed") != bool(errors):
            raise ValueError("a failed status carries errors, and only a failed one")
        entry: JSON = {"id": wamid, "status": status, "timestamp": _now(),
                       "recipient_id": recipient_id}
        if status == "failed":
            entry["errors"] = [webhook_error(error) if isinstance(error, int)
                               else copy.deepcopy(error) for error in errors or ()]
        else:
            if conversation:
                entry["conversation"] = {"id": f"conv{next(_ids):012d}",
                                         "origin": {"type": "service"}}
                if status == "sent":
                    entry["conversation"]["expiration_timestamp"] = str(
                        int(time.time()) + 24 * 3600)
            entry["pricing"] = {"billable": False, "pricing_model": "PMP",
                                "type": "free_customer_service", "category": "service"}
        return self._envelope({"statuses": [entry]})

    def _incoming(self, wa_id: str, name: str, message: JSON) -> JSON:
        return self._envelope({
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": _wamid(), "timestamp": _now(), **message}]})

    def _context(self, wamid: str) -> JSON:
        return {"from": self.display_phone_number, "id": wamid}

    def _envelope(self, value: JSON) -> JSON:
        return {"object": "whatsapp_business_account", "entry": [{
            "id": self.waba_id,
            "changes": [{"value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": self.display_phone_number,
                             "phone_number_id": self.phone_number_id},
                **value}, "field": "messages"}]}]}

    # -- HTTP -----------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.Response:
        return await self._serve(request, self._send)

    async def _phone_number(self, request: web.Request) -> web.Response:
        return await self._serve(request, lambda body: {
            "verified_name": self.verified_name,
            "display_phone_number": self.display_phone_number, "id": self.phone_number_id})

    async def _serve(self, request: web.Request,
                     handler: Callable[[JSON], JSON]) -> web.Response:
        at = time.monotonic()
        body: JSON = {}
        injected = False
        try:
            self._authorize(request)
            if request.match_info["phone_number_id"] != self.phone_number_id:
                raise _Reject(
                    400, 100, f"Unsupported {request.method.lower()} request. Object with ID "
                    f"'{request.match_info['phone_number_id']}' does not exist, cannot be "
                    "loaded due to missing permissions, or does not support this operation.",
                    subcode=33, kind="GraphMethodException")
            if request.method == "POST":
                body = await _read_json(request)
                _check_message(body)
                if (fault := self._take_fault(body)) is not None:
                    injected = True
                    raise _Reject(fault.status, fault.code, fault.message, fault.details)
            status, answer = 200, handler(body)
        except _Reject as rejection:
            status, answer = rejection.status, self._error_body(rejection)
            self.errors.append(GraphError(request.path, body, rejection.status,
                                          rejection.code, rejection.message,
                                          rejection.details or "", at, injected))
        self.calls.append(Call(request.method, request.path, body, status, answer, at))
        await self.called()
        return web.json_response(answer, status=status)

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        match = _BEARER.fullmatch(header.strip())
        if match is None:
            raise _Reject(401, 190, "An access token is required to request this resource.")
        if not hmac.compare_digest(match.group(1).encode(), self.token.encode()):
            raise _Reject(401, 190, "Invalid OAuth access token - Cannot parse access token")

    def _take_fault(self, body: JSON) -> _Fault | None:
        to = _wa_id(str(body["to"]))
        return self._faults.take(lambda fault: fault.to in (None, to))

    def _send(self, body: JSON) -> JSON:
        wamid = _wamid()
        self._accepted.append({**copy.deepcopy(body), "wamid": wamid})
        message: JSON = {"id": wamid}
        if body["type"] == "template":
            message["message_status"] = "accepted"  # templates are paced: Graph says so
        return {"messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": _wa_id(body["to"])}],
                "messages": [message]}

    def _error_body(self, rejection: _Reject) -> JSON:
        error: JSON = {"message": rejection.message, "type": rejection.kind,
                       "code": rejection.code}
        if rejection.details is not None:
            error["error_data"] = {"messaging_product": "whatsapp",
                                   "details": rejection.details}
        if rejection.subcode is not None:
            error["error_subcode"] = rejection.subcode
        error["fbtrace_id"] = f"AStub{next(self._traces):016d}"
        return {"error": error}


# -- module helpers -----------------------------------------------------------------------


def webhook_error(code: int, details: str | None = None) -> JSON:
    """Meta's error object in a failed status for Graph error `code`."""
    title, known = _ERRORS.get(code, ("Error", "Error"))
    return {"code": code, "title": title, "message": title,
            "error_data": {"details": known if details is None else details},
            "href": ERROR_CODES_URL}


def _wamid() -> str:
    return f"wamid.STUB{next(_ids):016d}"


def _now() -> str:
    return str(int(time.time()))


def _wa_id(to: str) -> str:
    """The WhatsApp id Graph answers for a recipient: its phone number's digits."""
    return re.sub(r"\D", "", to)


async def _read_json(request: web.Request) -> JSON:
    try:
        body = json.loads(await request.text())
    except json.JSONDecodeError:
        raise _invalid("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object")
    return body


def _field(parent: JSON, key: str, kind: type[T], where: str) -> T:
    """parent[key], which must be present and of `kind`."""
    value = parent.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _invalid(f"{where}{key} is required and must be a {kind.__name__}")
    return value


def _text(parent: JSON, key: str, limit: int, where: str, *, required: bool = True) -> None:
    """parent[key]: a string of 1 to `limit` characters (or absent, when not required)."""
    if not required and key not in parent:
        return
    value = _field(parent, key, str, where)
    if not 1 <= len(value) <= limit:
        raise _not_valid(f"{where}{key} length invalid: {len(value)} characters. "
                         f"Min length: 1, Max length: {limit}")


def _check_message(body: JSON) -> None:
    if body.get("messaging_product") != "whatsapp":
        raise _invalid("messaging_product is required and must be \"whatsapp\"")
    if body.get("recipient_type", "individual") != "individual":
        raise _invalid("recipient_type must be \"individual\"")
    if not _wa_id(_field(body, "to", str, "")):
        raise _invalid("to must be a phone number")
    kind = _field(body, "type", str, "")
    checks = {"text": _check_text, "interactive": _check_interactive,
              "template": _check_template}
    if kind not in checks:
        raise _invalid(f"type must be one of {sorted(checks)} here, not {kind!r}")
    checks[kind](_field(body, kind, dict, ""))


def _check_text(text: JSON) -> None:
    _text(text, "body", MAX_TEXT, "text.")


def _check_interactive(interactive: JSON) -> None:
    kind = _field(interactive, "type", str, "interactive.")
    if kind not in ("button", "list"):
        raise _invalid(f"interactive.type must be \"button\" or \"list\" here, not {kind!r}")
    _text(_field(interactive, "body", dict, "interactive."), "text", MAX_INTERACTIVE_BODY,
          "interactive.body.")
    if "header" in interactive:
        header = _field(interactive, "header", dict, "interactive.")
        header_type = _field(header, "type", str, "interactive.header.")
        if kind == "list" and header_type != "text":
            raise _invalid("interactive.header.type of a list message must be \"text\"")
        if header_type == "text":
            _text(header, "text", MAX_HEADER_FOOTER, "interactive.header.")
    if "footer" in interactive:
        _text(_field(interactive, "footer", dict, "interactive."), "text", MAX_HEADER_FOOTER,
              "interactive.footer.")
    action = _field(interactive, "action", dict, "interactive.")
    if kind == "button":
        _check_buttons(action)
    else:
        _check_list(action)


def _check_buttons(action: JSON) -> None:
    buttons = _field(action, "buttons", list, "interactive.action.")
    if not 1 <= len(buttons) <= MAX_BUTTONS:
        raise _not_valid(f"Invalid buttons count: {len(buttons)}. Min allowed buttons: 1, "
                         f"Max allowed buttons: {MAX_BUTTONS}")
    ids: set[str] = set()
    for index, button in enumerate(buttons):
        where = f"interactive.action.buttons[{index}]."
        if not isinstance(button, dict) or button.get("type") != "reply":
            raise _invalid(f"{where}type must be \"reply\"")
        reply = _field(button, "reply", dict, where)
        _text(reply, "id", MAX_BUTTON_ID, f"{where}reply.")
        _text(reply, "title", MAX_BUTTON_TITLE, f"{where}reply.")
        if reply["id"] in ids:
            raise _not_valid(f"{where}reply.id {reply['id']!r} is a duplicate: button ids "
                             "must be unique")
        ids.add(reply["id"])


def _check_list(action: JSON) -> None:
    _text(action, "button", MAX_LIST_BUTTON, "interactive.action.")
    sections = _field(action, "sections", list, "interactive.action.")
    if not 1 <= len(sections) <= MAX_SECTIONS:
        raise _not_valid(f"Invalid sections count: {len(sections)}. Min allowed sections: 1, "
                         f"Max allowed sections: {MAX_SECTIONS}")
    ids: set[str] = set()
    for number, section in enumerate(sections):
        where = f"interactive.action.sections[{number}]."
        if not isinstance(section, dict):
            raise _invalid(f"{where[:-1]} must be an object")
        # A section's title may be left out only when it is the list's one section.
        _text(section, "title", MAX_SECTION_TITLE, where, required=len(sections) > 1)
        rows = _field(section, "rows", list, where)
        if not rows:
            raise _not_valid(f"{where}rows must have at least one row")
        for index, row in enumerate(rows):
            row_where = f"{where}rows[{index}]."
            if not isinstance(row, dict):
                raise _invalid(f"{row_where[:-1]} must be an object")
            _text(row, "id", MAX_ROW_ID, row_where)
            _text(row, "title", MAX_ROW_TITLE, row_where)
            _text(row, "description", MAX_ROW_DESCRIPTION, row_where, required=False)
            if row["id"] in ids:
                raise _not_valid(f"{row_where}id {row['id']!r} is a duplicate: row ids must "
                                 "be unique")
            ids.add(row["id"])
    if len(ids) > MAX_ROWS:
        raise _not_valid(f"Total row count exceed max allowed count: {MAX_ROWS} "
                         f"(got {len(ids)})")


def _check_template(template: JSON) -> None:
    if not _field(template, "name", str, "template."):
        raise _invalid("template.name must not be empty")
    if not _field(_field(template, "language", dict, "template."), "code", str,
                  "template.language."):
        raise _invalid("template.language.code must not be empty")
    if "components" not in template:
        return
    for number, component in enumerate(_field(template, "components", list, "template.")):
        where = f"template.components[{number}]."
        if not isinstance(component, dict):
            raise _invalid(f"{where[:-1]} must be an object")
        kind = _field(component, "type", str, where)
        if kind in ("header", "body"):
            for index, parameter in enumerate(component.get("parameters", [])):
                if not isinstance(parameter, dict) or not isinstance(parameter.get("type"), str):
                    raise _invalid(f"{where}parameters[{index}].type is required")
                if parameter["type"] == "text":
                    _field(parameter, "text", str, f"{where}parameters[{index}].")
        elif kind == "button":
            _check_quick_reply(component, where)
        else:
            raise _invalid(f"{where}type must be header, body or button here, not {kind!r}")


def _check_quick_reply(component: JSON, where: str) -> None:
    if component.get("sub_type") != "quick_reply":
        raise _invalid(f"{where}sub_type must be \"quick_reply\" here")
    index = component.get("index")
    # Meta's samples write the index both as a number and as a string.
    if not ((isinstance(index, int) and not isinstance(index, bool))
            or (isinstance(index, str) and index.isdigit())):
        raise _invalid(f"{where}index is required: the button's position in the template")
    parameters = _field(component, "parameters", list, where)
    if len(parameters) != 1 or not isinstance(parameters[0], dict) \
            or parameters[0].get("type") != "payload":
        raise _invalid(f"{where}parameters must be one {{\"type\": \"payload\"}} parameter")
    _field(parameters[0], "payload", str, f"{where}parameters[0].")
