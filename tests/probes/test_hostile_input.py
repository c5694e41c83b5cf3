"""Hostile JSON and parameters, through HTTP on SQLite and PostgreSQL: NaN, Infinity and a
key twice, a Content-Encoding the body is not, a line break in a title, a time zone tzdata
does not name as a zone, a date the database cannot hold. Each is a 4xx JSON error naming
the field, and nothing is stored; an idempotency key in NFD is the same as in NFC."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
import time
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from handlers.api.core import signature
from storage.models import CampaignRow, ScriptRow
from tests.e2e.dashboard_support import csrf_of
from tests.e2e.trigger_support import ADMIN, JSON, SECRET, SURVEYS, Api, serving, trigger

AUTH = {"Authorization": f"Bearer {ADMIN}"}
NPS = (SURVEYS / "nps.yaml").read_text(encoding="utf-8")
TITLE = 'title: {en: "Net Promoter Score", ru: "Индекс лояльности (NPS)"}'


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serving(db_url) as api:
        yield api


async def send(api: Api, method: str, path: str, raw: bytes,
               headers: dict[str, str] | None = None) -> tuple[int, JSON]:
    response = await api.client.request(method, path, data=raw, headers={
        "Content-Type": "application/json", **AUTH, **(headers or {})})
    return response.status, await response.json()


async def versions(api: Api) -> int:
    status, body = await api.get("/api/v1/surveys/nps/versions")
    assert status == 200
    return len(body["versions"])


def field(answer: tuple[int, JSON]) -> tuple[int, str | None]:
    status, body = answer
    return status, body["error"]["field"]


TRIGGER = json.dumps(trigger())
HOSTILE = [
    # (the trigger's JSON text with one change, the field named)
    (TRIGGER.replace('"survey": ', '"survey": "nps", "survey": ', 1), "survey"),
    (TRIGGER.replace('"external_id": ', '"external_id": "x", "external_id": '),
     "customer.external_id"),
    (TRIGGER.replace('"agent_name": "Anna"', '"agent_name": NaN'), "context.agent_name"),
    (TRIGGER.replace('"agent_name": "Anna"', '"agent_name": Infinity'), "context.agent_name"),
    (TRIGGER.replace('"call_type": "support"', '"call_type": [1, -Infinity]'),
     "context.call_type.1"),
    # Too big for a double: Python reads it as infinity.
    (TRIGGER.replace('"agent_name": "Anna"', '"agent_name": -1e400'), "context.agent_name"),
    # Past 64 bits; and past the 4,300 digits Python reads at all (it was a 500).
    (TRIGGER.replace('"agent_name": "Anna"', '"agent_name": 9223372036854775808'),
     "context.agent_name"),
    (TRIGGER.replace('"agent_name": "Anna"', '"agent_name": ' + "9" * 5000),
     "context.agent_name"),
    # A lone surrogate escape, in a value and in a key: not a character anywhere.
    (TRIGGER.replace('"Anna"', '"An\\ud800na"'), "context.agent_name"),
    (TRIGGER.replace('"call_type"', '"call\\udfff"'), "context.call\udfff"),
]


@pytest.mark.parametrize(("raw", "named"), HOSTILE)
async def test_nan_infinity_and_a_key_twice_are_refused_by_name(
        api: Api, raw: str, named: str) -> None:
    assert field(await send(api, "POST", "/api/v1/triggers", raw.encode())) == (422, named)
    # Signed: the signature is good, the body still is not.
    stamp = str(int(time.time()))
    answer = await send(api, "POST", "/api/v1/triggers", raw.encode(), {
        "Authorization": "", "X-Otklik-Timestamp": stamp,
        "X-Otklik-Signature": signature(SECRET.encode(), stamp, raw.encode())})
    assert field(answer) == (422, named)
    assert await api.trigger_count() == 0


async def test_a_visitor_id_with_a_line_break_is_not_taken(api: Api) -> None:
    sent = "v" * 16 + "\n"
    status, body = await send(api, "POST", "/api/v1/widget/nps/start",
                              json.dumps({"visitor": sent}).encode())
    assert status == 200
    assert "\n" not in body["visitor"]


async def test_a_line_break_in_the_login_s_next_is_not_a_header(api: Api) -> None:
    """`next` goes into the Location header: one with a line break is not ours, so the
    login goes to the dashboard's start (yarl dropped the break and sent it to a 404)."""
    csrf = await csrf_of(api, "/admin/login")
    response = await api.client.post("/admin/login", allow_redirects=False, data={
        "csrf": csrf, "name": "Olga", "token": ADMIN,
        "next": "/admin/alerts\r\nSet-Cookie: x=1"})
    assert (response.status, response.headers["Location"]) == (303, "/admin/")


async def test_every_json_route_reads_bodies_the_same_way(api: Api) -> None:
    twice = b'{"visitor": "v1", "visitor": "v2"}'
    assert field(await send(api, "POST", "/api/v1/widget/nps/start", twice)) == (
        422, "visitor")
    campaign = (b'{"name": "q", "survey": "nps", "schedule": "0 10 * * 1", '
                b'"batch_size": NaN}')
    assert field(await send(api, "POST", "/api/v1/campaigns", campaign)) == (
        422, "batch_size")
    status, body = await api.get("/api/v1/campaigns")
    assert (status, body["campaigns"]) == (200, [])
    # A JSON script: NaN is refused where it is, with its line.
    script = json.dumps({"id": "nps", "default_locale": "en", "title": {"en": "T"},
                         "policy": {"throttle_days": 1},
                         "steps": [{"id": "q", "type": "nps", "text": {"en": "Q"}}]},
                        indent=1).replace('"throttle_days": 1', '"throttle_days": NaN')
    status, body = await send(api, "PUT", "/api/v1/surveys/nps", script.encode())
    assert status == 422
    assert [(i["field"], i["line"]) for i in body["error"]["issues"]] == [
        ("policy.throttle_days", script.splitlines().index(' "policy": {') + 2)]
    assert await versions(api) == 1


async def test_a_script_number_too_big_for_a_double_is_refused_at_its_line(api: Api) -> None:
    """1.0e400 is infinity to Python: stored, PostgreSQL's JSON could not hold it."""
    source = (SURVEYS / "post_call_csat.yaml").read_text(encoding="utf-8")
    hostile = source.replace("{step: csat, lte: 2}", "{step: csat, lte: 1.0e400}")
    assert hostile != source
    status, body = await send(api, "PUT", "/api/v1/surveys/post_call_csat", hostile.encode(),
                              {"Content-Type": "application/yaml"})
    assert status == 422
    assert [(i["field"], i["line"]) for i in body["error"]["issues"]] == [
        ("steps.0.next.0.when.lte", 24)]


@pytest.mark.parametrize(("coding", "raw"), [
    ("gzip", TRIGGER.encode()),  # says gzip, is not
    ("deflate", TRIGGER.encode()),
    ("gzip", gzip.compress(TRIGGER.encode())[:-20]),  # cut short
    ("gzip, gzip", gzip.compress(gzip.compress(TRIGGER.encode()))),
    ("br", TRIGGER.encode()),
    ("x-unknown", TRIGGER.encode()),  # aiohttp's own decoding let this one through as JSON
])
async def test_a_false_or_unknown_content_encoding_is_refused_by_name(
        api: Api, coding: str, raw: bytes) -> None:
    answer = await send(api, "POST", "/api/v1/triggers", raw, {"Content-Encoding": coding})
    assert field(answer) == (422, "Content-Encoding")
    assert await api.trigger_count() == 0


async def test_a_true_content_encoding_is_read(api: Api) -> None:
    raw = gzip.compress(TRIGGER.encode())
    status, _ = await send(api, "POST", "/api/v1/triggers", raw, {"Content-Encoding": "gzip"})
    assert status == 202
    # A gzip bomb: 256 KB is the most a body may be, decoded too.
    bomb = gzip.compress(b'{"a": "' + b"0" * 10_000_000 + b'"}')
    assert field(await send(api, "POST", "/api/v1/triggers", bomb,
                            {"Content-Encoding": "gzip"})) == (413, "body")
    assert await api.trigger_count() == 1


async def test_an_idempotency_key_is_the_same_in_nfd_and_nfc(api: Api) -> None:
    key = "zvonok-café-№1"
    composed, decomposed = (unicodedata.normalize(form, key) for form in ("NFC", "NFD"))
    assert composed != decomposed
    first = await api.post("/api/v1/triggers", trigger(decomposed))
    again = await api.post("/api/v1/triggers", trigger(composed))
    assert (first[0], again[0]) == (202, 200)
    assert again[1] == first[1]
    assert await api.trigger_count() == 1


@pytest.mark.parametrize("zone", ["posix/Europe/Moscow", "right/UTC", "Factory", "localtime",
                                  "Europe/../UTC", "europe/moscow"])
async def test_only_tzdata_zone_names_are_time_zones(api: Api, zone: str) -> None:
    customer = trigger(timezone=zone)
    assert field(await api.post("/api/v1/triggers", customer)) == (422, "customer.timezone")
    campaign = {"name": "q", "survey": "nps", "schedule": "0 10 * * 1", "timezone": zone}
    assert field(await api.post("/api/v1/campaigns", campaign)) == (422, "timezone")
    status, body = await send(api, "PUT", "/api/v1/surveys/nps",
                              NPS.replace("timezone: UTC", f"timezone: {zone}").encode(),
                              {"Content-Type": "application/yaml"})
    assert status == 422
    assert [issue["field"] for issue in body["error"]["issues"]] == ["timezone"]
    assert (await api.trigger_count(), await versions(api)) == (0, 1)


async def test_a_legacy_alias_and_utc_stay_time_zones(api: Api) -> None:
    assert (await api.post("/api/v1/triggers", trigger("k1", timezone="Europe/Kiev")))[0] == 202
    assert (await api.post("/api/v1/triggers", trigger("k2", timezone="UTC")))[0] == 202


async def test_what_was_stored_before_these_checks_still_runs(api: Api) -> None:
    """A campaign's zone and a script's zone and title stored when any name ZoneInfo took,
    and any title, was accepted are read back, not refused: refusing them on reading
    would stop the campaign's runs and every send of the survey."""
    campaign = {"name": "q", "survey": "nps", "schedule": "0 10 * * 1"}
    assert (await api.post("/api/v1/campaigns", campaign))[0] in (200, 201)
    async with api.services.factory() as session:
        await session.execute(update(CampaignRow).values(timezone="posix/Europe/Moscow"))
        row = await session.scalar(select(ScriptRow).where(
            ScriptRow.survey_id == "nps", ScriptRow.active))
        assert row is not None
        row.active = False
        # A new version: the services have the one before parsed already.
        session.add(ScriptRow(
            survey_id="nps", version=row.version + 1, title=row.title, source=row.source,
            checksum=row.checksum, created_by="test", created_at=row.created_at, active=True,
            body={**row.body, "version": row.version + 1, "timezone": "right/UTC",
                  "title": {**row.body["title"], "en": "Net\nPromoter"}}))
        await session.commit()
    status, body = await api.get("/api/v1/campaigns")
    assert (status, [c["timezone"] for c in body["campaigns"]]) == (
        200, ["posix/Europe/Moscow"])
    status, body = await api.get("/api/v1/surveys")
    assert status == 200
    assert {s["id"]: s["title"]["en"] for s in body["surveys"]}["nps"] == "Net Promoter"


@pytest.mark.parametrize("title", ['"Net\\nPromoter"', '"Net\\rBcc: all@example.com"',
                                   '"Net\\u2028Score"'])
async def test_a_line_break_in_a_title_is_refused_by_put_and_the_cli(
        api: Api, title: str, tmp_path: Path) -> None:
    source = NPS.replace(TITLE, f'title: {{en: "Net Promoter Score", ru: {title}}}')
    assert source != NPS
    status, body = await send(api, "PUT", "/api/v1/surveys/nps", source.encode(),
                              {"Content-Type": "application/yaml"})
    assert status == 422
    assert [(i["field"], i["line"]) for i in body["error"]["issues"]] == [("title.ru", 5)]
    assert await versions(api) == 1
    path = tmp_path / "nps.yaml"
    path.write_text(source, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "bot", "scripts", "validate", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"{path}:5: title.ru: must be one line: no line break or "
                                   "other control character")


ANSWERS_BAD = [
    ({"from": "0001-01-01T00:00:00+01:00"}, "from"),  # before year 1 in UTC
    ({"to": "9999-12-31"}, "to"),  # the whole day: ends in year 10000
    ({"to": "9999-12-31T23:59:59-01:00"}, "to"),
    ({"from": "0001-01-01"}, "from"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
]


@pytest.mark.parametrize(("params", "named"), ANSWERS_BAD)
@pytest.mark.parametrize("accept", ["application/json", "text/csv"])
async def test_answer_dates_the_database_cannot_hold_are_refused_by_name(
        api: Api, params: dict[str, str], named: str, accept: str) -> None:
    response = await api.client.get("/api/v1/answers", params=params,
                                    headers={**AUTH, "Accept": accept})
    assert (response.status, (await response.json())["error"]["field"]) == (422, named)


def cursor(*position: object) -> str:
    raw = json.dumps(position).encode() if position else b'["2026-03-01T00:00:00+00:00", NaN]'
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("forged", [
    cursor("0001-01-01T00:00:00+01:00", 1), cursor("9999-12-31T23:59:59-01:00", 1),
    cursor("2026-03-01T00:00:00+00:00", 2**70), cursor("2026-03-01T00:00:00+00:00", 1e308),
    cursor()])
async def test_a_forged_cursor_the_database_cannot_hold_is_refused_by_name(
        api: Api, forged: str) -> None:
    response = await api.client.get("/api/v1/answers", params={"cursor": forged},
                                    headers=AUTH)
    assert (response.status, (await response.json())["error"]["field"]) == (400, "cursor")


@pytest.mark.parametrize(("params", "named"), [
    ({"from": "0001-01-01"}, "from"), ({"to": "9999-12-31"}, "to"),
    ({"from": "1899-12-31"}, "from"), ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
    ({"from": "0001-01-01", "group_by": "day"}, "from"), ({"group_by": "day\n"}, "group_by"),
    ({"group_by": "context.agent_name\n"}, "group_by"),
])
async def test_metric_dates_the_database_cannot_hold_are_refused_by_name(
        api: Api, params: dict[str, str], named: str) -> None:
    query = {"survey": "nps", **params}
    response = await api.client.get("/api/v1/metrics", params=query, headers=AUTH)
    assert (response.status, (await response.json())["error"]["field"]) == (422, named)


async def test_the_widest_dates_allowed_are_answered(api: Api) -> None:
    wide: dict[str, Any] = {"from": "1900-01-01", "to": "9998-12-31"}
    status, _ = await api.get("/api/v1/answers?from=1900-01-01&to=9998-12-31")
    assert status == 200
    response = await api.client.get("/api/v1/metrics", params={"survey": "nps", **wide,
                                                               "group_by": "day"},
                                    headers=AUTH)
    assert response.status == 200
