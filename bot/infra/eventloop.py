"""The event loop a long-running process runs on.

``uvloop`` (libuv) by default: the callback path is a chain of short steps — read a
request, a Redis batch, a handler task, write a reply — and each step costs less on
libuv than on asyncio's own loop. ``CINEBOT_EVENT_LOOP=asyncio`` picks asyncio's loop;
so does a machine without uvloop (Windows, say), with a warning. Tests run on asyncio's
loop (pytest-asyncio's default) and a few run the same code on uvloop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
CHOICES = ("uvloop", "asyncio")  # CINEBOT_EVENT_LOOP
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str) -> LoopFactory | None:
    """The factory for ``asyncio.Runner``; None means asyncio's own loop."""
    if choice == "asyncio":
        return None
    if choice not in CHOICES:
        raise ValueError(f"unknown event loop {choice!r}; expected one of {', '.join(CHOICES)}")
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed; running on asyncio's own event loop")
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """``asyncio.run(main)`` on the chosen loop (Ctrl-C cancels ``main`` the same way)."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)


def name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: what a running loop is, for logs and the benchmark."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
