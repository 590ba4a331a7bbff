"""Commands issued together reach Redis as one batch, and each caller gets its own answer —
the same answer redis-py would give — or hears that the connection failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import AuthenticationError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.infra import redisbatch
from bot.infra.redisbatch import CommandBatcher, pack


@pytest.fixture
async def batcher(redis: aioredis.Redis) -> AsyncIterator[CommandBatcher]:
    batcher = CommandBatcher(redis)
    yield batcher
    await batcher.aclose()


def _count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    write = redisbatch._Wire.write

    def counting(self, data, waiters):  # type: ignore[no-untyped-def]
        sizes.append(len(waiters))
        write(self, data, waiters)

    monkeypatch.setattr(redisbatch._Wire, "write", counting)
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


async def test_one_turns_commands_go_as_one_write_and_wait_for_the_one_in_flight(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _count_writes(monkeypatch)
    batcher = CommandBatcher(redis, max_inflight=1)
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


async def test_arguments_are_encoded_as_redis_py_encodes_them(batcher: CommandBatcher) -> None:
    await batcher.execute("SET", "text", "影城")
    await batcher.execute("SET", "bytes", b"\x00\xff")
    await batcher.execute("SET", "int", 42)
    await batcher.execute("SET", "float", 1.5)
    assert await batcher.redis.mget("text", "bytes", "int", "float") == [
        "影城".encode(), b"\x00\xff", b"42", b"1.5"
    ]
    assert pack(("GET", "k")) == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    with pytest.raises(TypeError):
        await batcher.execute("SET", "flag", True)
    small = CommandBatcher(batcher.redis, max_batch=2)
    try:
        calls = [small.execute("SET", "x", None) for _ in range(3)] + [small.execute("PING")]
        for call in calls[:3]:
            with pytest.raises(TypeError):
                await call
        assert await asyncio.wait_for(calls[3], 5) is True  # the batches after it still go
    finally:
        await small.aclose()
    assert await batcher.execute("GET", "text") == "影城".encode()  # the batch went on


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
    assert await batcher.eval(script, ["n"], [10]) == 12


async def test_a_lost_connection_fails_every_waiting_caller(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
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


async def test_a_killed_connection_fails_its_callers_and_the_next_command_reconnects(
    batcher: CommandBatcher,
) -> None:
    await batcher.execute("SET", "k", "v")
    name = f"batcher-{id(batcher)}"
    await batcher.execute("CLIENT", "SETNAME", name)
    # BLPOP holds the connection; killing it meanwhile loses the BLPOP and what queued behind.
    blocked = batcher.execute("BLPOP", "never", 5)
    queued = batcher.execute("GET", "k")
    await asyncio.sleep(0.05)
    assert await batcher.redis.client_kill_filter(_type="normal", skipme=True) >= 1
    for call in (blocked, queued):
        with pytest.raises(RedisConnectionError):
            await call
    assert await batcher.execute("GET", "k") == b"v"


async def _silent_server(handle: Callable[[bytes], bytes | None]) -> tuple[asyncio.Server, int, list[bytes]]:
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
    server, port, received = await _silent_server(lambda data: None)
    client = aioredis.Redis(host="127.0.0.1", port=port)
    batcher = CommandBatcher(client, timeout=0.2)
    try:
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(batcher.execute("GET", "x"), 5)
        assert received == [pack(("GET", "x"))]
    finally:
        await batcher.aclose()
        server.close()


async def test_password_username_and_database_are_sent_before_any_command() -> None:
    server, port, received = await _silent_server(lambda data: b"+OK\r\n" * data.count(b"*"))
    client = aioredis.Redis(host="127.0.0.1", port=port, username="bot", password="s3cret", db=4)
    batcher = CommandBatcher(client)
    try:
        assert await asyncio.wait_for(batcher.execute("SET", "k", "v"), 5) is True
        assert b"".join(received) == (
            pack(("AUTH", "bot", "s3cret")) + pack(("SELECT", 4)) + pack(("SET", "k", "v"))
        )
    finally:
        await batcher.aclose()
        server.close()


async def test_a_refused_password_fails_the_callers_and_sends_nothing_else() -> None:
    server, port, received = await _silent_server(
        lambda data: b"-WRONGPASS invalid username-password pair\r\n"
    )
    batcher = CommandBatcher(aioredis.Redis(host="127.0.0.1", port=port, password="wrong"))
    try:
        with pytest.raises(AuthenticationError):
            await asyncio.wait_for(batcher.execute("GET", "k"), 5)
        assert b"".join(received) == pack(("AUTH", "wrong"))
    finally:
        await batcher.aclose()
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


async def test_the_tls_path_goes_through_redis_py_pipelines(batcher: CommandBatcher) -> None:
    batcher._raw = False  # as for rediss:// URLs, where the batcher speaks through redis-py
    await batcher.redis.set("text", "not a number")
    results = await asyncio.gather(
        batcher.execute("SET", "a", "1"), batcher.execute("GET", "a"), return_exceptions=True
    )
    assert results == [True, b"1"]
    with pytest.raises(ResponseError):
        await batcher.execute("INCR", "text")


async def test_a_closed_batcher_refuses_new_commands(redis: aioredis.Redis) -> None:
    batcher = CommandBatcher(redis)
    assert await batcher.execute("PING") is True
    await batcher.aclose()
    with pytest.raises(RedisConnectionError):
        await batcher.execute("PING")


async def test_an_urgent_command_does_not_wait_for_the_batch_in_flight() -> None:
    gate = asyncio.Event()
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = 0

        def answer() -> None:  # everything received and not yet answered
            nonlocal answered
            count = b"".join(received).count(b"*") - answered
            writer.write(b"+OK\r\n" * count)
            answered += count

        async def answer_when_open() -> None:
            await gate.wait()  # answers are held back until then
            answer()

        opener = asyncio.ensure_future(answer_when_open())
        while data := await reader.read(65536):
            received.append(data)
            if gate.is_set():
                answer()
        opener.cancel()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    batcher = CommandBatcher(aioredis.Redis(host="127.0.0.1", port=port), max_inflight=1)
    try:
        first = batcher.execute("SET", "a", "1")
        for _ in range(50):
            if received:
                break
            await asyncio.sleep(0.01)
        assert received == [pack(("SET", "a", "1"))]  # in flight, unanswered
        normal = batcher.execute("SET", "b", "2")
        await asyncio.sleep(0.05)
        assert len(received) == 1  # a normal command waits for the batch in flight
        urgent = batcher.execute("SET", "c", "3", urgent=True)
        for _ in range(50):
            if len(received) > 1:
                break
            await asyncio.sleep(0.01)
        # The urgent one went at once, and took what was waiting along, in order.
        assert received[1] == pack(("SET", "b", "2")) + pack(("SET", "c", "3"))
        assert not first.done()
        gate.set()
        assert await asyncio.wait_for(asyncio.gather(first, normal, urgent), 5) == [True] * 3
    finally:
        await batcher.aclose()
        server.close()
