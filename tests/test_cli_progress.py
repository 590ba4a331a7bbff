"""Long `cinebot` work shows its progress on stderr — a bar on a terminal, a few plain lines
in logs — while stdout carries nothing but the command's data; times are Shanghai time."""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

import bot.cli
import domain
from bot.cli import main
from bot.infra.progress import BYTES, Progress
from bot.infra.storage import open_database
from domain.outbox import enqueue
from tests.support import FakeClock, cinebot_command

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def on_a_terminal(write: Callable[[io.TextIOBase], None]) -> str:
    """What ``write`` draws on a real pseudo-terminal (120 columns), control codes and all."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    seen: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(master, seen))
    reader.start()
    with open(slave, "w", encoding="utf-8", closefd=True) as tty:
        write(tty)
    reader.join(10)
    os.close(master)
    return b"".join(seen).decode("utf-8", "replace")


def _drain(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            return
        if not chunk:
            return
        into.append(chunk)


def run_with_terminal_stderr(
    args: list[str], cwd: Path, stdin: Path | None = None
) -> tuple[int, str, str]:
    """`cinebot ARGS` as in a terminal with its stdout redirected (`cinebot ... > out.jsonl`)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_")}
    env.update(TERM="xterm-256color", CINEBOT_DATABASE_URL=f"sqlite://{cwd / 'db.sqlite3'}",
               CINEBOT_NLU_CACHE=os.environ.get("CINEBOT_NLU_CACHE", ""))
    env.pop("NO_COLOR", None)
    stdin_file = stdin.open("rb") if stdin else subprocess.DEVNULL
    try:
        proc = subprocess.Popen([*cinebot_command(), *args], cwd=cwd, env=env, stdin=stdin_file,
                                stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
        if stdin:
            stdin_file.close()  # type: ignore[union-attr]
    seen: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(master, seen))
    reader.start()
    out, _ = proc.communicate(timeout=120)
    reader.join(10)
    os.close(master)
    return proc.returncode, out.decode(), b"".join(seen).decode("utf-8", "replace")


@pytest.fixture
def readings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Three simulated days of two projectors, one of whose fans fails."""
    path = tmp_path / "r.jsonl"
    assert main(["telemetry", "simulate", "--devices", "2", "--days", "3", "--interval-s", "300",
                 "--faults", "fan_failure:1", "--out", str(path)]) == 0
    capsys.readouterr()
    return path


# --- the helper ---------------------------------------------------------------------------------

def test_on_a_terminal_the_helper_draws_a_live_bar() -> None:
    def work(tty: io.TextIOBase) -> None:
        bar = Progress("回放读数", 36_800_000, unit=BYTES, stream=tty)  # type: ignore[arg-type]
        assert bar.mode == "bar"
        for i in range(11):
            bar.update(i * 3_680_000, note=f"{i * 1000:,} 条")
            time.sleep(0.03)
        bar.close()

    screen = on_a_terminal(work)
    assert "\x1b[" in screen  # drawn and redrawn in place, not printed line after line
    text = ANSI.sub("", screen)
    assert "回放读数" in text and "━" in text
    assert "100% 36.8/36.8 MB" in text and "10,000 条" in text


def test_without_a_terminal_the_helper_writes_a_line_per_tenth_then_a_last_one() -> None:
    log = io.StringIO()
    bar = Progress("评估", 1000, stream=log, min_gap_s=0)
    assert bar.mode == "lines"
    with bar:
        for done in range(0, 1001, 5):
            bar.update(done)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()
    tenths = [f"评估：{p}%" for p in range(10, 100, 10)]
    assert [line.split("（")[0] for line in lines] == [*tenths, "评估：完成"]
    assert lines[4].startswith("评估：50%（500/1,000 条）· 已用 ") and "约剩" in lines[4]
    assert lines[-1].startswith("评估：完成（1,000/1,000 条）· 用时 ")


def test_without_a_terminal_a_short_run_says_nothing_and_lines_are_two_seconds_apart() -> None:
    log = io.StringIO()
    with Progress("评估", 1000, stream=log) as bar:  # the defaults: lines at least 2 s apart
        for done in range(1001):
            bar.update(done)
    assert log.getvalue() == ""  # the command's own summary is enough

    now = [0.0]
    bar = Progress("评估", 100, stream=log, clock=lambda: now[0])
    for done in range(101):
        now[0] = done * 0.1  # 10 s in all: one line a tenth, but no two within 2 s
        bar.update(done)
    bar.close()
    assert [line.split("（")[0] for line in log.getvalue().splitlines()] == [
        "评估：20%", "评估：40%", "评估：60%", "评估：80%", "评估：完成"
    ]


def test_an_unknown_total_is_counted_and_an_early_end_says_where_it_stopped() -> None:
    log = io.StringIO()
    now = [0.0]
    bar = Progress("回放读数", None, stream=log, clock=lambda: now[0])
    for n in range(0, 50_001, 5000):
        now[0] = n / 1000  # 5 s per 5,000: a line every 10 s
        bar.update(n)
    bar.stop()
    assert log.getvalue().splitlines() == [
        "回放读数：已处理 10,000 条 · 已用 10.0 秒",
        "回放读数：已处理 20,000 条 · 已用 20.0 秒",
        "回放读数：已处理 30,000 条 · 已用 30.0 秒",
        "回放读数：已处理 40,000 条 · 已用 40.0 秒",
        "回放读数：已处理 50,000 条 · 已用 50.0 秒",
        "回放读数：中止于（50,000 条）· 已用 50.0 秒",
    ]


def test_a_long_silent_step_still_gets_its_line() -> None:
    log = io.StringIO()
    with Progress("训练模型", 3, unit="步", stream=log, eta=False, min_gap_s=0.3) as bar:
        bar.update(1, note="意图模型：拟合")  # too soon for a line ...
        time.sleep(1.0)  # ... and the fit reports nothing while it runs
        assert log.getvalue().startswith("训练模型：33%（1/3 步 · 意图模型：拟合）· 已用 ")
    assert log.getvalue().splitlines()[-1].startswith("训练模型：完成（3/3 步 · 意图模型：拟合）")


def test_messages_during_a_bar_are_printed_above_it_whole() -> None:
    screen = io.StringIO()
    with Progress("回放读数", 10, stream=screen, mode="bar") as bar:
        bar.update(3)
        bar.messages.write("第 3 行不是 JSON / line 3: Expecting value\n")
        bar.update(10)
    text = ANSI.sub("", screen.getvalue())
    assert "\n第 3 行不是 JSON / line 3: Expecting value\n" in text.replace("\r", "\n")
    assert "100% 10/10 条" in text


# --- real commands ------------------------------------------------------------------------------

def test_replay_on_a_terminal_draws_the_bar_on_stderr_and_keeps_stdout_clean_json(
    readings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["telemetry", "replay", str(readings)]) == 0
    piped_out, piped_err = capsys.readouterr()
    events = [json.loads(line) for line in piped_out.splitlines()]
    assert events
    # In a log: the summary, no bar, no control characters.
    assert "已回放" in piped_err and "\x1b" not in piped_err and "\r" not in piped_err

    code, out, screen = run_with_terminal_stderr(["telemetry", "replay", str(readings)], tmp_path)
    assert code == 0
    assert out == piped_out  # the very same JSON lines, nothing else
    assert "\x1b" not in out and "回放" not in out
    text = ANSI.sub("", screen)
    assert "回放读数" in text and "━" in text and "100%" in text and "kB" in text
    assert "已回放" in text

    # From stdin the size is unknown: the bar counts readings.
    code, out, screen = run_with_terminal_stderr(
        ["telemetry", "replay", "-"], tmp_path, stdin=readings
    )
    assert code == 0 and out == piped_out
    count = sum(1 for line in readings.read_text().splitlines() if line.strip())
    assert f"{count:,} 条" in ANSI.sub("", screen)


def test_simulate_on_a_terminal_counts_the_readings_it_writes(tmp_path: Path) -> None:
    code, out, screen = run_with_terminal_stderr(
        ["telemetry", "simulate", "--devices", "2", "--days", "1", "--out", "r.jsonl"], tmp_path
    )
    assert code == 0 and out == ""
    count = len((tmp_path / "r.jsonl").read_text().splitlines())
    text = ANSI.sub("", screen)
    assert "模拟读数" in text and f"100% {count:,}/{count:,} 条" in text and "写入 r.jsonl" in text


def test_bad_simulation_parameters_leave_only_the_message(tmp_path: Path) -> None:
    code, _, screen = run_with_terminal_stderr(
        ["telemetry", "simulate", "--devices", "2", "--days", "1", "--faults", "meteor:1",
         "--out", "r.jsonl"], tmp_path
    )
    assert code == 2 and "模拟参数有误" in screen


# --- times --------------------------------------------------------------------------------------

# (The time format itself: tests/test_clock.py.)

def test_outbox_list_shows_when_each_message_was_made_in_shanghai_time(
    database_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CINEBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("CINEBOT_REDIS_URL", redis_url)
    clock = FakeClock()  # 2026-11-21 02:30 UTC, 10:30 in Shanghai
    for group in vars(bot.cli).values():
        if isinstance(group, ModuleType) and hasattr(group, "SystemClock"):
            monkeypatch.setattr(group, "SystemClock", lambda: clock)

    async def messages() -> None:
        async with open_database(database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            for key, at in (("today", datetime(2026, 11, 21, 2, 5, 9, tzinfo=UTC)),
                            ("earlier", datetime(2026, 11, 19, 17, 0, 0, tzinfo=UTC))):
                await enqueue(channel="wecom", recipient="staff01", payload={"msgtype": "text"},
                              idempotency_key=f"test:{key}", now=at)

    asyncio.run(messages())
    assert main(["outbox", "list"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 2
    assert rows[0].endswith("尝试0次  11月20日 01:00:00")  # newest id first: the earlier one
    assert rows[1].endswith("尝试0次  10:05:09")  # today in Shanghai: the clock alone
    assert not any("02:05:09" in row or "17:00:00" in row for row in rows)  # never UTC
