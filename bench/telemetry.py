"""Telemetry ingest through the real HTTP endpoint: throughput, memory, alert-to-card latency.

    .venv/bin/python bench/telemetry.py [--devices 200] [--readings 200000] [--batch 100]

What runs where: a real ``cinebot serve --demo`` in its own process (fresh SQLite file
and embedded Redis in a temp dir; web, outbox sender, jobs and the telemetry tick all in
that one process). This process prepares the data (it opens the same SQLite file to
register the fleet's projectors and put an engineer on duty), posts signed batches and
reads the outbox afterwards. Readings carry times up to "now", so the no-data tick of
the server sees a live fleet.

1. Throughput: the simulator's fleet (``--devices`` projectors, registered as the demo
   cinema's, readings every 60 s) is cut into signed batches of ``--batch`` readings
   (bodies and signatures prepared before the clock starts), posted by
   ``--concurrency`` connections. Each batch is validated, evaluated by the process's
   evaluator and written to the per-device recent window in Redis before the 202.
   Target ≥ 20,000 readings/s.
2. Memory per device: ``tracemalloc`` around a fresh evaluator fed the same readings
   (the evaluator's state; the Redis window lives in Redis).
3. Alert to card: ``--faults`` extra projectors go hot (73 °C, caution line 70 °C for 5
   minutes) one after another while the load of step 1 runs again; latency = the card's
   outbox row ``created_at`` − the moment the batch with the reading that fired was
   posted. Target p99 < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import aiohttp  # noqa: E402

import domain  # noqa: E402
from bench._common import DemoServer, percentile, verdict  # noqa: E402
from telemetry.ingest import signed_headers  # noqa: E402
from bot.infra.storage import open_database  # noqa: E402
from domain.cinemas import Cinema, Hall  # noqa: E402
from domain.devices import AlertRecord, Projector, demo_box  # noqa: E402
from domain.outbox import OutboundMessage  # noqa: E402
from domain.people import Staff  # noqa: E402
from domain.workorders import Shift  # noqa: E402
from telemetry.evaluator import Evaluator  # noqa: E402
from telemetry.readings import Reading, iso  # noqa: E402
from telemetry.simulate import FleetConfig, simulate  # noqa: E402

TARGET_RATE = 20_000
TARGET_P99 = 1.0


async def _register(device_ids: list[str]) -> None:
    cinema = await Cinema.get(code="demo")
    halls = await Hall.filter(cinema=cinema).order_by("id")
    known = set(await Projector.filter(device_id__in=device_ids).values_list("device_id", flat=True))
    rows = [
        Projector(cinema=cinema, hall=halls[i % len(halls)], device_id=d, key="-", model="sim")
        for i, d in enumerate(device_ids) if d not in known
    ]
    await Projector.bulk_create(rows, batch_size=500)


async def _engineer_on_duty() -> None:
    """The bench may run at any hour: make sure an engineer is on duty now."""
    cinema = await Cinema.get(code="demo")
    eng = await Staff.get(userid="eng01")
    now = datetime.now(UTC)
    await Shift.create(cinema_id=cinema.id, staff=eng, team="engineering",
                       starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=3))


def _bodies(dicts: list[dict[str, Any]], batch: int) -> list[tuple[bytes, int]]:
    out = []
    for i in range(0, len(dicts), batch):
        chunk = dicts[i:i + batch]
        out.append((json.dumps(chunk, separators=(",", ":")).encode(), len(chunk)))
    return out


async def _post_all(
    http: aiohttp.ClientSession, url: str, box: tuple[str, str], bodies: list[tuple[bytes, int]],
    concurrency: int,
) -> tuple[int, float, list[float]]:
    now = time.time()
    signed = [(body, n, signed_headers(box[0], box[1], body, now=now)) for body, n in bodies]
    queue: asyncio.Queue[tuple[bytes, int, dict[str, str]]] = asyncio.Queue()
    for item in signed:
        queue.put_nowait(item)
    accepted = 0
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal accepted
        while not queue.empty():
            body, n, headers = queue.get_nowait()
            t = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as resp:
                answer = await resp.json()
                if resp.status != 202:
                    raise RuntimeError(f"{resp.status}: {answer}")
                accepted += answer["accepted"]
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted, time.perf_counter() - started, latencies


async def _faults(
    http: aiohttp.ClientSession, url: str, box: tuple[str, str], ids: list[str], t0: float,
) -> list[tuple[float, list[str]]]:
    """Each fault device: 10 healthy minutes, then hot; device k turns hot at step k.
    One post per step with one reading per device; returns (wall time posted, ids)."""
    posted: list[tuple[float, list[str]]] = []
    steps = len(ids) + 20
    for step in range(steps):
        batch = []
        for k, d in enumerate(ids):
            hot = step >= 10 + k
            batch.append({
                "device_id": d, "ts": iso(t0 + 60 * step),
                "metrics": {"power": 1, "load_pct": 80, "temperature_c": 73.0 if hot else 50.0,
                            "ambient_c": 24.0, "fan_rpm": 3000, "brightness_pct": 95.0},
                "errors": [],
            })
        body = json.dumps(batch).encode()
        wall = time.time()
        async with http.post(url, data=body, headers=signed_headers(*box, body)) as resp:
            assert resp.status == 202, await resp.text()
        posted.append((wall, ids))
        await asyncio.sleep(0.05)
    return posted


def _memory_per_device(dicts: list[dict[str, Any]], devices: int) -> float:
    readings = [Reading.parse(d) for d in dicts]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    ev = Evaluator()
    for r in readings:
        ev.observe(r)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    return grown / max(1, len(ev.devices))


async def run(args: argparse.Namespace) -> int:
    print(f"simulating {args.devices} projectors …", flush=True)
    days = max(1.0, args.readings / (args.devices * 1440) * 1.05)
    fleet = simulate(FleetConfig(devices=args.devices, days=days, interval_s=60, seed=11,
                                 faults="none"))
    dicts = []
    for d in fleet.iter_dicts():
        dicts.append(d)
        if len(dicts) >= args.readings:
            break
    device_ids = sorted({d["device_id"] for d in dicts})
    first_t = datetime.fromisoformat(dicts[0]["ts"]).timestamp()
    last_t = datetime.fromisoformat(dicts[-1]["ts"]).timestamp()
    span = last_t - first_t + 60
    now = time.time()
    phase1 = _shifted(dicts, now - last_t - 60)  # ends a minute ago: a live fleet
    phase2 = _shifted(dicts, now - last_t - 60 + span)  # its continuation
    bodies, second = _bodies(phase1, args.batch), _bodies(phase2, args.batch)

    code = 0
    with DemoServer(prefix="cinebot-telemetry-") as server:
        async with aiohttp.ClientSession() as probe:
            await server.start(probe)
        db_url = f"sqlite://{Path(server.workdir) / 'cinebot.sqlite3'}"
        url = f"{server.url}/telemetry/readings"
        async with open_database(db_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            fault_ids = [f"PJ-FAULT-{k:03d}" for k in range(args.faults)]
            await _register(device_ids + fault_ids)
            await _engineer_on_duty()
            box = await demo_box()
            connector = aiohttp.TCPConnector(limit=args.concurrency)
            async with aiohttp.ClientSession(connector=connector) as http:
                accepted, seconds, lat = await _post_all(http, url, box, bodies, args.concurrency)
                rate = accepted / seconds
                ok_rate = rate >= TARGET_RATE and accepted == len(dicts)
                print(f"throughput: {accepted} readings from {len(device_ids)} devices in {seconds:.2f} s "
                      f"= {rate:,.0f} readings/s per server process (batch {args.batch}, "
                      f"{args.concurrency} connections; batch p50 {percentile(lat, .5) * 1000:.1f} ms, "
                      f"p99 {percentile(lat, .99) * 1000:.1f} ms) "
                      f"target ≥ {TARGET_RATE:,}/s: {verdict(ok_rate)}", flush=True)
                if not ok_rate:
                    code = 1

                t0 = time.time() - 60 * (args.faults + 21)
                load = asyncio.create_task(
                    _post_all(http, url, box, second, max(1, args.concurrency // 2))
                )
                posted = await _faults(http, url, box, fault_ids, t0)
                loaded, load_s, _ = await load
            print(f"(background load during the faults: {loaded} readings in {load_s:.2f} s)")
            latencies = []
            missing = []
            for d in fault_ids:
                record = await AlertRecord.filter(device_id=d, rule="temperature_high").first()
                card = None
                if record is not None and record.work_order_id is not None:
                    card = await OutboundMessage.filter(
                        idempotency_key__startswith=f"wo:{record.work_order_id}:", recipient="eng01",
                    ).order_by("id").first()
                if card is None:
                    missing.append(d)
                    continue
                made = card.created_at.timestamp()
                sent = max((w for w, ids in posted if d in ids and w <= made + 1e-3), default=None)
                if sent is not None:
                    latencies.append(made - sent)
            others = await AlertRecord.exclude(device_id__in=fault_ids).count()
        p50, p99 = percentile(latencies, .5), percentile(latencies, .99)
        ok_lat = not missing and bool(latencies) and p99 < TARGET_P99
        print(f"alert → card: {len(latencies)}/{len(fault_ids)} faults carded under load, "
              f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
              f"max {max(latencies, default=0) * 1000:.0f} ms"
              f"{' (no card: ' + ', '.join(missing) + ')' if missing else ''} "
              f"target p99 < {TARGET_P99:.0f} s: {verdict(ok_lat)}", flush=True)
        print(f"alerts on the healthy fleet: {others}")
        if not ok_lat:
            code = 1

    per_device = _memory_per_device(dicts, len(device_ids))
    print(f"memory: {per_device / 1024:.1f} KiB per device in the evaluator "
          f"(tracemalloc, {len(device_ids)} devices, {len(dicts)} readings)")
    print(verdict(code == 0))
    return code


def _shifted(dicts: list[dict[str, Any]], by_s: float) -> list[dict[str, Any]]:
    out = []
    for d in dicts:
        t = datetime.fromisoformat(d["ts"]).timestamp() + by_s
        out.append({**d, "ts": iso(t)})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--faults", type=int, default=40)
    args = ap.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
