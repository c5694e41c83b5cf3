"""The dialogue lifecycle, whatever the channel: open one for a customer's address (or a
delivery), take a reply, decide what it does (the engine advances the state; this module
decides completed or expired, which answers may alert) and have storage write it — answers,
state, rollups, alerts, the delivery and the webhook events — in one transaction.

Channels (Telegram, the web page, e-mail links) turn replies into `Reply` (or `Tap`) values
and the outcome's prompts into their own UI; nothing here knows how a prompt looks."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from bot.services import team
from bot.services.effects import after_commit
from bot.services.errors import NotFound, ServiceError
from bot.services.scripts import ScriptCache
from bot.services.team import Alert, Comment, TeamAlerts
from conversations.conditions import Scalar
from conversations.engine import (
    Answer,
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
from conversations.statuses import Channel, DeliveryStatus, DialogueStatus, Respondent
from storage.errors import StaleDialogue
from storage.models import CustomerRow, DeliveryRow, DialogueRow
from storage.outbox import TEAM
from storage.repositories.deliveries import OPEN
from storage.repositories.dialogues import DeliveryView, Recorded
from storage.uow import Database, Store

_T = TypeVar("_T")
log = logging.getLogger(__name__)
# A script has at most 100 steps and a CLI step asks four questions: a page's answers are
# never more (a bound on the loop whatever the script does).
MAX_PAGE_ANSWERS = 500
# A channel's event that may come twice: (channel, its id there), e.g. a Telegram update.
Event = tuple[str, str]
# How a reply finds its dialogue in the transaction that applies it.
Find = Callable[[Store], DialogueRow | None]


class SurveyError(ServiceError):
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
    phone: str | None = None  # E.164, where the channel tells it: joins the customer


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


@dataclass(frozen=True, slots=True)
class _Stepped:
    """What one reply did, inside its transaction: the dialogue as saved, its script, the
    turn, the answers stored, and its latest alert when the reply held a text."""

    dialogue: DialogueRow
    script: Script
    turn: Turn
    recorded: list[Recorded]
    alerts: tuple[Alert, ...]
    comments: tuple[Comment, ...]
    effects: tuple[int, ...]  # the team's events it queued, to carry out after the commit


@dataclass(frozen=True, slots=True)
class _Duplicate:
    """The reply's event was applied before: nothing done. The dialogue as it is now."""

    dialogue: DialogueRow | None


class SurveyService:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None,
                 attempts: int = 3, team: TeamAlerts | None = None,
                 scripts: ScriptCache | None = None, windowed: Collection[str] = ()) -> None:
        """`team`: tell the team chat of alerts and comments (None: the dashboard only);
        `scripts`: the process's parsed scripts, shared with the other services;
        `windowed`: the channels with a messaging window, whose customers' messages are
        timed (bot.services.channels.Window)."""
        self._db = db
        self._windowed = frozenset(windowed)
        self._team = team
        self._clock = clock or (lambda: datetime.now(UTC))
        self._attempts = attempts
        self._scripts = scripts or ScriptCache()

    # -- opening ------------------------------------------------------------------------------

    async def begin(self, who: Who, survey_id: str | None = None, *,
                    context: Mapping[str, Scalar] | None = None, token: str | None = None,
                    event: Event | None = None) -> Outcome:
        """Open a survey for the customer at this address and return its first question.

        With `token` (a deep link), the delivery it names: the address is bound to that
        delivery's customer. Without, the customer's pending delivery in this channel, else
        `survey_id`. A dialogue already open on the same survey is shown again, not started
        anew; another open dialogue is abandoned. OptedOut, LinkExpired, NoSurvey."""
        now = self._clock()
        outcome = await self._db.write(
            lambda store: self._begin(store, who, survey_id, context, token, event, now))
        if isinstance(outcome, OptedOut):
            raise outcome
        return outcome

    def _begin(self, store: Store, who: Who, survey_id: str | None,
               context: Mapping[str, Scalar] | None, token: str | None, event: Event | None,
               now: datetime) -> Outcome | OptedOut:
        """OptedOut is returned, not raised, so that the transaction commits: the binding
        stands, the customer may opt in again. LinkExpired and NoSurvey are raised: nothing
        is committed, the event not claimed."""
        if event is not None and not store.events.claim(*event, now):
            return Outcome(0, duplicate=True)
        delivery = None
        new = False  # created in this transaction: no delivery or dialogue can name them yet
        if token is not None:
            delivery = store.deliveries.by_token(token)
            if delivery is None or delivery.status not in OPEN:
                raise LinkExpired(token)
            customer = store.customers.get(delivery.customer_id)
            store.customers.bind(customer.id, who.channel, who.address, now=now)
        else:
            customer, new = self._customer(store, who, now)
        self._heard(store, who, now)
        if customer.opted_out_at is not None:
            return OptedOut(who.address)
        if delivery is None and not new:
            delivery = store.deliveries.pending_for(customer.id, who.channel)
        if delivery is not None:
            survey_id, context = delivery.survey_id, delivery.context
        if survey_id is None:
            raise NoSurvey("no survey asked for")
        return self.open(store, who, customer, survey_id, context, delivery, now, new=new)

    async def open_delivery(self, token: str, *, channel: str = "web",
                            locale: str | None = None) -> Outcome:
        """The dialogue of the delivery with this token, for a page that shows it: the one
        under way (in whatever channel it is), else a new one in `channel`. LinkExpired
        for an unknown or closed delivery (Finished once it was answered), OptedOut,
        NoSurvey."""
        view = await self._db.peek(
            lambda store: _open_view(store.dialogues.delivery_view(token), token))
        script = self._scripts.cached(view.survey_id, view.script_version) if view.id else None
        if script is not None:  # shown again: one read, no write
            state = DialogueState.from_json(view.state)
            return Outcome(view.id, current_prompts(script, state), locale=state.locale,
                           title=title(script, state.locale), questions=_page(script, state))
        now = self._clock()

        def run(store: Store) -> Outcome:
            delivery = store.deliveries.by_token(token)
            if delivery is None or delivery.status not in OPEN:
                raise LinkExpired(token)  # closed since the read above
            customer = store.customers.get(delivery.customer_id)
            return self.open(store, Who(channel, "", locale=locale), customer,
                             delivery.survey_id, delivery.context, delivery, now, move=False)

        return await self._db.write(run)

    async def preview_delivery(self, token: str, value: str, *,
                               locale: str | None = None) -> Preview:
        """The delivery's first question due with `value` picked, as its page shows it
        before the customer sends it: read and worked out in memory, nothing written, so a
        mail scanner that follows every score link of an e-mail answers nothing and starts
        nothing. Refuses as open_delivery does."""
        now = self._clock()

        def read(store: Store) -> tuple[Script, DialogueState]:
            view = _open_view(store.dialogues.delivery_view(token), token)
            if view.id is not None:  # under way: where it stands
                script = self._script(store, view.survey_id, view.script_version)
                return script, DialogueState.from_json(view.state)
            delivery = store.deliveries.by_token(token)
            assert delivery is not None  # the view above found it
            version = store.scripts.active_version(delivery.survey_id)
            if version is None:
                raise NoSurvey(delivery.survey_id)
            customer = store.customers.get(delivery.customer_id)
            script = self._script(store, delivery.survey_id, version)
            return script, start(script, now=now, locale=customer.locale or locale,
                                 context=delivery.context, customer=_profile(customer)).state

        script, state = await self._db.read(read)
        prompts = current_prompts(script, state)
        asked = [p for p in prompts if p.kind is not PromptKind.MESSAGE]
        heading = title(script, state.locale)
        if not asked or value not in (option.value for option in asked[0].options):
            return Preview(prompts, locale=state.locale, title=heading)
        turn = advance(script, state, Reply.button(asked[0].step, value), now)
        return Preview(prompts, turn.prompts, turn.finished, state.locale, heading)

    def open(self, store: Store, who: Who, customer: CustomerRow, survey_id: str,
             context: Mapping[str, Scalar] | None, delivery: DeliveryRow | None,
             now: datetime, *, new: bool = False, move: bool = True) -> Outcome:
        """Open (or show again) the customer's dialogue of `survey_id` in `who`'s channel,
        inside the caller's transaction: the one way a dialogue starts, for a customer's
        message, a page and the dispatcher's send alike.

        `move`: a delivery's dialogue under way in another channel continues in this
        one (the Telegram deep link of an e-mailed survey), so the channel's own lookups
        find it; without, it is only shown (a web page, which finds it by its token).
        `new`: the customer was created in this transaction (nothing to look up)."""
        delivery_id = delivery.id if delivery is not None else None
        if delivery is not None and (
                current := store.dialogues.of_delivery(delivery.token or "")) is not None:
            if move and current.channel != who.channel:
                other = store.dialogues.open_for(customer.id, who.channel)
                if other is not None:
                    store.dialogues.close(other, DialogueStatus.ABANDONED, now)
                store.dialogues.save(current, now, {"channel": who.channel})
            return self._shown(store, current)
        dialogue = None if new else store.dialogues.open_for(customer.id, who.channel)
        if dialogue is not None and (dialogue.survey_id, dialogue.delivery_id) == (
                survey_id, delivery_id):
            return self._shown(store, dialogue)
        version = store.scripts.active_version(survey_id)
        if version is None:
            raise NoSurvey(survey_id)
        script = self._script(store, survey_id, version)
        respondent = respondent_of(who.channel, delivery_id)
        if respondent == Respondent.ANONYMOUS and not script.anonymous:
            raise NoSurvey(survey_id)  # as if unknown: a stranger learns nothing of it
        dialogue, turn = start_dialogue(
            store, script, customer_id=customer.id, channel=who.channel, now=now,
            locale=customer.locale or who.locale, customer=_profile(customer),
            context=context, delivery_id=delivery_id, respondent=respondent,
            replacing=dialogue.id if dialogue is not None else None)
        return Outcome(dialogue.id, turn.prompts, finished=turn.finished,
                       locale=turn.state.locale, title=title(script, turn.state.locale),
                       questions=_page(script, turn.state))

    def _shown(self, store: Store, dialogue: DialogueRow) -> Outcome:
        script = self._script(store, dialogue.survey_id, dialogue.script_version)
        state = dialogue.dialogue_state()
        return Outcome(dialogue.id, current_prompts(script, state), locale=state.locale,
                       title=title(script, state.locale), questions=_page(script, state))

    async def open_to_visitors(self, survey_id: str) -> bool:
        """Whether anyone may answer this survey without being known (its script says
        `anonymous: true`): False for a survey that does not exist either."""
        def run(store: Store) -> bool:
            version = store.scripts.active_version(survey_id)
            return version is not None and self._script(store, survey_id, version).anonymous

        return await self._db.read(run)

    # -- stepping -----------------------------------------------------------------------------

    async def reply(self, who: Who, reply: Reply, *, event: Event | None = None
                    ) -> Outcome | None:
        """Apply a reply to the open dialogue at this address; None when there is none."""
        return await self._apply(self._open_at(who), lambda script, dialogue: reply, event)

    async def tap(self, who: Who, tap: Tap, *, event: Event | None = None) -> Outcome | None:
        """Apply a button pressed on a question. A button of another dialogue, or of a
        question no longer asked, gets Problem.STALE and changes nothing."""
        return await self._apply(self._open_at(who), _tapped(tap), event)

    def _open_at(self, who: Who) -> Find:
        """The open dialogue at this address, found by the reply's transaction (which
        first times the message, in a channel with a messaging window)."""
        if who.channel not in self._windowed:
            return lambda store: store.dialogues.open_at(who.channel, who.address)

        def find(store: Store) -> DialogueRow | None:
            self._heard(store, who, self._clock())
            return store.dialogues.open_at(who.channel, who.address)

        return find

    def _heard(self, store: Store, who: Who, now: datetime) -> None:
        """The customer wrote to us: in a channel with a messaging window, it opens."""
        if who.channel in self._windowed:
            store.customers.touch_inbound(who.channel, who.address, now)

    async def tap_delivery(self, token: str, tap: Tap) -> Outcome | None:
        """A tap (or a typed answer) on the page of the delivery with this token; None when
        its dialogue is not open."""
        return await self._apply(lambda store: store.dialogues.of_delivery(token),
                                 _tapped(tap), None)

    async def _apply(self, find: Find, to_reply: Callable[[Script, DialogueRow], Reply],
                     event: Event | None) -> Outcome | None:
        stepped = await self._write_fresh(functools.partial(
            self._step, find=find, to_reply=to_reply, event=event))
        if stepped is None:
            return None
        if isinstance(stepped, _Duplicate):
            return await self._where_it_stands(stepped.dialogue)
        self._carry_out([stepped])
        return self._outcome(stepped)

    @staticmethod
    def _outcome(stepped: _Stepped) -> Outcome:
        turn, state = stepped.turn, stepped.turn.state
        return Outcome(stepped.dialogue.id, turn.prompts, turn.reprompt, turn.finished,
                       stepped.alerts, stepped.comments, state.locale,
                       title=title(stepped.script, state.locale))

    async def answer_page(self, token: str, tap_for: Callable[[int], Tap]) -> Outcome | None:
        """A delivery's survey sent as one form (web_layout: page): its answers go in one by
        one, in the dialogue's order — `tap_for(position)` is the form's answer to the
        question at that place — until the end or one that does not fit, all in one
        transaction (a malformed field leaves nothing half-answered). A branch not taken
        leaves its fields unread. Refuses as open_delivery does; None when the dialogue is
        not open. The outcome holds every alert and comment the answers raised."""
        await self.open_delivery(token)
        steps = await self._write_fresh(functools.partial(
            self._answer_page, token=token, tap_for=tap_for))
        if steps is None:
            return None
        if not steps:
            return await self.open_delivery(token)  # nothing asked: where it stands
        self._carry_out(steps)
        outcomes = [self._outcome(step) for step in steps]
        last = outcomes[-1]
        return dataclasses.replace(
            last, alerts=tuple(a for o in outcomes for a in o.alerts),
            comments=tuple(c for o in outcomes for c in o.comments))

    async def _write_fresh(self, step: Callable[..., _T]) -> _T:
        """`step(store, now=...)` in a write, read again and retried when another process
        moved the dialogue on between its read and its write (StaleDialogue), so the reply
        applies to where the dialogue is now."""
        for _ in range(self._attempts - 1):
            try:
                return await self._db.write(functools.partial(step, now=self._clock()))
            except StaleDialogue:
                continue
        return await self._db.write(functools.partial(step, now=self._clock()))

    def _answer_page(self, store: Store, token: str, tap_for: Callable[[int], Tap],
                     now: datetime) -> list[_Stepped] | None:
        if (dialogue := store.dialogues.of_delivery(token)) is None:
            return None
        script = self._script(store, dialogue.survey_id, dialogue.script_version)
        steps: list[_Stepped] = []
        while len(steps) < MAX_PAGE_ANSWERS:
            state = dialogue.dialogue_state()
            asked = [p for p in current_prompts(script, state) if p.kind is not PromptKind.MESSAGE]
            if state.finished or not asked:
                break
            reply = _tapped(tap_for(asked[0].position))(script, dialogue)
            steps.append(self._turn(store, dialogue, script, reply, now))
            if steps[-1].turn.reprompt is not None and not steps[-1].turn.finished:
                break
        return steps

    def _step(self, store: Store, find: Find, to_reply: Callable[[Script, DialogueRow], Reply],
              event: Event | None, now: datetime) -> _Stepped | _Duplicate | None:
        """A reply's whole transaction: claim its event, read the dialogue, advance it, and
        record the turn unless it only re-asks. None if there is no dialogue to reply to."""
        # The event first: a redelivered one is known as such even after its dialogue ended.
        if event is not None and not store.events.claim(*event, now):
            return _Duplicate(find(store))
        if (dialogue := find(store)) is None:
            return None  # the event stays claimed: "no dialogue" was the answer to it
        script = self._script(store, dialogue.survey_id, dialogue.script_version)
        return self._turn(store, dialogue, script, to_reply(script, dialogue), now)

    def _turn(self, store: Store, dialogue: DialogueRow, script: Script, reply: Reply,
              now: datetime) -> _Stepped:
        """Advance the dialogue by a reply and record the turn, unless it only re-asks; the
        team's alerts and the customer's comment under the latest, queued for the team."""
        turn = advance(script, dialogue.dialogue_state(), reply, now)
        alerted = (store.alerts.latest_for(dialogue.id)
                   if any(answer.text for answer in turn.answers) else None)
        recorded = []
        if turn.reprompt is None or turn.finished:  # else nothing changed: nothing to write
            recorded = record_turn(store, dialogue, script, turn, now)
        state = turn.state
        alerts = tuple(
            Alert(answer.alert_id, answer.survey_id, answer.step_id, answer.metric, answer.score,
                  dialogue.customer_id, dialogue.id,
                  _str_or_none(state.customer.get("first_name")), dict(state.context))
            for answer in recorded if answer.alert_id is not None)
        # A text after a low score is the customer's comment: it goes under the latest alert.
        comments = tuple(Comment(alerted.id, alerted.message_id, answer.text)
                         for answer in recorded if answer.text and alerted is not None)
        effects: tuple[int, ...] = ()
        if self._team is not None and (alerts or comments):
            effects = tuple(store.outbox.add(
                TEAM, team.events(dialogue.customer_id, alerts, comments), now))
        return _Stepped(dialogue, script, turn, recorded, alerts, comments, effects)

    def _carry_out(self, steps: Sequence[_Stepped]) -> None:
        """After the commit: the answers stored are logged (ids only), the team's events
        carried out."""
        for step in steps:
            for answer in step.recorded:
                log.info("answer %s stored: dialogue %s, survey %s, step %s, via %s",
                         answer.id, step.dialogue.id, answer.survey_id, answer.step_id,
                         answer.channel, extra={
                             "answer_id": answer.id, "dialogue_id": step.dialogue.id,
                             "survey": answer.survey_id, "step": answer.step_id,
                             "channel": answer.channel, "alert_id": answer.alert_id})
        ids = [event for step in steps for event in step.effects]
        if ids and self._team is not None:
            after_commit(functools.partial(self._team.carry_out, ids))

    async def _where_it_stands(self, dialogue: DialogueRow | None) -> Outcome:
        """A redelivered event's outcome: the question the dialogue is at. The channel
        resends an event when it did not hear back, and the first handling may have died
        after its commit and before its reply: asking again beats never asking."""
        if dialogue is None or dialogue.status != DialogueStatus.ACTIVE:
            return Outcome(0, duplicate=True)
        script = await self._db.read(
            lambda store: self._script(store, dialogue.survey_id, dialogue.script_version))
        state = dialogue.dialogue_state()
        return Outcome(dialogue.id, current_prompts(script, state), locale=state.locale,
                       duplicate=True)

    async def asking(self, who: Who) -> Outcome | None:
        """The question open at this address, to show again (a channel's second step:
        WhatsApp opens a group of options in another message); None when none is."""
        dialogue = await self._db.read(
            lambda store: store.dialogues.open_at(who.channel, who.address))
        if dialogue is None:
            return None
        return dataclasses.replace(await self._where_it_stands(dialogue), duplicate=False)

    # -- the customer's choices ---------------------------------------------------------------

    async def opt_out(self, who: Who) -> bool:
        """No more surveys for this customer, in any channel; the open dialogue ends.
        False if they had opted out already."""
        return await self._set_opt_out(who, opted_out=True)

    async def opt_out_delivery(self, token: str, channel: str = "email") -> bool:
        """The unsubscribe link of a delivery: its customer gets no more surveys, in any
        channel, and its dialogue ends. LinkExpired for an unknown token; False if they
        had opted out already."""
        now = self._clock()

        def run(store: Store) -> bool:
            delivery = store.deliveries.by_token(token)
            if delivery is None:
                raise UnknownLink("unknown")
            customer = store.customers.get(delivery.customer_id)
            if not opt_out_customer(store, customer, now, channel=channel,
                                    delivery=delivery.id):
                return False
            if (dialogue := store.dialogues.of_delivery(token)) is not None:
                store.dialogues.close(dialogue, DialogueStatus.ABANDONED, now)
            return True

        return await self._db.write(run)

    async def opt_in(self, who: Who) -> bool:
        """Surveys again, after an opt-out. False if they had not opted out."""
        return await self._set_opt_out(who, opted_out=False)

    async def _set_opt_out(self, who: Who, *, opted_out: bool) -> bool:
        now = self._clock()

        def run(store: Store) -> bool:
            customer, _ = self._customer(store, who, now)
            if not opted_out:
                if customer.opted_out_at is None:
                    return False
                customer.opted_out_at, customer.updated_at = None, now
                store.audit.add(f"customer:{customer.id}", "opt_in", f"customer:{customer.id}",
                                {"channel": who.channel}, now=now)
                return True
            if not opt_out_customer(store, customer, now, channel=who.channel):
                return False
            if (dialogue := store.dialogues.open_for(customer.id, who.channel)) is not None:
                store.dialogues.close(dialogue, DialogueStatus.ABANDONED, now)
            return True

        return await self._db.write(run)

    async def latest_status(self, who: Who, survey_id: str | None = None) -> str | None:
        """The status of the latest dialogue at this address (of this survey, if given):
        expired for a late reply, completed for a visitor who answered already."""
        return await self._db.read(
            lambda store: store.dialogues.latest_status(who.channel, who.address, survey_id))

    async def locale_of(self, who: Who) -> str | None:
        """The language the customer chose (/language), if any."""
        customer = await self._db.read(
            lambda store: store.customers.by_identity(who.channel, who.address))
        return customer.locale if customer is not None else None

    async def set_locale(self, who: Who, locale: str) -> Outcome | None:
        """Remember the customer's language, and switch the open dialogue to it (if its
        script speaks it); returns the open question, asked again in that language."""
        now = self._clock()

        def run(store: Store) -> Outcome | None:
            customer, _ = self._customer(store, who, now)
            customer.locale, customer.updated_at = locale, now
            dialogue = store.dialogues.open_for(customer.id, who.channel)
            if dialogue is None:
                return None
            script = self._script(store, dialogue.survey_id, dialogue.script_version)
            state = change_locale(script, dialogue.dialogue_state(), locale)
            store.dialogues.save(dialogue, now, {"state": state.to_json()})
            return Outcome(dialogue.id, current_prompts(script, state), locale=state.locale)

        return await self._db.write(run)

    async def mark_unreachable(self, who: Who, reason: str) -> None:
        await mark_unreachable(self._db, who, reason)

    async def alert_posted(self, alert_id: int, message_id: str) -> None:
        await self._db.write(lambda store: store.alerts.set_message(alert_id, message_id))

    async def transcript(self, session_id: int) -> Transcript:
        def run(store: Store) -> Transcript:
            dialogue = store.dialogues.get(session_id)
            if dialogue is None:
                raise NotFound(f"dialogue {session_id}")
            customer = store.customers.get(dialogue.customer_id)
            answers = store.answers.for_session(session_id)
            return Transcript(
                dialogue.id, dialogue.survey_id, customer.id, customer.first_name,
                dialogue.status, dict(dialogue.dialogue_state().context),
                tuple(AnswerLine(a.step_id, a.score, tuple(a.choices or ()), a.text)
                      for a in answers))

        return await self._db.read(run)

    @staticmethod
    def _customer(store: Store, who: Who, now: datetime) -> tuple[CustomerRow, bool]:
        """The customer at this address, and whether they are new (created now); the address
        is bound to them and marked reachable again: someone who writes to us can be
        written to."""
        customer = store.customers.by_identity(who.channel, who.address)
        # Known by their number from elsewhere (SMS, an import): the same customer.
        by_phone = store.customers.by_identity("phone", who.phone) if who.phone else None
        customer = customer or by_phone
        new = customer is None
        if customer is None:
            # No locale yet: until the customer picks one (/language), the channel's guess
            # (who.locale) is asked again each time.
            customer = store.customers.add(now=now, first_name=who.first_name)
        store.customers.bind(customer.id, who.channel, who.address, now=now)
        if who.phone and by_phone is None:
            store.customers.bind(customer.id, "phone", who.phone, now=now)
        return customer, new

    def _script(self, store: Store, survey_id: str, version: int) -> Script:
        """A dialogue finishes on the version it started with, even after a new one is
        stored."""
        return self._scripts.get(store.scripts, survey_id, version)


def opt_out_customer(store: Store, customer: CustomerRow, now: datetime,
                     **detail: str | int) -> bool:
    """No more surveys for this customer, in any channel, audited with `detail` (where
    they asked); False if they had opted out already."""
    if customer.opted_out_at is not None:
        return False
    customer.opted_out_at = customer.updated_at = now
    store.audit.add(f"customer:{customer.id}", "opt_out", f"customer:{customer.id}",
                    dict(detail), now=now)
    return True


async def mark_unreachable(db: Database, who: Who, reason: str) -> None:
    """The customer cannot be written to at this address (they blocked the bot, the mail
    bounced): nothing unprompted goes there until they write to us again."""
    await db.write(
        lambda store: store.customers.mark_unreachable(who.channel, who.address, reason))


def start_dialogue(store: Store, script: Script, *, customer_id: int, channel: str,
                   now: datetime, locale: str | None, customer: Mapping[str, Scalar],
                   context: Mapping[str, Scalar] | None, delivery_id: int | None,
                   respondent: Respondent = Respondent.KNOWN, replacing: int | None = None,
                   sending: bool = False) -> tuple[DialogueRow, Turn]:
    """The one way a dialogue starts, in the caller's transaction (a customer's message, a
    page, the dispatcher's send): the dialogue it `replaces` in the channel is abandoned
    (one open dialogue per channel: the new one wins), the engine starts the script, and a
    script of messages only is recorded as completed at once (`sending`: its delivery is
    being sent, and the sender records how that ended)."""
    if replacing is not None:
        store.dialogues.end_if_active(replacing, DialogueStatus.ABANDONED, now)
    turn = start(script, now=now, locale=locale, context=context, customer=customer)
    dialogue = store.dialogues.start(customer_id, channel, script.id, script.version,
                                     turn.state.to_json(), now=now, delivery_id=delivery_id,
                                     respondent=respondent)
    if turn.finished:
        record_turn(store, dialogue, script, turn, now, mark_delivery=not sending)
    return dialogue, turn


def record_turn(store: Store, dialogue: DialogueRow, script: Script, turn: Turn,
                now: datetime, *, mark_delivery: bool = True) -> list[Recorded]:
    """What a turn does, decided here and written by storage: the dialogue ends as the
    engine says (once: a closed dialogue is not closed again); an answer alerts as the
    script says, but anonymous answers only so often per survey (a burst of them must
    not flood the team); its delivery is answered once an answer is stored, completed
    once the survey is."""
    ending = turn.ending if dialogue.status == DialogueStatus.ACTIVE else None
    answers: Sequence[Answer] = turn.answers
    if dialogue.respondent == Respondent.ANONYMOUS and any(a.alert for a in answers):
        allowed = store.alerts.anonymous_alert_allowed(
            dialogue.survey_id, now, store.dialogues.anonymous_alerts_per_hour())
        answers = [a._replace(alert=a.alert and allowed) for a in answers]
    recorded = store.dialogues.record(dialogue, turn.state, answers, turn.retracted,
                                      ending, now, script.timezone)
    if mark_delivery and dialogue.delivery_id is not None and (recorded or turn.finished):
        store.deliveries.mark_answered(dialogue.delivery_id, turn.finished, now)
    return recorded


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


def _open_view(view: DeliveryView | None, token: str) -> DeliveryView:
    """A delivery's DELIVERY_VIEW row, if its survey may be answered: UnknownLink,
    Finished, LinkExpired or OptedOut if not."""
    if view is None:
        raise UnknownLink("unknown")
    if view.status == DeliveryStatus.COMPLETED:
        raise Finished(token)
    if view.status not in OPEN:
        raise LinkExpired(view.status)
    if view.opted_out_at is not None:
        raise OptedOut(token)
    return view


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

