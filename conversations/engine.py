"""The dialogue engine: a pure function of (script, state, reply, now) -> Turn.

No I/O, no clock, no randomness: the caller stores the state and shows the prompts."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Literal, NamedTuple, TypeAlias, TypedDict, assert_never

from conversations.conditions import Facts, Scalar, Threshold, Value
from conversations.errors import StateMismatch
from conversations.replies import (
    BACK,
    SKIP,
    Problem,
    normalize,
    parse_choices,
    parse_number,
    parse_yes_no,
)
from conversations.script import (
    CLI_ITEMS,
    END,
    PLACEHOLDER,
    CesStep,
    ChoiceStep,
    CliStep,
    CsatStep,
    MessageStep,
    NpsStep,
    RatingStep,
    Script,
    Step,
    TextStep,
    YesNoStep,
)
from conversations.statuses import DialogueStatus
from conversations.texts import YES_NO, hint

Json: TypeAlias = bool | int | float | str | list["Json"] | dict[str, "Json"] | None
LEAD_IN = -1  # the `part` of a step's own text shown as a message (CLI lead-in)
MAX_HOPS = 200  # a message-only path longer than any valid script: stop rather than spin


class PromptKind(StrEnum):
    SCALE = "scale"
    CHOICE = "choice"
    YES_NO = "yes_no"
    TEXT = "text"
    MESSAGE = "message"


class ReplyKind(StrEnum):
    TEXT = "text"  # typed by the customer
    BUTTON = "button"  # a tap on a keyboard shown for `step`
    SKIP = "skip"
    BACK = "back"
    OTHER = "other"  # a sticker, a photo, a voice note: not something we can read


# The value objects made on every reply are NamedTuples: as immutable and typed as frozen
# dataclasses, and three times cheaper to build (the engine's budget is ~20 µs a reply).


class Reply(NamedTuple):
    kind: ReplyKind
    value: str = ""
    step: str | None = None

    @classmethod
    def typed(cls, text: str) -> Reply:
        return cls(ReplyKind.TEXT, text)

    @classmethod
    def button(cls, step: str, value: str) -> Reply:
        return cls(ReplyKind.BUTTON, value, step)

    @classmethod
    def skip(cls, step: str | None = None) -> Reply:
        return cls(ReplyKind.SKIP, step=step)

    @classmethod
    def back(cls) -> Reply:
        return cls(ReplyKind.BACK)

    @classmethod
    def unsupported(cls) -> Reply:
        return cls(ReplyKind.OTHER)


class Choice(NamedTuple):
    value: str
    label: str


class Prompt(NamedTuple):
    """One thing to show, platform-neutral. `step` is the answer key a button reply names."""

    step: str
    kind: PromptKind
    text: str
    metric: str | None = None
    options: tuple[Choice, ...] = ()
    low_label: str | None = None
    high_label: str | None = None
    multiple: bool = False
    optional: bool = False
    can_go_back: bool = False
    max_length: int | None = None
    emoji: bool = False
    position: int = 0
    total: int = 0
    low_is_good: bool = False  # a CES scale where 1 is "very easy": faces run the other way


class Answer(NamedTuple):
    """One answer to record: unique per (session, step)."""

    step: str
    metric: str
    score: int | None = None
    choices: tuple[str, ...] = ()
    text: str | None = None
    alert: bool = False


class Reprompt(NamedTuple):
    problem: Problem
    hint: str
    prompt: Prompt | None = None


@dataclass(frozen=True, slots=True)
class DialogueState:
    script_id: str
    version: int
    locale: str
    step: str | None
    started_at: datetime
    part: int = 0
    values: Mapping[str, Value] = field(default_factory=dict)
    history: tuple[str, ...] = ()
    context: Mapping[str, Scalar] = field(default_factory=dict)
    customer: Mapping[str, Scalar] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.step is None

    def to_json(self) -> dict[str, Json]:
        return {
            "script_id": self.script_id, "version": self.version, "locale": self.locale,
            "step": self.step, "part": self.part, "started_at": self.started_at.isoformat(),
            "values": {k: list(v) if isinstance(v, tuple) else v for k, v in self.values.items()},
            "history": list(self.history), "context": dict(self.context),
            "customer": dict(self.customer),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Json]) -> DialogueState:
        def scalars(raw: Json) -> dict[str, Scalar]:
            items = raw.items() if isinstance(raw, dict) else ()
            return {k: v for k, v in items if isinstance(v, bool | int | float | str)}

        values: dict[str, Value] = {}
        for key, value in (data["values"] if isinstance(data["values"], dict) else {}).items():
            if isinstance(value, list):
                values[key] = tuple(str(v) for v in value)
            elif isinstance(value, int | str):
                values[key] = value
        step, history = data["step"], data["history"]
        return cls(
            script_id=str(data["script_id"]), version=int(str(data["version"])),
            locale=str(data["locale"]), step=step if isinstance(step, str) else None,
            part=int(str(data.get("part", 0))),
            started_at=datetime.fromisoformat(str(data["started_at"])), values=values,
            history=tuple(str(h) for h in history) if isinstance(history, list) else (),
            context=scalars(data.get("context")), customer=scalars(data.get("customer")),
        )


_KEEP: object = object()


def _evolve(state: DialogueState, *, step: object = _KEEP, part: int | None = None,
            values: Mapping[str, Value] | None = None, history: tuple[str, ...] | None = None,
            locale: str | None = None) -> DialogueState:
    # dataclasses.replace introspects fields on every call; this is the engine's hot path.
    return DialogueState(
        state.script_id, state.version, state.locale if locale is None else locale,
        state.step if step is _KEEP else step,  # type: ignore[arg-type]
        state.started_at, state.part if part is None else part,
        state.values if values is None else values,
        state.history if history is None else history, state.context, state.customer)


@dataclass(frozen=True, slots=True)
class Turn:
    state: DialogueState
    prompts: tuple[Prompt, ...] = ()
    answers: tuple[Answer, ...] = ()
    retracted: tuple[str, ...] = ()
    reprompt: Reprompt | None = None

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def ending(self) -> DialogueStatus | None:
        """How the dialogue ends with this turn, if it does: expired when the reply came
        after the survey's time ran out, else completed."""
        if not self.finished:
            return None
        expired = self.reprompt is not None and self.reprompt.problem is Problem.EXPIRED
        return DialogueStatus.EXPIRED if expired else DialogueStatus.COMPLETED


# --- entry points ----------------------------------------------------------------------------


def start(script: Script, *, now: datetime, locale: str | None = None,
          context: Mapping[str, Scalar] | None = None,
          customer: Mapping[str, Scalar] | None = None) -> Turn:
    """Open a dialogue at the first step; messages before the first question are shown too."""
    state = DialogueState(
        script_id=script.id, version=script.version, locale=pick_locale(script, locale),
        step=script.steps[0].id, started_at=now, context=dict(context or {}),
        customer=dict(customer or {}),
    )
    return _enter(script, state, script.steps[0].id, ())


def advance(script: Script, state: DialogueState, reply: Reply, now: datetime) -> Turn:
    """Apply one reply. A reply that does not fit returns the same state and a reprompt."""
    if (script.id, script.version) != (state.script_id, state.version):
        raise StateMismatch(f"state of {state.script_id} v{state.version} given script "
                            f"{script.id} v{script.version}")
    if state.step is None:
        return _refuse(script, state, Problem.FINISHED)
    expiry = script.policy.expires_after
    if expiry is not None and now >= state.started_at + expiry:
        return Turn(_evolve(state, step=None, part=0),
                    reprompt=Reprompt(Problem.EXPIRED, hint(Problem.EXPIRED, state.locale)))
    step = script.step(state.step)
    key = _key(step, state.part)
    if reply.kind in (ReplyKind.BUTTON, ReplyKind.SKIP) and reply.step not in (None, key):
        return _refuse(script, state, Problem.STALE, with_prompt=False)
    kind = reply.kind
    if kind is ReplyKind.TEXT:
        word = normalize(reply.value)
        if script.allow_back and word in BACK:
            kind = ReplyKind.BACK
        elif word in SKIP:  # on a required question this earns "needs an answer"
            kind = ReplyKind.SKIP
    if kind is ReplyKind.BACK:
        return _back(script, state)
    if kind is ReplyKind.SKIP:
        if not step.optional:
            return _refuse(script, state, Problem.CANNOT_SKIP)
        return _move_on(script, state, step, key, None)
    if kind is ReplyKind.OTHER:
        return _refuse(script, state, Problem.NOT_TEXT)
    outcome = _read(script, step, state, reply.value)
    if isinstance(outcome, Reprompt):
        return Turn(state, reprompt=outcome)
    return _move_on(script, state, step, key, outcome)


def current_prompts(script: Script, state: DialogueState) -> tuple[Prompt, ...]:
    """The question being asked, to show again (after /start, a restart, a language change)."""
    if state.step is None:
        return ()
    return (_prompt(script, state, script.step(state.step), state.part),)


def all_questions(script: Script, state: DialogueState) -> tuple[Prompt, ...]:
    """Every question of the script in order, as it would be asked now: for a page that
    shows the whole survey at once (answers then go in one by one, branches included)."""
    return tuple(_prompt(script, state, step, part) for step in script.steps
                 if not isinstance(step, MessageStep)
                 for part in (range(len(CLI_ITEMS)) if isinstance(step, CliStep) else (0,)))


def change_locale(script: Script, state: DialogueState, locale: str) -> DialogueState:
    return _evolve(state, locale=pick_locale(script, locale))


def pick_locale(script: Script, wanted: str | None) -> str:
    languages = script.languages
    if wanted:
        for candidate in (wanted, wanted.split("-")[0].lower()):
            if candidate in languages:
                return candidate
    return script.default_locale


# --- moving through the script -----------------------------------------------------------------


def _move_on(script: Script, state: DialogueState, step: Step, key: str,
             answer: Answer | None) -> Turn:
    values = {**state.values, key: _value(answer)} if answer is not None else state.values
    history = (*state.history, key)
    answers = (answer,) if answer is not None else ()
    if isinstance(step, CliStep) and state.part < len(CLI_ITEMS) - 1:
        state = _evolve(state, part=state.part + 1, values=values, history=history)
        return Turn(state, (_prompt(script, state, step, state.part),), answers)
    target = _next(script, step, values, state)
    return _enter(script, state, target, (), answers, values, history)


def _enter(script: Script, state: DialogueState, target: str, shown: tuple[Prompt, ...],
           answers: tuple[Answer, ...] = (), values: Mapping[str, Value] | None = None,
           history: tuple[str, ...] | None = None) -> Turn:
    # `values` and `history` ride along so the state is rebuilt once per step, not twice.
    for _ in range(MAX_HOPS):
        if target == END:
            break
        step = script.step(target)
        state = _evolve(state, step=target, part=0, values=values, history=history)
        values = history = None
        if isinstance(step, MessageStep):
            shown += (_message(script, state, step),)
            target = _next(script, step, state.values, state)
            continue
        # A loop back to a question answered before asks it afresh: its old answer goes, so
        # storage (one answer per session and step) and the state agree.
        # An answer given in this very turn was never stored: drop it rather than retract.
        again = tuple(key for key in step.answer_keys() if key in state.values)
        retracted: tuple[str, ...] = ()
        if again:
            state = _evolve(state, values={k: v for k, v in state.values.items()
                                           if k not in again})
            retracted = tuple(k for k in again if all(a.step != k for a in answers))
            answers = tuple(a for a in answers if a.step not in again)
        if isinstance(step, CliStep):
            shown += (_message(script, state, step),)
        return Turn(state, (*shown, _prompt(script, state, step, 0)), answers, retracted)
    return Turn(_evolve(state, step=None, part=0, values=values, history=history), shown, answers)


def _next(script: Script, step: Step, values: Mapping[str, Value], state: DialogueState) -> str:
    facts = Facts(values, state.context, state.customer)
    for rule in step.next:
        if rule.when is None or rule.when.evaluate(facts):
            return rule.goto
    index = script.position(step.id) + 1
    return script.steps[index].id if index < len(script.steps) else END


def _back(script: Script, state: DialogueState) -> Turn:
    if not script.allow_back or not state.history:
        return _refuse(script, state, Problem.CANNOT_GO_BACK)
    key = state.history[-1]
    step_id, _, item = key.partition(".")
    part = CLI_ITEMS.index(item) if item else 0
    values = {k: v for k, v in state.values.items() if k != key}
    state = _evolve(state, step=step_id, part=part, values=values, history=state.history[:-1])
    return Turn(state, (_prompt(script, state, script.step(step_id), part),), retracted=(key,))


def _refuse(script: Script, state: DialogueState, problem: Problem,
            with_prompt: bool = True) -> Turn:
    prompt = current_prompts(script, state)[0] if with_prompt and state.step else None
    optional = prompt.optional if prompt else False
    return Turn(state, reprompt=Reprompt(problem, hint(problem, state.locale, optional), prompt))


# --- reading a reply -----------------------------------------------------------------------------


def _read(script: Script, step: Step, state: DialogueState, raw: str) -> Answer | Reprompt:
    key = _key(step, state.part)
    match step:
        case NpsStep() | CsatStep() | CesStep() | RatingStep() | CliStep():
            low, high = step.bounds
            number = parse_number(raw, high)
            if isinstance(number, Problem):
                return _reprompt(script, state, step, number, low=low, high=high)
            if not low <= number <= high:
                return _reprompt(script, state, step, Problem.OUT_OF_RANGE, value=number,
                                 low=low, high=high)
            return Answer(key, step.type, score=number, alert=_alerts(step, number))
        case ChoiceStep():
            labels = [(o.id, list(o.text.values())) for o in step.options]
            picked = parse_choices(raw, labels, step.multiple)
            names = ", ".join(_text(o.text, state.locale, script) for o in step.options)
            if isinstance(picked, Problem):
                return _reprompt(script, state, step, picked, options=names)
            upper = step.max_choices or len(step.options) if step.multiple else 1
            if len(picked) > upper:
                return _reprompt(script, state, step, Problem.TOO_MANY, limit=upper)
            if len(picked) < step.min_choices:
                return _reprompt(script, state, step, Problem.TOO_FEW, limit=step.min_choices)
            return Answer(key, "choice", choices=picked,
                          alert=any(_hit(step.alert, choice) for choice in picked))
        case YesNoStep():
            yes = parse_yes_no(raw)
            if isinstance(yes, Problem):
                return _reprompt(script, state, step, yes)
            word = "yes" if yes else "no"
            return Answer(key, "yes_no", score=int(yes), choices=(word,),
                          alert=_hit(step.alert, word))
        case TextStep():
            text = raw.strip()
            if not text:
                return _reprompt(script, state, step, Problem.EMPTY)
            if len(text) > step.max_length:
                return _reprompt(script, state, step, Problem.TOO_LONG, length=len(text),
                                 limit=step.max_length)
            return Answer(key, "text", text=text)
        case MessageStep():
            return _reprompt(script, state, step, Problem.FINISHED)
        case _:
            assert_never(step)


def _reprompt(script: Script, state: DialogueState, step: Step, problem: Problem,
              **values: object) -> Reprompt:
    return Reprompt(problem, hint(problem, state.locale, step.optional, **values),
                    _prompt(script, state, step, state.part))


def _hit(rule: Threshold | Literal[False] | None, value: Value) -> bool:
    return isinstance(rule, Threshold) and rule.test(value)


def _alerts(step: NpsStep | CsatStep | CesStep | RatingStep | CliStep, score: int) -> bool:
    """The step's own alert rule, else the low-score defaults: NPS <= 6, CSAT <= 2, CES on
    the hard side of the scale's middle."""
    if step.alert is not None:
        return _hit(step.alert, score)
    match step:
        case NpsStep():
            return score <= 6
        case CsatStep():
            return score <= 2
        case CesStep():
            middle = (1 + step.scale) / 2
            return score > middle if step.direction == "low_is_easy" else score < middle
        case _:
            return False


def _value(answer: Answer) -> Value:
    if answer.score is not None and answer.metric != "yes_no":
        return answer.score
    if answer.metric == "choice":
        return answer.choices
    if answer.metric == "yes_no":
        return answer.choices[0]
    return answer.text or ""


def _key(step: Step, part: int) -> str:
    return f"{step.id}.{CLI_ITEMS[part]}" if isinstance(step, CliStep) else step.id


# --- prompts -----------------------------------------------------------------------------------


class _Template(NamedTuple):
    prompt: Prompt
    placeholders: bool


def _prompt(script: Script, state: DialogueState, step: Step, part: int) -> Prompt:
    # A prompt depends on the state only through the locale, "back" and placeholders:
    # build it once per script and fill placeholders on each use.
    back = script.allow_back and bool(state.history)
    memo_key = (step.id, part, state.locale, back)
    template = script.memo.get(memo_key)
    if not isinstance(template, _Template):
        prompt = _build(script, step, part, state.locale, back)
        labels = (prompt.text, prompt.low_label or "", prompt.high_label or "")
        template = script.memo[memo_key] = _Template(prompt, any("{" in t for t in labels))
    if not template.placeholders:
        return template.prompt
    prompt = template.prompt
    return prompt._replace(
        text=_fill(prompt.text, state),
        low_label=_fill(prompt.low_label, state) if prompt.low_label else None,
        high_label=_fill(prompt.high_label, state) if prompt.high_label else None)


def _build(script: Script, step: Step, part: int, locale: str, back: bool) -> Prompt:
    text = _text(step.text, locale, script)
    if part == LEAD_IN or isinstance(step, MessageStep):
        return Prompt(step=step.id, kind=PromptKind.MESSAGE, text=text)
    key = _key(step, part)
    position, total = script.progress(key)
    common = _Common(step=key, optional=step.optional, position=position, total=total,
                     can_go_back=back)
    match step:
        case NpsStep() | CsatStep() | CesStep() | RatingStep() | CliStep():
            if isinstance(step, CliStep):
                text = _text(getattr(step.questions, CLI_ITEMS[part]), locale, script)
            return Prompt(
                kind=PromptKind.SCALE, text=text, metric=step.type,
                options=_scale_options(*step.bounds),
                low_label=_text(step.low_label, locale, script) if step.low_label else None,
                high_label=_text(step.high_label, locale, script) if step.high_label else None,
                emoji=step.emoji,
                low_is_good=isinstance(step, CesStep) and step.direction == "low_is_easy",
                **common)
        case ChoiceStep():
            return Prompt(kind=PromptKind.CHOICE, text=text, metric="choice",
                          options=tuple(Choice(o.id, _text(o.text, locale, script))
                                        for o in step.options),
                          multiple=step.multiple, **common)
        case YesNoStep():
            yes, no = YES_NO.get(locale, YES_NO["en"])
            return Prompt(kind=PromptKind.YES_NO, text=text, metric="yes_no",
                          options=(Choice("yes", yes), Choice("no", no)), **common)
        case TextStep():
            return Prompt(kind=PromptKind.TEXT, text=text, metric="text",
                          max_length=step.max_length, **common)
        case MessageStep():
            raise AssertionError("handled above")
        case _:
            assert_never(step)


def drafts(script: Script, placeholder: str) -> Iterator[tuple[int, str, Prompt]]:
    """Every prompt the script can show (by step index), in each of its locales, with
    each placeholder as `placeholder`: what a channel estimates its messages by (an SMS's
    segments)."""
    for index, step in enumerate(script.steps):
        # A CLI step's own text is a lead-in shown before its items.
        parts = (LEAD_IN, *range(len(CLI_ITEMS))) if isinstance(step, CliStep) else (0,)
        for locale in script.languages:
            for part in parts:
                prompt = _build(script, step, part, locale, back=False)
                yield index, locale, prompt._replace(text=PLACEHOLDER.sub(
                    placeholder, prompt.text))


class _Common(TypedDict):
    step: str
    optional: bool
    position: int
    total: int
    can_go_back: bool


@cache
def _scale_options(low: int, high: int) -> tuple[Choice, ...]:
    return tuple(Choice(str(n), str(n)) for n in range(low, high + 1))


def _message(script: Script, state: DialogueState, step: Step) -> Prompt:
    """A message step's text, or a CLI step's lead-in."""
    return _prompt(script, state, step, LEAD_IN)


def _text(text: Mapping[str, str], locale: str, script: Script) -> str:
    return text.get(locale) or text.get(script.default_locale) or next(iter(text.values()), "")


_GAPS = re.compile(r"[ \t]+(?=[,.!?;:])|(?<=[ \t])[ \t]+")
_DANGLING = re.compile(r",+(?=[,.!?;:]|\s*$)")
_LEADING = re.compile(r"^[\s,;:]+")


def _fill(text: str, state: DialogueState) -> str:
    """Placeholders from context and customer; a missing value becomes its default or
    nothing, never an error."""
    if "{" not in text:
        return text

    blanks = 0

    def value(match: re.Match[str]) -> str:
        nonlocal blanks
        namespace, name, default = match.groups()
        source = state.context if namespace == "context" else state.customer
        found = source.get(name)
        if found is None or found == "":
            blanks += not default
            return default or ""
        return str(found)

    filled = PLACEHOLDER.sub(value, text)
    # "Hello, {customer.first_name}!" without a name reads "Hello!", not "Hello, !";
    # likewise "Thanks, {…}." and "Thanks, {…}, for calling".
    if blanks:
        filled = _DANGLING.sub("", _GAPS.sub("", filled)).strip()
        # "{customer.first_name}, how was it?" without a name reads "How was it?".
        if (trimmed := _LEADING.sub("", filled)) != filled:
            filled = trimmed[:1].upper() + trimmed[1:]
    return filled
