"""Commands issued together reach Redis as one pipeline, and each caller gets its own answer."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bot.redisbatch import CommandBatcher


async def test_concurrent_commands_each_get_their_own_result(redis: aioredis.Redis) -> None:
    batcher = CommandBatcher(redis)
    results = await asyncio.gather(
        *(batcher.execute("SET", f"k{i}", str(i), "NX") for i in range(50)),
        batcher.execute("SET", "k0", "again", "NX"),
    )
    assert results[:50] == [True] * 50
    assert results[50] is None  # NX refused: the first one won
    values = await asyncio.gather(*(batcher.execute("GET", f"k{i}") for i in range(50)))
    assert values == [str(i).encode() for i in range(50)]


async def test_an_error_in_one_command_reaches_only_its_caller(redis: aioredis.Redis) -> None:
    batcher = CommandBatcher(redis)
    await redis.set("text", "not a number")
    good = batcher.execute("SET", "fine", "1")
    bad = batcher.execute("INCR", "text")
    assert await good is True
    with pytest.raises(ResponseError):
        await bad


async def test_a_lost_connection_fails_every_waiting_caller(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    batcher = CommandBatcher(client)
    await client.aclose()
    client.connection_pool.connection_kwargs["path" if redis_url.startswith("unix") else "port"] = (
        "/nonexistent/redis.sock" if redis_url.startswith("unix") else 1
    )
    calls = [batcher.execute("GET", "x") for _ in range(3)]
    for call in calls:
        with pytest.raises(Exception):
            await call
