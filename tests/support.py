"""Test doubles that stand in for what lies outside cinebot (the clock), and protocol helpers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


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
