"""The metric formulas, on counts whose results are worked out by hand."""

from __future__ import annotations

import math
import statistics
from typing import Literal

import pytest

from conversations.metrics import ces, cli, count, csat, is_easy, mean, nps, share, total


def nps_counts(promoters: int, passives: int, detractors: int) -> dict[int, int]:
    # spread over the band edges, so the bands are tested, not just 10 / 8 / 0
    return {10: promoters - promoters // 2, 9: promoters // 2, 8: passives - passives // 2,
            7: passives // 2, 6: detractors - detractors // 2, 0: detractors // 2}


@pytest.mark.parametrize(
    ("p", "m", "d", "score"),
    [
        (50, 30, 20, 30.0),
        (10, 0, 0, 100.0),
        (0, 0, 10, -100.0),
        (0, 10, 0, 0.0),
        (1, 2, 1, 0.0),
        (3, 1, 0, 75.0),
        (1, 0, 3, -50.0),
    ],
)
def test_nps_score(p: int, m: int, d: int, score: float) -> None:
    result = nps({k: v for k, v in nps_counts(p, m, d).items() if v})
    assert (result.promoters, result.passives, result.detractors) == (p, m, d)
    assert result.total == p + m + d
    assert result.score == pytest.approx(score)


@pytest.mark.parametrize(("score", "band"), [(0, "d"), (5, "d"), (6, "d"), (7, "p"), (8, "p"),
                                             (9, "P"), (10, "P")])
def test_nps_bands(score: int, band: str) -> None:
    result = nps({score: 1})
    assert (result.promoters, result.passives, result.detractors) == (
        int(band == "P"), int(band == "p"), int(band == "d"))


def test_nps_margin_of_error() -> None:
    result = nps(nps_counts(50, 30, 20))
    # each answer is +1, 0 or -1; the margin is 1.96 standard errors of their mean
    answers = [1] * 50 + [0] * 30 + [-1] * 20
    expected = 1.96 * math.sqrt(statistics.pvariance(answers) / len(answers)) * 100
    assert result.margin == pytest.approx(expected, rel=1e-4)
    assert result.margin == pytest.approx(15.308, abs=1e-3)


def test_nps_margin_shrinks_with_more_answers_and_vanishes_when_all_agree() -> None:
    small = nps(nps_counts(5, 3, 2)).margin
    large = nps(nps_counts(500, 300, 200)).margin
    assert small is not None
    assert large is not None
    assert large == pytest.approx(small / 10, rel=1e-9)
    assert nps({10: 20}).margin == 0.0
    assert nps({0: 20}).margin == 0.0
    assert nps({9: 1}).margin is None  # one answer has no spread to speak of


def test_nps_of_nothing() -> None:
    result = nps({})
    assert (result.total, result.score, result.margin) == (0, None, None)
    assert (result.promoters, result.passives, result.detractors) == (0, 0, 0)


@pytest.mark.parametrize(
    ("counts", "satisfied", "percent", "average"),
    [
        ({5: 3, 4: 1, 3: 1, 1: 1}, 4, 400 / 6, 23 / 6),
        ({5: 40, 4: 40, 3: 10, 2: 5, 1: 5}, 80, 80.0, 4.05),
        ({3: 2}, 0, 0.0, 3.0),
        ({4: 1}, 1, 100.0, 4.0),
        ({}, 0, None, None),
    ],
)
def test_csat(counts: dict[int, int], satisfied: int, percent: float | None,
              average: float | None) -> None:
    result = csat(counts)
    assert result.total == sum(counts.values())
    assert result.satisfied == satisfied
    assert result.percent == pytest.approx(percent)
    assert result.mean == pytest.approx(average)


Direction = Literal["low_is_easy", "high_is_easy"]
CES_COUNTS_7 = {7: 2, 6: 1, 5: 1, 4: 3, 1: 3}  # mean 40 / 10
CES_COUNTS_5 = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2}  # mean 30 / 10


@pytest.mark.parametrize(
    ("counts", "scale", "direction", "easy", "percent", "average"),
    [
        (CES_COUNTS_7, 7, "high_is_easy", 4, 40.0, 4.0),  # 5, 6, 7
        (CES_COUNTS_7, 7, "low_is_easy", 3, 30.0, 4.0),  # 1, 2, 3
        (CES_COUNTS_5, 5, "high_is_easy", 4, 40.0, 3.0),  # 4, 5
        (CES_COUNTS_5, 5, "low_is_easy", 4, 40.0, 3.0),  # 1, 2
        ({1: 3, 2: 1}, 5, "low_is_easy", 4, 100.0, 1.25),
        ({1: 3, 2: 1}, 5, "high_is_easy", 0, 0.0, 1.25),
        ({}, 7, "high_is_easy", 0, None, None),
    ],
)
def test_ces(counts: dict[int, int], scale: int, direction: Direction, easy: int,
             percent: float | None, average: float | None) -> None:
    result = ces(counts, scale, direction)
    assert (result.total, result.easy) == (sum(counts.values()), easy)
    assert result.percent_easy == pytest.approx(percent)
    assert result.mean == pytest.approx(average)


@pytest.mark.parametrize(
    ("scale", "direction", "easy_scores"),
    [
        (5, "low_is_easy", {1, 2}),
        (5, "high_is_easy", {4, 5}),
        (7, "low_is_easy", {1, 2, 3}),
        (7, "high_is_easy", {5, 6, 7}),
    ],
)
def test_is_easy(scale: int, direction: Direction, easy_scores: set[int]) -> None:
    assert {s for s in range(1, scale + 1) if is_easy(s, scale, direction)} == easy_scores


@pytest.mark.parametrize(
    ("items", "low", "points", "n"),
    [
        # switch 2 on 1-10 counts as 1 + 10 - 2 = 9: (10 + 8 + 6 + 9) / 4
        ({"recommend": {10: 1}, "retain": {8: 1}, "upsell": {6: 1}, "switch": {2: 1}}, 1,
         33, 4),
        # on 0-10 as 0 + 10 - 2 = 8: (10 + 8 + 6 + 8) / 4
        ({"recommend": {10: 1}, "retain": {8: 1}, "upsell": {6: 1}, "switch": {2: 1}}, 0,
         32, 4),
        # switch 1 -> 10 twice, switch 10 -> 1 twice: (18 + 14 + 20 + 2) / 8
        ({"recommend": {9: 2, 7: 2}, "switch": {1: 2, 10: 2}}, 1, 54, 8),
        ({"switch": {0: 1}}, 0, 10, 1),
        ({"switch": {10: 1}}, 0, 0, 1),
        ({"retain": {5: 1}}, 1, 5, 1),
    ],
)
def test_cli_mean_with_switch_reverse_scored(items: dict[str, dict[int, int]], low: int,
                                             points: int, n: int) -> None:
    result = cli(items, low=low, high=10)
    assert result.total == n
    assert result.mean == pytest.approx(points / n)


def test_cli_of_nothing() -> None:
    assert cli({}).mean is None
    assert cli({"recommend": {}}).total == 0


@pytest.mark.parametrize(
    ("scores", "counts"),
    [([], {}), ([3], {3: 1}), ([1, 1, 2, 5, 1], {1: 3, 2: 1, 5: 1}), ([-2, 0, -2], {-2: 2, 0: 1})],
)
def test_count_total_and_mean(scores: list[int], counts: dict[int, int]) -> None:
    assert count(scores) == counts
    assert total(counts) == len(scores)
    assert mean(counts) == (pytest.approx(statistics.fmean(scores)) if scores else None)


@pytest.mark.parametrize(
    ("part", "whole", "percent"),
    [(1, 4, 25.0), (0, 4, 0.0), (4, 4, 100.0), (1, 3, 100 / 3), (0, 0, None), (3, 0, None)],
)
def test_share(part: int, whole: int, percent: float | None) -> None:
    assert share(part, whole) == pytest.approx(percent)
