"""The OpenAPI document as an integrator meets it: a client generated from /openapi.json by
openapi-python-client, not edited, posts a trigger and reads the survey's figures; every
operation has an operationId and says what it does and who may call it; every error an
operation declares is the shared Error body, and the errors the running app answers (a
409, 404s, a 410, 429s...) are what the document declares for them."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]  # openapi-spec-validator's; no stubs
import pytest
from openapi_spec_validator import validate

from bot.services.metrics import MetricsQuery
from handlers.api.surveys import YAML_TYPES
from tests.e2e.test_web_pages import page, submit
from tests.e2e.trigger_support import ADMIN, JSON, Api, serving, trigger

BIN = Path(sys.executable).parent  # the generator, and the ruff its post-hooks run
ERROR = {"$ref": "#/components/schemas/Error"}
# What the generator may print. The script's YAML bodies are media types it cannot send
# (its client sends the JSON form): any other warning is something our document must fix.
GENERATOR_SAYS = ("Generating ", "Warning(s) encountered while generating.",
                  "If you believe this was a mistake",
                  "WARNING parsing PUT /api/v1/surveys/{id} within surveys.",
                  *(f"Unsupported content type {kind}" for kind in YAML_TYPES))


def sqlite(folder: Path) -> str:
    # One database is enough here: what is under test is the document, not the storage.
    return f"sqlite+aiosqlite:///{folder / 'otklik.db'}"


async def generated_client(url: str, folder: Path) -> str:
    """Runs openapi-python-client on the document at `url`, as an integrator would, into
    `folder`; the name of the package it wrote, importable from there."""
    package = f"otklik_client_{uuid.uuid4().hex[:12]}"  # no clash with another import
    config = folder / "generator.json"
    config.write_text(json.dumps({"package_name_override": package}))
    # A subprocess of the event loop, which goes on serving the document it fetches.
    process = await asyncio.create_subprocess_exec(
        str(BIN / "openapi-python-client"), "generate", "--url", url, "--meta", "none",
        "--config", str(config), "--output-path", str(folder / package),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    said = output.decode()
    assert process.returncode == 0, said
    # Every line of its own (not the indented JSON it quotes) is one it may say.
    lines = [line for line in said.splitlines() if line and line[0] not in " {}"]
    assert all(line.startswith(GENERATOR_SAYS) for line in lines), said
    sys.path.insert(0, str(folder))
    return package


async def test_a_generated_client_triggers_a_survey_and_reads_its_figures(
        tmp_path: Path) -> None:
    async with serving(sqlite(tmp_path)) as api:
        base_url = str(api.client.make_url("")).rstrip("/")
        package = await generated_client(f"{base_url}/openapi.json", tmp_path)
        client_module = importlib.import_module(f"{package}.client")
        models = importlib.import_module(f"{package}.models")
        create_trigger = importlib.import_module(f"{package}.api.triggers.create_trigger")
        get_metrics = importlib.import_module(f"{package}.api.metrics.get_metrics")

        async with client_module.AuthenticatedClient(base_url=base_url, token=ADMIN) as client:
            body = models.TriggerBody.from_dict({**trigger(survey="nps"), "channel": "link"})
            sent = await create_trigger.asyncio_detailed(client=client, body=body)
            assert sent.status_code == 202, sent.content
            accepted = sent.parsed
            assert isinstance(accepted, models.TriggerAccepted)
            [delivery] = await api.deliveries()
            assert accepted.survey_url == f"{api.services.links.base_url}/s/{delivery.token}"

            # The customer answers on the page the link opens: a promoter.
            path = urlsplit(accepted.survey_url).path
            status, html, _ = await page(api, path)
            assert status == 200
            assert (await submit(api, path, html, answer="9"))[0] == 303

            # The trigger's context was agent_name: Anna; the filter goes as a list.
            read = await get_metrics.asyncio_detailed(client=client, survey="nps",
                                                      context=["agent_name:Anna"])
            assert read.status_code == 200, read.content
            figures = read.parsed
            assert isinstance(figures, models.MetricsResult)
            assert (figures.overall.answers, figures.overall.nps.promoters) == (1, 1)
            asked = MetricsQuery.model_validate({"survey": "nps", "context": {
                "key": "agent_name", "value": "Anna"}})
            expected = await api.services.figures.compute(asked)
            assert figures.to_dict() == expected.model_dump(mode="json")
            other = await get_metrics.asyncio_detailed(client=client, survey="nps",
                                                       context=["agent_name:Boris"])
            assert (other.status_code, other.parsed.overall.answers) == (200, 0)

            # An error comes parsed as the Error body.
            missing = await get_metrics.asyncio_detailed(client=client, survey="nope")
            assert missing.status_code == 404
            assert isinstance(missing.parsed, models.Error)
            assert (missing.parsed.error.code, missing.parsed.error.field) == (
                "not_found", "survey")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Api, JSON]]:
    async with serving(sqlite(tmp_path)) as api:
        response = await api.client.get("/openapi.json")
        assert response.status == 200
        document = await response.json()
        validate(document)
        yield api, document


def operations(document: JSON) -> list[tuple[str, str, JSON]]:
    return [(path, method, operation) for path, item in document["paths"].items()
            for method, operation in item.items()]


async def test_every_operation_has_an_operation_id_and_says_who_may_call_it(
        served: tuple[Api, JSON]) -> None:
    _, document = served
    found = operations(document)
    ids = [operation["operationId"] for _, _, operation in found]
    assert len(set(ids)) == len(ids) == len(found)
    assert all(name.isalnum() and name[0].islower() for name in ids), ids
    by_id = {operation["operationId"]: (method, path) for path, method, operation in found}
    assert by_id["createTrigger"] == ("post", "/api/v1/triggers")
    assert by_id["getMetrics"] == ("get", "/api/v1/metrics")
    for path, method, operation in found:
        description = operation.get("description", "")
        # Sentences saying more than the summary, and then who may call it.
        assert description[:1].isupper(), (method, path)
        assert len(description) > len(operation["summary"]) + 40, (method, path)
        assert ("ADMIN_TOKEN" in description or "no credential" in description), (method, path)
    assert "TRIGGER_SECRET" in document["paths"]["/api/v1/triggers"]["post"]["description"]
    assert "API_TOKENS gets a 403" in document["paths"]["/api/v1/metrics"]["get"][
        "description"]


async def test_every_error_an_operation_declares_is_the_error_body(
        served: tuple[Api, JSON]) -> None:
    _, document = served
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]
    for path, method, operation in operations(document):
        responses = operation["responses"]
        errors = {status: response for status, response in responses.items()
                  if int(status) >= 400}
        if not path.startswith("/api/"):
            # /healthz answers its own body, {status, database}, when the database is away.
            assert set(errors) == {"503"}
            continue
        # Whatever the route: a NUL in the URL, the failed-attempts limit, an outage.
        assert {"422", "429", "503"} <= set(errors), (method, path)
        if operation["security"]:
            assert "401" in errors, (method, path)
        for status, response in errors.items():
            assert set(response["content"]) == {"application/json"}, (method, path, status)
            schema = response["content"]["application/json"]["schema"]
            assert schema == ERROR or ERROR in schema.get("anyOf", []), (method, path, status)
    paths = document["paths"]
    assert "409" in paths["/api/v1/triggers"]["post"]["responses"]
    assert "404" in paths["/api/v1/deliveries/{id}"]["get"]["responses"]
    for action in ("start", "answer"):
        assert {"403", "404", "410", "429"} <= set(
            paths[f"/api/v1/widget/{{survey}}/{action}"]["post"]["responses"])
    assert "Retry-After" in paths["/api/v1/metrics"]["get"]["responses"]["503"]["headers"]


def check(document: JSON, path: str, method: str, status: int, body: Any) -> None:
    """`body` is what the document declares `status` of the operation answers with."""
    declared = document["paths"][path][method]["responses"][str(status)]
    schema = declared["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**schema, "components": document["components"]},
                        cls=jsonschema.Draft202012Validator)


async def test_the_errors_the_app_answers_are_the_declared_error_body(db_url: str) -> None:
    async with serving(db_url, failed_attempts=1, anonymous_rate=1) as api:
        document = await (await api.client.get("/openapi.json")).json()
        seen: list[int] = []

        async def answered(path: str, method: str, status: int, sent: tuple[int, JSON]
                           ) -> None:
            assert sent[0] == status, sent
            check(document, path, method, status, sent[1])
            seen.append(status)

        assert (await api.post("/api/v1/triggers", trigger()))[0] == 202
        await answered("/api/v1/triggers", "post", 409, await api.post(
            "/api/v1/triggers", {**trigger(), "context": {"agent_name": "Boris"}}))
        await answered("/api/v1/deliveries/{id}", "get", 404,
                       await api.get("/api/v1/deliveries/999"))
        await answered("/api/v1/metrics", "get", 404,
                       await api.get("/api/v1/metrics?survey=nope"))
        await answered("/api/v1/metrics", "get", 422,
                       await api.get("/api/v1/metrics?survey=nps&context=agent_name"))
        widget = {"visitor": "v" * 16, "session_id": 999_999, "position": 1}
        await answered("/api/v1/widget/{survey}/answer", "post", 410, await api.post(
            "/api/v1/widget/nps/answer", widget, token=None))
        # ANONYMOUS_RATE is 1 a minute: the widget's second call is one too many.
        await answered("/api/v1/widget/{survey}/answer", "post", 429, await api.post(
            "/api/v1/widget/nps/answer", widget, token=None))
        # FAILED_ATTEMPTS is 1 a minute: a wrong token spends it, and then even the right
        # one is refused, with the time to wait.
        await answered("/api/v1/metrics", "get", 401,
                       await api.get("/api/v1/metrics?survey=nps", token="wrong"))
        response = await api.client.get("/api/v1/metrics?survey=nps",
                                        headers={"Authorization": f"Bearer {ADMIN}"})
        await answered("/api/v1/metrics", "get", 429, (response.status, await response.json()))
        assert int(response.headers["Retry-After"]) > 0
        assert seen == [409, 404, 404, 422, 410, 429, 401, 429]
        # The check can fail: an error without its code is not the Error body.
        with pytest.raises(jsonschema.ValidationError):
            check(document, "/api/v1/triggers", "post", 409, {"error": {"message": "no"}})


async def test_the_document_names_the_server_clients_reach(tmp_path: Path) -> None:
    async with serving(sqlite(tmp_path)) as api:
        document = await (await api.client.get("/openapi.json")).json()
        assert document["servers"] == [{"url": str(api.client.make_url("")).rstrip("/")}]
    async with serving(sqlite(tmp_path), public_url="https://feedback.example.com/") as api:
        document = await (await api.client.get("/openapi.json")).json()
        assert document["servers"] == [{"url": "https://feedback.example.com"}]
