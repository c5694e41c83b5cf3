"""Chart geometry for the dashboard; templates/admin/charts.html draws it as inline SVG (no
script, no CDN, nothing the pages' strict CSP blocks: colours are attributes, not styles,
and Jinja escapes every label)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

WIDTH, HEIGHT, TOP, BOTTOM, LEFT = 640, 220, 10, 30, 40
PROMOTER, PASSIVE, DETRACTOR, LINE = "#15803d", "#a3a3a3", "#b91c1c", "#1d4ed8"


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    promoters: int
    passives: int
    detractors: int
    score: float | None


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True, slots=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass(slots=True)
class Trend:
    rects: list[Rect] = field(default_factory=list)
    dots: list[Dot] = field(default_factory=list)
    labels: list[tuple[float, str]] = field(default_factory=list)
    zero: float = TOP + (HEIGHT - TOP - BOTTOM) / 2

    @property
    def line(self) -> str:
        return " ".join(f"{dot.x:.1f},{dot.y:.1f}" for dot in self.dots)


def nps_trend(periods: Sequence[Period]) -> Trend:
    """Promoters, passives and detractors stacked as shares of each period's answers, and
    the NPS (-100..+100) as a line over them."""
    trend = Trend()
    plot_h, plot_w = HEIGHT - TOP - BOTTOM, WIDTH - LEFT - 10
    step = plot_w / max(len(periods), 1)
    bar = max(step * 0.7, 1.0)
    every = max(1, len(periods) // 8)  # about eight labels under the axis at most
    for i, period in enumerate(periods):
        x = LEFT + i * step + (step - bar) / 2
        total = period.promoters + period.passives + period.detractors
        y = float(TOP)
        for count, fill, name in ((period.promoters, PROMOTER, "promoters"),
                                  (period.passives, PASSIVE, "passives"),
                                  (period.detractors, DETRACTOR, "detractors")):
            height = plot_h * count / total if total else 0.0
            if height:
                trend.rects.append(Rect(x, y, bar, height, fill,
                                        f"{period.label}: {count} {name}"))
            y += height
        if period.score is not None:
            trend.dots.append(Dot(x + bar / 2, TOP + plot_h * (100 - period.score) / 200,
                                  f"{period.label}: NPS {period.score:+.1f}"))
        if i % every == 0:
            trend.labels.append((x, period.label))
    return trend


@dataclass(frozen=True, slots=True)
class Bar:
    y: float
    width: float
    label: str
    value: str


def bars(values: Sequence[tuple[str, float]], *, row: int = 22) -> list[Bar]:
    """Horizontal bars, one per (label, value): a score distribution, a drop-off funnel, a
    metric by week. Negative values (an NPS below zero) draw as empty bars."""
    most = max((value for _, value in values), default=0.0) or 1.0
    return [Bar(i * row + 2, max(WIDTH - 180, 0) * max(value, 0.0) / most, label,
                f"{value:.1f}".removesuffix(".0"))
            for i, (label, value) in enumerate(values)]
