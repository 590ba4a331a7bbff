"""``cinebot``, the command line: one module per command group; a composition root
(with ``bot.app``) that may import every layer."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from bot.cli import chat, console, digest, nlu, outbox, qr, roster, rollups, server, showtime, staff, telemetry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cinebot", description="影城微信/企业微信运营机器人")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (server, staff, showtime, roster, outbox, nlu, chat, telemetry, qr, console, digest, rollups):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (`cinebot showtime list | head`): stop quietly, like other
        # Unix tools, and keep Python's exit-time flush of stdout from failing again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a file descriptor
            pass
        return 0
