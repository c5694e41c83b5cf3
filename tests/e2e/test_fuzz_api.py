"""schemathesis over the product's OpenAPI document against the product on loopback, on
SQLite and PostgreSQL: every operation, valid and invalid requests, never a 5xx, and every
answer one the document describes (its status, content type, headers and body). The
database holds the example surveys and one answered dialogue with its alert, so reads find
rows; the Bot API is the stand-in, so a reply to a customer goes nowhere.

The product serves from a thread (tests/e2e/fuzz_support.py): schemathesis blocks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bot.bootstrap import openapi as document
from handlers.api.core import MAX_BODY, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from tests.e2e.fuzz_support import BACKENDS, world_in_thread
from tests.e2e.trigger_support import ADMIN, SECRET

Case = schemathesis.Case[Any]
SCHEMA = schemathesis.openapi.from_dict(document())
# Routing (a 405 for another method) is aiohttp's: the time goes to the handlers instead.
SCHEMA.config.phases.coverage.unexpected_methods = set()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
# Reproducible in CI: the same cases every run, none replayed from a local database.
FUZZ = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
ADMIN_HEADER = {"Authorization": f"Bearer {ADMIN}"}
# Whatever a client accepts, the answer is in a type the document lists (answers: CSV too).
# A strategy of our own cannot feed the examples phase: generated cases only.
ACCEPT = st.sampled_from(["application/json", "text/csv", "*/*"])
READS = schemathesis.openapi.from_dict(document()).include(method="GET")
READS.config.phases.update(phases=["fuzzing"])
# Without a token most operations stop at the 401: a few cases each, no boundary sweep.
ANONYMOUS = schemathesis.openapi.from_dict(document())
ANONYMOUS.config.phases.update(phases=["fuzzing"])


class Signed(requests.auth.AuthBase):
    """Signs, as a CRM would, the requests schemathesis sends with the signature scheme:
    its made-up signature would stop each of them at the 401."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if SIGNATURE_HEADER in request.headers:
            body = request.body or b""
            assert isinstance(body, bytes | str)  # schemathesis sends a body whole
            stamp = str(int(time.time()))
            request.headers[TIMESTAMP_HEADER] = stamp
            request.headers[SIGNATURE_HEADER] = signature(
                SECRET.encode(), stamp, body.encode() if isinstance(body, str) else body)
        return request


@pytest.fixture(scope="module", params=BACKENDS)
def base_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[str]:
    with world_in_thread(request.param, tmp_path_factory.mktemp("fuzz")) as (_, world):
        yield str(world.api.client.make_url("")).rstrip("/")


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = Signed()
        yield session


@SCHEMA.parametrize()
@FUZZ
def test_with_the_admin_token(case: Case, base_url: str,
                              http: requests.Session) -> None:
    case.call_and_validate(base_url=base_url, session=http, checks=CHECKS,
                           headers=ADMIN_HEADER)


@READS.parametrize()
@READS.given(accept=ACCEPT)
@settings(FUZZ, max_examples=5)
def test_reads_whatever_the_client_accepts(case: Case, accept: str,
                                           base_url: str, http: requests.Session) -> None:
    case.call_and_validate(base_url=base_url, session=http, checks=CHECKS,
                           headers={**ADMIN_HEADER, "Accept": accept})


@ANONYMOUS.parametrize()
@settings(FUZZ, max_examples=3)
def test_without_credentials(case: Case, base_url: str,
                             http: requests.Session) -> None:
    case.call_and_validate(base_url=base_url, session=http, checks=CHECKS)


def test_the_server_serves_the_document_fuzzed(base_url: str) -> None:
    # Served with no PUBLIC_URL, the document names the address it was asked at.
    assert requests.get(f"{base_url}/openapi.json", timeout=10).json() == document(base_url)


def test_an_oversized_body_gets_the_documented_413(base_url: str,
                                                   http: requests.Session) -> None:
    for path, method in [("/api/v1/triggers", "POST"), ("/api/v1/widget/{survey}/start", "POST"),
                         ("/api/v1/surveys/{id}", "PUT")]:
        case = SCHEMA[path][method].Case(
            path_parameters={"survey": "nps", "id": "nps"}, body={"x": "y" * MAX_BODY},
            media_type="application/json")
        response = case.call_and_validate(base_url=base_url, session=http, checks=CHECKS,
                                          headers=ADMIN_HEADER)
        assert response.status_code == 413, path


def test_json_nested_past_the_parser_is_a_400_not_a_500(base_url: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    response = requests.post(f"{base_url}/api/v1/widget/nps/start", data=deep, timeout=10,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_json"


# What the fuzzing found, each a 500 before (PostgreSQL can neither store nor compare a NUL
# character; int() cannot read "²", a digit, nor 4,300 digits; a version is 32 bits), or
# taken though the document says otherwise (0 for false).
BAD_INPUT = [
    ("GET", "/api/v1/alerts?survey=a%00b", None, {}, 422, "survey"),
    ("GET", "/api/v1/customers/crm%00/export", None, {}, 422, "external_id"),
    ("POST", "/api/v1/triggers", {"survey": "nps", "idempotency_key": "k",
                                  "customer": {"external_id": "a\x00"}},
     {}, 422, "customer.external_id"),
    ("POST", "/api/v1/widget/nps/start", {"page": "\x00"}, {}, 422, "page"),
    ("GET", "/api/v1/deliveries?limit=%C2%B2", None, {}, 422, "limit"),
    ("GET", "/api/v1/audit?cursor=" + "9" * 5000, None, {}, 422, "cursor"),
    ("GET", "/api/v1/alerts/%C2%B2", None, {}, 404, "id"),
    ("POST", "/api/v1/campaigns/%C2%B2/run", None, {}, 404, "id"),
    ("GET", "/api/v1/surveys/nps?version=2147483648", None, {}, 422, "version"),
    ("POST", "/api/v1/triggers", {}, {SIGNATURE_HEADER: "sha256=00", TIMESTAMP_HEADER: "²"},
     401, TIMESTAMP_HEADER),
    ("POST", "/api/v1/campaigns", {"name": "n", "survey": "nps", "schedule": "0 10 * * 1",
                                   "active": 0}, {}, 422, "active"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "field"), BAD_INPUT)
def test_bad_input_is_refused_naming_where(base_url: str, method: str, path: str, body: Any,
                                           headers: dict[str, str], status: int,
                                           field: str) -> None:
    response = requests.request(method, base_url + path, timeout=10,
                                data=None if body is None else json.dumps(body),
                                headers={**ADMIN_HEADER, "Content-Type": "application/json",
                                         **{k: v.encode() for k, v in headers.items()}})
    assert response.status_code == status
    assert response.json()["error"]["field"] == field


def test_a_nul_character_in_a_page_url_is_a_400(base_url: str) -> None:
    for path in ("/w/a%00b", "/s/a%00b"):
        assert requests.get(base_url + path, timeout=10).status_code == 400, path
