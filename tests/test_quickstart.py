"""The README's quick start, as a newcomer runs it: `cinebot serve --demo`, then `cinebot chat`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.wechat.chatclient import ChatSession, StandinWatcher, card_event_xml, render_for_terminal
from bot.infra.settings import Settings
from bot.wechat.api import WeComApi, button_card

CINEBOT = str(Path(sys.executable).with_name("cinebot"))


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        with socket.socket() as b:
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A real `cinebot serve --demo` in an empty directory, with only the defaults."""
    port = _free_port_pair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_") or k == "CINEBOT_NLU_CACHE"}
    proc = subprocess.Popen(
        [CINEBOT, "serve", "--demo", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError("serve did not come up within 60 s")
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        # With only the defaults, the server runs on uvloop (bot.infra.eventloop).
        assert '"event_loop": "uvloop"' in err, err[-3000:]


def _chat(url: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_") or k == "CINEBOT_NLU_CACHE"}
    done = subprocess.run(
        [CINEBOT, "chat", "--url", url, *args],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_newcomer_says_hello_and_asks_for_showtimes(server: str) -> None:
    out = _chat(server, "--say", "你好", "--say", "今晚哪吒2几点", "--say", "天气怎么样")
    assert "cinebot 示例影城的小助手" in out
    assert "[查排片]" in out
    assert "哪吒之魔童闹海" in out or "没有可看的场次" in out
    assert "帮不上忙" in out


def test_staff_and_strangers_in_wecom(server: str) -> None:
    assert "李小青" in _chat(server, "--staff", "staff01", "--say", "你好")
    assert "还没有开通" in _chat(server, "--staff", "stranger01", "--say", "你好")


async def test_a_card_pushed_to_staff_shows_up_in_chat_and_its_button_can_be_clicked(
    server: str, redis: aioredis.Redis
) -> None:
    standin = server.rsplit(":", 1)[0] + ":" + str(int(server.rsplit(":", 1)[1]) + 1)
    settings = Settings()
    async with aiohttp.ClientSession() as http:
        watcher = StandinWatcher(standin, "staff01")
        assert await watcher.start(http)
        # Sends the card as the outbox would (through the stand-in the demo server started).
        api = WeComApi(http, redis, standin, settings.wecom_corp_id,
                       settings.wecom_agent_id, settings.wecom_secret)
        card = button_card(
            "demo-card-1", "3号厅太冷", "请送毯子 · 30 分钟内",
            # An order the demo (with its history of work orders) does not have.
            [("位置", "3号厅 5排")], [("wo:ack:999999", "接单", 1), ("wo:pass:999999", "转派", 2)],
        )
        await api.send(["staff01"], {"msgtype": "template_card", "template_card": card})
        shown = "\n".join(await watcher.poll(http))
        assert "3号厅太冷" in shown and "[接单] /click wo:ack:999999" in shown
        fields = await watcher.click(http, "wo:ack:999999")
        assert fields is not None and fields["ResponseCode"]
        session = ChatSession(settings, server, "staff01", staff=True)
        reply = await session.post(http, card_event_xml(fields))
        # No feature claims work-order buttons yet: the staff member is told plainly.
        assert "卡片已失效" in render_for_terminal(reply)


def test_clicking_an_option_of_the_last_reply_sends_its_text(server: str) -> None:
    out = _chat(server, "--say", "你好", "--say", "/click 影城地址")
    assert "地址：上海市徐汇区" in out
