"""``cinebot chat | fakewx``: the terminal chat client and the local WeChat/WeCom API stand-in."""

from __future__ import annotations

import argparse
import asyncio

from bot.cli.common import load_settings


def cmd_fakewx(args: argparse.Namespace) -> int:
    from bot.wechat.standin import main as standin_main

    standin_main(["--host", args.host, "--port", str(args.port)])
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from bot.wechat.chatclient import run_chat

    return asyncio.run(run_chat(load_settings(), args))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fakewx", help="run the local stand-in for the WeChat/WeCom APIs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.set_defaults(func=cmd_fakewx)

    p = sub.add_parser("chat", help="talk to a running cinebot as a WeChat user or WeCom staff")
    p.add_argument("--url", default="http://127.0.0.1:8080")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--as", dest="openid", default="oCineBotDemoAudience0000001", help="audience openid")
    who.add_argument("--staff", dest="staff", help="WeCom userid, e.g. staff01")
    p.add_argument(
        "--plaintext", action="store_true",
        help="WeChat plaintext mode instead of safe mode "
        "(the server must run with CINEBOT_WECHAT_MESSAGE_MODE=compatible or plain)",
    )
    p.add_argument("--say", action="append", help="send this message and exit (repeatable)")
    p.add_argument(
        "--standin", help="the local API stand-in to watch for pushed messages (default: port+1)"
    )
    p.set_defaults(func=cmd_chat)
