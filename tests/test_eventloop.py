"""The server's event loop: uvloop unless told otherwise (or where it is missing), and the
parts of the callback path that talk to sockets themselves work on it.

The rest of the suite runs on asyncio's loop (pytest-asyncio's); ``test_quickstart``
starts a real ``cinebot serve``, which runs on uvloop."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.infra import eventloop
from bot.infra.redisbatch import CommandBatcher
from bot.infra.settings import Settings, SettingsError


async def _loop_name() -> str:
    return eventloop.name(asyncio.get_running_loop())


def test_uvloop_by_default_and_asyncio_on_request() -> None:
    assert Settings().event_loop == "uvloop"
    assert Settings.from_mapping({"CINEBOT_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    assert eventloop.run(_loop_name(), "uvloop") == "uvloop"
    assert eventloop.run(_loop_name(), "asyncio") == "asyncio"


def test_an_unknown_loop_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="CINEBOT_EVENT_LOOP: expected uvloop or asyncio"):
        Settings.from_mapping({"CINEBOT_EVENT_LOOP": "trio"})
    with pytest.raises(ValueError, match="unknown event loop"):
        eventloop.loop_factory("trio")


def test_without_uvloop_the_server_runs_on_asyncio_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    with caplog.at_level(logging.WARNING, logger="bot.infra.eventloop"):
        assert eventloop.run(_loop_name(), "uvloop") == "asyncio"
    assert "uvloop is not installed" in caplog.text


def test_the_redis_batcher_on_uvloop(redis_url: str) -> None:
    """The batcher's pipelines run on uvloop (whose transports are not asyncio.Transport
    subclasses), and a lost connection must still fail its callers and reconnect."""

    async def scenario() -> None:
        assert await _loop_name() == "uvloop"
        # No retry: redis-py would send the lost batch again on a new connection.
        client = aioredis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
        batcher = CommandBatcher(client)
        try:
            await batcher.execute("DEL", "uvloop:n")
            counts = await asyncio.gather(*(batcher.execute("INCR", "uvloop:n") for _ in range(50)))
            assert sorted(counts) == list(range(1, 51))
            script = client.register_script("return ARGV[1] .. KEYS[1]")
            assert await batcher.eval(script, ["k"], ["v"], urgent=True) == b"vk"

            # The connection dies with a command on the wire: its caller hears of it ...
            waiting = batcher.execute("BLPOP", "uvloop:never", 5)
            await asyncio.sleep(0.05)
            assert await client.client_kill_filter(_type="normal", skipme=True) >= 1
            with pytest.raises(RedisConnectionError):
                await waiting
            # ... and the next command opens a new one.
            assert await batcher.execute("GET", "uvloop:n") == b"50"
        finally:
            await batcher.execute("DEL", "uvloop:n")
            await batcher.aclose()
            await client.aclose()

    eventloop.run(scenario(), "uvloop")
