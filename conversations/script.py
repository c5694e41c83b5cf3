"""Survey scripts: the typed model, the loader (YAML or JSON, with line numbers) and the
checks that need the whole script (graph, locales, references)."""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Iterable, Iterator, Mapping
from datetime import time, timedelta
from functools import cached_property
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeAlias, Union, get_args, get_origin
from zoneinfo import available_timezones

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails

from conversations.conditions import Condition, Threshold, step_refs
from conversations.errors import ScriptError, ScriptIssue, did_you_mean, plain_words

END = "end"
ID_PATTERN = r"^[a-z][a-z0-9_]*$"
LOCALE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
CLI_ITEMS = ("recommend", "retain", "upsell", "switch")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z0-9_]+)(?:\|([^{}]*))?\}")
NAMESPACES = ("context", "customer")

# tzdata's zone names, legacy aliases included (a CRM may still send Europe/Kiev, and UTC
# must stay); not Factory, localtime (whatever this machine's clock says) nor the posix/
# and right/ copies (right/ counts leap seconds, so its local times are off by them).
ZONES = frozenset(zone for zone in available_timezones()
                  if zone not in ("Factory", "localtime")
                  and not zone.startswith(("posix/", "right/")))


def _zone(value: str, info: ValidationInfo) -> str:
    # A version stored before this check ran with any name ZoneInfo took, and still does.
    if value in ZONES or (info.context and info.context.get(STORED)):
        return value
    raise ValueError(f"unknown time zone {value[:64]!r}; use a tzdata name such as "
                     "Europe/Moscow or UTC")


# A tzdata time zone name, for scripts, customers, campaigns and the digest.
TimeZoneName: TypeAlias = Annotated[str, AfterValidator(_zone)]


def _one_line(value: str, info: ValidationInfo) -> str:
    """A text that goes into a header (a title is the e-mail's Subject): a line break there
    would start another header, so no control character at all. A version stored before
    this check is read back with each one as a space."""
    if not CONTROL.search(value):
        return value
    if info.context and info.context.get(STORED):
        return CONTROL.sub(" ", value)
    raise ValueError("must be one line: no line break or other control character")


# A text in a mail or HTTP header (e-mail Subject).
HeaderText: TypeAlias = Annotated[str, AfterValidator(_one_line)]
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

LocalizedText: TypeAlias = dict[
    Annotated[str, Field(pattern=LOCALE_PATTERN)], Annotated[str, Field(min_length=1)]
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuietHours(_Model):
    """No survey goes out between start and end in the customer's time zone (may wrap midnight)."""

    start: time
    end: time


# The longest durations a script may set: longer than any survey needs, and far inside what
# a date can be moved by, so that adding one at send time never overflows (such a send
# failed, and took its batch's writes with it). The trigger API's `delay` has the same bound.
MAX_DELAY = timedelta(days=90)
MAX_REMINDER_AFTER = timedelta(days=30)
MAX_EXPIRES_AFTER = timedelta(days=365)
MAX_ALERT_SLA = timedelta(days=30)
MAX_THROTTLE_DAYS = 3650


# Validation context of a version read back from storage (`stored`): see _duration.
STORED = "stored"


def _duration(most: timedelta, zero: bool) -> AfterValidator:
    """Never negative; zero only where it means something (send at once). A version stored
    before these bounds existed validated then and must still run: read back, a longer
    duration is taken as the longest allowed, never refused."""

    def check(value: timedelta, info: ValidationInfo) -> timedelta:
        if info.context and info.context.get(STORED):
            return min(max(value, timedelta(0)), most)
        if value < timedelta(0) or not (zero or value):
            raise ValueError("must not be negative" if zero else "must be longer than zero")
        if value > most:
            raise ValueError(f"must be at most {most.days} days (P{most.days}D)")
        return value

    return AfterValidator(check)


# The channels a delivery can go out in (bot/bootstrap.py CHANNELS, those that write first;
# a unit test holds the two together): a script's and a trigger's `channels` name them.
ChannelName: TypeAlias = Literal["telegram", "whatsapp", "sms", "email"]


def _unique(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise ValueError("each channel at most once")
    return names


Channels: TypeAlias = Annotated[list[ChannelName], Field(min_length=1),
                                AfterValidator(_unique)]


class Policy(_Model):
    # Where its deliveries may go, in the order they are tried; none: every channel this
    # installation sends on, in its order.
    channels: Channels | None = None
    throttle_days: int = Field(0, ge=0, le=MAX_THROTTLE_DAYS)
    throttle_scope: Literal["survey", "all"] = "survey"
    delay: Annotated[timedelta, _duration(MAX_DELAY, zero=True)] | None = None
    expires_after: Annotated[timedelta, _duration(MAX_EXPIRES_AFTER, zero=False)] | None = None
    reminder_after: Annotated[timedelta, _duration(MAX_REMINDER_AFTER, zero=False)] | None = None
    quiet_hours: QuietHours | None = None


class Option(_Model):
    id: str = Field(pattern=ID_PATTERN)
    text: LocalizedText


class Rule(_Model):
    when: Condition | None = None
    goto: str = Field(pattern=ID_PATTERN)


class _Step(_Model):
    id: str = Field(pattern=ID_PATTERN, max_length=48)
    text: LocalizedText
    optional: bool = False
    next: list[Rule] = []
    # False switches the default low-score alert off; None keeps the metric's default.
    alert: Threshold | Literal[False] | None = None

    def answer_keys(self) -> tuple[str, ...]:
        return (self.id,)


class _Scale(_Step):
    low_label: LocalizedText | None = None
    high_label: LocalizedText | None = None
    emoji: bool = False

    @property
    def bounds(self) -> tuple[int, int]:
        raise NotImplementedError


class NpsStep(_Scale):
    type: Literal["nps"]

    @property
    def bounds(self) -> tuple[int, int]:
        return (0, 10)


class CsatStep(_Scale):
    type: Literal["csat"]

    @property
    def bounds(self) -> tuple[int, int]:
        return (1, 5)


class CesStep(_Scale):
    type: Literal["ces"]
    scale: Literal[5, 7] = 7
    # Classic CES asks about effort (1 = very easy); CES 2.0 asks for agreement (7 = very easy).
    direction: Literal["low_is_easy", "high_is_easy"]

    @property
    def bounds(self) -> tuple[int, int]:
        return (1, self.scale)


class RatingStep(_Scale):
    type: Literal["rating"]
    min: int = Field(1, ge=-100, le=100)
    max: int = Field(5, ge=-100, le=100)

    @model_validator(mode="after")
    def _range(self) -> RatingStep:
        if not 1 <= self.max - self.min <= 20:
            raise ValueError("max must be above min, with at most 21 points on the scale")
        return self

    @property
    def bounds(self) -> tuple[int, int]:
        return (self.min, self.max)


class CliQuestions(_Model):
    recommend: LocalizedText
    retain: LocalizedText
    upsell: LocalizedText
    switch: LocalizedText


class CliStep(_Scale):
    """The four loyalty questions, asked one after another; `text` is the lead-in."""

    type: Literal["cli"]
    scale_min: Literal[0, 1] = 1
    questions: CliQuestions

    @property
    def bounds(self) -> tuple[int, int]:
        return (self.scale_min, 10)

    def answer_keys(self) -> tuple[str, ...]:
        return tuple(f"{self.id}.{item}" for item in CLI_ITEMS)


class ChoiceStep(_Step):
    type: Literal["choice"]
    options: list[Option] = Field(min_length=2, max_length=20)
    multiple: bool = False
    min_choices: int = Field(1, ge=1)
    max_choices: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _options(self) -> ChoiceStep:
        ids = [option.id for option in self.options]
        if len(set(ids)) != len(ids):
            raise ValueError("option ids must be unique")
        upper = self.max_choices or len(self.options)
        if not self.multiple and (self.min_choices != 1 or self.max_choices not in (None, 1)):
            raise ValueError("min_choices and max_choices need multiple: true")
        if not self.min_choices <= upper <= len(self.options):
            raise ValueError("need min_choices <= max_choices <= the number of options")
        return self


class YesNoStep(_Step):
    type: Literal["yes_no"]


class TextStep(_Step):
    type: Literal["text"]
    max_length: int = Field(2000, ge=1, le=10000)


class MessageStep(_Step):
    type: Literal["message"]


Step: TypeAlias = Annotated[
    Annotated[NpsStep, Tag("nps")]
    | Annotated[CsatStep, Tag("csat")]
    | Annotated[CesStep, Tag("ces")]
    | Annotated[CliStep, Tag("cli")]
    | Annotated[RatingStep, Tag("rating")]
    | Annotated[ChoiceStep, Tag("choice")]
    | Annotated[YesNoStep, Tag("yes_no")]
    | Annotated[TextStep, Tag("text")]
    | Annotated[MessageStep, Tag("message")],
    Field(discriminator="type"),
]
ScaleStep: TypeAlias = NpsStep | CsatStep | CesStep | CliStep | RatingStep
QUESTION_TYPES = ("nps", "csat", "ces", "cli", "rating", "choice", "yes_no", "text")


class Script(_Model):
    id: str = Field(pattern=ID_PATTERN, max_length=64)
    version: int = Field(1, ge=1)
    default_locale: str = Field(pattern=LOCALE_PATTERN)
    locales: list[Annotated[str, Field(pattern=LOCALE_PATTERN)]] | None = None
    title: dict[Annotated[str, Field(pattern=LOCALE_PATTERN)],
                Annotated[HeaderText, Field(min_length=1)]]
    timezone: TimeZoneName = "UTC"
    allow_back: bool = False
    policy: Policy = Policy()
    # On a web page: one question per screen ("step"), or the whole survey at once ("page").
    web_layout: Literal["step", "page"] = "step"
    # By SMS: the questions in the messages, answered by replying ("dialogue"), or one
    # message with the survey's short link, answered on its page ("link").
    sms: Literal["dialogue", "link"] = "dialogue"
    # Whether visitors nobody knows may answer it on /w/{survey} and in the widget; off, only
    # customers the product knows (a delivery, a messenger chat) get the survey.
    anonymous: bool = False
    # An open low-score alert nobody has taken this long is re-sent to the team, overdue.
    alert_sla: Annotated[timedelta, _duration(MAX_ALERT_SLA, zero=False)] = timedelta(minutes=30)
    steps: list[Step] = Field(min_length=1, max_length=100)

    # cached_property lands in the instance __dict__: plain dict reads on the hot path,
    # where pydantic's private attributes would go through __getattr__.
    @cached_property
    def _index(self) -> dict[str, int]:
        return {step.id: i for i, step in enumerate(self.steps)}

    @cached_property
    def memo(self) -> dict[Hashable, object]:
        """Values the engine derives from the script (prompt templates), kept with it."""
        return {}

    @cached_property
    def _keys(self) -> dict[str, int]:
        keys = [k for step in self.steps if step.type != "message" for k in step.answer_keys()]
        return {key: i for i, key in enumerate(keys, 1)}

    @property
    def languages(self) -> list[str]:
        return self.locales or sorted(self.title)

    def step(self, step_id: str) -> Step:
        return self.steps[self._index[step_id]]

    def position(self, step_id: str) -> int:
        return self._index[step_id]

    def has_step(self, step_id: str) -> bool:
        return step_id in self._index

    def answer_keys(self) -> list[str]:
        """Every key an answer may be recorded under, in script order."""
        return list(self._keys)

    def progress(self, key: str) -> tuple[int, int]:
        """(question number, number of questions) for a progress indicator."""
        return self._keys[key], len(self._keys)


# --- loading -------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.2 core scalars: `no`/`on` stay strings and `21:00` is not base 60; a lone `=`
    is a string too (YAML 1.1's "value" tag, which no safe constructor builds)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool",
                                                              "tag:yaml.org,2002:int",
                                                              "tag:yaml.org,2002:float",
                                                              "tag:yaml.org,2002:value")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)


# libyaml's parser, where PyYAML was built with it: the same events and nodes some 25 times
# faster than the pure-Python one, which stays for the scripts libyaml refuses (its error
# messages are the ones script writers know) and where libyaml is missing.
_FastLoader: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
if _FastLoader is not None:
    _FastLoader = type("_FastLoader", (_FastLoader,),
                       {"yaml_implicit_resolvers": _Loader.yaml_implicit_resolvers})


class _Constructor(yaml.constructor.SafeConstructor):
    """Builds the data from the checked tree; a value Python cannot hold (a 30 February, an
    integer of 5,000 digits) is an error at its node, not a ValueError from nowhere."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> object:
        try:
            return super().construct_object(node, deep)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark) from None


# Far above any real script (100 steps in several languages is ~50 KB, nesting ~8 deep; 100
# steps of 20 options each in 3 languages is ~25,000 values, and a step's text a few hundred
# characters): what is beyond them is a mistake or an attack, refused from the parser's
# event stream, before any tree is built, so a refusal costs milliseconds.
MAX_SOURCE = 256 * 1024
MAX_DEPTH = 20
MAX_NODES = 30_000
MAX_TEXT = 10_000
MAX_KEY = 100
# Nobody reads past the first hundred issues, and finding each one's line takes time.
MAX_ISSUES = 100


def _limits(source: str, filename: str, loader: type[yaml.SafeLoader]) -> None:
    """Refuse, at the first one, what is too big or not plain data: a script over the size,
    depth, value count or text length limits; YAML anchors and aliases (a few lines of them
    expand to millions of nodes: the "billion laughs"); YAML tags (`!!python/...` asks for
    objects, and a script is data); a list or mapping as a mapping key."""
    if len(source) > MAX_SOURCE:
        raise ScriptError([ScriptIssue("", f"the script is {len(source):,} characters, over "
                                           f"the limit of {MAX_SOURCE:,}", 1)], filename)
    nodes = 0
    # Per open collection: None for a list; for a mapping, whether its next node is a key.
    open_: list[bool | None] = []
    try:
        for event in yaml.parse(source, Loader=loader):
            if isinstance(event, yaml.CollectionEndEvent):
                open_.pop()
            if not isinstance(event, yaml.NodeEvent):
                continue
            is_key = bool(open_) and open_[-1] is True
            if open_ and open_[-1] is not None:
                open_[-1] = not is_key
            nodes += 1
            problem = _problem(event, nodes, is_key, len(open_))
            if problem:
                line = event.start_mark.line + 1 if event.start_mark else None
                raise ScriptError([ScriptIssue("", problem, line)], filename)
            if isinstance(event, yaml.CollectionStartEvent):
                open_.append(True if isinstance(event, yaml.MappingStartEvent) else None)
    except yaml.YAMLError:
        return  # not valid YAML: parse_script says where, with its own message


def _problem(event: yaml.NodeEvent, nodes: int, is_key: bool, depth: int) -> str | None:
    if nodes > MAX_NODES:
        return (f"more than {MAX_NODES:,} values (texts, numbers, lists and mappings): far "
                "beyond any survey")
    if isinstance(event, yaml.AliasEvent) or event.anchor:
        return ("YAML anchors and aliases (& and *) are not allowed in a script: write the "
                "text out where it is used")
    if getattr(event, "tag", None):
        return ("YAML tags (!!str, !!binary, !custom...) are not allowed in a script: write "
                "the value plainly")
    if isinstance(event, yaml.ScalarEvent):
        if is_key and len(event.value) > MAX_KEY:
            return f"a mapping key of more than {MAX_KEY} characters: keys are field names"
        if len(event.value) > MAX_TEXT:
            return f"a text of more than {MAX_TEXT:,} characters"
    elif is_key:
        return "mapping keys must be plain strings, not lists or mappings"
    elif depth >= MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels deep"
    return None


def _compose(text: str, filename: str) -> yaml.Node | None:
    """The script's YAML tree, after _limits; ScriptError says where it is not valid."""
    if _FastLoader is not None:
        try:
            _limits(text, filename, _FastLoader)
            return yaml.compose(text, Loader=_FastLoader)
        except yaml.YAMLError:
            pass  # said again by the pure parser, within the same limits, in its own words
    _limits(text, filename, _Loader)
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise ScriptError([_not_yaml(exc)], filename) from None
    except yaml.reader.ReaderError as exc:  # a character YAML refuses anywhere: NUL, BEL...
        line = text.count("\n", 0, exc.position) + 1
        raise ScriptError([ScriptIssue("", f"not valid YAML/JSON: character "
                                           f"#x{exc.character:04x} is not allowed", line)],
                          filename) from None


def _not_yaml(exc: yaml.MarkedYAMLError) -> ScriptIssue:
    mark = exc.problem_mark or exc.context_mark
    advice = " (put texts with ':', '?', ',' or '#' in quotes)" if "expected" in str(
        exc.problem) and not isinstance(exc, yaml.constructor.ConstructorError) else ""
    return ScriptIssue("", f"not valid YAML/JSON: {exc.problem}{advice}",
                       mark.line + 1 if mark else None)


class _NotJson:
    """NaN, Infinity or -Infinity in a JSON script: no field takes one, so validation
    refuses it where it is, with its line."""

    def __init__(self, text: str) -> None:
        self.text = text


def parse_script(source: str, filename: str = "<script>") -> Script:
    """Parse and validate one script; raise ScriptError listing every issue with its line."""
    is_json = filename.endswith(".json")
    # The YAML tree serves line numbers; JSON may indent with tabs, which YAML refuses.
    text = source.replace("\t", " ") if is_json else source
    root = _compose(text, filename)
    if root is None:
        raise ScriptError([ScriptIssue("", "the file is empty", 1)], filename)
    issues = list(_duplicate_keys(root, ()))
    try:
        # NaN and Infinity, which JSON has not, are read as a value no field takes.
        data = (json.loads(source, parse_constant=_NotJson) if is_json
                else _Constructor().construct_document(root))
    except json.JSONDecodeError as exc:  # YAML accepts what JSON does not: ',}', '#', 'x'
        raise ScriptError([ScriptIssue("", f"not valid JSON: {exc.msg}", exc.lineno)],
                          filename) from None
    except yaml.MarkedYAMLError as exc:  # `<<: 1`, a 30 February...
        raise ScriptError([_not_yaml(exc)], filename) from None
    if not isinstance(data, dict):
        raise ScriptError([ScriptIssue("", "a script must be a mapping of fields", 1)], filename)
    try:
        script = Script.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()[:MAX_ISSUES + 1]
        issues += [_issue(root, *_explain(err), tagged=True) for err in errors]
        # The references too, from the file as written: a wrong field must not hide an
        # unknown `goto` until the next run.
        reported = {tuple(part for part in err["loc"] if not _is_tag(part)) for err in errors}
        issues += [_issue(root, loc, msg) for loc, msg in _raw_references(data)
                   if loc not in reported]
    else:
        issues += [_issue(root, loc, msg) for loc, msg in check_script(script)]
    if issues:
        issues.sort(key=lambda issue: issue.line or 0)
        if len(issues) > MAX_ISSUES:
            issues[MAX_ISSUES:] = [ScriptIssue("", f"more issues after these first "
                                                   f"{MAX_ISSUES}", issues[MAX_ISSUES].line)]
        raise ScriptError(issues, filename)
    return script


def located(source: str, filename: str, problems: Iterable[Problem]) -> list[ScriptIssue]:
    """Problems found in a valid script (a channel's warnings), each with its line in the
    source it was parsed from."""
    text = source.replace("\t", " ") if filename.endswith(".json") else source
    root = _compose(text, filename)
    assert root is not None  # it parsed
    return [_issue(root, loc, message) for loc, message in problems]


def script_to_data(script: Script) -> dict[str, object]:
    """The JSON-ready body of a script, as stored and as served."""
    return script.model_dump(mode="json", by_alias=True, exclude_none=True)


# What a pattern asks for, in words (pydantic would print the regular expression).
_PATTERNS = {ID_PATTERN: "use lowercase letters, digits and _, starting with a letter",
             LOCALE_PATTERN: "a language code such as en, ru or pt-BR"}


def _explain(error: ErrorDetails) -> tuple[tuple[int | str, ...], str]:
    """Pydantic's wording where it is clear; our own where a script writer needs more."""
    kinds = ", ".join((*QUESTION_TYPES, "message"))
    loc, ctx = error["loc"], error.get("ctx", {})
    match error["type"]:
        case "union_tag_invalid":
            return (*loc, "type"), (f"unknown step type {ctx.get('tag')!r}; use {kinds}"
                                    + did_you_mean(str(ctx.get("tag")), (*QUESTION_TYPES,
                                                                           "message")))
        case "union_tag_not_found":
            return loc, f"a step needs a type: {kinds}"
        case "extra_forbidden":
            model = _model_at(loc[:-1])
            return loc, plain_words(error, model.model_fields if model else ())
        case "string_pattern_mismatch":
            return loc, _PATTERNS.get(str(ctx.get("pattern")), "not in the form this field takes")
        # A script's only dict-typed fields are its texts, one per locale (LocalizedText,
        # the title); any other mapping is a model.
        case "dict_type":
            return loc, "expected one text per locale, e.g. {en: Thanks, ru: Спасибо}"
        case "model_type" | "model_attributes_type":
            return loc, "expected a mapping of names to values (name: value)"
    return loc, plain_words(error)


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose mapping sits at a validation error's location, if one does: a step
    is found by the tag pydantic puts after its index."""
    kind: Any = Script
    for part in loc:
        kind = _unwrap(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return None
            kind = field.annotation
        elif get_origin(kind) is list and isinstance(part, int):
            kind = get_args(kind)[0]
        elif get_origin(kind) in (Union, UnionType):
            kind = next((member for member in get_args(kind) if part in _tags(member)), None)
        else:
            return None
    kind = _unwrap(kind)
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _unwrap(kind: Any) -> Any:
    """`Annotated[X, ...]` and `X | None` as X."""
    while True:
        if get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
        elif get_origin(kind) in (Union, UnionType) and len(
                members := [a for a in get_args(kind) if a is not NoneType]) == 1:
            kind = members[0]
        else:
            return kind


def _tags(member: Any) -> list[object]:
    return [meta.tag for meta in get_args(member)[1:] if isinstance(meta, Tag)]


def _raw_references(data: Mapping[str, Any]) -> list[Problem]:
    """Each `goto` to a step the file does not have, read from the data as written (for a
    script that failed validation, which check_script cannot see)."""
    steps = data.get("steps")
    if not isinstance(steps, list):
        return []
    known = [step["id"] for step in steps if isinstance(step, dict)
             and isinstance(step.get("id"), str)]
    problems: list[Problem] = []
    for i, step in enumerate(steps):
        rules = step.get("next") if isinstance(step, dict) else None
        for j, rule in enumerate(rules if isinstance(rules, list) else []):
            goto = rule.get("goto") if isinstance(rule, dict) else None
            if isinstance(goto, str) and goto != END and goto not in known:
                problems.append((("steps", i, "next", j, "goto"), _unknown_step(goto, known)))
    return problems


def _unknown_step(goto: str, known: Iterable[str]) -> str:
    return f"unknown step {goto!r}" + did_you_mean(goto, [*known, END])


def _issue(root: yaml.Node, loc: tuple[int | str, ...], message: str,
           tagged: bool = False) -> ScriptIssue:
    node, path = root, []
    tag: object = None  # a list item's `type`, which pydantic (tagged) puts into `loc` next
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            if part == tag:
                tag = None
                continue  # the step union's tag; `text` is a type and a field name at once
            tag = None
            child = next((v for k, v in node.value if k.value == part), None)
            if child is None:
                # A tag of a discriminated union or a missing field: name it, stay on the parent.
                if not _is_tag(part):
                    path.append(str(part))
                continue
            node = child
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            tag = _step_type(node) if tagged and isinstance(node, yaml.MappingNode) else None
        else:
            continue
        path.append(str(part))
    message = message.removeprefix("Value error, ")
    return ScriptIssue(".".join(path), message, node.start_mark.line + 1)


def _is_tag(part: int | str) -> bool:
    """Pydantic puts union members' names into error locations; they are not fields."""
    return isinstance(part, str) and (
        part in ("and", "or", "not", "compare", "bool", "int", "float", "str")
        or not re.fullmatch(r"[a-z_][a-z0-9_]*", part))


def _step_type(node: yaml.MappingNode) -> object:
    return next((v.value for k, v in node.value if k.value == "type"), None)


def _duplicate_keys(node: yaml.Node, loc: tuple[int | str, ...]) -> Iterator[ScriptIssue]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                path = ".".join(map(str, (*loc, key.value)))
                yield ScriptIssue(path, "duplicate key", key.start_mark.line + 1)
            seen.add(key.value)
            yield from _duplicate_keys(value, (*loc, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, i))


# --- whole-script checks ---------------------------------------------------------------------

Problem: TypeAlias = tuple[tuple[int | str, ...], str]


def check_script(script: Script) -> list[Problem]:
    """What a field-by-field validation cannot see: references, the step graph, locales."""
    problems: list[Problem] = []
    languages = script.languages
    if script.default_locale not in languages:
        problems.append((("default_locale",), f"{script.default_locale!r} is not among the "
                                              f"script's locales {languages}"))
    problems += _missing_locales(script.model_dump(by_alias=True), (), set(languages))

    seen: dict[str, int] = {}
    answer_keys = set(script.answer_keys())
    for i, step in enumerate(script.steps):
        if step.id in seen or step.id == END:
            problems.append((("steps", i, "id"), f"step id {step.id!r} is used twice or reserved"))
        seen.setdefault(step.id, i)
        for j, rule in enumerate(step.next):
            if rule.goto != END and not script.has_step(rule.goto):
                problems.append((("steps", i, "next", j, "goto"),
                                 _unknown_step(rule.goto, (s.id for s in script.steps))))
            for ref in step_refs(rule.when):
                if ref not in answer_keys:
                    problems.append((("steps", i, "next", j, "when"),
                                     f"condition refers to {ref!r}, which is not a question"))
        if step.type in ("text", "message") and step.alert not in (None, False):
            problems.append((("steps", i, "alert"), f"a {step.type} step has no score to alert "
                             "on; put the alert on a scored question"))
        for field, text in _texts(step):
            problems += [(("steps", i, *field), f"unknown placeholder {{{ns}.{key}}}; use "
                          "{context.KEY} or {customer.KEY}")
                         for ns, key, _ in PLACEHOLDER.findall(text) if ns not in NAMESPACES]
    if len(seen) == len(script.steps) and not problems:
        problems += _graph_problems(script)
    return problems


def successors(script: Script, index: int) -> list[str]:
    """Every step a dialogue may go to after step `index` (END included)."""
    step = script.steps[index]
    targets = [rule.goto for rule in step.next]
    if not any(rule.when is None for rule in step.next):
        targets.append(script.steps[index + 1].id if index + 1 < len(script.steps) else END)
    return targets


def _graph_problems(script: Script) -> list[Problem]:
    graph = {step.id: successors(script, i) for i, step in enumerate(script.steps)}
    reachable: set[str] = set()
    todo = [script.steps[0].id]
    while todo:
        node = todo.pop()
        if node != END and node not in reachable:
            reachable.add(node)
            todo += graph[node]
    exits = {END}
    changed = True
    while changed:
        before = len(exits)
        exits |= {node for node, targets in graph.items() if exits.intersection(targets)}
        changed = len(exits) != before
    problems: list[Problem] = []
    messages = {step.id for step in script.steps if step.type == "message"}
    for i, step in enumerate(script.steps):
        if step.id not in reachable:
            problems.append((("steps", i, "id"), f"step {step.id!r} can never be reached"))
        elif step.id not in exits:
            problems.append((("steps", i, "next"),
                             f"step {step.id!r} is in a loop with no way to the end"))
        elif step.id in messages and _message_loop(step.id, graph, messages):
            problems.append((("steps", i, "next"),
                             f"message {step.id!r} is in a loop that never waits for an answer"))
    return problems


def _message_loop(start: str, graph: Mapping[str, list[str]], messages: set[str]) -> bool:
    seen: set[str] = set()
    todo = [t for t in graph[start] if t in messages]
    while todo:
        node = todo.pop()
        if node == start:
            return True
        if node not in seen:
            seen.add(node)
            todo += [t for t in graph[node] if t in messages]
    return False


def _missing_locales(
    data: object, loc: tuple[int | str, ...], languages: set[str]
) -> list[Problem]:
    if isinstance(data, dict):
        if _is_localized(loc):
            missing = sorted(languages - set(data))
            return [(loc, f"missing locale(s): {', '.join(missing)}")] if missing else []
        return [p for k, v in data.items() for p in _missing_locales(v, (*loc, k), languages)]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _missing_locales(v, (*loc, i), languages)]
    return []


def _is_localized(loc: tuple[int | str, ...]) -> bool:
    last = loc[-1] if loc else None
    return last in ("title", "text", "low_label", "high_label") or (
        len(loc) >= 2 and loc[-2] == "questions")


def _texts(step: Step) -> Iterator[tuple[tuple[str, ...], str]]:
    for field in ("text", "low_label", "high_label"):
        for locale, text in (getattr(step, field, None) or {}).items():
            yield (field, locale), text
    if isinstance(step, CliStep):
        for item in CLI_ITEMS:
            for locale, text in getattr(step.questions, item).items():
                yield ("questions", item, locale), text
