"""The web channel: a delivery's hosted survey page (`/s/{token}`), the score links of an
e-mail (`/e/{token}/{score}`), its unsubscribe link (`/u/{token}`), and the anonymous
survey (`/w/{survey}`, the demo at `/`). Server-rendered forms that work without
JavaScript; answers go through SurveyService like Telegram's.

Forms carry a CSRF token that must equal the `otklik_csrf` cookie (double submit), and the
question's position, so a form sent twice (or from an old tab) changes nothing."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from bot.keys import LINKS, SETTINGS, SURVEYS
from bot.services.surveys import (
    Finished,
    LinkExpired,
    NoSurvey,
    OptedOut,
    Outcome,
    SurveyError,
    Tap,
    UnknownLink,
    Who,
)
from bot.texts import gettext, ui_locale
from conversations.engine import PromptKind
from conversations.replies import Problem
from handlers.api.core import number
from handlers.api.throttle import WRONG
from handlers.html import (
    SECURE,
    Form,
    PageError,
    check_csrf,
    cookie,
    csrf_token,
    locale_of,
    notice,
    render,
    respond,
)

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger(__name__)
VISITOR_COOKIE = "otklik_visitor"
NEW_VISITOR = web.RequestKey("new_visitor", str)  # set: this response sets the cookie
MAX_TEXT = 4000  # characters of a typed answer; a script's max_length may ask for fewer
MAX_FIELD = 10**9 - 1  # a form's session id, position or option: nine digits at most


def question(request: web.Request, outcome: Outcome, *, token: str | None = None,
             status: int = 200) -> web.StreamResponse:
    """The open question, after any messages before it; the thank-you page at the end.
    A delivery's forms are sent to its page, whichever link showed them (`/e/`)."""
    locale = ui_locale(outcome.locale)
    messages = [p.text for p in outcome.prompts if p.kind is PromptKind.MESSAGE]
    asked = [p for p in outcome.prompts if p.kind is not PromptKind.MESSAGE]
    hint = None
    if outcome.reprompt is not None and not outcome.finished:
        hint = outcome.reprompt.hint
        asked = [outcome.reprompt.prompt] if outcome.reprompt.prompt else asked
    if not asked:
        return notice(request, 200, gettext("Thank you!", locale),
                      *(messages or [gettext("Your answers are saved. Thank you!", locale)]),
                      locale=locale)
    prompt = asked[0]
    links = request.app[LINKS]
    if outcome.questions:  # the whole survey on one page, from the question due now
        return render(request, "page.html", {
            "title": outcome.title, "locale": locale, "messages": messages, "hint": hint,
            "questions": [q for q in outcome.questions if q.position >= prompt.position],
            "csrf": csrf_token(request), "session_id": outcome.session_id,
            "action": f"/s/{token}" if token else None,
            "telegram_link": links.telegram(token) if token else None}, status)
    return render(request, "question.html", {
        "title": outcome.title, "locale": locale, "prompt": prompt, "messages": messages,
        "hint": hint, "csrf": csrf_token(request), "session_id": outcome.session_id,
        "autosubmit": prompt.kind is not PromptKind.TEXT and not prompt.multiple,
        "action": f"/s/{token}" if token else None,
        "telegram_link": links.telegram(token) if token else None}, status)


def _tap(form: Form, locale: str) -> Tap:
    """The form as a tap on its question: option indexes, or a typed text (an empty one
    skips an optional question, as its Skip button does)."""
    def whole(value: object) -> int:
        if not isinstance(value, str) or (found := number(value, MAX_FIELD)) is None:
            raise PageError(400, gettext("Something is wrong with this form", locale),
                            gettext("Please open the page again and answer once more.",
                                    locale))
        return found

    picked = tuple(whole(value) for value in form.getall("answer", []))
    text = form.get("text")
    if text is not None and not isinstance(text, str):
        whole(None)  # a file where a text should be
    if isinstance(text, str) and len(text) > MAX_TEXT:
        raise PageError(413, gettext("This answer is too long", locale),
                        gettext("Please shorten it and send it again.", locale))
    typed = text.strip() if isinstance(text, str) and not picked else None
    return Tap(whole(form.get("session")), whole(form.get("position")), picked=picked,
               skip="skip" in form or typed == "", back="back" in form, text=typed or None)


def _one(form: Form, session: object, position: int) -> Form:
    """The fields of one question of a form that shows several (named with a -POSITION
    suffix), as a form of that question alone."""
    one: MultiDict[str | bytes | bytearray | web.FileField] = MultiDict(
        [("session", str(session)), ("position", str(position)),
         ("text", form.get(f"text-{position}", ""))])
    one.extend(("answer", value) for value in form.getall(f"answer-{position}", []))
    return MultiDictProxy(one)


async def _form(request: web.Request) -> Form:
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        locale = locale_of(request)
        raise PageError(415, gettext("Something is wrong with this form", locale),
                        gettext("Please open the page again and answer once more.", locale))
    return await request.post()


async def _after(request: web.Request, outcome: Outcome | None, token: str | None,
                 again: str) -> web.StreamResponse:
    """What a submitted answer leads to: the next question (POST-redirect-GET), the same
    one with a hint (422), or, for a form of a question no longer asked, the current one."""
    if outcome is None:
        raise _closed(request)
    if outcome.finished and outcome.reprompt is None:  # the script's own closing words
        return question(request, outcome, token=token)
    problem = outcome.reprompt.problem if outcome.reprompt else None
    if problem is not None and problem not in (Problem.STALE, Problem.FINISHED) \
            and not outcome.finished:
        return question(request, outcome, token=token, status=422)
    return respond(request, _see_other(again))


def _see_other(location: str) -> web.Response:
    """303: after a POST, the page is fetched anew (a reload sends nothing twice)."""
    return web.Response(status=303, headers={"Location": location})


def _closed(request: web.Request, error: SurveyError | None = None) -> PageError:
    if isinstance(error, UnknownLink):
        request[WRONG] = True  # someone guessing tokens is slowed down (throttle.py)
    locale = locale_of(request)
    return PageError(410, gettext("This survey has closed", locale),
                     gettext("This link has expired or was already used. Thank you all the "
                             "same!", locale))


# -- a delivery's page ------------------------------------------------------------------------


@routes.get("/s/{token}")
async def get_survey(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    try:
        outcome = await request.app[SURVEYS].open_delivery(token, locale=locale_of(request))
    except Finished:
        locale = locale_of(request)
        return notice(request, 200, gettext("Thank you!", locale),
                      gettext("Your answers are saved. Thank you!", locale))
    except (LinkExpired, NoSurvey) as error:
        raise _closed(request, error) from None
    except OptedOut:
        locale = locale_of(request)
        raise PageError(410, gettext("You asked us not to send you surveys.", locale)) from None
    return question(request, outcome, token=token)


@routes.post("/s/{token}")
async def post_survey(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    form = await _form(request)
    check_csrf(request, form)
    surveys = request.app[SURVEYS]
    if form.get("layout") != "page":
        return await _after(request, await surveys.tap_delivery(
            token, _tap(form, locale_of(request))), token, f"/s/{token}")
    # The whole survey in one form (web_layout: page): the service takes its answers in
    # the dialogue's order, each from the fields of its question.
    locale = locale_of(request)
    try:
        outcome = await surveys.answer_page(token, lambda position: _tap(
            _one(form, form.get("session", ""), position), locale))
    except (Finished, LinkExpired, NoSurvey, OptedOut) as error:
        raise _closed(request, error) from None
    return await _after(request, outcome, token, f"/s/{token}")


@routes.get("/e/{token}/{score}")
async def get_email_score(request: web.Request) -> web.StreamResponse:
    """A score tapped in an e-mail: the page with that score chosen and the follow-up
    under it, in one form. Nothing is stored, nor any dialogue started, until the
    customer sends it: mail scanners and link previews fetch every link of a message."""
    token, score = request.match_info["token"], request.match_info["score"]
    try:
        preview = await request.app[SURVEYS].preview_delivery(token, score,
                                                               locale=locale_of(request))
    except Finished:
        return respond(request, _see_other(f"/s/{token}"))
    except (LinkExpired, NoSurvey, OptedOut) as error:
        raise _closed(request, error) from None
    asked = [p for p in preview.prompts if p.kind is not PromptKind.MESSAGE]
    first = asked[0] if asked else None
    if first is None or first.kind is not PromptKind.SCALE or first.position != 1:
        return respond(request, _see_other(f"/s/{token}"))  # past the score: where it is
    values = [option.value for option in first.options]
    if score not in values:
        locale = ui_locale(preview.locale)
        raise PageError(422, gettext("This score is not on the scale", locale),
                        f"{values[0]}–{values[-1]}")
    then = [p for p in preview.then if p.kind is not PromptKind.MESSAGE]
    follow_up = then[0] if then and not preview.finished else None
    return render(request, "score.html", {
        "title": preview.title, "locale": ui_locale(preview.locale), "question": first,
        "chosen": values.index(score), "follow_up": follow_up, "csrf": csrf_token(request),
        "messages": [p.text for p in preview.then if p.kind is PromptKind.MESSAGE]
        if follow_up else [], "telegram_link": request.app[LINKS].telegram(token)})


@routes.post("/e/{token}/{score}")
async def post_email_score(request: web.Request) -> web.StreamResponse:
    """The page above sent: the score picked on it, then the follow-up typed under it if
    that is what the engine asks after this score (another score may lead elsewhere: then
    the page asks what it leads to). Sent again, it changes nothing, unless its first try
    stored only the score: then its follow-up is taken now."""
    token = request.match_info["token"]
    form = await _form(request)
    check_csrf(request, form)
    surveys = request.app[SURVEYS]
    try:
        opened = await surveys.open_delivery(token, locale=locale_of(request))
    except Finished:
        return respond(request, _see_other(f"/s/{token}"))
    except (LinkExpired, NoSurvey, OptedOut) as error:
        raise _closed(request, error) from None
    locale = ui_locale(opened.locale)
    asked = [p for p in opened.prompts if p.kind is not PromptKind.MESSAGE]
    outcome: Outcome | None = None
    if asked and asked[0].position == 1:
        outcome = await surveys.tap_delivery(token, _tap(_one(form, opened.session_id, 1),
                                                         locale))
        asked = [p for p in outcome.prompts if p.kind is not PromptKind.MESSAGE] \
            if outcome is not None and outcome.reprompt is None and not outcome.finished else []
    if asked and form.get("follow") == str(asked[0].position):
        outcome = await surveys.tap_delivery(token, _tap(
            _one(form, opened.session_id, asked[0].position), locale))
    if outcome is None:  # sent already (a second tap, another tab): the page says where it is
        return respond(request, _see_other(f"/s/{token}"))
    return await _after(request, outcome, token, f"/s/{token}")


@routes.get("/u/{token}")
async def get_unsubscribe(request: web.Request) -> web.StreamResponse:
    """A confirmation first: mail scanners follow links, and a GET must change nothing."""
    locale = locale_of(request)
    return notice(request, 200, gettext("Stop all surveys?", locale),
                  gettext("We will not send you any more questions.", locale),
                  form_action=f"/u/{request.match_info['token']}",
                  form_label=gettext("Yes, stop", locale), csrf=csrf_token(request))


@routes.post("/u/{token}")
async def post_unsubscribe(request: web.Request) -> web.StreamResponse:
    """The form above, or a mail client's one-click unsubscribe (RFC 8058), which carries
    no cookie: the unguessable token in the address is what authorises both."""
    form = await _form(request)
    if form.get("List-Unsubscribe") != "One-Click":
        check_csrf(request, form)
    try:
        await request.app[SURVEYS].opt_out_delivery(request.match_info["token"])
    except LinkExpired as error:
        raise _closed(request, error) from None
    locale = locale_of(request)
    return notice(request, 200, gettext("You are unsubscribed", locale), gettext(
        "Done: you will not receive any more surveys from us.", locale))


# -- the anonymous survey ---------------------------------------------------------------------


def _visitor(request: web.Request) -> str:
    return cookie(request, VISITOR_COOKIE, NEW_VISITOR, 16)


def _with_visitor(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    if NEW_VISITOR in request:
        response.set_cookie(VISITOR_COOKIE, request[NEW_VISITOR], httponly=True,
                            samesite="Lax", secure=request[SECURE], path="/",
                            max_age=365 * 24 * 3600)
    return respond(request, response)


@routes.get("/favicon.ico")
async def get_favicon(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204, headers={"Cache-Control": "public, max-age=86400"})


@routes.get("/")
async def get_home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"/w/{request.app[SETTINGS].default_survey}")


@routes.get("/w/{survey}")
async def get_web_survey(request: web.Request) -> web.StreamResponse:
    survey = request.match_info["survey"]
    who = Who("web", _visitor(request), locale=locale_of(request))
    surveys = request.app[SURVEYS]
    if (await surveys.latest_status(who, survey)) == "completed" and "again" not in request.query:
        return _with_visitor(request, _thanks(request, survey))
    context = {"page": request.query.get("page", "")[:500], "visitor": who.address}
    try:
        outcome = await surveys.begin(who, survey, context={k: v for k, v in context.items()
                                                            if v})
    except NoSurvey:  # unknown, or not open to visitors: the same page for both
        raise _no_survey(request) from None
    except OptedOut:
        raise PageError(410, gettext("You asked us not to send you surveys.",
                                     locale_of(request))) from None
    if outcome.finished and not outcome.prompts:
        return _with_visitor(request, _thanks(request, survey))
    return _with_visitor(request, question(request, outcome))


@routes.post("/w/{survey}")
async def post_web_survey(request: web.Request) -> web.StreamResponse:
    survey = request.match_info["survey"]
    form = await _form(request)
    check_csrf(request, form)
    who = Who("web", _visitor(request), locale=locale_of(request))
    tap = dataclasses.replace(_tap(form, locale_of(request)), survey=survey)
    outcome = await request.app[SURVEYS].tap(who, tap)
    if outcome is None and not await request.app[SURVEYS].open_to_visitors(survey):
        raise _no_survey(request)
    if outcome is not None and outcome.finished and outcome.reprompt is None:
        return _with_visitor(request, _thanks(request, survey, outcome))
    return _with_visitor(request, await _after(request, outcome, None, f"/w/{survey}"))


def _no_survey(request: web.Request) -> PageError:
    locale = locale_of(request)
    return PageError(404, gettext("There is no such survey", locale),
                     gettext("Please check the address of the page.", locale))


def _thanks(request: web.Request, survey: str, outcome: Outcome | None = None
            ) -> web.StreamResponse:
    locale = ui_locale(outcome.locale if outcome else locale_of(request))
    said = [p.text for p in outcome.prompts] if outcome else []
    return notice(request, 200, gettext("Thank you!", locale), *said,
                  # The respondent's words only: never a path or a command of ours.
                  gettext("Your answers are saved. Thank you!", locale),
                  locale=locale, link=f"/w/{survey}?again=1",
                  link_label=gettext("Answer again", locale))
