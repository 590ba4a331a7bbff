"""What the console needs from the running app, reached via ``CONSOLE`` (set by ``bot.app``
at start-up): settings, the clock, Redis for sessions, the WeCom API for web login, and
the sections it shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from aiohttp import web

from bot.infra.clock import Clock
from bot.infra.settings import Settings
from bot.wechat.api import WeComApi
from handlers.console.base import Section


@dataclass
class Console:
    settings: Settings
    clock: Clock
    redis: aioredis.Redis
    wecom: WeComApi  # auth/getuserinfo for the web login
    sections: Sequence[Section] = field(default_factory=tuple)

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)


CONSOLE = web.AppKey("console", Console)
