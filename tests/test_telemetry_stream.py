"""Edge boxes that push to Redis: signed batches on a stream, read by the app's consumer
group, checked like POST /telemetry/readings, forged ones dead-lettered, and nothing lost
when a consumer dies holding an entry."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import telemetry.stream as stream_module
from bot.app import TELEMETRY, TELEMETRY_STREAM
from bot.infra.clock import SystemClock
from telemetry.ingest import sign
from telemetry.stream import DEAD_STREAM, GROUP, STREAM
from domain.devices import DEMO_BOX_ID, AlertRecord, EdgeBox, demo_box, places
from domain.workorders import Kind, WorkOrder
from tests.support import FakeClock, cinebot
from tests.test_telemetry_ingest import DEVICE, reading


def entry(box_id: str, key: str, batch: Any, signed_at: float | None = None) -> dict[str, Any]:
    """What an edge box XADDs: the POST body and signature, as stream fields."""
    body = json.dumps(batch).encode()
    ts = str(int(time.time() if signed_at is None else signed_at))  # the box's own clock
    return {"box": box_id, "ts": ts, "sig": sign(key, ts, body), "body": body}


async def until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def pending(redis: Any) -> int:
    return int((await redis.xpending(STREAM, GROUP))["pending"])


async def test_a_box_pushing_to_redis_is_evaluated_like_a_post_and_its_fault_opens_an_alert(
    client: TestClient, clock: FakeClock, redis: Any
) -> None:
    consumer = client.app[TELEMETRY_STREAM]
    box_id, key = await demo_box()
    t0 = clock.timestamp() - 4 * 3600
    batches = [[reading(t0 + 60 * i) for i in range(10)]]
    batches += [[reading(t0 + 600 + 60 * i, temperature_c=73.0) for i in range(j, j + 10)]
                for j in range(0, 40, 10)]
    for batch in batches:
        await redis.xadd(STREAM, entry(box_id, key, batch))

    async def done() -> bool:
        return consumer.processed == len(batches)

    await until(done)
    assert consumer.readings == 50 and consumer.dead == 0
    assert await pending(redis) == 0  # every entry acknowledged
    assert await redis.xlen(DEAD_STREAM) == 0
    record = await AlertRecord.get(device_id=DEVICE, rule="temperature_high")
    assert record.state == "firing"
    assert await WorkOrder.filter(kind=Kind.ALERT).count() == 1
    # the same recent window as the HTTP path keeps
    assert await redis.llen(f"telemetry:recent:{DEVICE}") == 50


async def test_forged_stale_and_broken_entries_are_dead_lettered_with_the_reason_and_acked(
    client: TestClient, clock: FakeClock, redis: Any
) -> None:
    consumer = client.app[TELEMETRY_STREAM]
    ingest = client.app[TELEMETRY]
    box_id, key = await demo_box()
    t = clock.timestamp()
    good = [reading(t)]
    forged = entry(box_id, "not-the-key", good)
    tampered = entry(box_id, key, good)
    tampered["body"] = tampered["body"].replace(b"50.0", b"99.0")
    stale = entry(box_id, key, good, signed_at=time.time() - 301)
    stranger = entry("BOX-NOBODY", key, good)
    unsigned = {"box": box_id, "body": json.dumps(good)}
    broken = entry(box_id, key, "x")
    broken["body"] = b"[{not json"
    broken["sig"] = sign(key, broken["ts"], broken["body"])
    mixed = entry(box_id, key, [reading(t), reading(t, device="PJ-SOMEONE-ELSE")])
    cases = [forged, tampered, stale, stranger, unsigned, broken, mixed]
    for fields in cases:
        await redis.xadd(STREAM, fields)

    async def done() -> bool:
        return consumer.dead == len(cases)

    await until(done)
    assert await pending(redis) == 0
    letters = await redis.xrange(DEAD_STREAM)
    reasons = [f[b"reason"].decode() for _, f in letters]
    assert reasons == ["bad_signature", "bad_signature", "stale", "bad_signature", "unsigned",
                       "bad_json", "invalid_items"]
    # the letter keeps what came, for whoever looks into it
    assert letters[0][1][b"box"] == box_id.encode() and letters[0][1][b"body"] == forged["body"]
    errors = json.loads(letters[-1][1][b"errors"])
    assert errors[0]["index"] == 1 and errors[0]["errors"][0]["field"] == "device_id"
    # only the mixed batch's good reading got in; nothing forged was evaluated
    assert ingest.accepted == 1 and consumer.readings == 1
    assert await redis.llen(f"telemetry:recent:{DEVICE}") == 1
    assert await redis.xlen(STREAM) == 0


async def test_an_entry_held_by_a_crashed_consumer_is_taken_over_at_start_and_processed_once(
    make_client: Callable[..., Any], clock: FakeClock, redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await make_client()  # seeds the demo cinema and its box
    box_id, key = await demo_box()
    await first.close()  # no consumer runs now

    # A process read an entry, then died before acknowledging it.
    t0 = clock.timestamp() - 3600
    batch = [reading(t0 + 60 * i, temperature_c=73.0) for i in range(30)]
    entry_id = await redis.xadd(STREAM, entry(box_id, key, batch))
    got = await redis.xreadgroup(GROUP, "crashed-1", {STREAM: ">"}, count=1)
    assert got[0][1][0][0] == entry_id
    assert (await redis.xpending(STREAM, GROUP))["consumers"] == [{"name": b"crashed-1", "pending": 1}]

    monkeypatch.setattr(stream_module, "CLAIM_IDLE_MS", 50)
    await asyncio.sleep(0.1)  # pending longer than the claim idle time
    client = await make_client()  # a new process starts and takes it over
    consumer = client.app[TELEMETRY_STREAM]

    async def done() -> bool:
        return consumer.processed == 1

    await until(done)
    assert consumer.claimed == 1 and consumer.readings == 30
    assert await pending(redis) == 0
    assert await AlertRecord.filter(device_id=DEVICE, rule="temperature_high").count() == 1
    assert await redis.llen(f"telemetry:recent:{DEVICE}") == 30
    # Once: nothing is left to take over, and the live loop never sees it again.
    assert await consumer.reclaim(min_idle_ms=0) == 0
    await asyncio.sleep(0.3)
    assert consumer.processed == 1 and consumer.claimed == 1


async def test_the_simulator_streams_a_fleet_to_a_running_server_and_says_clearly_when_refused(
    make_client: Callable[..., Any], database_url: str, redis_url: str, tmp_path: Path
) -> None:
    # The CLI signs with the wall clock, so this server runs on it too.
    client = await make_client(clock=SystemClock())
    url = str(client.make_url("/")).rstrip("/")

    def run(*args: str):  # noqa: ANN202
        return cinebot("telemetry", "simulate", "--url", url, *args,
                       database_url=database_url, redis_url=redis_url, cwd=tmp_path)

    # 72 simulated minutes of every demo projector at a reading a minute, ~1 s of wall time.
    code, _, err = await run("--speed", "3600", "--days", "0.05", "--interval-s", "60",
                             "--faults", "none")
    assert code == 0, err
    ingest = client.app[TELEMETRY]
    projectors = len(await places((await EdgeBox.get(box_id=DEMO_BOX_ID)).cinema_id))
    assert ingest.accepted >= projectors * 60  # a few may be lost on the way, as in the field
    assert f"已接受 {ingest.accepted:,}" in err and "错误 0" in err and "完成" in err

    code, _, err = await run("--box", DEMO_BOX_ID, "--key", "wrong-key", "--days", "0.01",
                             "--speed", "600", "--device-ids", DEVICE)
    assert code == 1 and "401 bad_signature" in err and "密钥不对" in err

    code, _, err = await run("--speed", "600", "--days", "0.01")
    assert code == 0
    await client.close()  # the server goes away
    code, _, err = await run("--speed", "600", "--days", "0.01")
    assert code == 1 and "连不上服务器" in err
