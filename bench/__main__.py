"""`python -m bench`: run every benchmark and rewrite bench/README.md with the figures.
`python -m bench web telegram`: run only those, and rewrite only their sections."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import dispatch, engine, metrics, sms, soak, telegram, web, whatsapp

BENCHES = {"engine": engine.main, "telegram": telegram.main, "dispatch": dispatch.main,
           "web": web.main, "whatsapp": whatsapp.main, "sms": sms.main, "metrics": metrics.main,
           "soak": soak.main}
README = Path(__file__).with_name("README.md")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}")


def strip(lines: list[str]) -> list[str]:
    text = "\n".join(lines).strip("\n")
    return text.split("\n") if text else []


def split(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """README text as its header and its `## name` sections (each without its heading)."""
    header: list[str] = []
    sections: dict[str, list[str]] = {}
    current = header
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        else:
            current.append(line)
    return strip(header), {name: strip(lines) for name, lines in sections.items()}


def section(name: str, lines: list[str], note: str | None = None) -> list[str]:
    module = sys.modules[f"bench.{name}"]
    about = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
    return [about, "", *([note, ""] if note else []), "```", *lines, "```"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name",
                        help=f"benchmarks to run, of {', '.join(BENCHES)} (default: all)")
    names = parser.parse_args(argv).names or list(BENCHES)
    if unknown := [name for name in names if name not in BENCHES]:
        parser.error(f"no benchmark {', '.join(unknown)}: choose from {', '.join(BENCHES)}")
    ran = {}
    for name in BENCHES:
        if name in names:
            print(f"## {name}", flush=True)
            ran[name] = BENCHES[name]([])
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if len(ran) == len(BENCHES):
        header = [
            "# Benchmarks", "",
            "Regenerate with `.venv/bin/python -m bench` (this file is rewritten), or one "
            "section",
            "with `.venv/bin/python -m bench <name>`. Each figure is printed beside a baseline",
            "measured in the same run, and as a ratio to it; each rate with the CPU time per",
            "operation of the process doing the work, as the median of rounds that alternate",
            "product and baseline, with the rounds' min–max beside it. `.venv/bin/python -m",
            "bench.compare BEFORE AFTER` flags a CPU figure that rose by more than its spread.",
            "",
            f"Last run: {when} on {machine()}.",
        ]
        sections = {name: section(name, lines) for name, lines in ran.items()}
    else:  # the other sections stay as they were, from their own runs
        header, sections = split(README.read_text(encoding="utf-8"))
        note = f"Run on its own: {when} on {machine()} (`python -m bench {' '.join(ran)}`)."
        sections |= {name: section(name, lines, note) for name, lines in ran.items()}
        order = [*BENCHES, *sections]
        sections = dict(sorted(sections.items(), key=lambda item: order.index(item[0])))
    body = [*header, ""]
    for name, lines in sections.items():
        body += [f"## {name}", "", *lines, ""]
    README.write_text("\n".join(body), encoding="utf-8")
    print(f"wrote {README}")


if __name__ == "__main__":
    main()
