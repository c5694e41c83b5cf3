"""The dispatcher: due deliveries out through their channel, reminders once, expiry.

The deliveries table is the source of truth. A tick claims due deliveries in batches
(status -> sending; SKIP LOCKED on PostgreSQL, so several processes never take one twice),
opens each one's dialogue in the claiming transaction, sends the first prompt through the
channel's Sender, and records each outcome right after its send (group-committed every few
milliseconds): a process killed mid-batch leaves at most the sends of those milliseconds
unrecorded. A delivery left in `sending` by a dead process goes back to the queue after
`sending_timeout`, unless its message id was recorded (then it went out).

Outcomes: sent; a closed channel (Telegram 403, no chat yet, a hard bounce) marks that
address unreachable and puts the delivery back at once, so the next tick takes the next
channel (fallback, not failure); a transient error (429, 5xx, network) waits with
exponential backoff (at least `retry_after`) and fails after `attempts`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.observability import Instruments
from bot.services.channels import (
    ChannelClosed,
    Job,
    TryLater,
    Undeliverable,
    Window,
    asks_by_link,
    channel_plan,
)
from bot.services.receipts import close_address
from bot.services.scripts import ScriptCache
from bot.services.surveys import opt_out_customer, profile, start_dialogue, title
from conversations.engine import DialogueState, current_prompts
from conversations.policy import next_allowed
from conversations.script import Script
from storage.db import patiently
from storage.models import DeliveryRow, DeliveryStatus, DialogueStatus
from storage.repositories.deliveries import Deliveries
from storage.uow import Database, Store

log = logging.getLogger(__name__)
BUSY_CHAT_WAIT = timedelta(minutes=10)
LONGEST_WAIT = timedelta(days=1)  # a peer's retry_after past this is not taken at its word
DAY = timedelta(hours=24)
LIMIT_WAIT = timedelta(hours=1)  # a channel's daily limit reached: asked again this late


__all__ = ["ChannelClosed", "DeliveryDispatcher", "Job", "Sender", "TryLater"]


class Sender(Protocol):
    """What the dispatcher needs of a channel (bot.services.channels.Channel): its send."""

    async def send(self, job: Job) -> str | None:
        """Send the job's prompts; the message id, if the channel has one. Raises
        ChannelClosed, TryLater or Undeliverable."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    job: Job
    attempts: int  # before this send
    message_id: str | None = None
    closed: str | None = None
    opted_out: bool = False  # the platform says the customer asked it to stop
    error: str | None = None
    retry_after: float | None = None
    final: bool = False  # the platform refused the message for good: failed now


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of one send, for the log: ids, the channel and the status only."""

    delivery_id: int
    channel: str
    status: str  # sent, completed; scheduled (retried, or on to the next channel); failed
    problem: str | None  # the closed channel's reason, or "error"

    def log(self) -> None:
        fields = {"delivery_id": self.delivery_id, "channel": self.channel,
                  "status": self.status}
        if self.problem is None:
            log.info("delivery %s %s via %s", self.delivery_id, self.status, self.channel,
                     extra=fields)
        else:
            log.log(logging.WARNING if self.status == DeliveryStatus.FAILED else logging.INFO,
                    "delivery %s not sent via %s (%s): %s", self.delivery_id, self.channel,
                    self.problem, "failed" if self.status == DeliveryStatus.FAILED
                    else "tried again later or on the next channel",
                    extra={**fields, "problem": self.problem})


class DeliveryDispatcher:
    def __init__(self, db: Database, senders: Mapping[str, Sender], *,
                 clock: Callable[[], datetime] | None = None, scripts: ScriptCache | None = None,
                 batch: int = 200, attempts: int = 5,
                 sending_timeout: timedelta = timedelta(minutes=5),
                 backoff: timedelta = timedelta(seconds=30), concurrency: int = 100,
                 instruments: Instruments | None = None,
                 windows: Mapping[str, Window] | None = None,
                 daily: Mapping[str, int] | None = None) -> None:
        """`senders` in the order a delivery tries them; `windows`, the messaging
        windows of those that have one (bot.services.channels.Spec.window); `daily`, how
        many customers a channel may send its template to in 24 hours (WhatsApp's
        messaging limit: 250 for a new number)."""
        self._db = db
        self._senders = senders
        self._windows = {name: window for name, window in (windows or {}).items()
                         if name in senders}
        self._daily = {name: count for name, count in (daily or {}).items()
                       if name in self._windows}
        self._clock = clock or (lambda: datetime.now(UTC))
        self._scripts = scripts or ScriptCache()
        self._batch = batch
        self._attempts = attempts
        self._sending_timeout = sending_timeout
        self._backoff = backoff
        self._slots = asyncio.Semaphore(concurrency)
        self._instruments = instruments

    # -- sending ----------------------------------------------------------------------------

    async def tick(self) -> int:
        """Send everything due now, batch after batch; returns how many were claimed."""
        await self.recover()
        claimed = 0
        async with _Recorder(self) as recorder:
            while True:
                jobs = await self._db.write(self._claim)
                if jobs is None:
                    break
                claimed += len(jobs)
                await asyncio.gather(*(self._send(job, attempts, recorder)
                                       for job, attempts in jobs))
                # The next claim must see this batch's outcomes: a closed channel puts its
                # delivery back at once, for the next channel, in this same tick.
                await recorder.flush()
        return claimed

    async def recover(self) -> int:
        now = self._clock()
        recovered = await self._db.write(lambda store: store.deliveries.recover_stuck(
            now - self._sending_timeout, now))
        if recovered:
            log.warning("recovered %s deliveries left in 'sending' by a stopped process",
                        recovered)
        return recovered

    def _claim(self, store: Store) -> list[tuple[Job, int]] | None:
        """Claim a batch and open each delivery's dialogue, in one transaction. None when
        nothing was due; deliveries settled here (opted out, no channel) give no job."""
        now = self._clock()
        deliveries = store.deliveries
        rows = deliveries.claim_due(now, self._batch)
        if not rows:
            return None
        customer_ids = list({row.customer_id for row in rows})
        customers = deliveries.contacts(customer_ids)
        addresses = deliveries.addresses(customer_ids)
        open_dialogues = deliveries.open_dialogues(customer_ids)
        inbound = self._last_inbound(deliveries, customer_ids)
        # Who got a template in the last 24 hours, per channel with a daily limit: this
        # batch adds to them as it goes.
        templated = {name: deliveries.templated_customers(name, now - DAY)
                     for name in self._daily}
        scripts = {survey: self._scripts.active(store.scripts, survey)
                   for survey in {row.survey_id for row in rows}}
        opened: set[tuple[int, str]] = set()  # (customer, channel) given a dialogue now

        def open_each(batch: Sequence[DeliveryRow]) -> list[tuple[Job, int]]:
            before, jobs = set(opened), []
            try:
                for row in batch:
                    job = self._open(store, row, customers[row.customer_id],
                                     addresses.get(row.customer_id, {}),
                                     scripts[row.survey_id], open_dialogues, opened, now,
                                     inbound, templated)
                    if job is not None:
                        jobs.append((job, row.attempts))
            except BaseException:
                opened.intersection_update(before)  # rolled back: not opened after all
                raise
            return jobs

        def unsendable(row: DeliveryRow, error: Exception) -> None:
            log.error("delivery %s could not be prepared (%s): failed, not sent", row.id,
                      type(error).__name__)
            deliveries.finish_sending(row.id, {
                "status": DeliveryStatus.FAILED, "reason": "unprocessable",
                "last_error": _describe(error)}, now)

        return deliveries.each_alone(rows, open_each, unsendable)

    def _open(self, store: Store, row: DeliveryRow, customer: Any,
              addresses: dict[str, str], script: Script | None,
              open_dialogues: dict[tuple[int, str], Any], opened: set[tuple[int, str]],
              now: datetime, inbound: Mapping[tuple[int, str], datetime],
              templated: dict[str, set[int]]) -> Job | None:
        """A claimed delivery's dialogue, opened (or found again, for a retry), and the job
        that sends its first prompt; None when the delivery is settled or put off here."""
        deliveries = store.deliveries
        how = self._ways(addresses, row.channel, row.customer_id, inbound, now, row.channels)
        reaches = list(how)
        plan = [name for name in reaches if how[name] is not None]
        full = [name for name in plan if how[name] and name in self._daily
                and row.customer_id not in templated[name]
                and len(templated[name]) >= self._daily[name]]
        if full and plan == full:  # nothing else reaches them: wait for the limit to free
            deliveries.finish_sending(row.id, {
                "status": DeliveryStatus.SCHEDULED, "due_at": now + LIMIT_WAIT,
                "last_error": f"{full[0]}: the template went to {self._daily[full[0]]} "
                              "customers in the last 24 hours, the daily limit"}, now)
            return None
        plan = [name for name in plan if name not in full]
        settle = ("opted_out" if customer.opted_out_at is not None else
                  "window_closed" if reaches and not plan else
                  "no_channel" if not plan else "survey_inactive" if script is None else None)
        if settle is not None:
            status = (DeliveryStatus.SUPPRESSED if settle == "opted_out"
                      else DeliveryStatus.FAILED)
            deliveries.finish_sending(row.id, {"status": status, "reason": settle}, now)
            return None
        assert script is not None
        # A late send (a retry after backoff, a delivery recovered after sending_timeout)
        # keeps the quiet hours as they are now, not as they were when it was scheduled.
        allowed = next_allowed(now, script.policy.quiet_hours,
                               customer.timezone or script.timezone)
        if allowed > now:
            deliveries.finish_sending(row.id, {"status": DeliveryStatus.SCHEDULED,
                                               "due_at": allowed}, now)
            return None
        channel = plan[0]
        if (row.customer_id, channel) in opened:
            # A second survey for the same chat in one batch would open a second dialogue
            # beside the first: it waits, and then takes over the chat as any new one does.
            deliveries.finish_sending(row.id, {"status": DeliveryStatus.SCHEDULED,
                                               "due_at": now + BUSY_CHAT_WAIT}, now)
            return None
        opened.add((row.customer_id, channel))
        current = open_dialogues.get((row.customer_id, channel))
        if current is not None and current.delivery_id == row.id:
            state = DialogueState.from_json(current.state)  # a retry: ask it again
            job_script = self._scripts.get(store.scripts, state.script_id, state.version)
            prompts, dialogue_id = current_prompts(job_script, state), current.id
        else:
            dialogue, turn = start_dialogue(
                store, script, customer_id=row.customer_id, channel=channel, now=now,
                locale=customer.locale, context=row.context,
                customer=profile(customer.attributes, customer.first_name),
                delivery_id=row.id, replacing=current.id if current is not None else None,
                sending=True)
            state, prompts, dialogue_id = turn.state, turn.prompts, dialogue.id
        if how[channel] and channel in templated:
            templated[channel].add(row.customer_id)
        return Job(row.id, row.survey_id, row.token or "", channel, addresses[channel],
                   dialogue_id, prompts, state.locale,
                   remind_after=script.policy.reminder_after,
                   expires_after=script.policy.expires_after, title=title(script, state.locale),
                   finished=state.finished, template=bool(how[channel]),
                   link=asks_by_link(script, channel))

    def _last_inbound(self, deliveries: Deliveries, customer_ids: Collection[int]
                      ) -> Mapping[tuple[int, str], datetime]:
        """When the customers last wrote in each channel with a window (none: no query)."""
        return deliveries.last_inbound(customer_ids, self._windows) if self._windows else {}

    def _ways(self, addresses: Mapping[str, str], asked: str | None, customer_id: int,
              inbound: Mapping[tuple[int, str], datetime], now: datetime,
              named: Sequence[str] | None) -> dict[str, bool | None]:
        """The channels that reach the customer, in the order to try them (only those
        `named` for the delivery, if any), each with how a message may go there now
        (_window)."""
        return {name: self._window(name, inbound.get((customer_id, name)), now)
                for name in channel_plan(addresses, asked, list(self._senders), named)}

    def _window(self, channel: str, last_inbound: datetime | None, now: datetime
                ) -> bool | None:
        """How a message may go through `channel` now: False free-form (no window, or
        inside it), True as the channel's template (outside it), None not at all."""
        window = self._windows.get(channel)
        if window is None or window.is_open(last_inbound, now):
            return False
        return True if window.template else None

    async def _send(self, job: Job, attempts: int, recorder: _Recorder) -> None:
        failure = None  # for the metrics: the closed channel's reason, transient, exception
        async with self._slots:
            try:
                message_id = await self._senders[job.channel].send(job)
            except ChannelClosed as closed:
                outcome = _Outcome(job, attempts, closed=closed.reason,
                                   opted_out=closed.opted_out)
                failure = closed.reason
            except TryLater as later:
                outcome = _Outcome(job, attempts, error=str(later),
                                   retry_after=later.retry_after)
                failure = "transient"
            except Undeliverable as refused:
                outcome = _Outcome(job, attempts, error=str(refused), final=True)
                failure = "undeliverable"
            except Exception as error:  # a bug or an unforeseen failure: retried, then failed
                log.exception("sending delivery %s failed", job.delivery_id)
                outcome = _Outcome(job, attempts, error=type(error).__name__)
                failure = "exception"
            else:
                outcome = _Outcome(job, attempts, message_id=message_id)
        if failure is not None and self._instruments is not None:
            self._instruments.send_errors.labels(job.channel, failure).inc()
        await recorder.put(outcome)

    def _record(self, store: Store, outcomes: Sequence[_Outcome]) -> list[Sent]:
        """The outcomes written; what became of each delivery, to be logged once committed
        (an outcome that could not be written is logged by itself)."""
        now = self._clock()
        deliveries = store.deliveries

        def record_each(batch: Sequence[_Outcome]) -> list[Sent]:
            return [self._record_one(store, outcome, now) for outcome in batch]

        def unrecordable(outcome: _Outcome, error: Exception) -> None:
            # Left in `sending`, it would go out again after sending_timeout, and again.
            log.error("the outcome of delivery %s could not be recorded (%s): failed, not "
                      "sent again", outcome.job.delivery_id, type(error).__name__)
            deliveries.finish_sending(outcome.job.delivery_id, {
                "status": DeliveryStatus.FAILED, "reason": "unrecordable",
                "message_id": outcome.message_id, "last_error": _describe(error)}, now)

        return deliveries.each_alone(outcomes, record_each, unrecordable)

    def _record_one(self, store: Store, outcome: _Outcome, now: datetime) -> Sent:
        job, deliveries = outcome.job, store.deliveries
        values: dict[str, Any]
        if outcome.closed is None and outcome.error is None:
            # Nothing to answer in a survey of messages only: no reminder, no expiry.
            remind, expire = (None, None) if job.finished else (job.remind_after,
                                                                job.expires_after)
            values = {"status": DeliveryStatus.COMPLETED if job.finished
                      else DeliveryStatus.SENT, "sent_channel": job.channel,
                      "message_id": outcome.message_id, "sent_at": now,
                      "remind_at": now + remind if remind else None,
                      "expires_at": now + expire if expire else None, "last_error": None,
                      "templated": job.template}
        elif outcome.closed is not None:
            close_address(store, job.channel, job.address, outcome.closed, job.dialogue_id,
                          now)
            if outcome.opted_out and (row := deliveries.get(job.delivery_id)) is not None:
                # Then nowhere: the next claim suppresses the delivery, as opted out.
                opt_out_customer(store, store.customers.get(row.customer_id), now,
                                 channel=job.channel, delivery=job.delivery_id,
                                 by=outcome.closed)
            values = {"status": DeliveryStatus.SCHEDULED, "due_at": now,
                      "last_error": f"{job.channel}: {outcome.closed}"}
        elif outcome.final or outcome.attempts + 1 >= self._attempts:
            store.dialogues.end_if_active(job.dialogue_id, DialogueStatus.ABANDONED, now)
            values = {"status": DeliveryStatus.FAILED,
                      "reason": "undeliverable" if outcome.final else "send_failed",
                      "attempts": outcome.attempts + 1, "last_error": outcome.error}
        else:
            wait = min(max(self._backoff.total_seconds() * 2 ** outcome.attempts,
                           outcome.retry_after or 0), LONGEST_WAIT.total_seconds())
            values = {"status": DeliveryStatus.SCHEDULED, "attempts": outcome.attempts + 1,
                      "due_at": now + timedelta(seconds=wait), "last_error": outcome.error}
        if not deliveries.finish_sending(job.delivery_id, values, now):
            log.warning("delivery %s was taken back before its outcome was recorded",
                        job.delivery_id)
        # The closed channel's reason is one of ours; an error's text may quote an address
        # (an SMTP refusal does): the log has its kind only, last_error the text.
        return Sent(job.delivery_id, job.channel, str(values["status"]),
                    outcome.closed or ("error" if outcome.error is not None else None))

    # -- reminders and expiry ---------------------------------------------------------------

    async def remind(self) -> int:
        """Remind once those who have not answered: the open question again, through the
        channel it went out on, or the next reachable one if that one closed since."""
        now = self._clock()

        def claim(store: Store) -> list[Job]:
            deliveries = store.deliveries
            rows = deliveries.due_reminders(now, self._batch)
            if not rows:
                return []
            customers = deliveries.contacts({row.customer_id for row in rows})

            def remind_each(batch: Sequence[DeliveryRow]) -> list[Job]:
                jobs = []
                for row in batch:
                    job = self._reminder(store, row, customers[row.customer_id], now)
                    if job is not None:
                        jobs.append(job)
                return jobs

            def unremindable(row: DeliveryRow, error: Exception) -> None:
                log.error("the reminder of delivery %s could not be prepared (%s): not sent",
                          row.id, type(error).__name__)
                deliveries.set_error(row.id, _describe(error))

            return deliveries.each_alone(rows, remind_each, unremindable)

        jobs = await self._db.write(claim)
        for job in jobs:
            try:
                await self._senders[job.channel].send(job)
            except Exception as error:  # a reminder is best effort: it is not sent twice
                log.warning("reminder for delivery %s not sent: %s", job.delivery_id,
                            type(error).__name__)
        return len(jobs)

    def _reminder(self, store: Store, row: DeliveryRow, customer: Any,
                  now: datetime) -> Job | None:
        """The reminder of a claimed delivery; None when there is none to send now: the
        customer opted out since (none at all), it is their quiet hours (put off until
        they end), or no dialogue or channel is left."""
        deliveries = store.deliveries
        dialogue = deliveries.dialogue_of(row.id)
        addresses = deliveries.reachable(row.customer_id)
        how = self._ways(addresses, row.sent_channel, row.customer_id,
                         self._last_inbound(deliveries, [row.customer_id]), now, row.channels)
        plan = [name for name, way in how.items() if way is not None]
        if dialogue is None or not plan or customer.opted_out_at is not None:
            return None
        state = DialogueState.from_json(dialogue.state)
        script = self._scripts.get(store.scripts, state.script_id, state.version)
        allowed = next_allowed(now, script.policy.quiet_hours,
                               customer.timezone or script.timezone)
        if allowed > now:  # claimed as reminded: back to sent, reminded when they end
            deliveries.remind_later(row.id, allowed, now)
            return None
        return Job(row.id, row.survey_id, row.token or "", plan[0], addresses[plan[0]],
                   dialogue.id, current_prompts(script, state), state.locale, reminder=True,
                   title=title(script, state.locale), template=bool(how[plan[0]]),
                   link=asks_by_link(script, plan[0]))

    async def expire(self) -> int:
        now = self._clock()
        return await self._db.write(lambda store: store.deliveries.expire_due(now))


def _describe(error: Exception) -> str:
    """Why a write was set aside, for the row's last_error (never logged: a message may
    quote a value)."""
    return f"{type(error).__name__}: {error}"[:500]


class _Recorder:
    """Outcomes written as they come, many per transaction: the first waits for none, the
    rest of those queued meanwhile share its commit."""

    def __init__(self, dispatcher: DeliveryDispatcher) -> None:
        self._dispatcher = dispatcher
        self._queue: asyncio.Queue[_Outcome | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Recorder:
        self._task = asyncio.create_task(self._write())
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._queue.put(None)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def put(self, outcome: _Outcome) -> None:
        await self._queue.put(outcome)

    async def flush(self) -> None:
        """Wait until every outcome put so far is written (or its write has failed)."""
        await self._queue.join()

    async def _save(self, outcomes: list[_Outcome]) -> None:
        for sent in await self._dispatcher._db.write(
                functools.partial(self._dispatcher._record, outcomes=outcomes)):
            sent.log()

    async def _write(self) -> None:
        done = False
        while not done:
            outcomes: list[_Outcome] = []
            item = await self._queue.get()
            while True:
                if item is None:
                    done = True
                    break
                outcomes.append(item)
                if self._queue.empty() or len(outcomes) >= 500:
                    break
                item = self._queue.get_nowait()
            try:
                if outcomes:
                    # Unwritten, they would be sent again after sending_timeout: a database
                    # that is only away for a while is waited for (well within that time).
                    await patiently(functools.partial(self._save, outcomes),
                                    what=f"the outcomes of {len(outcomes)} sends",
                                    patience=min(60.0, self._dispatcher._sending_timeout
                                                 .total_seconds() / 2))
            except Exception:
                # Left in `sending`: recovered after the timeout and sent again.
                log.exception("could not record %s send outcomes", len(outcomes))
            finally:
                for _ in range(len(outcomes) + (1 if done else 0)):  # and the end mark
                    self._queue.task_done()
