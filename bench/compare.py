"""Compare the CPU per operation of two bench runs: `python -m bench.compare BEFORE AFTER`.

BEFORE and AFTER are bench outputs: a saved `python -m bench ...` print or bench/README.md.
Every "CPU ... <median> ms|us (<min>–<max>)" figure of AFTER is matched with the figure at
the same place in BEFORE (its section, the line it belongs to, its order in the line). A
figure has "risen" when its median went up by more than BEFORE's own spread (max − min of
its rounds): issue 17's check that no path got dearer. Exits 1 if one has.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.stats import Spread

FIGURE = re.compile(r"(?P<median>[\d,.]+) (?P<unit>ms|us) \((?P<low>[\d,.]+)–(?P<high>[\d,.]+)\)")
SECONDS = {"ms": 1e-3, "us": 1e-6}


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    before: Spread
    after: Spread

    @property
    def risen(self) -> bool:
        return self.after.median - self.before.median > self.before.high - self.before.low


def cpu_figures(text: str) -> dict[str, Spread]:
    """The CPU figures of a bench output, in seconds, keyed by where they are: the section
    (`## name`), the unindented line above (a rate's own line), the line's label, and the
    figure's order among the line's CPU figures."""
    figures: dict[str, Spread] = {}
    section = head = ""
    for line in text.splitlines():
        if line.startswith("## "):
            section, head = line[3:].strip(), ""
            continue
        # The words before the colon, without what brackets say: stable across rewordings
        label = " ".join(re.sub(r"\([^()]*\)", "", line).split(":", 1)[0].split())
        if not line.startswith(" "):
            head = label
        cpu = label.startswith("CPU")  # the whole line is about CPU time
        end, order = 0, 0
        for found in FIGURE.finditer(line):
            if cpu or "CPU" in line[end:found.start()]:
                scale = SECONDS[found["unit"]]
                values = (float(found[name].replace(",", "")) * scale
                          for name in ("median", "low", "high"))
                key = " / ".join(dict.fromkeys(part for part in (section, head, label) if part))
                figures[f"{key} #{order + 1}"] = Spread(*values)
                order += 1
            end = found.end()
    return figures


def compare(before: str, after: str) -> tuple[list[Change], list[str]]:
    """The figures found in both, and the paths of those found in only one."""
    old, new = cpu_figures(before), cpu_figures(after)
    unmatched = [f"{path} (before only)" for path in old if path not in new]
    unmatched += [f"{path} (after only)" for path in new if path not in old]
    return [Change(path, old[path], figure) for path, figure in new.items()
            if path in old], unmatched


def show(figure: Spread, like: Spread) -> str:
    return figure.us() if like.median < 1e-3 else figure.ms()


def report(changes: list[Change], unmatched: list[str]) -> list[str]:
    lines = [f"{'RISEN' if change.risen else 'ok'}: {change.path}: "
             f"{show(change.before, change.before)} -> {show(change.after, change.before)} "
             f"({change.after.median / change.before.median - 1:+.0%})" for change in changes]
    lines += [f"not compared: {path}" for path in unmatched]
    risen = sum(change.risen for change in changes)
    lines.append(f"{len(changes)} CPU figures compared, {len(unmatched)} not; {risen} risen "
                 f"by more than their before spread")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    changes, unmatched = compare(args.before.read_text(encoding="utf-8"),
                                 args.after.read_text(encoding="utf-8"))
    for line in report(changes, unmatched):
        print(line)
    return 1 if any(change.risen for change in changes) else 0


if __name__ == "__main__":
    sys.exit(main())
