"""The team's chat (ADMIN_CHAT_ID): low-score alerts, the customer's comment under each,
and a button that opens the whole conversation."""

from __future__ import annotations

import logging
from html import escape

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Filter
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.services.surveys import Alert, Outcome, SurveyService, Transcript
from bot.settings import Settings
from handlers.telegram.filters import Check
from handlers.telegram.taps import answer
from storage.errors import NotFound

log = logging.getLogger(__name__)


class AdminChat(Filter):
    """Only the configured team chat: anyone else pressing an admin button gets nothing."""

    async def __call__(self, event: Message | CallbackQuery, settings: Settings) -> bool:
        message = event.message if isinstance(event, CallbackQuery) else event
        return (settings.admin_chat_id is not None and message is not None
                and message.chat.id == settings.admin_chat_id)


def alert_text(alert: Alert) -> str:
    who = escape(alert.first_name or "—")
    lines = [f"⚠️ <b>Low {escape(alert.metric.upper())} score: {alert.score}</b>",
             f"Survey: {escape(alert.survey_id)}, question {escape(alert.step)}",
             f"Customer: {who} (#{alert.customer_id})"]
    if alert.context:
        lines.append("Context: " + ", ".join(f"{escape(str(k))}={escape(str(v))}"
                                              for k, v in sorted(alert.context.items())))
    return "\n".join(lines)


def transcript_text(transcript: Transcript) -> str:
    lines = [f"<b>Conversation #{transcript.session_id}</b> ({escape(transcript.survey_id)}, "
             f"{escape(transcript.status)})",
             f"Customer: {escape(transcript.first_name or '—')} (#{transcript.customer_id})"]
    if transcript.context:
        lines.append("Context: " + ", ".join(f"{escape(str(k))}={escape(str(v))}"
                                              for k, v in sorted(transcript.context.items())))
    for line in transcript.answers:
        value = (str(line.score) if line.score is not None
                 else ", ".join(line.choices) or line.text or "")
        lines.append(f"• {escape(line.step)}: {escape(value)}")
    if not transcript.answers:
        lines.append("No answers yet.")
    return "\n".join(lines)


async def notify(bot: Bot, settings: Settings, surveys: SurveyService, outcome: Outcome) -> None:
    """Alerts and comments of one outcome to the team chat. The customer's dialogue goes
    on whatever happens here: a failure is logged, not raised."""
    if settings.admin_chat_id is None or not (outcome.alerts or outcome.comments):
        return
    try:
        for alert in outcome.alerts:
            sent = await bot.send_message(
                settings.admin_chat_id, alert_text(alert),
                reply_markup=InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(
                    text="Open conversation", callback_data=f"adm:conv:{alert.session_id}")]]))
            await surveys.alert_posted(alert.alert_id, str(sent.message_id))
        for comment in outcome.comments:
            reply_to = int(comment.message_id) if comment.message_id else None
            await bot.send_message(
                settings.admin_chat_id,
                f"💬 Comment on alert #{comment.alert_id}:\n{escape(comment.text)}",
                reply_to_message_id=reply_to)
    except TelegramAPIError as error:
        log.warning("could not tell the admin chat about session %s: %s",
                    outcome.session_id, type(error).__name__)


async def on_open_conversation(query: CallbackQuery, surveys: SurveyService, bot: Bot) -> None:
    try:
        transcript = await surveys.transcript(int((query.data or "").rsplit(":", 1)[1]))
    except (NotFound, ValueError):
        await answer(query, "No such conversation.")
        return
    await answer(query)
    if query.message is not None:
        await bot.send_message(query.message.chat.id, transcript_text(transcript))


def build_router() -> Router:
    """The team chat's handlers; another chat never reaches them."""
    router = Router(name="admin")
    router.message.filter(AdminChat())
    router.callback_query.filter(AdminChat())
    router.callback_query.register(on_open_conversation, Check(F.data.startswith("adm:conv:")))
    return router
