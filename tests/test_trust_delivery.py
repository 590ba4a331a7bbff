"""Nothing accepted is lost: what a callback answered 200 is handled, even when the process
that answered dies, when a retry lands on another process, or when Redis goes away."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bot.app import EMBEDDED_REDIS, LEASE, REDIS
from bot.chat.channels import Channel, Inbound
from bot.wechat.chatclient import WeChatSigner, next_msg_id, text_xml
from bot.chat.dedup import ALIVE_PREFIX, JOURNAL_KEY, ProcessLease
from bot.chat.router import Understanding
from domain.outbox import OutboundMessage

OPENID = "oCineBotDelivery00000000001"
ACCOUNT = "gh_cinebotdemo"


def dedup_key(msg_id: int, user: str = OPENID) -> str:
    inbound = Inbound(Channel.WECHAT, "text", user, ACCOUNT, 0, msg_id=msg_id)
    return inbound.dedup_key


async def post(client: Any, signer: WeChatSigner, xml: str, ts: int) -> tuple[int, str, dict]:
    req = signer.sign(xml, timestamp=ts)
    resp = await client.post("/wechat/callback", params=req.params, data=req.body)
    return resp.status, await resp.text(), req.params


async def steady(lease: ProcessLease) -> None:
    """Takeovers wait until this process has seen Redis answer for a whole heartbeat."""
    for _ in range(100):
        if lease.steady:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the process lease never became steady")


async def eventually(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def late_replies(msg_id: int) -> list[OutboundMessage]:
    return await OutboundMessage.filter(idempotency_key=f"late-reply:{dedup_key(msg_id)}")


async def greet(client: Any, settings: Any, clock: Any, msg_id: int) -> tuple[int, str]:
    """「你好」 from the test's audience member, as WeChat posts it."""
    status, text, _ = await post(
        client, WeChatSigner(settings), text_xml(ACCOUNT, OPENID, "你好", msg_id),
        int(clock.timestamp()),
    )
    return status, text


async def leave_in_journal(redis: aioredis.Redis, owner: str, msg_id: int, clock: Any) -> None:
    """What a process leaves behind when SIGKILL hits it just after answering "success"."""
    message = {
        "channel": "wechat", "kind": "text", "user_id": OPENID, "to": ACCOUNT,
        "create_time": int(clock.timestamp()), "msg_id": msg_id, "text": "你好",
    }
    key = dedup_key(msg_id)
    await redis.hset(JOURNAL_KEY, key, json.dumps({"owner": owner, "message": message}))
    await redis.set(f"cinebot:dedup:{key}", f"d:{owner}".encode(), ex=600)


# --- a retry meets the claim of another process ------------------------------------------


async def test_a_retry_that_finds_a_dead_process_claim_handles_the_message(
    make_client, settings, clock, redis
) -> None:
    client = await make_client()
    await steady(client.server.app[LEASE])
    msg_id = next_msg_id()
    # A process claimed this message and died mid-handler (no heartbeat left behind).
    await redis.set(f"cinebot:dedup:{dedup_key(msg_id)}", b"p:4242-deadbeef00", ex=60)
    signer = WeChatSigner(settings)
    started = time.monotonic()
    status, text, params = await post(
        client, signer, text_xml(ACCOUNT, OPENID, "你好", msg_id), int(clock.timestamp())
    )
    assert status == 200
    reply = signer.open_reply(text, params)
    assert reply is not None and "小助手" in reply["Content"]  # handled, not just acknowledged
    assert time.monotonic() - started < 3


async def test_a_retry_whose_first_delivery_is_still_running_elsewhere_is_asked_to_retry(
    make_client, settings, clock, redis
) -> None:
    client = await make_client(settings={"handler_budget": 0.3})
    msg_id = next_msg_id()
    # Another live process holds the claim and has neither answered nor deferred it.
    await redis.set(f"{ALIVE_PREFIX}4243-alive00000", b"1", ex=30)
    await redis.set(f"cinebot:dedup:{dedup_key(msg_id)}", b"p:4243-alive00000", ex=60)
    status, text = await greet(client, settings, clock, msg_id)
    # Not 200: a "success" here would be a promise nobody keeps if that process dies.
    assert status == 503, text


# --- a handler that overruns its budget ---------------------------------------------------


async def test_an_overrun_message_is_on_record_before_success_and_settled_after(
    make_client, settings, clock, redis
) -> None:
    release = asyncio.Event()

    async def slow(text: str, role: str) -> Understanding:
        await release.wait()
        return Understanding("greeting")

    client = await make_client(understand=slow, settings={"handler_budget": 0.2})
    msg_id = next_msg_id()
    status, text = await greet(client, settings, clock, msg_id)
    assert (status, text) == (200, "success")
    entry = await redis.hget(JOURNAL_KEY, dedup_key(msg_id))
    assert entry is not None, "answered success without the message on record"
    assert json.loads(entry)["message"]["text"] == "你好"
    release.set()
    rows = await eventually(lambda: late_replies(msg_id))
    assert len(rows) == 1 and "小助手" in rows[0].payload["text"]["content"]
    await eventually(lambda: _journal_empty(redis, msg_id))


async def test_an_overrun_handler_that_loses_redis_midway_is_run_again_once_it_is_back(
    make_client, settings, clock, redis
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    release = asyncio.Event()
    heard: list[str] = []

    async def flaky(text: str, role: str) -> Understanding:
        await release.wait()
        heard.append(text)
        if len(heard) == 1:
            raise RedisConnectionError("Connection closed by server.")
        return Understanding("greeting")

    client = await make_client(understand=flaky, settings={"handler_budget": 0.2})
    msg_id = next_msg_id()
    status, text = await greet(client, settings, clock, msg_id)
    assert (status, text) == (200, "success")
    release.set()
    rows = await eventually(lambda: late_replies(msg_id))
    assert "小助手" in rows[0].payload["text"]["content"]
    await eventually(lambda: _journal_empty(redis, msg_id))
    assert heard == ["你好", "你好"]


async def _journal_empty(redis: aioredis.Redis, msg_id: int) -> bool:
    return await redis.hget(JOURNAL_KEY, dedup_key(msg_id)) is None


async def test_a_journalled_message_of_a_dead_process_is_run_once_by_a_live_one(
    make_client, settings, clock, redis
) -> None:
    heard: list[str] = []

    async def understand(text: str, role: str) -> Understanding:
        heard.append(text)
        return Understanding("greeting")

    await make_client(understand=understand)
    msg_id = next_msg_id()
    await leave_in_journal(redis, "4244-dead000000", msg_id, clock)
    rows = await eventually(lambda: late_replies(msg_id))
    assert "小助手" in rows[0].payload["text"]["content"]
    await eventually(lambda: _journal_empty(redis, msg_id))
    await asyncio.sleep(2.5)  # more recovery rounds: nothing runs it again
    assert heard == ["你好"]
    assert len(await late_replies(msg_id)) == 1


async def test_a_journalled_message_whose_owner_lives_is_left_to_it(
    make_client, settings, clock, redis
) -> None:
    heard: list[str] = []

    async def understand(text: str, role: str) -> Understanding:
        heard.append(text)
        return Understanding("greeting")

    await make_client(understand=understand)
    msg_id = next_msg_id()
    await redis.set(f"{ALIVE_PREFIX}4245-alive00000", b"1", ex=30)
    await leave_in_journal(redis, "4245-alive00000", msg_id, clock)
    await asyncio.sleep(4)
    assert heard == []
    assert await redis.hget(JOURNAL_KEY, dedup_key(msg_id)) is not None


# --- Redis goes away ----------------------------------------------------------------------


async def test_a_killed_embedded_redis_comes_back_with_its_data_and_callbacks_resume(
    make_client, settings, clock, tmp_path: Path, caplog
) -> None:
    client = await make_client(
        settings={"redis_url": None, "embedded_redis_path": str(tmp_path / "r.rdb")}
    )
    app = client.server.app
    embedded = app[EMBEDDED_REDIS]
    await app[REDIS].set("cinebot:test:kept", b"yes")
    await asyncio.sleep(1.5)  # the append-only file is synced every second
    os.kill(embedded._server.pid, signal.SIGKILL)
    caplog.set_level(logging.WARNING)
    # While it is down: callbacks fail fast with a 503 (WeChat retries), no 500s,
    # and the log gets a line per interval, not a traceback per callback.
    statuses = []
    for _ in range(10):
        started = time.monotonic()
        status, _ = await greet(client, settings, clock, next_msg_id())
        statuses.append(status)
        assert time.monotonic() - started < 2
        if status == 200:
            break
    assert 500 not in statuses
    assert 503 in statuses, statuses
    health = await client.get("/healthz")
    # Either still down (503, with the reason) or already back.
    if health.status == 503:
        assert "redis" in await health.json()
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith("bot.")]
    assert not tracebacks
    # One line per component per interval, however many callbacks failed.
    outage_lines = [r for r in caplog.records if r.name == "bot.chat.callbacks"]
    assert [r.getMessage() for r in outage_lines] == ["wechat callbacks: redis unavailable"]

    async def answered() -> bool:
        status, _ = await greet(client, settings, clock, next_msg_id())
        return status == 200

    await eventually(answered, timeout=15)

    async def restarted() -> bool:
        return embedded.restarts == 1 and embedded.state == "running"

    await eventually(restarted, timeout=5)
    assert await app[REDIS].get("cinebot:test:kept") == b"yes"
    assert (await client.get("/healthz")).status == 200


# --- a real process killed at the worst moment --------------------------------------------


async def test_a_server_killed_right_after_answering_success_loses_nothing(
    database_url: str, redis_url: str, tmp_path: Path, redis
) -> None:
    """Two real ``cinebot serve`` processes share the database and Redis. A complaint is
    sent to the first, whose work orders take 5 s to open (tests/slow_serve.py), so its
    handler overruns and WeChat is answered ``success``; that process is then killed with
    SIGKILL before the handler could write anything. The second process must open the
    work order — exactly one."""
    import sys

    from bot.infra.settings import Settings
    from tests.support import cinebot_command

    ports = [_free_port(), _free_port()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_")}
    env.update(
        CINEBOT_DATABASE_URL=database_url, CINEBOT_REDIS_URL=redis_url,
        CINEBOT_HANDLER_BUDGET="0.3", CINEBOT_LOG_FORMAT="text",
        CINEBOT_NLU_CACHE=os.environ.get("CINEBOT_NLU_CACHE", ""),
        CINEBOT_TEST_SLOW_WORK_ORDER_S="5",
    )
    slow = [sys.executable, "-m", "tests.slow_serve"]
    procs = []
    try:
        for i, port in enumerate(ports):
            log_file = open(tmp_path / f"serve{i}.log", "w")  # noqa: SIM115
            command = (slow if i == 0 else cinebot_command()) + ["serve", "--port", str(port)]
            procs.append(await asyncio.create_subprocess_exec(
                *command, *(["--demo"] if i == 0 else []), cwd=Path.cwd(), env=env,
                stdout=log_file, stderr=asyncio.subprocess.STDOUT,
            ))
            await _wait_healthy(port, tmp_path / f"serve{i}.log")
        signer = WeChatSigner(Settings())
        msg_id = next_msg_id()
        xml = text_xml(ACCOUNT, OPENID, "3号厅空调太冷了，冻死了", msg_id)
        status, text = await _post_to(ports[0], signer, xml)
        assert (status, text) == (200, "success")  # overran: answered before handling
        procs[0].kill()  # SIGKILL, while the handler waits to open the work order
        await procs[0].wait()
        source = f"wechat:{dedup_key(msg_id)}"

        async def opened() -> list[Any]:
            return await _work_orders(database_url, source)

        orders = await eventually(opened, timeout=30)
        assert len(orders) == 1
        await asyncio.sleep(3)  # more recovery rounds on the survivor change nothing
        assert len(await _work_orders(database_url, source)) == 1
        assert await redis.hget(JOURNAL_KEY, dedup_key(msg_id)) is None
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_healthy(port: int, log_path: Path, timeout: float = 120) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise AssertionError(f"server on {port} did not start:\n{log_path.read_text()[-3000:]}")


async def _post_to(port: int, signer: WeChatSigner, xml: str) -> tuple[int, str]:
    import aiohttp

    req = signer.sign(xml)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"http://127.0.0.1:{port}/wechat/callback", params=req.params, data=req.body
        ) as resp:
            return resp.status, await resp.text()


async def _work_orders(url: str, source: str) -> list[Any]:
    if url.startswith("sqlite://"):
        import sqlite3

        path = url[len("sqlite://"):].split("?", 1)[0]
        conn = sqlite3.connect(path)
        try:
            return conn.execute(
                "SELECT id FROM work_order WHERE source_key = ?", (source,)
            ).fetchall()
        finally:
            conn.close()
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        return list(await conn.fetch("SELECT id FROM work_order WHERE source_key = $1", source))
    finally:
        await conn.close()


async def test_a_frozen_redis_fails_callbacks_fast_and_is_not_restarted_under_itself(
    make_client, settings, clock, tmp_path: Path
) -> None:
    client = await make_client(
        settings={"redis_url": None, "embedded_redis_path": str(tmp_path / "r.rdb")}
    )
    embedded = client.server.app[EMBEDDED_REDIS]
    pid = embedded._server.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, _ = await greet(client, settings, clock, next_msg_id())
        # Answered well inside WeChat's 5 s, with a status WeChat retries.
        assert status == 503
        assert time.monotonic() - started < 4.5
        await asyncio.sleep(1.5)  # supervisor rounds: the process lives, so no second server
        assert embedded.restarts == 0
        assert embedded.state.startswith("not answering")
    finally:
        os.kill(pid, signal.SIGCONT)

    async def answered() -> bool:
        status, _ = await greet(client, settings, clock, next_msg_id())
        return status == 200

    await eventually(answered, timeout=15)
    assert embedded.restarts == 0
