"""Test doubles that stand in for what lies outside cinebot (the clock), what a test asks of
the stand-in WeChat/WeCom API server and sees arrive there, and protocol helpers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot.app import DISPATCHER, HTTP, REDIS
from bot.wechat.api import WeChatApi, WeComApi
from bot.wechat.sender import ApiTransport, OutboxSender
from domain import outbox
from domain.outbox import OutboundMessage
from domain.people import Staff
from domain.workorders import Shift


class FakeClock:
    """A clock the test moves by hand. Starts at a fixed Saturday morning, Shanghai time."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 21, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai

    def now(self) -> datetime:
        return self._now

    def timestamp(self) -> float:
        return self._now.timestamp()

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)

    def set(self, when: datetime) -> None:
        self._now = when.astimezone(UTC)


def base_of(server: TestServer) -> str:
    """A test server's base URL, without the trailing slash (as API base settings are)."""
    return str(server.make_url("/")).rstrip("/")


class Standin:
    """The stand-in WeChat/WeCom API server (``bot.wechat.standin``, started by the
    ``standin`` fixture), and what a test asks of it over HTTP: what was "sent", which
    tokens were fetched, which calls failed, and the faults to inject next."""

    def __init__(self, server: TestServer, http: aiohttp.ClientSession) -> None:
        self.server, self.http = server, http

    @property
    def url(self) -> str:
        return base_of(self.server)

    @property
    def app(self) -> Any:
        return self.server.app

    def make_url(self, path: str) -> Any:
        return self.server.make_url(path)

    async def get(self, path: str, **params: Any) -> Any:
        async with self.http.get(self.make_url(path), params=params) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def post(self, path: str, body: Any) -> Any:
        async with self.http.post(self.make_url(path), json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def configure(self, **config: float) -> None:
        """Failure rates and latency from now on (``/standin/config``)."""
        await self.post("/standin/config", config)

    async def fault(self, mode: str, count: int = 1) -> None:
        """The next ``count`` calls presenting a token meet this fault."""
        await self.post("/standin/faults", {"mode": mode, "count": count})

    async def messages(self, **params: Any) -> list[dict[str, Any]]:
        return list((await self.get("/standin/messages", **params))["messages"])

    async def errors(self) -> list[dict[str, Any]]:
        return list((await self.get("/standin/errors"))["errors"])

    async def token_fetches(self) -> list[dict[str, Any]]:
        return list((await self.get("/standin/tokens"))["fetches"])

    async def assets(self) -> list[dict[str, Any]]:
        return list((await self.get("/standin/assets"))["assets"])



class Desk:
    """What a test does around an app whose WeChat and WeCom API is the stand-in (the
    ``desk`` fixture): rosters, the outbox worker, and what reached whose phone."""

    def __init__(self, client: Any, standin: Standin, clock: FakeClock) -> None:
        self.client, self.standin, self.clock = client, standin, clock
        app = client.app
        settings = app[DISPATCHER].deps["settings"]
        transport = ApiTransport(
            WeChatApi.from_settings(app[HTTP], app[REDIS], settings),
            WeComApi.from_settings(app[HTTP], app[REDIS], settings),
        )
        self.sender = OutboxSender(outbox, transport, clock, worker="test-worker")
        self.notify = app[DISPATCHER].deps["desk"]
        self.taps = 0

    async def on_duty(self, *people: tuple[str, str], hours: float = 8) -> None:
        """Exactly these people are on duty now, for ``hours`` more: (userid, team)."""
        await Shift.all().delete()
        now = self.clock.now()
        for userid, team in people:
            staff = await Staff.get(userid=userid)
            await Shift.create(
                cinema_id=staff.cinema_id, staff=staff, team=team,  # type: ignore[attr-defined]
                starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=hours),
            )

    async def deliver(self) -> None:
        """Run the outbox worker until nothing is due: cards really reach the stand-in."""
        while await self.sender.run_once():
            pass
        stuck = await OutboundMessage.filter(status__not="sent")
        assert not stuck, [(m.idempotency_key, m.status, m.last_error) for m in stuck]

    async def received(self, userid: str) -> list[dict[str, Any]]:
        return await self.standin.messages(to=userid)

    async def cards(self, userid: str) -> list[dict[str, Any]]:
        return [m["payload"]["template_card"] for m in await self.received(userid)
                if m["msgtype"] == "template_card"]

    async def titles(self, userid: str) -> list[str]:
        return [c["main_title"]["title"] for c in await self.cards(userid)]

    async def texts(self, userid: str) -> list[str]:
        return [m["payload"]["text"]["content"] for m in await self.received(userid)
                if m["msgtype"] == "text"]

    async def updates(self, userid: str) -> list[dict[str, Any]]:
        return [m["payload"] for m in await self.received(userid)
                if m["endpoint"] == "message/update_template_card"]

    async def click(self, userid: str, card: dict[str, Any], label: str) -> dict[str, Any]:
        """The stand-in plays WeCom: the event it would push when ``userid`` taps ``label``."""
        key = next(b["key"] for b in card["button_list"] if b["text"] == label)
        body = {"task_id": card["task_id"], "key": key, "userid": userid}
        fields = dict(await self.standin.post("/standin/click", body))
        # Taps a few seconds apart, as a person makes them (WeCom's retry identity of a click
        # is sender + second + card, whichever button).
        self.taps += 3
        fields["CreateTime"] += self.taps
        return fields

# The ``start_standin`` fixture: starts one more stand-in; ``build_standin_app``'s arguments.
StartStandin = Callable[..., Awaitable[Standin]]


# ---------------------------------------------------------------------------
# Helpers for the protocol tests: independent of bot.* so they can judge it.


def wx_signature(*parts: str) -> str:
    """WeChat's signature, computed here from the spec (sha1 of the sorted parts)."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def nonce() -> str:
    return secrets.token_hex(5)


def metric_value(exposition: str, sample: str, **labels: str) -> float:
    """The sum of the samples with these labels in a Prometheus text exposition (0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += float(s.value)
    return total


async def read_metric(client: Any, sample: str, **labels: str) -> float:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return metric_value(await resp.text(), sample, **labels)


def cinebot_command() -> list[str]:
    script = Path(sys.executable).with_name("cinebot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


async def cinebot(
    *args: str, database_url: str, redis_url: str, cwd: Path
) -> tuple[int, str, str]:
    """Run the real `cinebot` command in its own process, as an operator would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_")}
    env.update(CINEBOT_DATABASE_URL=database_url, CINEBOT_REDIS_URL=redis_url)
    proc = await asyncio.create_subprocess_exec(
        *cinebot_command(), *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()
