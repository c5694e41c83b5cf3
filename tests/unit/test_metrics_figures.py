"""bot.services.metrics' scoring of a group's counts, by hand: a script's steps of one type
pooled into one figure, periods, and the context values rollups are kept under."""

from __future__ import annotations

from datetime import date

import pytest

from bot.services.metrics import entry_steps, figures, period_of, scored_keys
from conversations.script import parse_script
from storage.rollups import context_pairs

TWO_OF_EACH = """
id: twice
default_locale: en
title: {en: Twice}
steps:
  - {id: nps_a, type: nps, text: {en: A}}
  - {id: nps_b, type: nps, text: {en: B}}
  - {id: ces_a, type: ces, scale: 5, direction: low_is_easy, text: {en: A}}
  - {id: ces_b, type: ces, scale: 7, direction: high_is_easy, text: {en: B}}
  - id: cli_a
    type: cli
    scale_min: 0
    text: {en: A}
    questions: {recommend: {en: r}, retain: {en: s}, upsell: {en: u}, switch: {en: w}}
  - id: cli_b
    type: cli
    text: {en: B}
    questions: {recommend: {en: r}, retain: {en: s}, upsell: {en: u}, switch: {en: w}}
  - {id: comment, type: text, text: {en: Why}}
"""
SCRIPT = parse_script(TWO_OF_EACH)


def test_the_scored_keys_are_nps_csat_ces_and_each_cli_item() -> None:
    keys = scored_keys(SCRIPT)
    assert list(keys) == ["nps_a", "nps_b", "ces_a", "ces_b",
                          "cli_a.recommend", "cli_a.retain", "cli_a.upsell", "cli_a.switch",
                          "cli_b.recommend", "cli_b.retain", "cli_b.upsell", "cli_b.switch"]
    assert set(keys.values()) == {"nps", "ces", "cli"}


def test_steps_of_one_type_are_pooled() -> None:
    result = figures(SCRIPT, {
        "nps_a": {10: 2, 0: 1}, "nps_b": {8: 1},
        # 1-5 low is easy: 1 and 2 are easy; 1-7 high is easy: 5, 6, 7 are.
        "ces_a": {1: 1, 3: 1}, "ces_b": {7: 1, 4: 1},
        # 0-10: switch 2 -> 8; 1-10: switch 2 -> 9.
        "cli_a.recommend": {10: 1}, "cli_a.switch": {2: 1},
        "cli_b.retain": {5: 1}, "cli_b.switch": {2: 1},
        "comment": {1: 5},  # not scored: never counted
    })

    assert (result.nps.promoters, result.nps.passives, result.nps.detractors) == (2, 1, 1)
    assert result.nps.score == 25.0
    assert (result.ces.total, result.ces.easy, result.ces.percent_easy) == (4, 2, 50.0)
    assert result.ces.mean == 15 / 4  # of the pooled scores: (1 + 3 + 7 + 4) / 4
    assert (result.cli.total, result.cli.mean) == (4, (10 + 8 + 5 + 9) / 4)
    assert (result.csat.total, result.csat.percent) == (0, None)
    assert result.answers == 4 + 4 + 4


def test_no_counts_score_nothing() -> None:
    result = figures(SCRIPT, {})
    assert result.answers == 0
    assert (result.nps.score, result.nps.margin, result.ces.mean, result.cli.mean) == (
        None, None, None, None)


@pytest.mark.parametrize(("day", "group_by", "key", "first"), [
    (date(2026, 1, 1), "day", "2026-01-01", date(2026, 1, 1)),
    (date(2026, 1, 1), "week", "2026-W01", date(2025, 12, 29)),  # ISO: the week of Thursday
    (date(2027, 1, 1), "week", "2026-W53", date(2026, 12, 28)),
    (date(2026, 3, 8), "week", "2026-W10", date(2026, 3, 2)),  # a Sunday ends its week
    (date(2026, 3, 8), "month", "2026-03", date(2026, 3, 1)),
    (date(2026, 3, 31), "quarter", "2026-Q1", date(2026, 1, 1)),
    (date(2026, 12, 31), "quarter", "2026-Q4", date(2026, 10, 1)),
])
def test_periods(day: date, group_by: str, key: str, first: date) -> None:
    assert period_of(day, group_by) == (key, first)


def test_context_pairs_keep_scalars_as_text_cut_short() -> None:
    assert context_pairs({"agent": "Anna", "shop": 7, "vip": True, "rate": 0.5,
                          "tags": ["a"], "who": {"id": 1}, "note": "n" * 300,
                          "k" * 80: "v"}) == [
        ("agent", "Anna"), ("shop", "7"), ("vip", "True"), ("rate", "0.5"),
        ("note", "n" * 200), ("k" * 64, "v")]
    assert context_pairs({}) == []
    assert context_pairs(None) == []


BRANCHING_WELCOME = """
id: welcome
default_locale: en
title: {en: Welcome}
steps:
  - id: hello
    type: message
    text: {en: Hello}
    next:
      - {when: {context: tier, in: [vip]}, goto: vip_score}
  - id: note
    type: message
    text: {en: "A note"}
  - {id: score, type: nps, text: {en: Score}}
  - {id: vip_score, type: csat, text: {en: VIP}}
  - {id: why, type: text, text: {en: Why}}
"""


def test_a_dialogue_stands_at_an_entry_step_until_its_first_answer() -> None:
    # The opening messages lead to `score`, or to `vip_score` for a VIP: both are where a
    # dialogue waits before its first answer; `why` comes only after one.
    assert entry_steps(parse_script(BRANCHING_WELCOME)) == {"score", "vip_score"}
    assert entry_steps(parse_script(TWO_OF_EACH)) == {"nps_a"}
