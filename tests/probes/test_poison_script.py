"""The poison script of issue 15: an `expires_after` of millions of days validated, then
overflowed when added to the send time, inside a group-committed batch of sends. Every
duration a script (or a trigger) may carry is now bounded; here the bounds are probed
through the public surfaces: the real CLI, the survey and trigger APIs on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.test_cli import otklik
from tests.e2e.test_surveys_api import NPS, put
from tests.e2e.trigger_support import NOON, Api, serving, trigger

POISON = "P3000000D"  # the finding's value: three million days from now is past year 9999
# The example survey with one duration made poison, then negative or zero where zero means
# nothing: (field, source, the error the script writer reads).
CASES = [
    ("policy.expires_after", NPS.replace("  expires_after: P7D\n", f"  expires_after: {POISON}\n"),
     "must be at most 365 days (P365D)"),
    ("policy.reminder_after", NPS.replace("  reminder_after: P2D\n",
                                          f"  reminder_after: {POISON}\n"),
     "must be at most 30 days (P30D)"),
    ("policy.delay", NPS.replace("policy:\n", f"policy:\n  delay: {POISON}\n"),
     "must be at most 90 days (P90D)"),
    ("alert_sla", NPS.replace("policy:\n", f"alert_sla: {POISON}\npolicy:\n"),
     "must be at most 30 days (P30D)"),
    ("policy.throttle_days", NPS.replace("  throttle_days: 90\n", "  throttle_days: 3000000\n"),
     "should be less than or equal to 3650"),
    ("policy.delay", NPS.replace("policy:\n", "policy:\n  delay: -PT1H\n"),
     "must not be negative"),
    ("policy.expires_after", NPS.replace("  expires_after: P7D\n", "  expires_after: PT0S\n"),
     "must be longer than zero"),
]
# Every bound at once, just reached: a script the product can compute with.
AT_THE_BOUNDS = (NPS.replace("  expires_after: P7D\n", "  expires_after: P365D\n")
                 .replace("  reminder_after: P2D\n", "  reminder_after: P30D\n")
                 .replace("  throttle_days: 90\n", "  throttle_days: 3650\n")
                 .replace("policy:\n", "alert_sla: P30D\npolicy:\n  delay: P90D\n"))


def line_of(field: str, source: str) -> int:
    """The line the poisoned field is on."""
    name = field.rpartition(".")[2]
    return next(i for i, text in enumerate(source.splitlines(), 1)
                if text.lstrip().startswith(f"{name}:"))


def test_the_cli_refuses_every_poisoned_duration_with_file_line_and_field(
        tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.yaml" for i in range(len(CASES))]
    for path, (_, source, _) in zip(paths, CASES, strict=True):
        path.write_text(source, encoding="utf-8")
    result = otklik("scripts", "validate", *map(str, paths),
                    db_url="sqlite+aiosqlite:///unused.db", cwd=tmp_path)
    assert result.returncode == 1
    assert sorted(result.stderr.splitlines()) == sorted(
        f"{path}:{line_of(field, source)}: {field}: {message}"
        for path, (field, source, message) in zip(paths, CASES, strict=True))


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serving(db_url) as api:
        yield api


async def active_nps(api: Api) -> tuple[int, object]:
    status, body = await api.get("/api/v1/surveys/nps")
    assert (status, body["active"]) == (200, True)
    return body["version"], body["body"]


async def test_the_survey_api_refuses_every_poisoned_duration_and_stores_nothing(
        api: Api) -> None:
    before = await active_nps(api)
    for field, source, message in CASES:
        status, body = await put(api, "nps", source)
        assert status == 422, (field, body)
        line = line_of(field, source)
        assert body["error"]["code"] == "invalid_script"
        assert body["error"]["issues"] == [{"line": line, "field": field, "message": message}]
        assert body["error"]["message"] == f"nps.yaml:{line}: {field}: {message}"
    _, versions = await api.get("/api/v1/surveys/nps/versions")
    assert [v["version"] for v in versions["versions"]] == [1]
    assert await active_nps(api) == before

    status, stored = await put(api, "nps", AT_THE_BOUNDS)
    assert (status, stored["version"]) == (201, 2)
    version, body = await active_nps(api)
    assert version == 2
    assert isinstance(body, dict)
    assert (body["alert_sla"], body["policy"]) == ("P30D", {
        "throttle_days": 3650, "throttle_scope": "survey", "delay": "P90D",
        "expires_after": "P1Y", "reminder_after": "P30D",  # pydantic writes P365D as P1Y
        "quiet_hours": {"start": "21:00:00", "end": "09:00:00"}})


async def test_the_trigger_api_keeps_its_delay_within_the_scripts_bound(api: Api) -> None:
    for delay in (POISON, "P90DT1S", "-PT1S"):
        status, body = await api.post("/api/v1/triggers", {**trigger(), "delay": delay})
        assert (status, body["error"]["field"]) == (422, "delay"), delay
        assert "between PT0S and P90D" in body["error"]["message"]
    assert await api.trigger_count() == 0
    status, body = await api.post("/api/v1/triggers", {**trigger(), "delay": "P90D"})
    assert status == 202
    assert datetime.fromisoformat(body["due_at"]) == NOON + timedelta(days=90)
