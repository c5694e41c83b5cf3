"""Medians and spreads over a benchmark's rounds, and the CPU time a process spends.

Every bench measures each figure over several rounds that alternate product and baseline,
and prints the median with the spread of the rounds beside it, as min–max: a change in a
figure smaller than its spread is noise, not a change."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

ROUNDS = 5  # the least number of alternating rounds whose spread means anything


@dataclass(frozen=True, slots=True)
class Spread:
    """A figure over the rounds: its median and its lowest and highest round."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        ordered = sorted(values)
        return cls(statistics.median(ordered), ordered[0], ordered[-1])

    def show(self, unit: str = "", scale: float = 1.0) -> str:
        """The median, its unit, then the spread in brackets: "12.0 ms (11.4–12.9)"; all three
        with the decimals the median needs for three significant figures (none past 100)."""
        median = abs(self.median * scale)
        digits = min(6, max(0, 2 - math.floor(math.log10(median)))) if median else 0

        def number(value: float) -> str:
            return f"{value * scale:,.{digits}f}"

        return (f"{number(self.median)}{' ' + unit if unit else ''} ({number(self.low)}–"
                f"{number(self.high)})")

    def ms(self) -> str:
        """Seconds shown as milliseconds."""
        return self.show("ms", 1000)

    def us(self) -> str:
        """Seconds shown as microseconds."""
        return self.show("us", 1e6)


class Measured(Protocol):
    """A round's figure: operations a second, and this process's CPU seconds per operation."""

    @property
    def rate(self) -> float: ...

    @property
    def cpu(self) -> float: ...


class Rounds:
    """A figure's rounds: the rate and the CPU per operation, with their spreads."""

    def __init__(self, runs: Sequence[Measured]) -> None:
        self.rate = Spread.of(run.rate for run in runs)
        self.cpu = Spread.of(run.cpu for run in runs)

    def show(self, unit: str, per: str) -> str:
        return f"{self.rate.show()} {unit}, CPU {self.cpu.ms()} per {per}"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def spread_note(rounds: int) -> str:
    return f"medians of {rounds} alternating rounds, (min–max of the rounds) beside each"


def machine_note(load_before: float) -> str:
    """The report's first line: the machine's load before and after the run, which every
    figure (baselines too) depends on."""
    return (f"machine: load average {load_before:.1f} before the run and "
            f"{os.getloadavg()[0]:.1f} after (1 min, {os.cpu_count()} cores; other processes "
            f"on them lower every figure)")
