"""The measures: NPS and CSAT on known inputs with their 95 % intervals, and the dashboard's
summary (per hall, film, touchpoint, day; complaint shares; acknowledge and resolve times)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from domain import feedback as fb
from domain.feedback import FeedbackResponse, Visit, csat_of, nps_of, wilson
from domain.touchpoints import Touchpoint
from domain.workorders import Who, WorkOrder, act
from handlers.api.auth import staff_token
from handlers.api.context import API

Z = 1.959963984540054


def test_nps_counts_passives_in_the_denominator_and_has_a_normal_interval() -> None:
    result = nps_of([10, 10, 9, 8, 7, 6, 5, 0, 10, 3])
    assert (result.n, result.promoters, result.passives, result.detractors) == (10, 4, 2, 4)
    assert result.score == 0.0
    # Each answer is +1/0/−1: variance (0.4 + 0.4 − 0²) / 10 = 0.08.
    assert result.high == pytest.approx(100 * Z * math.sqrt(0.08), abs=1e-9)
    assert result.low == pytest.approx(-55.436, abs=1e-3)

    skewed = nps_of([10, 9, 9, 8, 2])  # 60 % promoters, 20 % detractors
    assert skewed.score == pytest.approx(40.0)
    assert skewed.low == pytest.approx(100 * (0.4 - Z * math.sqrt((0.8 - 0.16) / 5)), abs=1e-9)
    assert skewed.high == 100.0  # clipped to the scale
    assert nps_of([]).score is None and nps_of([9]).score == 100.0
    assert nps_of([0, 6]).score == -100.0 and nps_of([7, 8]).score == 0.0


def test_csat_is_the_share_of_four_and_five_stars_with_a_wilson_interval() -> None:
    result = csat_of([5, 4, 4, 3, 1])
    assert (result.n, result.satisfied, result.pct) == (5, 3, 60.0)
    assert result.low == pytest.approx(23.072, abs=1e-3)
    assert result.high == pytest.approx(88.238, abs=1e-3)
    # Closed forms at the edges: 0 of n → [0, z²/(n+z²)]; n of n → [n/(n+z²), 1].
    assert wilson(0, 4) == (0.0, pytest.approx(Z * Z / (4 + Z * Z)))
    assert wilson(4, 4) == (pytest.approx(4 / (4 + Z * Z)), 1.0)
    # A published example: 81 of 263 → (0.2553, 0.3662).
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert csat_of([]).pct is None


async def _rate(
    touchpoint: Touchpoint, visitor: str, now: Any, stars: int | None, nps: int | None,
    visit: Visit | None = None, comment: str = "", category: str | None = None,
) -> FeedbackResponse:
    response, _ = await fb.start_response(touchpoint=touchpoint, visitor=visitor, now=now, channel="chat", visit=visit)
    reading = fb.TextReading(category, "neg") if category else None
    return await fb.answer(response, now, stars=stars, nps=nps, comment=comment, reading=reading)


async def test_the_summary_api_groups_and_times_the_loop(client: TestClient, clock: Any) -> None:
    now = clock.now()
    points = {t.code: t for t in await Touchpoint.all()}
    h1, bar = points["demo-h1"], points["demo-bar"]
    film = Visit(1, 7, "热辣滚烫", "1号厅", now - timedelta(hours=2), now - timedelta(minutes=10))
    rows = [
        (h1, "v1", 5, 10, film, "", None), (h1, "v2", 4, 9, film, "", None),
        (h1, "v3", 2, 3, film, "声音太小", "sound"), (bar, "v4", 1, 0, None, "爆米花受潮", "concession"),
        (bar, "v5", 3, 7, None, "", None),
    ]
    alerted: list[WorkOrder] = []
    for tp, visitor, stars, nps, visit, comment, category in rows:
        response = await _rate(tp, visitor, now, stars, nps, visit, comment, category)
        if fb.is_alarming(response):
            order, created = await fb.raise_alert(
                response, tp, now=now, summary="差评", description="", notify=_silent,
                reporter=Who(visitor, "audience", tp.cinema_id),
            )
            assert created
            alerted.append(order)
    assert len(alerted) == 2
    manager = Who("manager01", "manager", h1.cinema_id)
    first, second = alerted
    await first.refresh_from_db()
    await act(first, "acknowledge", manager, now + timedelta(minutes=4))
    await act(first, "resolve", manager, now + timedelta(minutes=20), action_taken="调高音量")
    await second.refresh_from_db()
    await act(second, "acknowledge", manager, now + timedelta(minutes=10))
    await act(second, "resolve", manager, now + timedelta(minutes=40), action_taken="换了一桶")

    secret = client.app[API].secret_key
    headers = {"Authorization": f"Bearer {staff_token(secret, 'manager01', now)}"}
    day = fb.business_day(now).isoformat()
    resp = await client.get("/api/feedback/summary", params={"from": day, "to": day, "by": "hall"}, headers=headers)
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    total = data["total"]
    assert total["responses"] == 5
    assert total["csat"]["n"] == 5 and total["csat"]["pct"] == 40.0  # 5 and 4 stars of 5
    assert total["nps"]["score"] == 0.0  # 2 promoters, 2 detractors, 1 passive
    lo, hi = wilson(2, 5)
    assert total["csat"]["ci95"] == [round(100 * lo, 1), round(100 * hi, 1)]
    halls = {g["label"]: g for g in data["groups"]}
    assert halls["1号厅"]["responses"] == 3 and halls["1号厅"]["csat"]["pct"] == pytest.approx(66.7)
    assert halls["未关联影厅"]["responses"] == 2
    complaints = data["complaints"]
    assert complaints["n"] == 2
    assert {c["category"]: c["share"] for c in complaints["categories"]} == {"sound": 50.0, "concession": 50.0}
    assert complaints["median_ack_minutes"] == pytest.approx(7.0)  # 4 and 10 minutes
    assert complaints["median_resolve_minutes"] == pytest.approx(30.0)  # 20 and 40 minutes

    by_film = await (await client.get("/api/feedback/summary", params={"by": "film"}, headers=headers)).json()
    assert {g["label"]: g["responses"] for g in by_film["groups"]} == {"热辣滚烫": 3, "未关联场次": 2}
    by_tp = await (await client.get("/api/feedback/summary", params={"by": "touchpoint"}, headers=headers)).json()
    assert {g["key"]: g["nps"]["n"] for g in by_tp["groups"]} == {"demo-h1": 3, "demo-bar": 2}
    by_day = await (await client.get("/api/feedback/summary", params={"by": "day"}, headers=headers)).json()
    assert [g["key"] for g in by_day["groups"]] == [day]

    staff = {"Authorization": f"Bearer {staff_token(secret, 'staff01', now)}"}
    assert (await client.get("/api/feedback/summary", headers=staff)).status == 403
    assert (await client.get("/api/feedback/summary")).status == 401
    bad = await client.get("/api/feedback/summary", params={"by": "seat"}, headers=headers)
    assert bad.status == 422 and (await bad.json())["field"] == "by"


async def _silent(event: str, order: WorkOrder, **info: Any) -> None:
    return None
