"""`python -m bench`: run every benchmark and rewrite bench/README.md with the figures."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import dispatch, engine, telegram

BENCHES = {"engine": engine.main, "telegram": telegram.main, "dispatch": dispatch.main}
README = Path(__file__).with_name("README.md")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}")


def main() -> None:
    sections = []
    for name, run in BENCHES.items():
        print(f"## {name}", flush=True)
        sections.append((name, run([])))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        "# Benchmarks", "",
        "Regenerate with `.venv/bin/python -m bench` (this file is rewritten). Each figure is",
        "printed beside a baseline measured in the same run, and as a ratio to it.", "",
        f"Last run: {when} on {machine()}.", "",
    ]
    for name, lines in sections:
        module = sys.modules[f"bench.{name}"]
        about = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
        body += [f"## {name}", "", about, "", "```",
                 *lines, "```", ""]
    README.write_text("\n".join(body), encoding="utf-8")
    print(f"wrote {README}")


if __name__ == "__main__":
    main()
