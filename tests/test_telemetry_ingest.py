"""POST /telemetry/readings: signed batches from edge boxes, per-item errors, and the
alert → work order → card link, end to end through the real app."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

from telemetry.ingest import signed_headers
from domain.devices import AlertRecord, demo_box
from domain.outbox import OutboundMessage
from domain.workorders import Kind, State, WorkOrder
from tests.support import FakeClock

DEVICE = "PJ-DEMO-3"  # the demo cinema's 3号厅


def reading(t: float, device: str = DEVICE, **metrics: float) -> dict[str, Any]:
    from telemetry.readings import iso

    base: dict[str, Any] = {"power": 1, "load_pct": 80, "temperature_c": 50.0, "ambient_c": 24.0,
                            "fan_rpm": 3000, "brightness_pct": 95.0}
    base.update(metrics)
    return {"device_id": device, "ts": iso(t), "metrics": base, "errors": []}


async def post(client: TestClient, clock: FakeClock, batch: Any, **override: str) -> Any:
    box_id, key = await demo_box()
    body = json.dumps(batch).encode()
    headers = signed_headers(box_id, key, body, now=clock.timestamp())
    headers.update(override)
    return await client.post("/telemetry/readings", data=body, headers=headers)


async def test_unsigned_wrongly_signed_stale_or_unknown_box_batches_are_refused(
    client: TestClient, clock: FakeClock
) -> None:
    t = clock.timestamp()
    batch = [reading(t)]
    body = json.dumps(batch).encode()
    box_id, key = await demo_box()

    resp = await client.post("/telemetry/readings", data=body)
    assert resp.status == 401
    resp = await post(client, clock, batch, **{"X-Cinebot-Signature": "0" * 64})
    assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"
    stale = signed_headers(box_id, key, body, now=t - 301)
    resp = await client.post("/telemetry/readings", data=body, headers=stale)
    assert resp.status == 401 and (await resp.json())["error"] == "stale"
    other = signed_headers("BOX-NOBODY", key, body, now=t)
    resp = await client.post("/telemetry/readings", data=body, headers=other)
    assert resp.status == 401
    # the body is part of what is signed: a changed body with the old signature fails
    good = signed_headers(box_id, key, body, now=t)
    resp = await client.post("/telemetry/readings", data=body.replace(b"50.0", b"99.0"), headers=good)
    assert resp.status == 401

    broken = b"[{not json"
    resp = await client.post("/telemetry/readings", data=broken, headers=signed_headers(box_id, key, broken, now=t))
    assert resp.status == 400
    huge = json.dumps([reading(t)] * 8000).encode()
    assert len(huge) > 1024 * 1024
    resp = await client.post("/telemetry/readings", data=huge, headers=signed_headers(box_id, key, huge, now=t))
    assert resp.status == 413

    resp = await post(client, clock, batch)
    assert resp.status == 202 and await resp.json() == {"accepted": 1, "errors": []}


async def test_each_bad_item_is_listed_and_the_good_ones_are_accepted(
    client: TestClient, clock: FakeClock
) -> None:
    t = clock.timestamp()
    batch = {
        "readings": [
            reading(t),
            {"device_id": DEVICE, "metrics": {"temperature_c": "hot"}},
            reading(t, device="PJ-SOMEONE-ELSE"),
            "nonsense",
            reading(t + 10),
        ]
    }
    resp = await post(client, clock, batch)
    assert resp.status == 202
    answer = await resp.json()
    assert answer["accepted"] == 2
    assert [e["index"] for e in answer["errors"]] == [1, 2, 3]
    fields = {e["field"] for e in answer["errors"][0]["errors"]}
    assert "ts" in fields
    assert answer["errors"][1]["errors"][0]["field"] == "device_id"


async def test_each_device_keeps_a_recent_window_in_redis(
    client: TestClient, clock: FakeClock, redis: Any
) -> None:
    t0 = clock.timestamp() - 3 * 3600
    resp = await post(client, clock, [reading(t0 + 10 * i) for i in range(1500)])
    assert resp.status == 202 and (await resp.json())["accepted"] == 1500
    rows = await redis.lrange(f"telemetry:recent:{DEVICE}", 0, -1)
    assert len(rows) == 360  # the last hour at one reading every 10 s
    assert json.loads(rows[-1])["t"] == t0 + 10 * 1499
    assert json.loads(rows[0])["m"]["temperature_c"] == 50.0
    assert await redis.ttl(f"telemetry:recent:{DEVICE}") > 0


async def _stream(client: TestClient, clock: FakeClock, start: float, minutes: int, **metrics: float) -> None:
    for batch_start in range(0, minutes, 10):
        batch = [reading(start + 60 * i, **metrics) for i in range(batch_start, min(minutes, batch_start + 10))]
        resp = await post(client, clock, batch)
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["errors"] == []


def _cards(rows: list[OutboundMessage]) -> list[OutboundMessage]:
    return [r for r in rows if (r.payload or {}).get("msgtype") == "template_card"]


async def test_a_fault_opens_one_alert_work_order_with_one_card_and_its_recovery_resolves_it_once(
    client: TestClient, clock: FakeClock
) -> None:
    t0 = clock.timestamp() - 4 * 3600  # the readings' own clock: the last few hours
    await _stream(client, clock, t0, 10)
    await _stream(client, clock, t0 + 600, 40, temperature_c=73.0)  # over 70 °C for 40 min

    orders = await WorkOrder.filter(kind=Kind.ALERT)
    assert len(orders) == 1
    order = orders[0]
    assert order.source == "telemetry" and order.team == "engineering" and order.hall == "3号厅"
    assert order.source_key.startswith(f"alert:{DEVICE}:temperature_high:")
    assert order.assignee == "eng01"  # on duty at 10:30 Shanghai
    assert order.state == State.ASSIGNED and order.severity == "P2"
    cards = _cards(await OutboundMessage.filter(recipient="eng01"))
    assert len(cards) == 1  # repeats during the 40 minutes never sent another
    record = await AlertRecord.get(device_id=DEVICE, rule="temperature_high")
    assert record.state == "firing" and record.work_order_id == order.id

    await _stream(client, clock, t0 + 3000, 40, temperature_c=60.0)  # back to normal
    order = await WorkOrder.get(id=order.id)
    assert order.state == State.RESOLVED and order.action == "告警已恢复"
    await order.fetch_related("events")
    resolves = [e for e in await order.events.all() if e.action == "resolve"]
    assert len(resolves) == 1
    record = await AlertRecord.get(id=record.id)
    assert record.state == "resolved" and record.resolved_at is not None
    assert len(_cards(await OutboundMessage.filter(recipient="eng01"))) == 1

    # Still healthy: nothing reopens, no new order.
    await _stream(client, clock, t0 + 5400, 20, temperature_c=58.0)
    assert await WorkOrder.filter(kind=Kind.ALERT).count() == 1
    assert (await WorkOrder.get(id=order.id)).state == State.RESOLVED

    # Hot again later: a new incident, so a new work order and a new card — not the old one reopened.
    await _stream(client, clock, t0 + 6600, 30, temperature_c=73.0)
    orders = await WorkOrder.filter(kind=Kind.ALERT).order_by("id")
    assert len(orders) == 2 and orders[0].state == State.RESOLVED and orders[1].state == State.ASSIGNED
    assert orders[1].source_key != orders[0].source_key
    assert len(_cards(await OutboundMessage.filter(recipient="eng01"))) == 2
    assert await AlertRecord.filter(device_id=DEVICE, state="firing").count() == 1
