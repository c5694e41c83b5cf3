"""Loading and validating scripts: every issue carries its field path, a message and the
line of the offending YAML node. The YAML below is written so its line numbers are known."""

from __future__ import annotations

import json
from datetime import time, timedelta
from pathlib import Path

import pytest

from bot.examples import EXAMPLES
from bot.services.scripts import script_files
from conversations.errors import ScriptError, ScriptIssue
from conversations.script import (
    ChoiceStep,
    CliStep,
    NpsStep,
    Script,
    TextStep,
    parse_script,
    script_to_data,
)

SURVEYS = EXAMPLES
KINDS = "nps, csat, ces, cli, rating, choice, yes_no, text, message"


def issues(source: str, filename: str = "<script>") -> list[tuple[str, int | None, str]]:
    with pytest.raises(ScriptError) as caught:
        parse_script(source, filename)
    assert caught.value.filename == filename
    return sorted((i.path, i.line, i.message) for i in caught.value.issues)


HEAD = """\
id: s
default_locale: en
title: {en: T, ru: T}
steps:
"""  # the first step starts on line 5

CASES = {
    "unknown goto": (HEAD + """\
  - id: a
    type: nps
    text: {en: Q, ru: Q}
    next:
      - when: {step: a, lte: 6}
        goto: b
      - goto: nowhere
  - id: b
    type: text
    text: {en: W, ru: W}
""", [("steps.0.next.1.goto", 11, "unknown step 'nowhere'")]),

    "unreachable step": (HEAD + """\
  - id: a
    type: nps
    text: {en: Q, ru: Q}
    next:
      - goto: end
  - id: b
    type: text
    text: {en: W, ru: W}
""", [("steps.1.id", 10, "step 'b' can never be reached")]),

    "cycle without exit": (HEAD + """\
  - id: a
    type: nps
    text: {en: Q, ru: Q}
  - id: b
    type: text
    text: {en: W, ru: W}
    next:
      - when: {step: b, eq: stop}
        goto: a
      - goto: a
  - id: c
    type: message
    text: {en: Bye, ru: Bye}
""", [
        ("steps.0.next", 5, "step 'a' is in a loop with no way to the end"),
        ("steps.1.next", 12, "step 'b' is in a loop with no way to the end"),
        ("steps.2.id", 15, "step 'c' can never be reached"),
    ]),

    "loop of messages only": (HEAD + """\
  - id: q
    type: nps
    text: {en: Q, ru: Q}
  - id: m1
    type: message
    text: {en: M1, ru: M1}
    next:
      - when: {step: q, lte: 5}
        goto: m2
  - id: last
    type: text
    text: {en: L, ru: L}
    next:
      - goto: end
  - id: m2
    type: message
    text: {en: M2, ru: M2}
    next:
      - goto: m1
""", [
        ("steps.1.next", 12, "message 'm1' is in a loop that never waits for an answer"),
        ("steps.3.next", 23, "message 'm2' is in a loop that never waits for an answer"),
    ]),

    "missing locales": (HEAD + """\
  - id: a
    type: nps
    text: {en: Q}
    low_label: {en: Low, ru: Низко}
    high_label:
      en: High
  - id: b
    type: choice
    text: {en: C, ru: C}
    options:
      - {id: x, text: {en: X, ru: X}}
      - id: y
        text: {ru: Y}
  - id: c
    type: cli
    text: {en: L, ru: L}
    questions:
      recommend: {en: R, ru: R}
      retain: {en: R, ru: R}
      upsell: {en: U, ru: U}
      switch: {ru: S}
""", [
        ("steps.0.high_label", 10, "missing locale(s): ru"),
        ("steps.0.text", 7, "missing locale(s): ru"),
        ("steps.1.options.1.text", 17, "missing locale(s): en"),
        ("steps.2.questions.switch", 25, "missing locale(s): en"),
    ]),

    "missing locale in the title": ("""\
id: s
default_locale: en
locales: [en, ru]
title: {en: T}
steps:
  - id: a
    type: nps
    text: {en: Q, ru: Q}
""", [("title", 4, "missing locale(s): ru")]),

    "default locale not among the titles": ("""\
id: s
default_locale: de
title: {en: T, ru: T}
steps:
  - id: a
    type: nps
    text: {en: Q, ru: Q}
""", [("default_locale", 2, "'de' is not among the script's locales ['en', 'ru']")]),

    "default locale not among the locales": ("""\
id: s
default_locale: ru
locales: [en]
title: {en: T}
steps:
  - id: a
    type: nps
    text: {en: Q}
""", [("default_locale", 2, "'ru' is not among the script's locales ['en']")]),

    "unknown step type": (HEAD + """\
  - id: a
    type: nps
    text: {en: Q, ru: Q}
  - id: b
    type: video
    text: {en: V, ru: V}
""", [("steps.1.type", 9, f"unknown step type 'video'; use {KINDS}")]),

    "step without a type": (HEAD + """\
  - id: a
    text: {en: Q, ru: Q}
""", [("steps.0", 5, f"a step needs a type: {KINDS}")]),

    "bad field types": ("""\
id: s
version: one
default_locale: en
title: {en: T, ru: T}
steps:
  - id: a
    type: nps
    text: {en: Q, ru: Q}
    optional: maybe
  - id: why
    type: text
    text: {en: W, ru: W}
    max_length: lots
""", [
        ("steps.0.optional", 9, "should be a valid boolean, unable to interpret input"),
        ("steps.1.max_length", 13,
         "should be a valid integer, unable to parse string as an integer"),
        ("version", 2, "should be a valid integer, unable to parse string as an integer"),
    ]),

    "missing text, also on a text step": (HEAD + """\
  - id: a
    type: nps
  - id: why
    type: text
""", [("steps.0.text", 5, "required, and missing here"),
       ("steps.1.text", 7, "required, and missing here")]),

    "bad value in a text step's own text": (HEAD + """\
  - id: why
    type: text
    text: {en: W, ru: W, EN: W}
""", [("steps.0.text.EN", 7,
       "a language code such as en, ru or pt-BR")]),

    "unknown field": (HEAD + """\
  - id: a
    type: csat
    text: {en: Q, ru: Q}
    colour: red
""", [("steps.0.colour", 8, "unknown field 'colour'")]),

    "duplicate step ids": (HEAD + """\
  - id: a
    type: nps
    text: {en: Q, ru: Q}
  - id: a
    type: text
    text: {en: W, ru: W}
""", [("steps.1.id", 8, "step id 'a' is used twice or reserved")]),

    "a step called end": (HEAD + """\
  - id: end
    type: nps
    text: {en: Q, ru: Q}
""", [("steps.0.id", 5, "step id 'end' is used twice or reserved")]),

    "duplicate YAML keys": (HEAD + """\
  - id: a
    type: nps
    text: {en: Q, ru: Q}
    optional: true
    text: {en: Q2, ru: Q2}
""", [("steps.0.text", 9, "duplicate key")]),

    "condition on unknown step, a message and a CLI step's bare id": (HEAD + """\
  - id: hi
    type: message
    text: {en: Hi, ru: Hi}
  - id: a
    type: cli
    text: {en: Q, ru: Q}
    questions:
      recommend: {en: R, ru: R}
      retain: {en: R, ru: R}
      upsell: {en: U, ru: U}
      switch: {en: S, ru: S}
    next:
      - when: {step: ghost, lte: 2}
        goto: end
      - when:
          or:
            - {step: hi, exists: true}
            - {step: a, gt: 5}
        goto: end
""", [
        ("steps.1.next.0.when", 17, "condition refers to 'ghost', which is not a question"),
        ("steps.1.next.1.when", 20, "condition refers to 'a', which is not a question"),
        ("steps.1.next.1.when", 20, "condition refers to 'hi', which is not a question"),
    ]),

    "malformed condition": (HEAD + """\
  - id: a
    type: nps
    text: {en: Q, ru: Q}
    next:
      - when:
          not: {step: a, lt: lots}
        goto: end
""", [("steps.0.next.0.when.not.lt", 10,
       "should be a valid number, unable to parse string as a number")]),

    "invalid time zone": ("""\
id: s
default_locale: en
title: {en: T}
timezone: Mars/Olympus
steps:
  - id: a
    type: nps
    text: {en: Q}
""", [("timezone", 4, "unknown time zone 'Mars/Olympus'; use a tzdata name such as "
      "Europe/Moscow or UTC")]),

    "unknown placeholder": (HEAD + """\
  - id: a
    type: nps
    text:
      en: "Hi {foo.bar}, rate {context.agent_name}"
      ru: "Привет, {customer.first_name|друг}"
    low_label: {en: "{user.name}", ru: "-"}
""", [
        ("steps.0.low_label.en", 10,
         "unknown placeholder {user.name}; use {context.KEY} or {customer.KEY}"),
        ("steps.0.text.en", 8,
         "unknown placeholder {foo.bar}; use {context.KEY} or {customer.KEY}"),
    ]),

    "choice limits": (HEAD + """\
  - id: a
    type: choice
    text: {en: Q, ru: Q}
    multiple: true
    min_choices: 3
    max_choices: 2
    options:
      - {id: x, text: {en: X, ru: X}}
      - {id: y, text: {en: Y, ru: Y}}
""", [("steps.0", 5, "need min_choices <= max_choices <= the number of options")]),

    "rating range": (HEAD + """\
  - id: a
    type: rating
    text: {en: Q, ru: Q}
    min: 5
    max: 5
""", [("steps.0", 5, "max must be above min, with at most 21 points on the scale")]),
}


@pytest.mark.parametrize(("source", "expected"), list(CASES.values()), ids=list(CASES))
def test_script_issue(source: str, expected: list[tuple[str, int, str]]) -> None:
    assert issues(source) == sorted(expected)


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("id: s\ntitle: {en: T\nsteps: []\n", 3, "not valid YAML/JSON: expected ',' or '}'"),
        ("id: s\n  title: x\n", 2, "not valid YAML/JSON: mapping values are not allowed here"),
        ("id: s\nsteps:\n  - a\n b: 1\n", 4, "not valid YAML/JSON: expected <block end>"),
        ("id: s\n\tsteps: 1\n", 2, "not valid YAML/JSON: found character '\\t'"),
        ("id: s\ntitle: 'open\n", 3, "not valid YAML/JSON: found unexpected end of stream"),
        # Characters YAML refuses anywhere (they escaped as a ReaderError: a 500 on PUT).
        ("id: s\ntitle: a\x00b\n", 2, "not valid YAML/JSON: character #x0000 is not allowed"),
        ("\x07", 1, "not valid YAML/JSON: character #x0007 is not allowed"),
    ],
)
def test_invalid_yaml_names_its_line(source: str, line: int, message: str) -> None:
    ((path, at, text),) = issues(source)
    assert (path, at) == ("", line)
    assert text.startswith(message)


@pytest.mark.parametrize("source", ["", "\n\n", "# nothing but a comment\n"])
def test_empty_file(source: str) -> None:
    assert issues(source) == [("", 1, "the file is empty")]


@pytest.mark.parametrize("source", ["- id: s\n", "just words\n", "42\n"])
def test_a_script_is_a_mapping(source: str) -> None:
    assert issues(source) == [("", 1, "a script must be a mapping of fields")]


# What pydantic says where a script writer needs plain words (issue 19).
RAW = ("Input should be", "Extra inputs", "Field required", "String should match", "^[")


def test_no_issue_quotes_pydantic_or_a_regular_expression() -> None:
    said = [message for source, _ in CASES.values() for _, _, message in issues(source)]
    assert len(said) > 30
    assert [message for message in said if any(raw in message for raw in RAW)] == []


def test_every_text_given_as_a_string_is_asked_for_per_locale() -> None:
    """Each text of the script, wherever it sits (a CLI step's questions too), is one per
    locale; any other mapping given as a scalar is named as a mapping."""
    source = HEAD + """\
  - id: loyalty
    type: cli
    text: {en: "?", ru: "?"}
    questions: {recommend: "R?", retain: {en: a, ru: a}, upsell: {en: b, ru: b},
                switch: {en: c, ru: c}}
    next:
      - {when: "x", goto: end}
policy: 5
"""
    per_locale = "expected one text per locale, e.g. {en: Thanks, ru: Спасибо}"
    mapping = "expected a mapping of names to values (name: value)"
    assert issues(source) == [("policy", 12, mapping), ("steps.0.next.0.when", 11, mapping),
                              ("steps.0.questions.recommend", 8, per_locale)]


def test_a_wrong_field_does_not_hide_an_unknown_goto() -> None:
    source = HEAD + """\
  - id: score
    type: nps
    text: {en: "Score?"}
    colour: red
    next:
      - {when: {step: score, lte: 6}, goto: reasn}
  - id: reason
    type: text
    text: {en: "Why?"}
"""
    assert issues(source) == [
        ("steps.0.colour", 8, "unknown field 'colour'"),
        ("steps.0.next.0.goto", 10, "unknown step 'reasn'; did you mean 'reason'?"),
    ]


def test_every_issue_is_reported_at_once_and_formatted_with_file_and_line() -> None:
    source = CASES["bad field types"][0]
    with pytest.raises(ScriptError) as caught:
        parse_script(source, "surveys/broken.yaml")
    assert str(caught.value).splitlines() == [
        "surveys/broken.yaml:2: version: should be a valid integer, unable to parse "
        "string as an integer",
        "surveys/broken.yaml:9: steps.0.optional: should be a valid boolean, unable to "
        "interpret input",
        "surveys/broken.yaml:13: steps.1.max_length: should be a valid integer, unable "
        "to parse string as an integer",
    ]
    assert ScriptIssue("", "x").format("f.yaml") == "f.yaml:1: <script>: x"


# --- limits: bombs and giants are refused before anything is built from them -----------------

LAUGHS = """id: lol
default_locale: en
title: {en: T}
steps:
  - id: s
    type: nps
    text: &a {en: "ha"}
    low_label: [&b [*a, *a, *a, *a, *a, *a, *a, *a, *a]]
    high_label: [[*b, *b, *b, *b, *b, *b, *b, *b, *b]]
"""


def test_anchors_and_aliases_are_refused_at_the_first() -> None:
    """A "billion laughs" script: nine aliases a level multiply the nodes that validation
    would walk; the first anchor is refused instead, with its line."""
    assert issues(LAUGHS) == [("", 7, "YAML anchors and aliases (& and *) are not allowed "
                                      "in a script: write the text out where it is used")]


def test_a_script_over_the_size_limit_is_refused() -> None:
    steps = "".join(f"  - id: s{i}\n    type: text\n    text: {{en: '{'x' * 900}'}}\n"
                    for i in range(300))
    source = f"id: big\ndefault_locale: en\ntitle: {{en: T}}\nsteps:\n{steps}"
    [(path, line, message)] = issues(source)
    assert (path, line) == ("", 1)
    assert message.endswith("over the limit of 262,144")


def test_nesting_beyond_the_limit_is_refused_with_its_line() -> None:
    source = "id: deep\ndefault_locale: en\ntitle: {en: T}\nsteps: " + "[" * 25 + "]" * 25
    assert issues(source) == [("", 4, "nested more than 20 levels deep")]


TAGS = ("YAML tags (!!str, !!binary, !custom...) are not allowed in a script: write the value "
        "plainly")
KEYS = "mapping keys must be plain strings, not lists or mappings"


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        # Tags escaped the loader as a ConstructorError, a 500 with a traceback on PUT.
        ("id: s\nx: !!python/object/apply:os.system [date]\n", 2, TAGS),
        ("id: s\ntitle: !!python/object:builtins.dict {en: T}\n", 2, TAGS),
        ("id: s\nx: !!binary aGk=\n", 2, TAGS),
        ("id: s\nx: !custom y\n", 2, TAGS),
        ("id: !!str s\n", 1, TAGS),
        ("id: s\nsteps: !!seq\n  - a\n", 2, TAGS),
        ('{"id": "s",\n "x": ! "y"}', 2, TAGS),
        # A list or mapping as a key was a TypeError (unhashable), a 500 as well.
        ("id: s\n? [a, b]\n: 1\n", 2, KEYS),
        ("id: s\nx: {[1]: x}\n", 2, KEYS),
        ("id: s\nx:\n  {a: 1}: x\n", 3, KEYS),
        # Values Python cannot hold were a ValueError from nowhere; `=` had no constructor.
        ("id: s\nx: 2026-02-30\n", 2, "not valid YAML/JSON: cannot read this value: day is "
                                      "out of range for month"),
        ("id: s\n<<: 1\n", 2, "not valid YAML/JSON: expected a mapping or list of mappings "
                              "for merging, but found scalar"),
    ],
)
def test_tags_non_scalar_keys_and_unreadable_values_are_issues_with_their_line(
        source: str, line: int, message: str) -> None:
    assert issues(source, "s.json" if source.startswith("{") else "s.yaml")[0] == (
        "", line, message)


def test_a_lone_equals_sign_is_a_text() -> None:
    source = HEAD + "  - id: q\n    type: text\n    text: {en: '=', ru: =}\n"
    assert parse_script(source).steps[0].text == {"en": "=", "ru": "="}


def values(count: int) -> str:
    """A script of exactly `count` YAML values: its mapping, `id`, `s`, `x`, the list and
    the numbers in it."""
    return "id: s\nx: [" + "1, " * (count - 6) + "1]\n"


def test_the_value_count_is_bounded_before_anything_is_built() -> None:
    assert ("", 2, "more than 30,000 values (texts, numbers, lists and mappings): far beyond "
                   "any survey") in issues(values(30_001))
    at_the_limit = issues(values(30_000))
    assert ("x", 2, "unknown field 'x'") in at_the_limit  # read, then refused
    assert not any("values" in message for _, _, message in at_the_limit)


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("id: s\ntitle: {en: " + "x" * 10_001 + "}\n", 2,
         "a text of more than 10,000 characters"),
        ("id: s\n" + "k" * 101 + ": 1\n", 2,
         "a mapping key of more than 100 characters: keys are field names"),
    ],
)
def test_texts_and_keys_are_bounded(source: str, line: int, message: str) -> None:
    assert issues(source) == [("", line, message)]
    longest = source.replace("x" * 10_001, "x" * 10_000).replace("k" * 101, "k" * 100)
    assert not any("characters" in message for _, _, message in issues(longest))


def test_issues_past_the_first_hundred_are_summed_up_in_one() -> None:
    source = "".join(f"field{i}: 1\n" for i in range(300))
    found = issues(source)
    assert len(found) == 101
    [(line, _)] = [(line, path) for path, line, message in found
                   if message == "more issues after these first 100"]
    assert line is not None
    assert line >= max(other or 0 for _, other, _ in found)


def test_the_example_scripts_are_well_within_the_limits() -> None:
    for path in script_files([SURVEYS]):
        parse_script(path.read_text(encoding="utf-8"), str(path))


# --- JSON --------------------------------------------------------------------------------------

VALID_YAML = """\
id: s
version: 2
default_locale: en
title: {en: T, ru: Т}
steps:
  - id: a
    type: nps
    text: {en: Q, ru: В}
    next:
      - when: {step: a, gte: 9}
        goto: end
  - id: b
    type: text
    optional: true
    text: {en: W, ru: П}
"""


@pytest.mark.parametrize("indent", [None, 2, "\t"])
def test_json_input_reads_like_the_same_yaml(indent: int | str | None) -> None:
    from_yaml = parse_script(VALID_YAML, "s.yaml")
    data = script_to_data(from_yaml)
    from_json = parse_script(json.dumps(data, indent=indent, ensure_ascii=False), "s.json")
    assert from_json == from_yaml
    assert script_to_data(from_json) == data
    assert from_json.version == 2
    assert isinstance(from_json.steps[1], TextStep)


def test_json_errors_carry_json_lines() -> None:
    data = json.loads(json.dumps(script_to_data(parse_script(VALID_YAML))))
    data["steps"][0]["next"][0]["goto"] = "nowhere"
    source = json.dumps(data, indent=2)
    line = source.splitlines().index('          "goto": "nowhere"') + 1
    assert issues(source, "s.json") == [("steps.0.next.0.goto", line, "unknown step 'nowhere'")]


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ('{"id": "s",\n "version": 1,}', 2),  # YAML takes a trailing comma, JSON does not
        ("{\n# a comment\n}", 2),
        ("{'id': 's'}", 1),
    ],
)
def test_what_yaml_takes_but_json_does_not_is_refused_in_a_json_file(source: str,
                                                                     line: int) -> None:
    ((path, at, message),) = issues(source, "s.json")
    assert (path, at) == ("", line)
    assert message.startswith("not valid JSON: ")


# --- durations ---------------------------------------------------------------------------------

ONE_STEP = """\
id: s
default_locale: en
title: {en: T}
steps:
  - id: a
    type: nps
    text: {en: Q}
"""  # what follows starts on line 8


def with_duration(path: str, value: str) -> str:
    """ONE_STEP with `path` set: a top-level field on line 8, a policy field on line 9."""
    if path.startswith("policy."):
        return ONE_STEP + f"policy:\n  {path.removeprefix('policy.')}: {value}\n"
    return ONE_STEP + f"{path}: {value}\n"


NEGATIVE = "must not be negative"
NOT_ZERO = "must be longer than zero"
REFUSED = [
    ("policy.delay", "P3000000D", "must be at most 90 days (P90D)"),
    ("policy.delay", "P90DT1S", "must be at most 90 days (P90D)"),
    ("policy.delay", "7776001", "must be at most 90 days (P90D)"),  # a number is seconds
    ("policy.delay", "-PT1S", NEGATIVE),
    ("policy.delay", "-1", NEGATIVE),
    ("policy.reminder_after", "P3000000D", "must be at most 30 days (P30D)"),
    ("policy.reminder_after", "P30DT1S", "must be at most 30 days (P30D)"),
    ("policy.reminder_after", "PT0S", NOT_ZERO),
    ("policy.reminder_after", "-P1D", NOT_ZERO),
    ("policy.expires_after", "P3000000D", "must be at most 365 days (P365D)"),
    ("policy.expires_after", "P1Y1D", "must be at most 365 days (P365D)"),
    ("policy.expires_after", "P365DT1S", "must be at most 365 days (P365D)"),
    ("policy.expires_after", "P0D", NOT_ZERO),
    ("policy.expires_after", "-PT1H", NOT_ZERO),
    ("policy.expires_after", "P1000000000D",
     "should be a valid timedelta, durations may not exceed 999,999,999 days"),
    ("alert_sla", "P3000000D", "must be at most 30 days (P30D)"),
    ("alert_sla", "P30DT1S", "must be at most 30 days (P30D)"),
    ("alert_sla", "PT0S", NOT_ZERO),
    ("alert_sla", "-PT30M", NOT_ZERO),
    ("policy.throttle_days", "3651", "should be less than or equal to 3650"),
    ("policy.throttle_days", "-1", "should be greater than or equal to 0"),
]


@pytest.mark.parametrize(("path", "value", "message"), REFUSED,
                         ids=[f"{path}={value}" for path, value, _ in REFUSED])
def test_a_duration_out_of_bounds_is_refused_at_its_line(path: str, value: str,
                                                          message: str) -> None:
    line = 9 if path.startswith("policy.") else 8
    assert issues(with_duration(path, value), "s.yaml") == [(path, line, message)]


ACCEPTED = [
    ("policy.delay", "P90D", timedelta(days=90)),
    ("policy.delay", "PT0S", timedelta(0)),  # send at once
    ("policy.reminder_after", "P30D", timedelta(days=30)),
    ("policy.reminder_after", "PT1S", timedelta(seconds=1)),
    ("policy.expires_after", "P365D", timedelta(days=365)),
    ("policy.expires_after", "P1Y", timedelta(days=365)),
    ("alert_sla", "P30D", timedelta(days=30)),
    ("alert_sla", "PT1M", timedelta(minutes=1)),
    ("policy.throttle_days", "3650", 3650),
    ("policy.throttle_days", "0", 0),
]


@pytest.mark.parametrize(("path", "value", "expected"), ACCEPTED,
                         ids=[f"{path}={value}" for path, value, _ in ACCEPTED])
def test_a_duration_at_its_bound_is_accepted(path: str, value: str,
                                             expected: timedelta | int) -> None:
    script = parse_script(with_duration(path, value))
    owner = script.policy if path.startswith("policy.") else script
    assert getattr(owner, path.rpartition(".")[2]) == expected
    assert parse_script(json.dumps(script_to_data(script)), "s.json") == script  # stored


# --- YAML 1.2 scalars --------------------------------------------------------------------------

SCALARS = """\
id: s
default_locale: en
title: {en: T}
policy:
  quiet_hours: {start: 21:00, end: 09:00}
  expires_after: PT24H
  reminder_after: P1DT2H
  delay: PT15M
  throttle_days: 30
steps:
  - id: on
    type: choice
    text: {en: Q}
    options:
      - {id: no, text: {en: No}}
      - {id: yes, text: {en: Yes}}
      - {id: off, text: {en: Off}}
  - id: score
    type: nps
    text: {en: "1.5 / 10: 08"}
    alert: {in: [no, 0]}
"""


def test_yaml_1_2_core_schema() -> None:
    script = parse_script(SCALARS)
    quiet = script.policy.quiet_hours
    assert quiet is not None
    assert (quiet.start, quiet.end) == (time(21, 0), time(9, 0))
    assert script.policy.expires_after == timedelta(hours=24)
    assert script.policy.reminder_after == timedelta(days=1, hours=2)
    assert script.policy.delay == timedelta(minutes=15)
    assert script.policy.throttle_days == 30
    choice = script.steps[0]
    assert isinstance(choice, ChoiceStep)
    assert choice.id == "on"
    assert [o.id for o in choice.options] == ["no", "yes", "off"]
    assert [o.text["en"] for o in choice.options] == ["No", "Yes", "Off"]
    score = script.steps[1]
    assert isinstance(score, NpsStep)
    assert score.text["en"] == "1.5 / 10: 08"


# --- the model ---------------------------------------------------------------------------------


def test_answer_keys_and_progress() -> None:
    script = parse_script("""\
id: s
default_locale: en
title: {en: T}
steps:
  - {id: hi, type: message, text: {en: Hi}}
  - {id: a, type: nps, text: {en: Q}}
  - id: l
    type: cli
    text: {en: L}
    questions: {recommend: {en: R}, retain: {en: R}, upsell: {en: U}, switch: {en: S}}
  - {id: why, type: text, text: {en: W}}
  - {id: bye, type: message, text: {en: Bye}}
""")
    assert script.answer_keys() == ["a", "l.recommend", "l.retain", "l.upsell", "l.switch",
                                    "why"]
    assert [script.progress(k) for k in ("a", "l.upsell", "why")] == [(1, 6), (4, 6), (6, 6)]
    cli = script.step("l")
    assert isinstance(cli, CliStep)
    assert (cli.bounds, cli.scale_min) == ((1, 10), 1)
    assert script.languages == ["en"]
    assert script.has_step("bye")
    assert not script.has_step("end")


def example_surveys() -> list[Path]:
    return script_files([SURVEYS])


@pytest.mark.parametrize("path", example_surveys(), ids=lambda p: p.name)
def test_example_surveys_are_valid(path: Path) -> None:
    script = parse_script(path.read_text(encoding="utf-8"), str(path))
    assert isinstance(script, Script)
    assert script.answer_keys()
    again = parse_script(json.dumps(script_to_data(script), ensure_ascii=False), "x.json")
    assert again == script


def test_there_are_example_surveys() -> None:
    assert {p.name for p in example_surveys()} >= {"nps.yaml"}
