"""A survey's figures in words, for the team chat's /report and the digest: the periods an
admin names ("30d", "quarter", "2026-01-01..2026-03-31") and the text of a MetricsResult.
Pure: the figures come in already computed (bot.services.metrics.MetricsService.compute)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

from bot.services.errors import ServiceError
from bot.services.metrics import TOO_FEW_ANSWERS, Figures, MetricsResult, Rate

PERIODS_HELP = ("7d, 30d, 90d, quarter (this quarter), year (this year) or "
                "YYYY-MM-DD..YYYY-MM-DD")
_DAYS = re.compile(r"^(7|30|90)d$")
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
# The order the metrics are shown in, and the one a chart falls back to without NPS.
METRICS = ("nps", "csat", "ces", "cli")


class BadPeriod(ServiceError, ValueError):
    """Not a period this module reads; the message says what is accepted."""


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date  # included

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of the same length just before this one."""
        return Period(self.start - timedelta(days=self.days), self.start - timedelta(days=1))

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def parse_period(text: str, today: date) -> Period:
    """`text` as days up to and including `today` (the survey's today). BadPeriod."""
    text = text.strip().lower()
    if found := _DAYS.match(text):
        return Period(today - timedelta(days=int(found.group(1)) - 1), today)
    if text == "quarter":
        return Period(date(today.year, 3 * ((today.month - 1) // 3) + 1, 1), today)
    if text == "year":
        return Period(date(today.year, 1, 1), today)
    if found := _RANGE.match(text):
        try:
            start, end = (date.fromisoformat(found.group(i)) for i in (1, 2))
        except ValueError:
            raise BadPeriod(f"{text!r} is not two real dates; periods: {PERIODS_HELP}") from None
        if start > end:
            raise BadPeriod(f"{text!r} ends before it starts; periods: {PERIODS_HELP}")
        return Period(start, end)
    raise BadPeriod(f"{text!r} is not a period; periods: {PERIODS_HELP}")


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def margin_text(margin: float | None, answers: int) -> str:
    """" ±12.0" after an NPS; below the answers a margin needs, " (too few answers for a
    margin)", so a missing margin is not read as a certain score; nothing without answers."""
    if margin is not None:
        return f" ±{margin:.1f}"
    return f" ({TOO_FEW_ANSWERS} for a margin)" if answers else ""


def figure_lines(figures: Figures, metrics: set[str]) -> list[str]:
    """One line per metric the script has, e.g. "NPS +33.3 ±12.0 (P 5 / P 2 / D 3, n=10)"."""
    lines = []
    if "nps" in metrics:
        nps = figures.nps
        score = "—" if nps.score is None else f"{nps.score:+.1f}"
        lines.append(f"NPS {score}{margin_text(nps.margin, nps.total)} (promoters "
                     f"{nps.promoters} / passives {nps.passives} / detractors "
                     f"{nps.detractors}, n={nps.total})")
    if "csat" in metrics:
        csat = figures.csat
        lines.append(f"CSAT {_pct(csat.percent)} satisfied, mean {_num(csat.mean, 2)} "
                     f"(n={csat.total})")
    if "ces" in metrics:
        ces = figures.ces
        lines.append(f"CES mean {_num(ces.mean, 2)}, {_pct(ces.percent_easy)} easy "
                     f"(n={ces.total})")
    if "cli" in metrics:
        lines.append(f"CLI mean {_num(figures.cli.mean, 2)} (n={figures.cli.total})")
    return lines


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def response_text(rate: Rate, beside: str = "") -> str:
    """"Response rate 40.0 % (4 answered of 10 sent)", or "— (no surveys sent)": never a
    rate of nothing. `beside` goes in the brackets after it."""
    sent = f"{rate.count} answered of {rate.of} sent" if rate.of else "no surveys sent"
    return f"Response rate {_pct(rate.percent)} ({sent}{beside})"


def rate_lines(result: MetricsResult) -> list[str]:
    """The response rate of the surveys sent, with the anonymous answers beside it (never
    in it), and the completion rate of the dialogues started, with those opened but never
    answered beside it."""
    response, completion = result.response_rate, result.completion_rate
    anonymous = (f"; {_plural(response.anonymous_answers, 'anonymous answer')}"
                 if response.anonymous_answers else "")
    opened = (f"; {result.opened_not_answered} opened, not answered"
              if result.opened_not_answered else "")
    return [response_text(response, anonymous),
            f"Completion rate {_pct(completion.percent)} ({completion.count} of "
            f"{completion.of} started{opened})"]


def report_text(title: str, result: MetricsResult, metrics: set[str]) -> str:
    """/report's message, in Telegram's HTML."""
    period = f"{result.start}..{result.end}"
    return "\n".join([
        f"📊 <b>{escape(title)}</b> ({escape(result.survey)}), {period}",
        *(escape(line) for line in figure_lines(result.overall, metrics)),
        f"Answers: {result.overall.answers}",
        *(escape(line) for line in rate_lines(result))])


def main_metric(metrics: set[str]) -> str | None:
    return next((metric for metric in METRICS if metric in metrics), None)


def headline(figures: Figures, metric: str) -> float | None:
    """A metric's one number: NPS score, CSAT %, CES mean, CLI mean."""
    return {"nps": figures.nps.score, "csat": figures.csat.percent, "ces": figures.ces.mean,
            "cli": figures.cli.mean}[metric]


def change(now: float | None, before: float | None) -> str:
    """"+4.0" against the period before, or "no figure before"."""
    if now is None or before is None:
        return "no figure to compare" if now is not None else "—"
    return f"{now - before:+.1f}"
