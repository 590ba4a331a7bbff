"""Commands issued together reach Redis as one batch (a redis-py pipeline), and each caller
gets its own answer — the same answer redis-py would give — or hears that Redis failed;
commands run in the order they were issued, whatever the client's pool (plain, Sentinel)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, DataError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.infra.redisbatch import CommandBatcher


@pytest.fixture
async def batcher(redis: aioredis.Redis) -> AsyncIterator[CommandBatcher]:
    batcher = CommandBatcher(redis)
    yield batcher
    await batcher.aclose()


def _count_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    send = CommandBatcher._send

    async def counting(self: CommandBatcher, batch: list[Any]) -> Any:
        sizes.append(len(batch))
        return await send(self, batch)

    monkeypatch.setattr(CommandBatcher, "_send", counting)
    return sizes


async def test_concurrent_commands_each_get_their_own_result(batcher: CommandBatcher) -> None:
    results = await asyncio.gather(
        *(batcher.execute("SET", f"k{i}", str(i), "NX") for i in range(50)),
        batcher.execute("SET", "k0", "again", "NX"),
    )
    assert results[:50] == [True] * 50  # redis-py's answer for SET, not b"OK"
    assert results[50] is None  # NX refused: the first one won
    values = await asyncio.gather(*(batcher.execute("GET", f"k{i}") for i in range(50)))
    assert values == [str(i).encode() for i in range(50)]
    assert await batcher.execute("EXPIRE", "k1", 60) is True
    assert await batcher.execute("DEL", "k1", "k2", "nothing") == 2
    assert await batcher.execute("SCRIPT LOAD", "return 1") == await batcher.redis.script_load(
        "return 1"
    )


async def test_one_turns_commands_go_as_one_batch_and_wait_for_the_one_on_its_way(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _count_batches(monkeypatch)
    batcher = CommandBatcher(redis)
    try:
        assert await batcher.execute("PING") is True
        first = batcher.execute("SET", "a", "1")
        await asyncio.sleep(0)  # the first batch is on its way
        rest = [batcher.execute("INCR", "n") for _ in range(30)]
        assert await first is True
        assert sorted(await asyncio.gather(*rest)) == list(range(1, 31))
        assert sizes == [1, 1, 30]  # what came during the first round trip went as one
    finally:
        await batcher.aclose()


async def test_commands_run_in_the_order_they_were_issued_across_batches(
    batcher: CommandBatcher,
) -> None:
    """A write queued and not awaited (the dialog store's) is seen by any read issued
    after it, even one in a later batch, even one marked urgent."""
    rng = random.Random(7)
    expected: list[tuple[asyncio.Future[Any], int]] = []
    count = 0
    for _ in range(40):
        for _ in range(rng.randint(1, 6)):
            batcher.execute("INCR", "counter")  # not awaited
            count += 1
        expected.append((batcher.execute("GET", "counter", urgent=rng.random() < 0.3), count))
        if rng.random() < 0.5:
            await asyncio.sleep(0)  # let a batch go now and then
    seen = await asyncio.gather(*(f for f, _ in expected))
    assert [int(v) for v in seen] == [n for _, n in expected]


async def test_arguments_are_encoded_as_redis_py_encodes_them(batcher: CommandBatcher) -> None:
    await batcher.execute("SET", "text", "影城")
    await batcher.execute("SET", "bytes", b"\x00\xff")
    await batcher.execute("SET", "int", 42)
    await batcher.execute("SET", "float", 1.5)
    assert await batcher.redis.mget("text", "bytes", "int", "float") == [
        "影城".encode(), b"\x00\xff", b"42", b"1.5"
    ]
    with pytest.raises(DataError):  # what redis.execute_command raises for a bool
        await batcher.execute("SET", "flag", True)
    small = CommandBatcher(batcher.redis, max_batch=2)
    try:
        calls = [small.execute("SET", "x", None) for _ in range(3)] + [small.execute("PING")]
        for call in calls[:3]:
            with pytest.raises(DataError):
                await call
        assert await asyncio.wait_for(calls[3], 5) is True  # the others still go
    finally:
        await small.aclose()
    assert await batcher.execute("GET", "text") == "影城".encode()


async def test_an_error_in_one_command_reaches_only_its_caller(batcher: CommandBatcher) -> None:
    await batcher.redis.set("text", "not a number")
    good = batcher.execute("SET", "fine", "1")
    bad = batcher.execute("INCR", "text")
    after = batcher.execute("GET", "fine")
    assert await good is True
    with pytest.raises(ResponseError):
        await bad
    assert await after == b"1"


async def test_a_script_unknown_to_the_server_is_loaded_and_run(batcher: CommandBatcher) -> None:
    script = batcher.redis.register_script("return redis.call('INCR', KEYS[1]) + ARGV[1]")
    await batcher.redis.script_flush()
    with pytest.raises(NoScriptError):
        await batcher.execute("EVALSHA", script.sha, 1, "n", 10)
    assert await batcher.eval(script, ["n"], [10]) == 11
    assert await batcher.eval(script, ["n"], [10], urgent=True) == 12


async def test_a_redis_that_cannot_be_reached_fails_every_waiting_caller(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
    batcher = CommandBatcher(client)
    await client.aclose()
    client.connection_pool.connection_kwargs["path" if redis_url.startswith("unix") else "port"] = (
        "/nonexistent/redis.sock" if redis_url.startswith("unix") else 1
    )
    calls = [batcher.execute("GET", "x") for _ in range(3)]
    for call in calls:
        with pytest.raises(RedisConnectionError):
            await call
    await batcher.aclose()


async def test_a_killed_connection_fails_its_batch_and_the_next_command_reconnects(
    redis_url: str,
) -> None:
    # Without redis-py's retry, which would send the batch again on a new connection.
    client = aioredis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
    batcher = CommandBatcher(client)
    try:
        await batcher.execute("SET", "k", "v")
        # BLPOP holds the batch's connection; killing it loses the batch (BLPOP and GET).
        blocked = batcher.execute("BLPOP", "never", 3)
        queued = batcher.execute("GET", "k")
        await asyncio.sleep(0.05)
        assert await client.client_kill_filter(_type="normal", skipme=True) >= 1
        for call in (blocked, queued):
            with pytest.raises(RedisConnectionError):
                await call
        assert await batcher.execute("GET", "k") == b"v"
    finally:
        await batcher.aclose()
        await client.aclose()


async def _fake_server(
    handle: Callable[[bytes], bytes | None],
) -> tuple[asyncio.Server, int, list[bytes]]:
    """A TCP server that records what it is sent and answers through ``handle``."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.append(data)
            answer = handle(data)
            if answer:
                writer.write(answer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], received


async def test_a_server_that_stops_answering_fails_the_callers_after_the_timeout() -> None:
    server, port, received = await _fake_server(lambda data: None)
    client = aioredis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    batcher = CommandBatcher(client, timeout=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(batcher.execute("GET", "x"), 5)
        assert time.monotonic() - started < 2
        assert received  # it was asked
    finally:
        await batcher.aclose()
        await client.aclose()
        server.close()


async def test_a_refused_password_fails_the_callers_and_sends_no_command() -> None:
    server, port, received = await _fake_server(
        lambda data: b"-WRONGPASS invalid username-password pair\r\n" * data.count(b"*")
    )
    client = aioredis.Redis(
        host="127.0.0.1", port=port, password="wrong", retry=Retry(NoBackoff(), 0)
    )
    batcher = CommandBatcher(client)
    try:
        with pytest.raises(AuthenticationError):
            await asyncio.wait_for(batcher.execute("GET", "k"), 5)
        assert b"AUTH" in b"".join(received) and b"GET" not in b"".join(received)
    finally:
        await batcher.aclose()
        await client.aclose()
        server.close()


async def test_a_real_acl_user_on_another_database(redis: aioredis.Redis, redis_url: str) -> None:
    await redis.acl_setuser("batcher", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"])
    try:
        kwargs = dict(redis.connection_pool.connection_kwargs)
        kwargs.update(username="batcher", password="pw", db=5)
        kwargs.pop("connection_class", None)
        pool = aioredis.ConnectionPool(connection_class=redis.connection_pool.connection_class, **kwargs)
        other = aioredis.Redis.from_pool(pool)
        batcher = CommandBatcher(other)
        try:
            assert await batcher.execute("SET", "in5", "yes") is True
            assert await redis.get("in5") is None
            assert await other.get("in5") == b"yes"
            await other.flushdb()
        finally:
            await batcher.aclose()
            await other.aclose()
    finally:
        await redis.acl_deluser("batcher")


class _Proxy:
    """A TCP address in front of the test Redis (which may be a unix socket), counting the
    connections it was given: a stand-in for one Redis host that Sentinel can name."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        kwargs = aioredis.Redis.from_url(self.redis_url).connection_pool.connection_kwargs
        if "path" in kwargs:
            up_reader, up_writer = await asyncio.open_unix_connection(kwargs["path"])
        else:
            up_reader, up_writer = await asyncio.open_connection(
                kwargs.get("host", "localhost"), kwargs.get("port", 6379)
            )

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


class _FakeSentinels:
    """What a SentinelConnectionPool asks: the primary's address for a service."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.asked = 0

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        self.asked += 1
        return self.address


async def test_a_sentinel_managed_client_is_batched_through_its_own_pool(redis_url: str) -> None:
    """The batcher opens no connection of its own: a Sentinel pool's connections ask the
    Sentinels where the primary is, and after a failover the batches follow it."""
    async with _Proxy(redis_url) as old, _Proxy(redis_url) as new:
        sentinels = _FakeSentinels(("127.0.0.1", old.port))
        pool = SentinelConnectionPool("cinebot", sentinels, retry=Retry(NoBackoff(), 1))
        client = aioredis.Redis(connection_pool=pool)
        batcher = CommandBatcher(client, timeout=2.0)
        try:
            assert await asyncio.gather(
                *(batcher.execute("SET", f"seat:{i}", i) for i in range(20))
            ) == [True] * 20
            assert await batcher.execute("GET", "seat:7") == b"7"
            assert sentinels.asked >= 1 and old.connections >= 1 and new.connections == 0

            sentinels.address = ("127.0.0.1", new.port)  # the Sentinels name another primary
            await pool.disconnect()  # as a READONLY answer or the failover watch would
            assert await batcher.execute("INCR", "seat:7") == 8
            assert new.connections >= 1
        finally:
            await batcher.aclose()
            await client.aclose()


async def test_a_closed_batcher_refuses_new_commands(redis: aioredis.Redis) -> None:
    batcher = CommandBatcher(redis)
    assert await batcher.execute("PING") is True
    await batcher.aclose()
    with pytest.raises(RedisConnectionError):
        await batcher.execute("PING")
