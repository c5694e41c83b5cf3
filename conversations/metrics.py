"""Metric definitions as pure functions over score counts ({score: how many answers}).

The same functions serve rollups and raw answers, so both always agree."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

Counts: TypeAlias = Mapping[int, int]
Z95 = 1.959964


def count(scores: Iterable[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for score in scores:
        counts[score] = counts.get(score, 0) + 1
    return counts


def total(counts: Counts) -> int:
    return sum(counts.values())


def mean(counts: Counts) -> float | None:
    n = total(counts)
    return sum(score * k for score, k in counts.items()) / n if n else None


def share(part: int, whole: int) -> float | None:
    """A percentage, or None when there is nothing to divide by."""
    return 100.0 * part / whole if whole else None


@dataclass(frozen=True, slots=True)
class Nps:
    promoters: int
    passives: int
    detractors: int
    total: int
    score: float | None  # (P - D) / N * 100, from -100 to +100
    margin: float | None  # 95 % margin of error, in NPS points


def nps(counts: Counts) -> Nps:
    """Promoters answer 9-10, passives 7-8, detractors 0-6."""
    promoters = sum(k for s, k in counts.items() if s >= 9)
    passives = sum(k for s, k in counts.items() if 7 <= s <= 8)
    detractors = sum(k for s, k in counts.items() if s <= 6)
    n = promoters + passives + detractors
    if not n:
        return Nps(0, 0, 0, 0, None, None)
    p, d = promoters / n, detractors / n
    # Each answer scores +1, 0 or -1; the NPS is their mean, so its variance is
    # E[x^2] - E[x]^2 = (p + d) - (p - d)^2.
    margin = Z95 * math.sqrt(max(p + d - (p - d) ** 2, 0.0) / n) * 100 if n > 1 else None
    return Nps(promoters, passives, detractors, n, (p - d) * 100, margin)


@dataclass(frozen=True, slots=True)
class Csat:
    total: int
    satisfied: int  # answers of 4 or 5
    percent: float | None
    mean: float | None


def csat(counts: Counts) -> Csat:
    n = total(counts)
    satisfied = sum(k for s, k in counts.items() if s >= 4)
    return Csat(n, satisfied, share(satisfied, n), mean(counts))


@dataclass(frozen=True, slots=True)
class Ces:
    total: int
    easy: int
    percent_easy: float | None
    mean: float | None


def is_easy(score: int, scale: int, direction: Literal["low_is_easy", "high_is_easy"]) -> bool:
    """Easy means strictly on the easy side of the scale's middle: 5-7 of 7 or 4-5 of 5 when
    high is easy; 1-3 of 7 or 1-2 of 5 when low is easy."""
    middle = (1 + scale) / 2
    return score < middle if direction == "low_is_easy" else score > middle


def ces(counts: Counts, scale: int, direction: Literal["low_is_easy", "high_is_easy"]) -> Ces:
    n = total(counts)
    easy = sum(k for s, k in counts.items() if is_easy(s, scale, direction))
    return Ces(n, easy, share(easy, n), mean(counts))


@dataclass(frozen=True, slots=True)
class Cli:
    total: int  # item answers counted
    mean: float | None  # on the scale's own range; "switch" reverse-scored


def cli(items: Mapping[str, Counts], low: int = 1, high: int = 10) -> Cli:
    """Customer Loyalty Index: the mean of recommend, retain, upsell and switch, where a high
    "switch to a competitor" is disloyal and counts as low + high - score."""
    n, points = 0, 0
    for item, counts in items.items():
        for score, k in counts.items():
            n += k
            points += k * (low + high - score if item == "switch" else score)
    return Cli(n, points / n if n else None)
