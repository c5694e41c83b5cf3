"""Customers in private chats: commands, typed answers and taps on question keyboards.

Each handler parses the update, calls SurveyService and renders what came back; the
dialogue itself lives in the database, so any process may take the next update."""

from __future__ import annotations

import logging
from collections.abc import Callable
from html import escape

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    CallbackQuery,
    InaccessibleMessage,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
    User,
)
from aiogram.utils.i18n import I18n

from bot.services.surveys import (
    Event,
    LinkExpired,
    NoSurvey,
    OptedOut,
    Outcome,
    SurveyService,
    Tap,
    Who,
)
from bot.settings import Settings
from conversations.engine import Prompt, Reply
from conversations.replies import Problem
from conversations.statuses import DialogueStatus
from handlers.telegram import render
from handlers.telegram.filters import Check
from handlers.telegram.taps import answer

log = logging.getLogger(__name__)

LANGUAGES = {"en": "English", "ru": "Русский"}


class StopAnswer(CallbackData, prefix="stop"):
    """/stop's question answered: opt out (yes) or keep surveys on."""

    yes: bool


class Resume(CallbackData, prefix="resume"):
    """Surveys on again, after an opt-out."""


class LanguagePicked(CallbackData, prefix="lang"):
    code: str


def who(user: User | None, chat_id: int) -> Who:
    return Who("telegram", str(chat_id), first_name=user.first_name if user else None,
               locale=user.language_code if user else None)


def event(update: Update, bot: Bot) -> Event:
    """The update, once: update_id counts per bot, so another bot on the same database (a
    new BOT_TOKEN) may send the same number."""
    return ("telegram", f"{bot.id}:{update.update_id}")


def ui_locale(locale: str | None) -> str:
    """The bot's own strings come in English and Russian; anything else reads English."""
    base = (locale or "").split("-")[0].lower()
    return base if base in LANGUAGES else "en"


async def locale_for(surveys: SurveyService, customer: Who) -> str:
    return ui_locale(await surveys.locale_of(customer) or customer.locale)


async def show(bot: Bot, chat_id: int, outcome: Outcome, i18n: I18n) -> None:
    """Send what the engine asked for: a re-prompt or the next prompts (the team hears of
    alerts and comments from the services, after the commit)."""
    locale = ui_locale(outcome.locale)

    def _(text: str) -> str:
        return i18n.gettext(text, locale=locale)

    if outcome.reprompt is not None and not outcome.finished:
        prompt = outcome.reprompt.prompt
        await bot.send_message(chat_id, render.reprompt_text(outcome.reprompt),
                               reply_markup=markup_for(prompt, outcome.session_id, _)
                               if prompt else None)
    for prompt in outcome.prompts:
        await bot.send_message(chat_id, render.text(prompt),
                               reply_markup=markup_for(prompt, outcome.session_id, _))


def markup_for(prompt: Prompt, session_id: int, _: Callable[[str], str]) -> render.Markup | None:
    return render.markup(prompt, session_id, skip_label=_("Skip"), back_label=_("Back"),
                         done_label=_("Done"), placeholder=_("Type your answer"))


async def on_start(message: Message, command: CommandObject, surveys: SurveyService,
                   settings: Settings, i18n: I18n, event_update: Update, bot: Bot) -> None:
    customer = who(message.from_user, message.chat.id)
    try:
        outcome = await surveys.begin(customer, settings.default_survey,
                                      token=command.args or None, event=event(event_update, bot))
    except OptedOut:
        locale = await locale_for(surveys, customer)
        await message.answer(
            i18n.gettext("You asked us not to send you surveys.", locale=locale),
            reply_markup=InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(
                text=i18n.gettext("Receive surveys again", locale=locale),
                callback_data=Resume().pack())]]))
        return
    except LinkExpired:
        await message.answer(i18n.gettext(
            "This survey link has expired or was already used. Thank you all the same!",
            locale=ui_locale(customer.locale)))
        return
    except NoSurvey:
        await message.answer(i18n.gettext(
            "There is no survey for you right now. Thank you for stopping by!",
            locale=ui_locale(customer.locale)))
        return
    if not outcome.duplicate:
        await show(bot, message.chat.id, outcome, i18n)


async def on_help(message: Message, surveys: SurveyService, i18n: I18n) -> None:
    locale = await locale_for(surveys, who(message.from_user, message.chat.id))
    await message.answer(i18n.gettext(
        "I ask a few short questions about your experience with us. Tap a button or type "
        "your answer; every answer is saved at once.\n\n"
        "/start — answer the survey\n/language — change the language\n"
        "/stop — stop receiving surveys\n/help — this message", locale=locale))


async def on_stop(message: Message, surveys: SurveyService, i18n: I18n) -> None:
    locale = await locale_for(surveys, who(message.from_user, message.chat.id))
    await message.answer(
        i18n.gettext("Stop all surveys? We will not send you any more questions.",
                     locale=locale),
        reply_markup=InlineKeyboardMarkup(inline_keyboard=[[
            InlineKeyboardButton(text=i18n.gettext("Yes, stop", locale=locale),
                                 callback_data=StopAnswer(yes=True).pack()),
            InlineKeyboardButton(text=i18n.gettext("No, keep them", locale=locale),
                                 callback_data=StopAnswer(yes=False).pack())]]))


async def on_language(message: Message, surveys: SurveyService, i18n: I18n) -> None:
    locale = await locale_for(surveys, who(message.from_user, message.chat.id))
    await message.answer(
        i18n.gettext("Choose your language:", locale=locale),
        reply_markup=InlineKeyboardMarkup(inline_keyboard=[[
            InlineKeyboardButton(text=name, callback_data=LanguagePicked(code=code).pack())
            for code, name in LANGUAGES.items()]]))


async def on_text(message: Message, surveys: SurveyService, settings: Settings, i18n: I18n,
                  event_update: Update, bot: Bot) -> None:
    await _reply(message, Reply.typed(message.text or ""), surveys, settings, i18n,
                 event_update, bot)


async def on_other(message: Message, surveys: SurveyService, settings: Settings, i18n: I18n,
                   event_update: Update, bot: Bot) -> None:
    """A sticker, a photo, a voice note: the engine asks again, in words."""
    await _reply(message, Reply.unsupported(), surveys, settings, i18n, event_update, bot)


async def _reply(message: Message, reply: Reply, surveys: SurveyService, settings: Settings,
                 i18n: I18n, update: Update, bot: Bot) -> None:
    customer = who(message.from_user, message.chat.id)
    outcome = await surveys.reply(customer, reply, event=event(update, bot))
    if outcome is None:
        locale = await locale_for(surveys, customer)
        closed = await surveys.latest_status(customer) == DialogueStatus.EXPIRED
        await message.answer(i18n.gettext(
            "This survey has closed. Thank you for your time!" if closed else
            "There is no open survey right now. Send /start to answer one.", locale=locale))
    else:  # a redelivered update shows again where the dialogue stands (SurveyService)
        await show(bot, message.chat.id, outcome, i18n)


async def on_tap(query: CallbackQuery, callback_data: render.QuestionTap,
                 surveys: SurveyService, settings: Settings, i18n: I18n,
                 event_update: Update, bot: Bot) -> None:
    message = query.message
    tap = callback_data
    if message is None or isinstance(message, InaccessibleMessage):
        await answer(query, i18n.gettext("This button no longer works.",
                                        locale=ui_locale(query.from_user.language_code)))
        return
    if tap.action == "t":  # a multiple-choice toggle lives in the keyboard until "Done"
        await answer(query)
        await _edit_markup(message, render.toggled(message.reply_markup, tap))
        return
    customer = who(query.from_user, message.chat.id)
    outcome = await surveys.tap(customer, Tap(
        tap.session_id, tap.position, picked=render.picks(tap.mask) if tap.action == "d"
        else (tap.mask,), skip=tap.action == "s", back=tap.action == "b"),
        event=event(event_update, bot))
    locale = ui_locale(outcome.locale if outcome else query.from_user.language_code)

    def _(text: str) -> str:
        return i18n.gettext(text, locale=locale)

    if outcome is None:
        await answer(query, _("This survey is closed. Thank you!"))
        await _edit_markup(message, None)
        return
    if outcome.duplicate:  # shown again where it stands: see SurveyService._where_it_stands
        await answer(query)
        await show(bot, message.chat.id, outcome, i18n)
        return
    problem = outcome.reprompt.problem if outcome.reprompt else None
    if problem in (Problem.STALE, Problem.FINISHED, Problem.EXPIRED):
        await answer(query, _("This question has already been answered."))
        return
    if problem is not None and outcome.reprompt is not None and not outcome.finished:
        await answer(query, outcome.reprompt.hint)  # "pick at least one", and the like
        return
    await answer(query, _("Thanks!"))
    if tap.action == "b":
        await _edit_markup(message, None)
    else:
        chosen = (", ".join(render.picked_labels(message.reply_markup)) if tap.action == "d"
                  else _("Skipped") if tap.action == "s"
                  else render.tapped_label(message.reply_markup, query.data or ""))
        await _show_answer(message, _("Your answer:"), chosen or "")
    await show(bot, message.chat.id, outcome, i18n)


async def _show_answer(message: Message, label: str, chosen: str) -> None:
    """The question keeps its text, shows the answer, and loses its keyboard."""
    try:
        await message.edit_text(f"{message.html_text}\n\n<b>{escape(label)}</b> "
                                f"{escape(chosen)}", reply_markup=None)
    except TelegramBadRequest as error:  # too old to edit, or edited already
        log.info("could not edit a question: %s", error.message)


async def _edit_markup(message: Message, keyboard: InlineKeyboardMarkup | None) -> None:
    try:
        await message.edit_reply_markup(reply_markup=keyboard)
    except TelegramBadRequest as error:
        log.info("could not edit a keyboard: %s", error.message)


async def on_stop_answer(query: CallbackQuery, callback_data: StopAnswer,
                         surveys: SurveyService, i18n: I18n, bot: Bot) -> None:
    message = query.message
    if message is None:
        await answer(query)
        return
    customer = who(query.from_user, message.chat.id)
    locale = await locale_for(surveys, customer)
    if callback_data.yes:
        await surveys.opt_out(customer)
        text = i18n.gettext("Done: you will not receive any more surveys from us. Send /start "
                            "if you change your mind.", locale=locale)
    else:
        text = i18n.gettext("Nothing changed: surveys stay on.", locale=locale)
    await answer(query)
    if isinstance(message, Message):
        await _edit_markup(message, None)
    await bot.send_message(message.chat.id, text)


async def on_resume(query: CallbackQuery, surveys: SurveyService, settings: Settings,
                    i18n: I18n, bot: Bot) -> None:
    message = query.message
    await answer(query)
    if message is None:
        return
    customer = who(query.from_user, message.chat.id)
    await surveys.opt_in(customer)
    if isinstance(message, Message):
        await _edit_markup(message, None)
    locale = await locale_for(surveys, customer)
    await bot.send_message(message.chat.id, i18n.gettext(
        "Welcome back! Surveys are on again.", locale=locale))
    try:
        outcome = await surveys.begin(customer, settings.default_survey)
    except (NoSurvey, LinkExpired, OptedOut):
        return
    await show(bot, message.chat.id, outcome, i18n)


async def on_language_picked(query: CallbackQuery, callback_data: LanguagePicked,
                             surveys: SurveyService, settings: Settings, i18n: I18n,
                             bot: Bot) -> None:
    message = query.message
    code = callback_data.code
    if message is None or code not in LANGUAGES:
        await answer(query)
        return
    customer = who(query.from_user, message.chat.id)
    outcome = await surveys.set_locale(customer, code)
    await answer(query, LANGUAGES[code])
    if isinstance(message, Message):
        await _edit_markup(message, None)
    await bot.send_message(message.chat.id, i18n.gettext("Language: English", locale=code))
    if outcome is not None:  # the open question again, in the new language
        await show(bot, message.chat.id, outcome, i18n)


async def on_unknown_tap(query: CallbackQuery, i18n: I18n) -> None:
    """A button from another bot version, or anything we did not send."""
    await answer(query, i18n.gettext("This button no longer works.",
                                     locale=ui_locale(query.from_user.language_code)))


def build_router() -> Router:
    """A new Router each time: aiogram attaches a router to one dispatcher only."""
    router = Router(name="customer")
    router.message.filter(Check(F.chat.type == "private"))
    router.callback_query.filter(Check(F.message.chat.type == "private"))
    router.message.register(on_start, CommandStart())
    router.message.register(on_help, Command("help"))
    router.message.register(on_stop, Command("stop"))
    router.message.register(on_language, Command("language"))
    router.message.register(on_text, Check(F.text))
    router.message.register(on_other)
    router.callback_query.register(on_tap, render.QuestionTap.filter())
    router.callback_query.register(on_stop_answer, StopAnswer.filter())
    router.callback_query.register(on_resume, Resume.filter())
    router.callback_query.register(on_language_picked, LanguagePicked.filter())
    router.callback_query.register(on_unknown_tap)
    return router
