"""Redis outages, told once: requests fail fast with a 503 and the log gets one line per
interval (with how many failures it stands for), not a traceback per request."""

from __future__ import annotations

import logging
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What an unreachable (stopped, restarting, loading) Redis raises through redis-py or
# the command batcher (which maps socket errors to these). ``BusyLoadingError`` is a
# ``RedisConnectionError``.
STORE_DOWN: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)


class OutageLog:
    def __init__(self, logger: logging.Logger, what: str, every: float = 10.0) -> None:
        self.logger = logger
        self.what = what
        self.every = every
        self._last = float("-inf")
        self._suppressed = 0

    def report(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._suppressed += 1
            return
        self.logger.error(
            self.what,
            extra={"error": f"{type(exc).__name__}: {exc}", "since_last": self._suppressed},
        )
        self._last = now
        self._suppressed = 0
