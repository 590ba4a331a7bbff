"""``cinebot serve`` whose work orders take ``CINEBOT_TEST_SLOW_WORK_ORDER_S`` seconds to
open: a test double for a slow database, so that a real server process overruns its
handler budget at a known point (tests/test_trust_delivery.py kills it there).

Run as ``python -m tests.slow_serve serve --port P``."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import handlers.workorders
from bot.cli import main

_DELAY = float(os.environ.get("CINEBOT_TEST_SLOW_WORK_ORDER_S", "0"))
_open_order = handlers.workorders.open_order


async def _slow_open_order(*args: Any, **kwargs: Any) -> Any:
    await asyncio.sleep(_DELAY)
    return await _open_order(*args, **kwargs)


handlers.workorders.open_order = _slow_open_order

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
