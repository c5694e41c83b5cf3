"""bench/metrics.py at a tiny size: the fill's rollups are what recording would have counted,
both sources give identical figures, and the report names the ratio and the targets."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from bench import metrics
from bench.stats import Spread
from bot.services.metrics import Figures, MetricsResult


def test_a_tiny_run_reports_both_sources_and_the_targets(tmp_path: Path) -> None:
    lines = metrics.run(answers=3000, rounds=2, directory=tmp_path)

    assert lines[0].startswith("fill: 3,000 answers in ")
    for group_by in ("week", "channel"):
        [header] = [line for line in lines if line.startswith("quarterly NPS") and
                    f"by {group_by}:" in line]
        assert header.endswith("identical from rollups and raw answers")
    assert sum("ratio" in line and "target >= 20 x" in line for line in lines) == 2
    assert sum("target <= 50 ms" in line for line in lines) == 2


async def test_the_fill_counts_rollups_as_recording_would(tmp_path: Path) -> None:
    db_path = tmp_path / "m.db"
    await metrics._prepare(db_path)
    counts = metrics.fill(db_path, 2000)

    with closing(sqlite3.connect(db_path)) as db:
        def one(sql: str) -> Any:
            return db.execute(sql).fetchone()[0]

        assert one("SELECT count(*) FROM answers") == counts["answers"] == 2000
        # Every answer is counted once in rollups and once under its one context key.
        assert one("SELECT sum(count) FROM rollups") == 2000
        assert one("SELECT sum(count) FROM context_rollups WHERE key = 'agent'") == 2000
        # Stored as the product stores timestamps, so the raw scan's range filters hold.
        assert one("SELECT answered_at FROM answers WHERE id = 1") == one(
            "SELECT started_at FROM sessions JOIN answers ON session_id = sessions.id "
            "WHERE answers.id = 1")
        # Known customers answer a delivery, anonymous visitors none; surveys sent and
        # never answered are there too, some opened at their first question.
        assert one("SELECT count(*) FROM deliveries") == counts["deliveries"]
        assert one("SELECT count(*) FROM sessions WHERE respondent = 'known' AND "
                   "delivery_id IS NULL") == 0
        assert one("SELECT count(*) FROM sessions WHERE respondent = 'anonymous' AND "
                   "delivery_id IS NOT NULL") == 0
        assert one("SELECT count(*) FROM answers WHERE respondent = 'anonymous'") > 0
        assert one("SELECT count(*) FROM deliveries WHERE status = 'expired'") > 0
        assert one("SELECT count(*) FROM sessions LEFT JOIN answers ON session_id = "
                   "sessions.id WHERE answers.id IS NULL") > 0
        stamp = str(one("SELECT answered_at FROM answers LIMIT 1"))
        assert len(stamp) == len("2026-04-01 12:00:00.000000")
        assert "+" not in stamp


def test_the_report_says_missed_when_missed() -> None:
    empty = Figures.model_validate({
        "answers": 0, "nps": {"promoters": 0, "passives": 0, "detractors": 0, "total": 0,
                              "score": None, "margin": None},
        "csat": {"total": 0, "satisfied": 0, "percent": None, "mean": None},
        "ces": {"total": 0, "easy": 0, "percent_easy": None, "mean": None},
        "cli": {"total": 0, "mean": None}})
    none = {"of": 0, "count": 0, "percent": None}
    result = MetricsResult.model_validate({
        "survey": "nps", "version": 1, "timezone": "UTC", "start": None, "end": None,
        "group_by": "week", "overall": empty, "groups": [],
        "response_rate": none | {"anonymous_answers": 0}, "completion_rate": none,
        "opened_not_answered": 0, "drop_off": []})
    def figure(ms: float) -> metrics.Figure:  # the wall time's spread ±10 %, CPU 90 % of it
        wall = Spread(ms / 1000, ms * 0.9 / 1000, ms * 1.1 / 1000)
        return metrics.Figure(wall, Spread(wall.median * 0.9, wall.low * 0.9, wall.high * 0.9))

    lines = metrics.report("week", result, metrics.Timings(
        whole=figure(80.0), baseline=figure(480.0), fast=figure(30.0), slow=figure(450.0)),
        rounds=7)

    assert lines[1].endswith("80.0 ms (72.0–88.0), CPU 72.0 ms (64.8–79.2) (target <= 50 ms: "
                             "MISSED)")
    assert lines[2].endswith("480 ms (432–528), CPU 432 ms (389–475); ratio 6 x")
    assert lines[3].endswith("from the rollups 30.0 ms (27.0–33.0), CPU 27.0 ms (24.3–29.7), "
                             "from the raw answers 450 ms (405–495), CPU 405 ms (365–446); "
                             "ratio 15 x (target >= 20 x: MISSED)")
