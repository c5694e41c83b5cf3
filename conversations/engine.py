"""The dialogue engine: a pure function of (script, state, reply, now) -> Turn.

No I/O, no clock, no randomness: the caller stores the state and shows the prompts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Literal, TypeAlias, TypedDict, assert_never

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
from conversations.texts import hint

Json: TypeAlias = bool | int | float | str | list["Json"] | dict[str, "Json"] | None
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


@dataclass(frozen=True, slots=True)
class Reply:
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


@dataclass(frozen=True, slots=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """One thing to show, platform-neutral. `step` is the answer key a button reply names."""

    step: str
    kind: PromptKind
    text: str
    metric: str | None = None
    options: tuple[Option, ...] = ()
    low_label: str | None = None
    high_label: str | None = None
    multiple: bool = False
    optional: bool = False
    can_go_back: bool = False
    max_length: int | None = None
    emoji: bool = False
    position: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer to record: unique per (session, step)."""

    step: str
    metric: str
    score: int | None = None
    choices: tuple[str, ...] = ()
    text: str | None = None
    alert: bool = False


@dataclass(frozen=True, slots=True)
class Reprompt:
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
        return Turn(replace(state, step=None, part=0),
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
        elif step.optional and word in SKIP:
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


def change_locale(script: Script, state: DialogueState, locale: str) -> DialogueState:
    return replace(state, locale=pick_locale(script, locale))


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
    values = dict(state.values)
    if answer is not None:
        values[key] = _value(answer)
    state = replace(state, values=values, history=(*state.history, key))
    answers = (answer,) if answer is not None else ()
    if isinstance(step, CliStep) and state.part < len(CLI_ITEMS) - 1:
        state = replace(state, part=state.part + 1)
        return Turn(state, (_prompt(script, state, step, state.part),), answers)
    return replace(_enter(script, state, _next(script, step, state), ()), answers=answers)


def _enter(script: Script, state: DialogueState, target: str,
           shown: tuple[Prompt, ...]) -> Turn:
    for _ in range(MAX_HOPS):
        if target == END:
            return Turn(replace(state, step=None, part=0), shown)
        step = script.step(target)
        state = replace(state, step=target, part=0)
        if isinstance(step, CliStep):
            shown += (_message(script, state, step), _prompt(script, state, step, 0))
            return Turn(state, shown)
        if not isinstance(step, MessageStep):
            return Turn(state, (*shown, _prompt(script, state, step, 0)))
        shown += (_message(script, state, step),)
        target = _next(script, step, state)
    return Turn(replace(state, step=None, part=0), shown)


def _next(script: Script, step: Step, state: DialogueState) -> str:
    facts = Facts(state.values, state.context, state.customer)
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
    state = replace(state, step=step_id, part=part, values=values, history=state.history[:-1])
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


class _Common(TypedDict):
    step: str
    optional: bool
    position: int
    total: int
    can_go_back: bool


def _prompt(script: Script, state: DialogueState, step: Step, part: int) -> Prompt:
    locale = state.locale
    key = _key(step, part)
    position, total = script.progress(key)
    common = _Common(step=key, optional=step.optional, position=position, total=total,
                     can_go_back=script.allow_back and bool(state.history))
    text = _fill(_text(step.text, locale, script), state)
    match step:
        case NpsStep() | CsatStep() | CesStep() | RatingStep() | CliStep():
            if isinstance(step, CliStep):
                text = _fill(_text(getattr(step.questions, CLI_ITEMS[part]), locale, script),
                             state)
            low, high = step.bounds
            return Prompt(
                kind=PromptKind.SCALE, text=text, metric=step.type,
                options=tuple(Option(str(n), str(n)) for n in range(low, high + 1)),
                low_label=_label(step.low_label, state, script),
                high_label=_label(step.high_label, state, script), emoji=step.emoji, **common)
        case ChoiceStep():
            return Prompt(kind=PromptKind.CHOICE, text=text, metric="choice",
                          options=tuple(Option(o.id, _text(o.text, locale, script))
                                        for o in step.options),
                          multiple=step.multiple, **common)
        case YesNoStep():
            yes, no = ("Да", "Нет") if locale == "ru" else ("Yes", "No")
            return Prompt(kind=PromptKind.YES_NO, text=text, metric="yes_no",
                          options=(Option("yes", yes), Option("no", no)), **common)
        case TextStep():
            return Prompt(kind=PromptKind.TEXT, text=text, metric="text",
                          max_length=step.max_length, **common)
        case MessageStep():
            return _message(script, state, step)
        case _:
            assert_never(step)


def _message(script: Script, state: DialogueState, step: Step) -> Prompt:
    return Prompt(step=step.id, kind=PromptKind.MESSAGE,
                  text=_fill(_text(step.text, state.locale, script), state))


def _label(text: dict[str, str] | None, state: DialogueState, script: Script) -> str | None:
    return _fill(_text(text, state.locale, script), state) if text else None


def _text(text: Mapping[str, str], locale: str, script: Script) -> str:
    return text.get(locale) or text.get(script.default_locale) or next(iter(text.values()), "")


_GAPS = re.compile(r"[ \t]+(?=[,.!?;:])|(?<=[ \t])[ \t]+")


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
    # "Hello, {customer.first_name}!" without a name reads "Hello!", not "Hello, !".
    if blanks:
        filled = _GAPS.sub("", filled).replace(",!", "!").replace(",?", "?").strip()
    return filled
