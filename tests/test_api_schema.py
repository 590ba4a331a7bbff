"""The API as its OpenAPI document describes it, checked by Schemathesis against the real app.

Schemathesis reads ``/api/openapi.json`` from the running app and sends every operation
requests it generates from the document: valid ones and invalid ones, without
credentials, with a buyer's session or a manager's staff token, and with the path of
a real order, show and projector, so the views' deeper code is reached too. Whatever it
sends, the app must not answer 5xx, must answer only the status codes and content types
the document lists, with bodies that match it, and must refuse invalid input with a 4xx.

The example count is bounded (``EXAMPLES`` per operation and way of calling) and the
generation derandomised, so the run is the same each time and takes well under a minute
per database; ``CINEBOT_SCHEMA_EXAMPLES`` raises it for a deeper local run.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from yarl import URL
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from domain.devices import Projector
from domain.people import Staff, StaffRole
from handlers.api import API, session_token, staff_token
from tests.support import FakeClock

EXAMPLES = int(os.environ.get("CINEBOT_SCHEMA_EXAMPLES", "25"))
BUYER = "oCineBotSchemaFuzzBuyer00001"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class Caller:
    """One way of calling the API: which credentials go where, and which real ids to use."""

    name: str
    tokens: dict[str, str]  # security scheme → bearer token
    path_parameters: dict[str, Any] = field(default_factory=dict)

    def headers_for(self, operation: Any) -> dict[str, str]:
        schemes = [name for req in operation.definition.raw.get("security", []) for name in req]
        for scheme in schemes:
            if scheme in self.tokens:
                return {"Authorization": f"Bearer {self.tokens[scheme]}"}
        return {}


@dataclass
class Found:
    failures: list[str] = field(default_factory=list)
    calls: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _fuzz(base_url: str, callers: list[Caller]) -> Found:
    """Every operation × caller × mode, ``EXAMPLES`` cases each (runs in a thread: the
    app answers on the test's event loop meanwhile)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/openapi.json")
    found = Found()
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        params = {p.name for p in operation.path_parameters}
        for caller in callers:
            fixed = {k: v for k, v in caller.path_parameters.items() if k in params}
            if caller.path_parameters and not fixed:
                continue  # the real-ids caller only where there is a path to fill
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _run(operation, caller, mode, fixed, base_url, session, found)
    return found


def _run(
    operation: Any, caller: Caller, mode: GenerationMode, fixed: dict[str, Any],
    base_url: str, session: requests.Session, found: Found,
) -> None:
    headers = caller.headers_for(operation)
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])
    try:
        strategy = operation.as_strategy(
            generation_mode=mode, path_parameters=fixed or None
        )
    except Exception as exc:  # e.g. nothing negative can be made of a fixed path
        found.failures.append(
            f"{operation.label} [{caller.name}, {mode.value}]: no strategy: {exc}"
        )
        return

    @hypothesis.settings(
        max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
        phases=[Phase.explicit, Phase.generate],  # a failure is reported, not shrunk
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def probe(case: Any) -> None:
        found.calls += 1
        # A negative case may be one whose credentials were taken away on purpose: then ours
        # are not added back, or a correct 200 would read as invalid data accepted.
        if operation.schema.is_security_param_negated(case):
            merged = dict(case.headers or {})
        else:
            merged = {**(case.headers or {}), **headers}
        case.call_and_validate(base_url=base_url, session=session, headers=merged, checks=checks)

    started = time.monotonic()
    try:
        probe()
    except hypothesis.errors.Unsatisfiable:
        if mode is not GenerationMode.NEGATIVE:
            raise
        # Nothing invalid can be made of an operation without inputs (GET /api/films).
    except (Exception, BaseExceptionGroup) as exc:  # a FailureGroup is a BaseExceptionGroup
        # Every failure is collected and all are reported at the end.
        found.failures.append(f"{operation.label} [{caller.name}, {mode.value}]: {exc!r}")
    found.seconds[operation.label] = found.seconds.get(operation.label, 0.0) + (
        time.monotonic() - started
    )


async def test_the_api_answers_as_its_openapi_document_says(
    api: TestClient, clock: FakeClock
) -> None:
    ctx = api.app[API]
    manager = await Staff.filter(role=StaffRole.MANAGER, active=True).first()
    projector = await Projector.all().first()
    assert manager is not None and projector is not None
    now = clock.now()
    buyer = session_token(ctx.secret_key, BUYER, now)
    staff = staff_token(ctx.secret_key, manager.userid, now)
    order_no, showtime_id = await _an_order(api, buyer)

    callers = [
        Caller("anonymous", {}),
        Caller("buyer and manager", {"session": buyer, "staff": staff}),
        Caller(
            "real ids", {"session": buyer, "staff": staff},
            {"no": order_no, "id": showtime_id, "device_id": projector.device_id},
        ),
    ]
    base_url = str(api.make_url("")).rstrip("/")
    started = time.monotonic()
    found = await asyncio.to_thread(_fuzz, base_url, callers)
    took = time.monotonic() - started
    print(f"schemathesis: {found.calls} calls in {took:.1f}s")
    for label, seconds in sorted(found.seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {seconds:5.1f}s  {label}")
    assert found.calls > 100
    assert not found.failures, "\n\n".join(found.failures)


async def _an_order(api: TestClient, token: str) -> tuple[str, int]:
    """A held order of the buyer's, for the operations on ``/api/orders/{no}``."""
    resp = await api.get("/api/showtimes")
    shows = (await resp.json())["showtimes"]
    show = next(s for s in shows if s["on_sale"])
    resp = await api.post(
        "/api/holds", json={"showtime_id": show["id"], "count": 2},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["order"]["no"], show["id"]


# --- what it found, each as a plain request ----------------------------------------------------


async def test_a_path_with_a_newline_gets_the_apis_json_404(client: TestClient) -> None:
    """``.`` in the fallback route stopped at a newline: aiohttp's plain-text 404 answered."""
    url = URL(str(client.make_url("/")) + "api/projectors/a%0Ab", encoded=True)
    resp = await client.session.get(url)
    assert resp.status == 404 and resp.content_type == "application/json"
    assert (await resp.json())["code"] == "not_found"


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1999-12-31", "2100-01-01"])
async def test_a_date_no_cinema_has_is_refused_not_a_500(client: TestClient, day: str) -> None:
    """Year 1 or 9999 overflowed the conversion to UTC (500); no show is outside 2000–2099."""
    resp = await client.get("/api/showtimes", params={"date": day})
    assert resp.status == 422 and (await resp.json())["field"] == "date"


async def test_the_summarys_dates_are_refused_the_same_way(
    client: TestClient, clock: FakeClock
) -> None:
    token = staff_token(client.app[API].secret_key, "manager01", clock.now())
    headers = {"Authorization": f"Bearer {token}"}
    for params in ({"from": "0001-01-01", "to": "0001-01-03"}, {"to": "0001-01-03"}):
        resp = await client.get("/api/feedback/summary", params=params, headers=headers)
        assert resp.status == 422, (params, await resp.text())


async def test_an_empty_filter_is_no_filter_as_documented(client: TestClient) -> None:
    resp = await client.get("/api/showtimes", params={"date": "", "film_id": "", "cinema_id": ""})
    assert resp.status == 200


@pytest.mark.parametrize("text", ["\u0000", "tmpl\u0000id", "\ud800"])
async def test_text_no_database_can_store_is_refused_not_a_500(
    client: TestClient, clock: FakeClock, text: str
) -> None:
    """Found on PostgreSQL: a NUL in a JSON string reached the database (500, "invalid byte
    sequence for encoding UTF8: 0x00"); a lone surrogate would fail the same way."""
    token = session_token(client.app[API].secret_key, BUYER, clock.now())
    body = json.dumps({"template_id": text}).encode()  # ASCII escapes, as a client sends them
    resp = await client.post(
        "/api/feedback/consent", data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["code"] == "bad_json"
