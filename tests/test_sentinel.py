"""A Sentinel-managed Redis: every process reaches the primary the Sentinels name, and
follows them to the replica they promote when the primary dies or is failed over.

Each test runs its own small set: a primary redis-server, a replica (``--replicaof``) and
one Sentinel (quorum 1, down-after 1 s), on free ports in a temp dir. They need
``redis-server`` and ``redis-sentinel`` (or ``redis-server --sentinel``) on PATH, and skip
without them (Debian: ``apt-get install redis-server redis-sentinel``; ``.ci/run``
installs both before its first leg, so CI never skips).
"""

from __future__ import annotations

import ast
import asyncio
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import MasterNotFoundError, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.infra import storage
from bot.infra.redisbatch import CommandBatcher
from bot.infra.settings import Settings
from bot.infra.storage import describe_redis, open_redis

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "cinebot-test"
REDIS_SERVER = shutil.which("redis-server")
# Debian's redis-sentinel package; any redis-server runs as one with --sentinel.
SENTINEL_CMD = (
    [shutil.which("redis-sentinel")] if shutil.which("redis-sentinel")
    else [REDIS_SERVER, "--sentinel"] if REDIS_SERVER else None
)
FAILOVER_LIMIT_S = 30.0


def _free_port() -> int:
    """A free port below the ephemeral range: a port the kernel hands out (bind to 0) can be
    taken as the local port of some outgoing connection before our server binds it."""
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class SentinelSet:
    """A primary, its replica and one Sentinel watching them, as real processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.primary_port = _free_port()
        self.replica_port = _free_port()
        self.sentinel_port = _free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _server(self, name: str, port: int, *extra: str) -> None:
        workdir = self.root / name
        workdir.mkdir()
        assert REDIS_SERVER is not None
        self.procs[name] = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--logfile", str(workdir / "log"),
             # A replica's first sync starts at once, not after the default 5 s wait.
             "--repl-diskless-sync-delay", "0", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait(f"{name} answers PING", lambda: self.node(port).ping())

    def start(self) -> SentinelSet:
        self._server("primary", self.primary_port)
        self._server(
            "replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port)
        )
        self._wait(
            "the replica syncs",
            lambda: self.node(self.replica_port).info("replication")["master_link_status"] == "up",
        )
        conf = self.root / "sentinel.conf"  # Sentinel rewrites it: a file of its own
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.root}\n"
            f"logfile {self.root / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        assert SENTINEL_CMD is not None
        cmd = list(SENTINEL_CMD)
        cmd.insert(1, str(conf))
        self.procs["sentinel"] = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait("the Sentinel knows the replica", self._replica_known)
        return self

    def _replica_known(self) -> bool:
        replicas = self.node(self.sentinel_port).sentinel_slaves(SERVICE)
        return any(
            r["port"] == self.replica_port and not (r["is_sdown"] or r["is_odown"])
            and r.get("master-link-status") == "ok"
            for r in replicas
        )

    def node(self, port: int) -> redis.Redis:
        return redis.Redis("127.0.0.1", port, socket_timeout=1, socket_connect_timeout=1)

    def _wait(self, what: str, check, limit: float = 15.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + limit
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    log = self.root / ("sentinel.log" if name == "sentinel" else f"{name}/log")
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{tail}")
            try:
                if check():
                    return
            except (redis.RedisError, OSError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting until {what}")
            time.sleep(0.05)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
        for proc in self.procs.values():
            proc.wait()
        self.procs.clear()

    def settings(self, *sentinels: str) -> Settings:
        """The settings a production deployment would have, read the way the app reads them."""
        listed = ",".join(sentinels or (f"127.0.0.1:{self.sentinel_port}",))
        return Settings.from_env(
            environ={
                "CINEBOT_REDIS_SENTINELS": listed, "CINEBOT_REDIS_SENTINEL_SERVICE": SERVICE,
            },
            env_file=None,
        )


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    if SENTINEL_CMD is None:
        pytest.skip(
            "needs redis-server (and redis-sentinel) on PATH "
            "(Debian: apt-get install redis-server redis-sentinel; .ci/run installs them)"
        )
    for attempt in range(3):  # another process may still take a port between pick and bind
        cluster = SentinelSet(tmp_path / f"try{attempt}")
        try:
            cluster.start()
            break
        except RuntimeError as exc:
            cluster.stop()
            if "Address already in use" not in str(exc) or attempt == 2:
                raise
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def sentinel_redis(sentinels: SentinelSet, tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    """The client the app uses (bot.infra.storage.open_redis), for a Sentinel deployment."""
    settings = sentinels.settings()
    async with open_redis(settings.redis_url, str(tmp_path / "embedded.rdb")) as redis_client:
        yield redis_client
    assert not (tmp_path / "embedded.rdb").exists()  # no embedded Redis started on the side


async def _write_until_it_works(client: aioredis.Redis, key: str) -> float:
    """Seconds until a write succeeds again (the failover window); fails past the limit."""
    started = time.monotonic()
    while True:
        try:
            await client.set(key, "after")
            return time.monotonic() - started
        except (RedisConnectionError, RedisTimeoutError, ReadOnlyError, MasterNotFoundError):
            if time.monotonic() - started > FAILOVER_LIMIT_S:
                raise
            await asyncio.sleep(0.1)


async def test_the_app_redis_reaches_the_primary_through_the_sentinels(
    sentinels: SentinelSet, tmp_path: Path
) -> None:
    dead = _free_port()  # listed first: a Sentinel that is down is passed over
    settings = sentinels.settings(f"127.0.0.1:{dead}", f"127.0.0.1:{sentinels.sentinel_port}")
    async with open_redis(settings.redis_url, str(tmp_path / "embedded.rdb")) as client:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert isinstance(pool, aioredis.BlockingConnectionPool)  # bursts queue, as before
        # The plain client's limits and retry, so a failover fails a request fast (503).
        assert pool.max_connections == storage.REDIS_MAX_CONNECTIONS
        assert pool.timeout == 5
        kwargs = pool.connection_kwargs
        assert kwargs["socket_timeout"] == storage.REDIS_READ_TIMEOUT_S
        assert kwargs["socket_connect_timeout"] == storage.REDIS_CONNECT_TIMEOUT_S
        assert kwargs["retry"].get_retries() == 1

        await client.set("film", "流浪地球")
        assert await client.get("film") == "流浪地球".encode()
        # It really wrote to the primary the Sentinel names, not to some other server.
        assert pool.master_address == ("127.0.0.1", sentinels.primary_port)
        assert sentinels.node(sentinels.primary_port).get("film") == "流浪地球".encode()
        assert describe_redis(client) == (
            f"sentinel {SERVICE!r}, primary 127.0.0.1:{sentinels.primary_port}"
        )
    assert "Sentinel-managed" in settings.redis_target
    assert not (tmp_path / "embedded.rdb").exists()


async def test_an_unknown_service_or_no_sentinel_fails_at_start_with_a_clear_error(
    sentinels: SentinelSet, tmp_path: Path
) -> None:
    wrong = Settings.from_env(
        environ={
            "CINEBOT_REDIS_SENTINELS": f"127.0.0.1:{sentinels.sentinel_port}",
            "CINEBOT_REDIS_SENTINEL_SERVICE": "mymaster",
        },
        env_file=None,
    )
    with pytest.raises(MasterNotFoundError, match="No master found for 'mymaster'"):
        async with open_redis(wrong.redis_url, str(tmp_path / "embedded.rdb")):
            pass
    nobody = sentinels.settings(f"127.0.0.1:{_free_port()}")
    started = time.monotonic()
    with pytest.raises(MasterNotFoundError):
        async with open_redis(nobody.redis_url, str(tmp_path / "embedded.rdb")):
            pass
    assert time.monotonic() - started < 5
    assert not (tmp_path / "embedded.rdb").exists()


async def test_after_the_primary_is_killed_writes_reach_the_promoted_replica(
    sentinels: SentinelSet, sentinel_redis: aioredis.Redis
) -> None:
    await sentinel_redis.set("before", "kept")
    assert await sentinel_redis.execute_command("WAIT", 1, 2000) == 1  # the replica has it
    assert sentinel_redis.connection_pool.master_address == ("127.0.0.1", sentinels.primary_port)

    sentinels.kill("primary")
    window = await _write_until_it_works(sentinel_redis, "after")

    assert window < FAILOVER_LIMIT_S
    assert sentinel_redis.connection_pool.master_address == ("127.0.0.1", sentinels.replica_port)
    assert await sentinel_redis.get("before") == b"kept"
    replica = sentinels.node(sentinels.replica_port)
    assert replica.info("replication")["role"] == "master"
    assert replica.get("after") == b"after"  # the write went to the promoted replica


async def test_after_a_sentinel_failover_writes_go_to_the_new_primary_at_once(
    sentinels: SentinelSet, sentinel_redis: aioredis.Redis
) -> None:
    """The graceful kind (maintenance): the old primary stays up and takes writes until
    Sentinel demotes it, ten seconds or so later, and then drops them. The pooled
    connection to it must not be used meanwhile."""
    await sentinel_redis.set("before", "kept")  # leaves a pooled connection to the primary
    assert await sentinel_redis.execute_command("WAIT", 1, 2000) == 1
    sentinel = sentinels.node(sentinels.sentinel_port)
    sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
    sentinels._wait(
        "the Sentinel names the replica",
        lambda: sentinel.sentinel_get_master_addr_by_name(SERVICE)[1] == sentinels.replica_port,
    )
    switched = time.monotonic()

    new_primary = sentinels.node(sentinels.replica_port)
    n = 0
    while True:
        n += 1
        await _write_until_it_works(sentinel_redis, f"after:{n}")
        if new_primary.get(f"after:{n}") is not None:
            break
        assert time.monotonic() - switched < 5, "writes still go to the old primary"
        await asyncio.sleep(0.1)

    # Not Sentinel's demotion (READONLY) but the client's own check moved it.
    assert sentinels.node(sentinels.primary_port).info("replication")["role"] == "master"
    assert sentinel_redis.connection_pool.master_address == ("127.0.0.1", sentinels.replica_port)
    assert await sentinel_redis.get("before") == b"kept"


async def test_the_command_batcher_works_through_sentinel_and_follows_a_failover(
    sentinels: SentinelSet, sentinel_redis: aioredis.Redis
) -> None:
    batcher = CommandBatcher(sentinel_redis, timeout=2.0)
    try:
        assert await asyncio.gather(
            *(batcher.execute("SET", f"seat:{i}", i) for i in range(20))
        ) == [True] * 20
        assert await batcher.execute("GET", "seat:7") == b"7"
        assert sentinels.node(sentinels.primary_port).get("seat:7") == b"7"
        assert await sentinel_redis.execute_command("WAIT", 1, 2000) == 1

        sentinels.kill("primary")
        started = time.monotonic()
        while True:
            try:
                assert await batcher.execute("SET", "seat:after", "1") is True
                break
            except (RedisConnectionError, RedisTimeoutError, ReadOnlyError) as exc:
                if time.monotonic() - started > FAILOVER_LIMIT_S:
                    raise AssertionError(f"batcher still failing after failover: {exc!r}")
                await asyncio.sleep(0.1)
        assert sentinels.node(sentinels.replica_port).get("seat:after") == b"1"
        assert await batcher.execute("GET", "seat:7") == b"7"
    finally:
        await batcher.aclose()


# Where a Redis client may be made: the factory. Anything else would keep talking to a
# fixed address (or the embedded Redis) after a Sentinel failover.
_CLIENT_MAKERS = {"Redis", "StrictRedis", "from_url", "from_pool", "ConnectionPool",
                  "BlockingConnectionPool", "Sentinel", "master_for", "RedisCluster"}


def test_only_the_storage_factory_makes_redis_clients() -> None:
    """So every process — web, worker, jobs, the telemetry stream, CLI commands — follows
    a failover: they all get their client from bot.infra.storage.open_redis."""
    offenders = []
    for package in ("bot", "handlers", "domain", "telemetry", "jobs"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "bot" / "infra" / "storage.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in _CLIENT_MAKERS:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(...)")
    assert offenders == []
