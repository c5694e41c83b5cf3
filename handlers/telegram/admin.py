"""The team's chat (ADMIN_CHAT_ID): low-score alerts with buttons to reply to the customer,
resolve, and open the whole conversation; the customer's comment under each; an alert
nobody took in time, again, overdue. An admin's message that replies to an alert (or to
the bot's "Reply to the customer" prompt, or a comment) goes to the customer.

Which alert a message is about is read from its first line ("alert #N"), not from state
kept in a process: any process may take the admin's next update."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from html import escape
from typing import Any, Literal

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Filter
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    CallbackQuery,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)
from pydantic import Field

from bot.services.alerts import AlertError, AlertService, AlertView
from bot.services.errors import NotFound
from bot.services.safe_text import isolate
from bot.services.surveys import SurveyService, Transcript
from bot.services.team import Alert, Comment
from bot.settings import Settings
from handlers.telegram.filters import Check
from handlers.telegram.taps import answer

log = logging.getLogger(__name__)


class AdminChat(Filter):
    """Only the configured team chat: anyone else pressing an admin button gets nothing."""

    async def __call__(self, event: Message | CallbackQuery, settings: Settings) -> bool:
        message = event.message if isinstance(event, CallbackQuery) else event
        return (settings.admin_chat_id is not None and message is not None
                and message.chat.id == settings.admin_chat_id)


class AlertAction(CallbackData, prefix="adm"):
    """A button under an alert in the team chat: reply, resolve, or open the conversation
    (`id` is then the dialogue's). At most 18 digits: a longer id is none of ours, and
    PostgreSQL could not compare it."""

    action: Literal["reply", "res", "conv"]
    id: int = Field(ge=1, lt=10**18)


# The alert a message of the bot is about, on its first line.
ALERT_REF = re.compile(r"alert #(\d+)")
PROMPT = "Reply to the customer (alert #{id}):"


def alert_text(alert: Alert) -> str:
    return "\n".join([
        _headline(alert.alert_id, alert.metric, alert.score),
        *_details(alert.survey_id, alert.step, alert.first_name, alert.customer_id,
                  alert.context)])


def resolved_text(alert: AlertView, by: str) -> str:
    return "\n".join([
        _headline(alert.id, alert.metric, alert.score),
        *_details(alert.survey_id, alert.step, alert.first_name, alert.customer_id,
                  alert.context),
        "", f"✅ Resolved by {escape(by)}"])


def _headline(alert_id: int, metric: str | None, score: int | None) -> str:
    # The metric is gone if the customer took the answer back; the alert stays.
    what = f"Low {escape(metric.upper())} score" if metric else "Low score"
    return f"⚠️ <b>{what}: {score}</b> · alert #{alert_id}"


def overdue_text(alert: AlertView, minutes: int) -> str:
    score = f"{escape((alert.metric or 'low').upper())} score {alert.score}"
    return "\n".join([
        f"⏰ <b>Overdue: alert #{alert.id}</b>, nobody took it in {minutes} min ({score})",
        *_details(alert.survey_id, alert.step, alert.first_name, alert.customer_id,
                  alert.context)])


def _details(survey_id: str, step: str, first_name: str | None, customer_id: int,
             context: Mapping[str, Any]) -> list[str]:
    lines = [f"Survey: {escape(survey_id)}, question {escape(step)}",
             f"Customer: {_shown(first_name or '—')} (#{customer_id})"]
    if context:
        lines.append(_context(context))
    return lines


def _shown(text: object) -> str:
    """Customer text in our HTML message: isolated (bot.services.safe_text), escaped."""
    return escape(isolate(text))


def _context(context: Mapping[str, Any]) -> str:
    return "Context: " + ", ".join(f"{_shown(k)}={_shown(v)}" for k, v in sorted(context.items()))


def alert_markup(alert_id: int, session_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text="Reply",
                              callback_data=AlertAction(action="reply", id=alert_id).pack()),
         InlineKeyboardButton(text="Resolve",
                              callback_data=AlertAction(action="res", id=alert_id).pack())],
        [InlineKeyboardButton(text="Open conversation",
                              callback_data=AlertAction(action="conv", id=session_id).pack())]])


def transcript_text(transcript: Transcript) -> str:
    lines = [f"<b>Conversation #{transcript.session_id}</b> ({escape(transcript.survey_id)}, "
             f"{escape(transcript.status)})",
             f"Customer: {_shown(transcript.first_name or '—')} (#{transcript.customer_id})"]
    if transcript.context:
        lines.append(_context(transcript.context))
    for line in transcript.answers:
        # Scores and the script's option ids are ours; only a typed text is the customer's.
        value = (escape(str(line.score)) if line.score is not None
                 else escape(", ".join(line.choices)) if line.choices
                 else _shown(line.text or ""))
        lines.append(f"• {escape(line.step)}: {value}")
    if not transcript.answers:
        lines.append("No answers yet.")
    return "\n".join(lines)


class TelegramTeam:
    """The team chat in Telegram (bot.services.team.TeamChat): an alert with its buttons,
    and the customer's comment as a reply to it. A failure is raised: the outbox retries."""

    def __init__(self, bot: Bot, chat_id: int) -> None:
        self._bot = bot
        self._chat_id = chat_id

    async def alert(self, alert: Alert) -> str:
        sent = await self._bot.send_message(
            self._chat_id, alert_text(alert),
            reply_markup=alert_markup(alert.alert_id, alert.session_id))
        return str(sent.message_id)

    async def comment(self, comment: Comment) -> None:
        # Under its alert if that message is still there; on its own if someone deleted it.
        reply = (ReplyParameters(message_id=int(comment.message_id),
                                 allow_sending_without_reply=True)
                 if comment.message_id else None)
        await self._bot.send_message(
            self._chat_id, f"💬 Comment on alert #{comment.alert_id}:\n{_shown(comment.text)}",
            reply_parameters=reply)


async def on_open_conversation(query: CallbackQuery, callback_data: AlertAction,
                               surveys: SurveyService, bot: Bot) -> None:
    try:
        transcript = await surveys.transcript(callback_data.id)
    except NotFound:
        await answer(query, "No such conversation.")
        return
    await answer(query)
    if query.message is not None:
        await bot.send_message(query.message.chat.id, transcript_text(transcript))


async def resend_overdue(bot: Bot, settings: Settings, alerts: AlertService) -> None:
    """The SLA job: every open alert nobody took within its script's alert_sla, once more
    to the team chat, marked overdue. Claimed (overdue_at set) before it is sent, so two
    processes never both send one; one that fails to send is not tried again."""
    if settings.admin_chat_id is None:
        return
    for claimed in await alerts.claim_overdue():
        try:
            alert = await alerts.get(claimed.id)
            minutes = round(((alert.overdue_at or alert.created_at) - alert.created_at)
                            .total_seconds() / 60)
            await bot.send_message(
                settings.admin_chat_id, overdue_text(alert, minutes),
                reply_markup=alert_markup(alert.id, alert.session_id),
                reply_to_message_id=int(alert.message_id) if alert.message_id else None,
                allow_sending_without_reply=True)
        except (TelegramAPIError, AlertError) as error:
            log.warning("could not re-send overdue alert %s: %s", claimed.id,
                        type(error).__name__)


def _actor(user_id: int | None) -> str:
    return f"telegram:{user_id}"


async def on_resolve(query: CallbackQuery, callback_data: AlertAction,
                     alerts: AlertService) -> None:
    alert_id = callback_data.id
    try:
        # The alert's message is edited by show_resolved (AlertService.on_resolved).
        alert = await alerts.resolve(alert_id, _actor(query.from_user.id),
                                     by=query.from_user.full_name)
    except AlertError as error:
        await answer(query, _short(str(error)))
        return
    await answer(query, "Resolved ✓")
    if (isinstance(query.message, Message)
            and str(query.message.message_id) != alert.message_id):
        try:  # tapped on the overdue reminder: its buttons go too
            await query.message.edit_reply_markup(reply_markup=None)
        except TelegramAPIError as error:
            log.info("could not take the buttons off alert %s's reminder: %s", alert_id,
                     type(error).__name__)


async def show_resolved(bot: Bot, settings: Settings, alert: AlertView, by: str) -> None:
    """AlertService.on_resolved: the alert's message in the team chat says who resolved it,
    and loses its buttons (an edit without reply_markup removes them)."""
    if settings.admin_chat_id is None or alert.message_id is None:
        return
    try:
        await bot.edit_message_text(resolved_text(alert, by), chat_id=settings.admin_chat_id,
                                    message_id=int(alert.message_id))
    except TelegramAPIError as error:
        log.info("could not mark alert %s resolved in the chat: %s", alert.id,
                 type(error).__name__)


async def on_reply_button(query: CallbackQuery, callback_data: AlertAction,
                          alerts: AlertService, bot: Bot) -> None:
    try:
        alert = await alerts.get(callback_data.id)
    except AlertError as error:
        await answer(query, _short(str(error)))
        return
    if alert.status == "resolved":
        await answer(query, f"Alert #{alert.id} is resolved.")
        return
    await answer(query)
    if query.message is not None:
        await bot.send_message(
            query.message.chat.id, PROMPT.format(id=alert.id),
            reply_markup=ForceReply(input_field_placeholder="Your message to the customer"),
            reply_to_message_id=query.message.message_id, allow_sending_without_reply=True)


class RepliesToAlert(Filter):
    """A text that replies to one of the bot's messages about an alert: the alert itself,
    the Reply prompt, a comment or an overdue reminder. Passes the alert's id on."""

    async def __call__(self, message: Message, bot: Bot) -> bool | dict[str, Any]:
        replied = message.reply_to_message
        if (not message.text or replied is None or replied.from_user is None
                or replied.from_user.id != bot.id):
            return False
        found = ALERT_REF.search((replied.text or "").split("\n", 1)[0])
        return {"alert_id": int(found.group(1))} if found else False


async def on_admin_reply(message: Message, alert_id: int, alerts: AlertService) -> None:
    user = message.from_user.id if message.from_user else None
    try:
        await alerts.reply(alert_id, _actor(user), message.text or "")
    except AlertError as error:
        await message.reply(f"Not sent: {escape(str(error))}")
        return
    await message.reply("Sent to the customer ✓")


def _short(text: str) -> str:
    return text if len(text) <= 190 else text[:189] + "…"  # a tap's answer: 200 at most


def build_router() -> Router:
    """The team chat's handlers; another chat never reaches them."""
    router = Router(name="admin")
    router.message.filter(AdminChat())
    router.callback_query.filter(AdminChat())
    router.message.register(on_admin_reply, RepliesToAlert())
    router.callback_query.register(on_open_conversation,
                                   AlertAction.filter(F.action == "conv"))
    router.callback_query.register(on_resolve, AlertAction.filter(F.action == "res"))
    router.callback_query.register(on_reply_button, AlertAction.filter(F.action == "reply"))
    router.callback_query.register(on_unknown_tap, Check(F.data.startswith("adm:")))
    return router


async def on_unknown_tap(query: CallbackQuery) -> None:
    """A button under an alert that names nothing of ours (malformed, or another version)."""
    await answer(query, "No such alert.")
