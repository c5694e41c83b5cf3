"""Dialogues, whatever the channel: open one for a customer's address, take a reply, and
write what it produced — answers, state, rollups and alerts — in one transaction.

Channels (Telegram, the web page, e-mail links) turn replies into `Reply` (or `Tap`) values
and the outcome's prompts into their own UI; nothing here knows how a prompt looks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Row, Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from bot.services.scripts import script_of
from conversations.conditions import Scalar
from conversations.engine import (
    DialogueState,
    Prompt,
    PromptKind,
    Reply,
    Reprompt,
    Turn,
    advance,
    all_questions,
    change_locale,
    current_prompts,
    start,
)
from conversations.script import Script
from storage.errors import StaleDialogue
from storage.models import (
    Channel,
    CustomerRow,
    DeliveryRow,
    DeliveryStatus,
    DialogueRow,
    DialogueStatus,
    Respondent,
    ScriptRow,
)
from storage.repositories import alerts, customers, deliveries, events, scripts
from storage.repositories import dialogues as sessions
from storage.repositories.dialogues import DELIVERY_VIEW, OF_DELIVERY, OPEN_AT
from storage.uow import Database, Duplicate, Event, Stepped, UnitOfWork, record_here

Factory = async_sessionmaker[AsyncSession]
_View = TypeVar("_View", bound=Row[*tuple[Any, ...]])


class SurveyError(RuntimeError):
    """Root of what the survey service refuses; channels turn each into a polite message."""


class OptedOut(SurveyError):
    """The customer asked for no surveys (/stop, an unsubscribe link)."""


class LinkExpired(SurveyError):
    """A deep link or survey token that is unknown, used up or past its delivery."""


class UnknownLink(LinkExpired):
    """A survey token no delivery has: a typo, or someone guessing."""


class NoSurvey(SurveyError):
    """Nothing to ask: the survey asked for is not active."""


class Finished(SurveyError):
    """The delivery's survey was answered to the end."""


@dataclass(frozen=True, slots=True)
class Who:
    """A customer as a channel knows them: an address there, and what the channel tells."""

    channel: str
    address: str
    first_name: str | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class Tap:
    """A button pressed on a question: which dialogue and question it was shown for (its
    place in the script, Prompt.position) and the options picked, by index. Buttons carry
    indexes, not ids, to fit Telegram's 64 bytes of callback data whatever the script says."""

    session_id: int
    position: int
    picked: tuple[int, ...] = ()
    skip: bool = False
    back: bool = False
    text: str | None = None  # typed on a form shown for this question (the web page)
    survey: str | None = None  # the survey the question was shown for, where the URL says


@dataclass(frozen=True, slots=True)
class Alert:
    """A low score raised for a human, with what they need to act on it."""

    alert_id: int
    survey_id: str
    step: str
    metric: str
    score: int | None
    customer_id: int
    session_id: int
    first_name: str | None = None
    context: Mapping[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Comment:
    """A text the customer wrote after a low score: it belongs under the alert."""

    alert_id: int
    message_id: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Outcome:
    session_id: int
    prompts: tuple[Prompt, ...] = ()
    reprompt: Reprompt | None = None
    finished: bool = False
    alerts: tuple[Alert, ...] = ()
    comments: tuple[Comment, ...] = ()
    locale: str = "en"
    duplicate: bool = False  # the same event (a redelivered update) was applied before
    title: str = ""  # the survey's, in `locale`: what a page is headed with
    questions: tuple[Prompt, ...] = ()  # all of them, for a script laid out as one page


@dataclass(frozen=True, slots=True)
class Preview:
    """A delivery's page as a link that picks a value of its first question would show it,
    worked out in memory: the questions due now, and what the engine would say next."""

    prompts: tuple[Prompt, ...]
    then: tuple[Prompt, ...] = ()  # empty for a value the question does not offer
    finished: bool = False  # the value would end the survey
    locale: str = "en"
    title: str = ""


@dataclass(frozen=True, slots=True)
class AnswerLine:
    step: str
    score: int | None
    choices: tuple[str, ...]
    text: str | None


@dataclass(frozen=True, slots=True)
class Transcript:
    """One dialogue for a human: who, where it came from, and what was answered."""

    session_id: int
    survey_id: str
    customer_id: int
    first_name: str | None
    status: str
    context: Mapping[str, Any]
    answers: tuple[AnswerLine, ...]


class SurveyService:
    def __init__(self, factory: Factory, *, clock: Callable[[], datetime] | None = None,
                 attempts: int = 3) -> None:
        self._factory = factory
        self._db = Database(factory)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._attempts = attempts
        # Stored versions never change, so a parsed script is good for the process's life.
        self._scripts: dict[tuple[str, int], Script] = {}

    async def begin(self, who: Who, survey_id: str | None = None, *,
                    context: Mapping[str, Scalar] | None = None, token: str | None = None,
                    event: Event | None = None) -> Outcome:
        """Open a survey for the customer at this address and return its first question.

        With `token` (a deep link), the delivery it names: the address is bound to that
        delivery's customer. Without, the customer's pending delivery in this channel, else
        `survey_id`. A dialogue already open on the same survey is shown again, not started
        anew; another open dialogue is abandoned. OptedOut, LinkExpired, NoSurvey.

        One unit of work, in one thread hop on SQLite (UnitOfWork.apply)."""
        now = self._clock()

        def run(session: Session) -> Outcome | OptedOut:
            return self._begin(session, who, survey_id, context, token, event, now)

        async with UnitOfWork(self._factory) as uow:
            outcome = await uow.apply(run)
        if isinstance(outcome, OptedOut):
            raise outcome
        return outcome

    def _begin(self, session: Session, who: Who, survey_id: str | None,
               context: Mapping[str, Scalar] | None, token: str | None, event: Event | None,
               now: datetime) -> Outcome | OptedOut:
        """SurveyService.begin on the unit's synchronous session. OptedOut is returned, not
        raised, so that the unit commits: the binding stands, the customer may opt in again.
        LinkExpired and NoSurvey are raised: nothing is committed, the event not claimed."""
        if event is not None and not events.claim(session.connection(), *event, now):
            return Outcome(0, duplicate=True)
        delivery = None
        new = False  # created in this transaction: no delivery or dialogue can name them yet
        if token is not None:
            delivery = deliveries.by_token(session, token)
            if delivery is None or delivery.status not in deliveries.OPEN:
                raise LinkExpired(token)
            customer = customers.get(session, delivery.customer_id)
            customers.bind(session.connection(), customer.id, who.channel, who.address,
                           now=now)
        else:
            customer, new = self._customer(session, who, now)
        if customer.opted_out_at is not None:
            return OptedOut(who.address)
        if delivery is None and not new:
            delivery = deliveries.pending_for(session, customer.id, who.channel)
        if delivery is not None:
            survey_id, context = delivery.survey_id, delivery.context
        if survey_id is None:
            raise NoSurvey("no survey asked for")
        return self._open(session, who, customer, survey_id, context, delivery, now, new=new)

    async def open_delivery(self, token: str, *, channel: str = "web",
                            locale: str | None = None) -> Outcome:
        """The dialogue of the delivery with this token, for a page that shows it: the one
        under way (in whatever channel it is), else a new one in `channel`. LinkExpired
        for an unknown or closed delivery (Finished once it was answered), OptedOut,
        NoSurvey."""
        view = await self._db.read(
            lambda store: _open_view(store.dialogues.delivery_view(token), token))
        script = self._scripts.get((view.survey_id, view.script_version)) if view.id else None
        if script is not None:  # shown again: one read, no write
            state = DialogueState.from_json(view.state)
            return Outcome(view.id, current_prompts(script, state), locale=state.locale,
                           title=title(script, state.locale), questions=_page(script, state))
        now = self._clock()

        def run(session: Session) -> Outcome:
            delivery = deliveries.by_token(session, token)
            if delivery is None or delivery.status not in deliveries.OPEN:
                raise LinkExpired(token)  # closed since the read above
            customer = customers.get(session, delivery.customer_id)
            return self._open(session, Who(channel, "", locale=locale), customer,
                              delivery.survey_id, delivery.context, delivery, now, move=False)

        async with UnitOfWork(self._factory) as uow:
            return await uow.apply(run)

    async def preview_delivery(self, token: str, value: str, *,
                               locale: str | None = None) -> Preview:
        """The delivery's first question due with `value` picked, as its page shows it
        before the customer sends it: read and worked out in memory, nothing written, so a
        mail scanner that follows every score link of an e-mail answers nothing and starts
        nothing. Refuses as open_delivery does."""
        now = self._clock()

        def read(session: Session) -> tuple[Script, DialogueState]:
            view = _open_view(session.execute(DELIVERY_VIEW, {"k_token": token}).first(),
                              token)
            if view.id is not None:  # under way: where it stands
                script = self._script(session, view.survey_id, view.script_version)
                return script, DialogueState.from_json(view.state)
            delivery = deliveries.by_token(session, token)
            assert delivery is not None  # the view above found it
            version = scripts.active_version(session, delivery.survey_id)
            if version is None:
                raise NoSurvey(delivery.survey_id)
            customer = customers.get(session, delivery.customer_id)
            script = self._script(session, delivery.survey_id, version)
            return script, start(script, now=now, locale=customer.locale or locale,
                                 context=delivery.context, customer=_profile(customer)).state

        async with UnitOfWork(self._factory, read_only=True) as uow:
            script, state = await uow.session.run_sync(read)
        prompts = current_prompts(script, state)
        asked = [p for p in prompts if p.kind is not PromptKind.MESSAGE]
        heading = title(script, state.locale)
        if not asked or value not in (option.value for option in asked[0].options):
            return Preview(prompts, locale=state.locale, title=heading)
        turn = advance(script, state, Reply.button(asked[0].step, value), now)
        return Preview(prompts, turn.prompts, turn.finished, state.locale, heading)

    def _open(self, session: Session, who: Who, customer: CustomerRow, survey_id: str,
              context: Mapping[str, Scalar] | None, delivery: DeliveryRow | None,
              now: datetime, *, new: bool = False, move: bool = True) -> Outcome:
        """`move`: a delivery's dialogue under way in another channel continues in this
        one (the Telegram deep link of an e-mailed survey), so the channel's own lookups
        find it; without, it is only shown (a web page, which finds it by its token)."""
        delivery_id = delivery.id if delivery is not None else None
        if delivery is not None and (current := session.scalar(
                OF_DELIVERY, {"k_token": delivery.token or ""})) is not None:
            if move and current.channel != who.channel:
                other = sessions.open_for(session, customer.id, who.channel)
                if other is not None:
                    sessions.save(session.connection(), other, now,
                                  {"status": DialogueStatus.ABANDONED, "completed_at": None})
                sessions.save(session.connection(), current, now, {"channel": who.channel})
            script = self._script(session, current.survey_id, current.script_version)
            state = current.dialogue_state()
            return Outcome(current.id, current_prompts(script, state), locale=state.locale,
                           title=title(script, state.locale), questions=_page(script, state))
        dialogue = None if new else sessions.open_for(session, customer.id, who.channel)
        if dialogue is not None and (dialogue.survey_id, dialogue.delivery_id) == (
                survey_id, delivery_id):
            script = self._script(session, dialogue.survey_id, dialogue.script_version)
            state = dialogue.dialogue_state()
            return Outcome(dialogue.id, current_prompts(script, state), locale=state.locale,
                           title=title(script, state.locale), questions=_page(script, state))
        if dialogue is not None:
            sessions.save(session.connection(), dialogue, now,
                          {"status": DialogueStatus.ABANDONED, "completed_at": None})
        version = scripts.active_version(session, survey_id)
        if version is None:
            raise NoSurvey(survey_id)
        script = self._script(session, survey_id, version)
        respondent = respondent_of(who.channel, delivery_id)
        if respondent == Respondent.ANONYMOUS and not script.anonymous:
            raise NoSurvey(survey_id)  # as if unknown: a stranger learns nothing of it
        turn = start(script, now=now, locale=customer.locale or who.locale,
                     context=context, customer=_profile(customer))
        dialogue = sessions.start(session, customer.id, who.channel, script.id,
                                  script.version, turn.state.to_json(), now=now,
                                  delivery_id=delivery_id, respondent=respondent)
        if turn.finished:  # a script of messages only
            record_here(session, dialogue, turn, now, script.timezone)
        return Outcome(dialogue.id, turn.prompts, finished=turn.finished,
                       locale=turn.state.locale, title=title(script, turn.state.locale),
                       questions=_page(script, turn.state))

    async def open_to_visitors(self, survey_id: str) -> bool:
        """Whether anyone may answer this survey without being known (its script says
        `anonymous: true`): False for a survey that does not exist either."""
        def run(session: Session) -> bool:
            version = scripts.active_version(session, survey_id)
            return version is not None and self._script(session, survey_id, version).anonymous

        async with UnitOfWork(self._factory, read_only=True) as uow:
            return await uow.session.run_sync(run)

    async def reply(self, who: Who, reply: Reply, *, event: Event | None = None
                    ) -> Outcome | None:
        """Apply a reply to the open dialogue at this address; None when there is none."""
        return await self._apply(OPEN_AT, _at(who), lambda script, dialogue: reply, event)

    async def tap(self, who: Who, tap: Tap, *, event: Event | None = None) -> Outcome | None:
        """Apply a button pressed on a question. A button of another dialogue, or of a
        question no longer asked, gets Problem.STALE and changes nothing."""
        return await self._apply(OPEN_AT, _at(who), _tapped(tap), event)

    async def tap_delivery(self, token: str, tap: Tap) -> Outcome | None:
        """A tap (or a typed answer) on the page of the delivery with this token; None when
        its dialogue is not open."""
        return await self._apply(OF_DELIVERY, {"k_token": token}, _tapped(tap), None)

    async def _apply(self, find: Select[DialogueRow], params: Mapping[str, Any],
                     to_reply: Callable[[Script, DialogueRow], Reply], event: Event | None
                     ) -> Outcome | None:
        for attempt in range(1, self._attempts + 1):
            try:
                stepped, alerted, script = await self._step_once(find, params, to_reply, event)
                break
            except StaleDialogue:
                # Another process moved this dialogue on between our read and our write:
                # read it again and apply the reply to where it is now.
                if attempt == self._attempts:
                    raise
        if stepped is None:
            return None
        if isinstance(stepped, Duplicate):
            return await self._where_it_stands(stepped.dialogue)
        dialogue, turn, recorded = stepped
        state = turn.state
        raised = tuple(
            Alert(answer.alert_id, answer.survey_id, answer.step_id, answer.metric, answer.score,
                  dialogue.customer_id, dialogue.id,
                  _str_or_none(state.customer.get("first_name")), dict(state.context))
            for answer in recorded if answer.alert_id is not None)
        # A text after a low score is the customer's comment: it goes under the latest alert.
        comments = tuple(Comment(alert.id, alert.message_id, answer.text)
                         for alert in alerted for answer in recorded if answer.text)
        return Outcome(dialogue.id, turn.prompts, turn.reprompt, turn.finished, raised,
                       comments, state.locale, title=title(script, state.locale) if script else "")

    async def _where_it_stands(self, dialogue: DialogueRow | None) -> Outcome:
        """A redelivered event's outcome: the question the dialogue is at. The channel
        resends an event when it did not hear back, and the first handling may have died
        after its commit and before its reply: asking again beats never asking."""
        if dialogue is None or dialogue.status != DialogueStatus.ACTIVE:
            return Outcome(0, duplicate=True)
        async with UnitOfWork(self._factory, read_only=True) as uow:
            script = await uow.session.run_sync(self._script, dialogue.survey_id,
                                                dialogue.script_version)
        state = dialogue.dialogue_state()
        return Outcome(dialogue.id, current_prompts(script, state), locale=state.locale,
                       duplicate=True)

    async def _step_once(self, find: Select[DialogueRow], params: Mapping[str, Any],
                         to_reply: Callable[[Script, DialogueRow], Reply], event: Event | None
                         ) -> tuple[Stepped | Duplicate | None, tuple[alerts.Posted, ...],
                                    Script | None]:
        """The step; the dialogue's latest alert when the reply holds a text (a comment),
        read in the step's own hop, not in a unit of work of its own; and its script."""
        now = self._clock()
        alerted: tuple[alerts.Posted, ...] = ()
        used: list[Script] = []

        def step(session: Session, dialogue: DialogueRow) -> tuple[Turn, str]:
            nonlocal alerted
            script = self._script(session, dialogue.survey_id, dialogue.script_version)
            used.append(script)
            turn = advance(script, dialogue.dialogue_state(), to_reply(script, dialogue), now)
            if any(answer.text for answer in turn.answers):
                latest = alerts.latest_for(session.connection(), dialogue.id)
                alerted = (latest,) if latest is not None else ()
            return turn, script.timezone

        async with UnitOfWork(self._factory) as uow:
            stepped = await uow.step(find, params, step, now=now, event=event)
        return stepped, alerted, used[-1] if used else None

    async def opt_out(self, who: Who) -> bool:
        """No more surveys for this customer, in any channel; the open dialogue ends.
        False if they had opted out already."""
        return await self._set_opt_out(who, opted_out=True)

    async def opt_out_delivery(self, token: str, channel: str = "email") -> bool:
        """The unsubscribe link of a delivery: its customer gets no more surveys, in any
        channel, and its dialogue ends. LinkExpired for an unknown token; False if they
        had opted out already."""
        now = self._clock()
        async with UnitOfWork(self._factory) as uow:
            delivery = await uow.deliveries.by_token(token)
            if delivery is None:
                raise UnknownLink("unknown")
            customer = await uow.customers.get(delivery.customer_id)
            if customer.opted_out_at is not None:
                return False
            customer.opted_out_at = customer.updated_at = now
            if (dialogue := await uow.sessions.of_delivery(token)) is not None:
                await uow.sessions.close(dialogue, DialogueStatus.ABANDONED, now=now)
            await uow.audit.add(f"customer:{customer.id}", "opt_out", f"customer:{customer.id}",
                                {"channel": channel, "delivery": delivery.id}, now=now)
            await uow.commit()
        return True

    async def opt_in(self, who: Who) -> bool:
        """Surveys again, after an opt-out. False if they had not opted out."""
        return await self._set_opt_out(who, opted_out=False)

    async def _set_opt_out(self, who: Who, *, opted_out: bool) -> bool:
        now = self._clock()
        async with UnitOfWork(self._factory) as uow:
            customer, _ = await uow.session.run_sync(self._customer, who, now)
            if (customer.opted_out_at is not None) == opted_out:
                return False
            customer.opted_out_at = now if opted_out else None
            customer.updated_at = now
            if opted_out:
                dialogue = await uow.sessions.open_for(customer.id, who.channel)
                if dialogue is not None:
                    await uow.sessions.close(dialogue, DialogueStatus.ABANDONED, now=now)
            await uow.audit.add(f"customer:{customer.id}", "opt_out" if opted_out else "opt_in",
                                f"customer:{customer.id}", {"channel": who.channel}, now=now)
            await uow.commit()
        return True

    async def latest_status(self, who: Who, survey_id: str | None = None) -> str | None:
        """The status of the latest dialogue at this address (of this survey, if given):
        expired for a late reply, completed for a visitor who answered already."""
        async with UnitOfWork(self._factory) as uow:
            return await uow.sessions.latest_status(who.channel, who.address, survey_id)

    async def locale_of(self, who: Who) -> str | None:
        """The language the customer chose (/language), if any."""
        async with UnitOfWork(self._factory) as uow:
            customer = await uow.customers.by_identity(who.channel, who.address)
        return customer.locale if customer is not None else None

    async def set_locale(self, who: Who, locale: str) -> Outcome | None:
        """Remember the customer's language, and switch the open dialogue to it (if its
        script speaks it); returns the open question, asked again in that language."""
        now = self._clock()
        async with UnitOfWork(self._factory) as uow:
            customer, _ = await uow.session.run_sync(self._customer, who, now)
            customer.locale, customer.updated_at = locale, now
            dialogue = await uow.sessions.open_for(customer.id, who.channel)
            outcome = None
            if dialogue is not None:
                script = await uow.session.run_sync(
                    self._script, dialogue.survey_id, dialogue.script_version)
                state = change_locale(script, dialogue.dialogue_state(), locale)
                await uow.sessions.save(dialogue, now=now, state=state.to_json())
                outcome = Outcome(dialogue.id, current_prompts(script, state),
                                  locale=state.locale)
            await uow.commit()
        return outcome

    async def mark_unreachable(self, who: Who, reason: str) -> None:
        async with UnitOfWork(self._factory) as uow:
            await uow.customers.mark_unreachable(who.channel, who.address, reason)
            await uow.commit()

    async def alert_posted(self, alert_id: int, message_id: str) -> None:
        async with UnitOfWork(self._factory) as uow:
            await uow.alerts.set_message(alert_id, message_id)
            await uow.commit()

    async def transcript(self, session_id: int) -> Transcript:
        async with UnitOfWork(self._factory) as uow:
            dialogue = await uow.sessions.get(session_id)
            customer = await uow.customers.get(dialogue.customer_id)
            answers = await uow.answers.for_session(session_id)
        state = dialogue.dialogue_state()
        return Transcript(
            dialogue.id, dialogue.survey_id, customer.id, customer.first_name, dialogue.status,
            dict(state.context),
            tuple(AnswerLine(a.step_id, a.score, tuple(a.choices or ()), a.text)
                  for a in answers))

    @staticmethod
    def _customer(session: Session, who: Who, now: datetime) -> tuple[CustomerRow, bool]:
        """The customer at this address, and whether they are new (created now); the address
        is bound to them and marked reachable again (customers.bind): someone who writes to
        us can be written to."""
        customer = customers.by_identity(session, who.channel, who.address)
        new = customer is None
        if customer is None:
            # No locale yet: until the customer picks one (/language), the channel's guess
            # (who.locale) is asked again each time.
            customer = customers.add(session, now=now, first_name=who.first_name)
        customers.bind(session.connection(), customer.id, who.channel, who.address, now=now)
        return customer, new

    def _script(self, session: Session, survey_id: str, version: int) -> Script:
        """Synchronous (it runs inside UnitOfWork.step): a dialogue finishes on the version
        it started with, even after a new one is stored."""
        cached = self._scripts.get((survey_id, version))
        return cached or self._parsed(scripts.get(session, survey_id, version))

    def _parsed(self, row: ScriptRow) -> Script:
        key = (row.survey_id, row.version)
        if key not in self._scripts:
            self._scripts[key] = script_of(row)
        return self._scripts[key]


def respondent_of(channel: str, delivery_id: int | None) -> Respondent:
    """The rule migration 0005 applies to older dialogues too: a dialogue on the web
    without a delivery was opened by a visitor (/w/{survey}, the widget) and is anonymous;
    any other (a delivery's page or e-mail, a messenger chat) is a known customer's."""
    if channel == Channel.WEB and delivery_id is None:
        return Respondent.ANONYMOUS
    return Respondent.KNOWN


def title(script: Script, locale: str) -> str:
    return script.title.get(locale) or script.title.get(script.default_locale) or script.id


def _page(script: Script, state: DialogueState) -> tuple[Prompt, ...]:
    return all_questions(script, state) if script.web_layout == "page" else ()


def _open_view(view: _View | None, token: str) -> _View:
    """A delivery's DELIVERY_VIEW row, if its survey may be answered: UnknownLink,
    Finished, LinkExpired or OptedOut if not."""
    if view is None:
        raise UnknownLink("unknown")
    if view.status == DeliveryStatus.COMPLETED:
        raise Finished(token)
    if view.status not in deliveries.OPEN:
        raise LinkExpired(view.status)
    if view.opted_out_at is not None:
        raise OptedOut(token)
    return view


def _at(who: Who) -> dict[str, str]:
    return {"k_channel": who.channel, "k_address": who.address}


def _tapped(tap: Tap) -> Callable[[Script, DialogueRow], Reply]:
    """What a tap on a question means now: stale if the dialogue moved on since it was
    shown (a double submission, an old keyboard), else its answer."""
    def to_reply(script: Script, dialogue: DialogueRow) -> Reply:
        keys = script.answer_keys()
        if (dialogue.id != tap.session_id or not 1 <= tap.position <= len(keys)
                or tap.survey not in (None, script.id)):
            return Reply.button("", "")  # no question has an empty key: stale
        key = keys[tap.position - 1]
        if tap.back:
            return Reply.back()
        if tap.skip:
            return Reply.skip(key)
        asked = current_prompts(script, dialogue.dialogue_state())
        if not asked or asked[0].step != key:
            return Reply.button(key, "")  # the engine tells stale from finished
        if tap.text is not None:
            return Reply.typed(tap.text)
        options = asked[0].options
        picked = [options[i].value for i in tap.picked if 0 <= i < len(options)]
        return Reply.button(key, ",".join(picked))

    return to_reply


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _profile(customer: CustomerRow) -> dict[str, Scalar]:
    return profile(customer.attributes, customer.first_name)


def profile(attributes: Mapping[str, object] | None, first_name: str | None
            ) -> dict[str, Scalar]:
    """What placeholders and conditions may read as {customer.KEY}: scalar attributes and
    the first name; never contact details."""
    found = {k: v for k, v in (attributes or {}).items() if isinstance(v, bool | int | float | str)}
    if first_name:
        found["first_name"] = first_name
    return found

