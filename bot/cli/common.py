"""Helpers every command uses: settings from the environment, waiting for a signal, times
as the cinema reads them, columns that line up with Chinese text."""

from __future__ import annotations

import asyncio
import signal
import sys
import unicodedata
from datetime import UTC, datetime

from bot.infra.clock import SHANGHAI
from bot.infra.settings import Settings, SettingsError


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"配置错误 / configuration error:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def cinema_time(moment: datetime, now: datetime, seconds: bool = False) -> str:
    """A time as the chat shows it: Shanghai time, ``HH:MM`` when it is today there, else
    ``M月D日 HH:MM`` — never UTC. ``seconds``: ``HH:MM:SS`` (for logs-like listings)."""
    if moment.tzinfo is None:  # stored times are UTC
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(SHANGHAI)
    clock = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
    if local.date() == now.astimezone(SHANGHAI).date():
        return clock
    return f"{local.month}月{local.day}日 {clock}"


def pad(text: str, width: int) -> str:
    """Left-aligned in a terminal, where a Chinese character takes two columns."""
    used = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(width - used, 1)
