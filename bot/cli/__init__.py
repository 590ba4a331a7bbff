"""``cinebot``, the command line: one module per command group; a composition root
(with ``bot.app``) that may import every layer."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bot.cli import chat, nlu, outbox, qr, roster, server, showtime, staff, telemetry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cinebot", description="影城微信/企业微信运营机器人")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (server, staff, showtime, roster, outbox, nlu, chat, telemetry, qr):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
