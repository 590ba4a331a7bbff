"""Chaos: are WeChat callbacks answered 200 really handled, once, through crashes and outages?

    .venv/bin/python bench/chaos.py [--web 3] [--workers 1] [--messages 1500] [--rate 30]
                                    [--budget 0.5] [--duration S] [--no-chaos] [--seed 1]

What it starts (all private, on free ports, under one temp dir, stopped on exit):

- a throwaway PostgreSQL cluster (Debian's binaries, run as the ``postgres`` user when
  this script runs as root, like ``.ci/run``);
- ``redis-server --appendonly yes``, so stopping and starting it keeps its data;
- the WeChat/WeCom API stand-in (``cinebot fakewx``), which records every message the
  outbox sends;
- ``cinebot demo`` once, then ``--web`` N × ``cinebot serve --role web`` and ``--workers``
  M × ``cinebot worker`` against them. ``--budget`` sets ``CINEBOT_HANDLER_BUDGET`` (the
  bench's default is low so that handlers overrun and take the "answer ``success``,
  finish later" path).

Traffic: ``--messages`` signed, AES-encrypted text callbacks, exactly as WeChat sends
them, at ``--rate`` per second (open loop), from many audience openids, each to a random
web process. A message is retried like WeChat does: an attempt without a 200 within 5 s
(timeout, connection refused/reset, any non-200 status) is sent again, same XML and
MsgId with a fresh timestamp, nonce and signature, 5 s after the previous attempt began,
to any process, at most 3 times. A message is *answered* once an attempt got a 200.

What is said, and how its effect is found afterwards:

- complaints and fault reports (「3号厅空调太冷了」, 「5号厅7排8座扶手断了」, …): a work
  order whose ``source_key`` is ``wechat:<dedup key>``;
- 「转人工」 (at most once per openid): the hand-off's outbox rows
  (``handoff:<openid>:<ten-minute bucket>:<responder>``);
- greetings and showtimes questions: the reply — the synchronous XML answer, or the
  late reply's outbox row (``late-reply:<dedup key>``).

Chaos (unless ``--no-chaos``), spread over the traffic: SIGKILL a web process three
times and a worker once (each restarted on the same port a second later), and stop
Redis for 10 s once (``--redis-outage shutdown``: SIGTERM, which flushes the AOF, then a
new server on the same data; or ``sigstop``: SIGSTOP/SIGCONT).

After the traffic, the bench waits (``--settle``, 60 s) for the inbound journal, the
hand-off lists and the late/hand-off outbox rows to drain, then audits PostgreSQL, Redis
and the stand-in and prints the figures. Targets: 0 lost (answered 200, no effect),
0 handled twice, 0 double-sold, 0 unauthenticated 500s (any 5xx but 503). Exit status 1
when a target is missed; the temp dir with every process's log is then kept and its path
printed, with the log lines that mention each lost or duplicated message's sender.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from bench._common import (  # noqa: E402
    Postgres, Proc, as_postgres, find_pgbin, free_port, now, redis_command, redis_version, target,
    wait_for_redis, wait_http, wait_log,
)
from bot.chat.channels import Channel, Inbound  # noqa: E402
from bot.wechat.chatclient import WeChatSigner, next_msg_id, text_xml  # noqa: E402
from bot.chat.dedup import JOURNAL_KEY  # noqa: E402
from bot.infra.logs import short_openid  # noqa: E402
from bot.infra.settings import Settings  # noqa: E402
from handlers.handoff import QUEUE as HANDOFF_QUEUE  # noqa: E402
from handlers.handoff import WORK as HANDOFF_WORK  # noqa: E402

ACCOUNT = "gh_cinebotdemo"
CINEBOT = str(Path(sys.executable).with_name("cinebot"))
ATTEMPT_TIMEOUT = 5.0  # WeChat drops a callback that has not answered in 5 s
RETRIES = 3  # ... and sends it again, three times at most
OPENID_CHARS = string.ascii_letters + string.digits + "_-"

HALLS = ("1号厅", "2号厅", "3号厅", "4号厅", "5号厅", "IMAX厅")
# Each of these, after any hall, is read as a complaint or a fault report by the product's
# NLU (checked with `cinebot nlu parse`; 「3号厅声音太小了」, say, is not, and would count
# as lost here without being one).
COMPLAINTS = ("空调太冷了", "太热了", "地上很脏", "屏幕好暗", "有人一直打电话", "画面太模糊了", "音响有杂音")
FAULTS = ("扶手断了", "椅子坏了", "杯架掉了", "靠背坏了")
GREETINGS = ("你好", "在吗", "您好")
SHOWTIMES = ("今天有什么电影", "明天有什么电影", "今天有哪些场次")
# kind → weight in the mix
MIX = {"complaint": 30, "fault": 20, "greeting": 17, "showtimes": 18, "handoff": 15}
SHANGHAI = ZoneInfo("Asia/Shanghai")
CN_COUNT = {2: "两", 3: "三", 4: "四", 5: "五", 6: "六"}
PAY_LINK = re.compile(r'/pay/([A-Za-z0-9_.=-]+)')
ORDER_NO = re.compile(r"订单号\s*([A-Za-z0-9]+)")
LATE_WAIT = 45.0  # how long a buyer waits for a late reply (outbox) after a 200 "success"
PAY_TIMEOUT = 20.0


# --------------------------------------------------------------------------- processes


def apt_install(*packages: str) -> None:
    """Debian packages, without letting them start their default services."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(f"need {' '.join(packages)}: install them (apt-get install -y ...)")
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
        if subprocess.run(cmd, env=env).returncode:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
            subprocess.run(cmd, env=env, check=True)
    finally:
        if ours:
            policy.unlink(missing_ok=True)


class Stack:
    """PostgreSQL, Redis, the API stand-in, web processes and workers: started here,
    stopped on exit whatever happens."""

    def __init__(self, keep: bool = False) -> None:
        self.workdir = tempfile.mkdtemp(prefix="cinebot-chaos-")
        os.chmod(self.workdir, 0o755)
        self.keep = keep
        self.pg: Postgres | None = None
        self.pg_url = ""
        self.redis: Proc | None = None
        self.redis_port = 0
        self.redis_url = ""
        self.standin: Proc | None = None
        self.standin_url = ""
        self.webs: list[Proc] = []
        self.workers: list[Proc] = []
        self.env: dict[str, str] = {}

    # PostgreSQL ---------------------------------------------------------------------------
    def start_postgres(self) -> str:
        pgbin = find_pgbin()
        if pgbin is None:
            apt_install("postgresql")
            pgbin = find_pgbin()
            if pgbin is None:
                raise SystemExit("PostgreSQL binaries not found after install")
        as_pg = as_postgres()
        if as_pg is None:
            raise SystemExit("running as root without runuser: PostgreSQL cannot be started")
        self.pg = Postgres(pgbin, self.workdir, as_pg)
        self.pg.start(max_connections=300)
        password = secrets.token_hex(12)
        self.pg.psql(
            f"CREATE ROLE cinebot LOGIN PASSWORD '{password}'",
            "CREATE DATABASE cinebot OWNER cinebot ENCODING 'UTF8' TEMPLATE template0",
        )
        self.pg_url = f"postgres://cinebot:{password}@127.0.0.1:{self.pg.port}/cinebot"
        return f"{self.pg.version} on 127.0.0.1:{self.pg.port}"

    # Redis --------------------------------------------------------------------------------
    def start_redis(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            apt_install("redis-server")
            binary = shutil.which("redis-server")
            if binary is None:
                raise SystemExit("redis-server not found after install")
        self.redis_port = free_port()
        rdir = os.path.join(self.workdir, "redis")
        os.makedirs(rdir)
        self.redis = Proc(
            "redis", redis_command(binary, self.redis_port, rdir, appendonly=True),
            dict(os.environ), self.workdir,
        )
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis_up()
        return f"{redis_version(binary)} on 127.0.0.1:{self.redis_port}, appendonly"

    def redis_up(self) -> None:
        assert self.redis is not None
        self.redis.start()
        wait_for_redis(self.redis_url, self.redis)

    def redis_down(self) -> None:
        """A clean stop: SIGTERM makes redis-server flush its AOF before it exits."""
        assert self.redis is not None
        self.redis.stop(grace=20)

    # cinebot ------------------------------------------------------------------------------
    def cinebot_env(self, budget: float) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_")}
        env.update(
            CINEBOT_DATABASE_URL=self.pg_url,
            CINEBOT_REDIS_URL=self.redis_url,
            CINEBOT_WECHAT_API_BASE=self.standin_url,
            CINEBOT_WECOM_API_BASE=self.standin_url,
            CINEBOT_HANDLER_BUDGET=str(budget),
            CINEBOT_LOG_FORMAT="json",
            CINEBOT_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start_standin(self) -> None:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_")}
        self.standin = Proc("standin", [CINEBOT, "fakewx", "--port", str(port)], env, self.workdir, port)
        self.standin_url = f"http://127.0.0.1:{port}"

    def demo(self, env: dict[str, str]) -> str:
        done = subprocess.run([CINEBOT, "demo"], env=env, cwd=self.workdir, capture_output=True,
                              text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(f"cinebot demo failed:\n{done.stdout}{done.stderr}")
        return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""

    def add_web(self, env: dict[str, str]) -> Proc:
        port = free_port()
        proc = Proc(f"web{len(self.webs) + 1}",
                    [CINEBOT, "serve", "--role", "web", "--host", "127.0.0.1", "--port", str(port)],
                    env, self.workdir, port)
        self.webs.append(proc)
        return proc

    def add_worker(self, env: dict[str, str]) -> Proc:
        proc = Proc(f"worker{len(self.workers) + 1}", [CINEBOT, "worker"], env, self.workdir)
        self.workers.append(proc)
        return proc

    def stop(self, keep: bool) -> None:
        for proc in [*self.webs, *self.workers, self.standin]:
            if proc is not None:
                try:
                    proc.stop()
                except Exception:  # noqa: BLE001 - cleanup goes on
                    proc.kill()
        if self.redis is not None:
            if self.redis.alive() and self.redis.popen is not None:
                os.kill(self.redis.popen.pid, signal.SIGCONT)  # in case it was SIGSTOPped
            self.redis.stop()
        if self.pg is not None:
            self.pg.stop()
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------- traffic


@dataclass
class Attempt:
    at: float  # seconds since the traffic began
    port: int
    outcome: str  # "200", "503", "500", ..., "timeout", "refused", "reset", "error:<kind>"
    reply: str | None = None  # Content of an XML reply


@dataclass
class Message:
    idx: int
    kind: str
    openid: str
    text: str
    msg_id: int
    xml: str
    attempts: list[Attempt] = field(default_factory=list)
    answered: bool = False
    done: bool = False

    @property
    def dedup_key(self) -> str:
        return Inbound(Channel.WECHAT, "text", self.openid, ACCOUNT, 0, msg_id=self.msg_id).dedup_key

    @property
    def source_key(self) -> str:
        # handlers.workorders.open_from_chat: f"{msg.channel}:{msg.dedup_key}"
        return f"{Channel.WECHAT}:{self.dedup_key}"

    @property
    def sync_reply(self) -> str | None:
        for a in self.attempts:
            if a.outcome == "200" and a.reply:
                return a.reply
        return None


def make_openid(rng: random.Random, tag: str) -> str:
    # WeChat openids: 28 characters of [A-Za-z0-9_-]; "oCh" keeps clear of the stand-in's
    # failing prefixes (o_invalid…, o_out_of_window…).
    return "oCh" + tag + "".join(rng.choice(OPENID_CHARS) for _ in range(28 - 3 - len(tag)))


def plan(count: int, seed: int) -> list[Message]:
    rng = random.Random(seed)
    tag = "".join(rng.choice(string.ascii_letters) for _ in range(3))
    users = [make_openid(rng, tag) for _ in range(max(20, count // 4))]
    handed_off: set[str] = set()
    kinds, weights = zip(*MIX.items(), strict=True)
    out: list[Message] = []
    for i in range(count):
        openid = rng.choice(users)
        kind = rng.choices(kinds, weights)[0]
        if kind == "handoff" and openid in handed_off:
            kind = "greeting"  # one hand-off per person per ten minutes is all there is
        if kind == "complaint":
            text = rng.choice(HALLS) + rng.choice(COMPLAINTS)
        elif kind == "fault":
            text = f"{rng.choice(HALLS)}{rng.randint(1, 8)}排{rng.randint(1, 12)}座{rng.choice(FAULTS)}"
        elif kind == "greeting":
            text = rng.choice(GREETINGS)
        elif kind == "showtimes":
            text = rng.choice(SHOWTIMES)
        else:
            text = "转人工"
            handed_off.add(openid)
        msg_id = next_msg_id()
        out.append(Message(i, kind, openid, text, msg_id, text_xml(ACCOUNT, openid, text, msg_id)))
    return out


@dataclass
class Tally:
    sent: int = 0
    finished: int = 0
    answered: int = 0
    attempts: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class Driver:
    def __init__(self, stack: Stack, signer: WeChatSigner, rng: random.Random) -> None:
        self.stack = stack
        self.signer = signer
        self.rng = rng
        self.tally = Tally()
        self.t0 = now()
        self.paying: Counter[int] = Counter()  # port → pay-page POSTs in flight (chaos aims at them)

    def elapsed(self) -> float:
        return now() - self.t0

    async def send(self, session: aiohttp.ClientSession, msg: Message) -> None:
        self.tally.sent += 1
        for attempt in range(RETRIES + 1):
            began = now()
            port = self.rng.choice(self.stack.webs).port
            assert port is not None
            req = self.signer.sign(msg.xml)  # fresh timestamp, nonce and signature
            outcome, reply = await self._post(session, port, req)
            msg.attempts.append(Attempt(began - self.t0, port, outcome, reply))
            self.tally.attempts += 1
            self.tally.outcomes[outcome] += 1
            if outcome == "200":
                msg.answered = True
                self.tally.answered += 1
                break
            if attempt < RETRIES:
                await asyncio.sleep(max(0.0, began + ATTEMPT_TIMEOUT - now()))
        msg.done = True
        self.tally.finished += 1

    async def _post(self, session: aiohttp.ClientSession, port: int, req: Any) -> tuple[str, str | None]:
        url = f"http://127.0.0.1:{port}/wechat/callback"
        try:
            async with session.post(
                url, params=req.params, data=req.body, headers={"Content-Type": "text/xml"},
                timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT),
            ) as resp:
                text = await resp.text()
                if resp.status != 200:
                    return str(resp.status), None
        except asyncio.TimeoutError:
            return "timeout", None
        except aiohttp.ClientConnectorError:
            return "refused", None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError):
            return "reset", None
        except aiohttp.ClientError as exc:
            return f"error:{type(exc).__name__}", None
        try:
            doc = self.signer.open_reply(text, req.params)
        except Exception:  # noqa: BLE001 - a 200 nobody can read is still a 200 to WeChat
            return "200", "<unreadable reply>"
        return "200", (str(doc.get("Content") or doc.get("MsgType") or "") if doc else None)


# --------------------------------------------------------------------------- buyers


@dataclass
class Show:
    """A demo show the buyers race for, as the database has it after ``cinebot demo``."""

    label: str  # "A": a few named seats; "B": best seats by count, until sold out
    showtime_id: int
    title: str
    said: str  # how a buyer names it: 「12月9日19:00沙丘2」
    hall: str
    pairs: list[tuple[str, str]] = field(default_factory=list)  # show A: seat pairs people name


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _blocks(line: str) -> list[list[tuple[int, str]]]:
    """A layout row → its blocks between aisles: [(seat number, mark), ...]."""
    out: list[list[tuple[int, str]]] = [[]]
    col = 0
    for mark in line:
        if mark == "_":
            out.append([])
            continue
        col += 1
        out[-1].append((col, mark))
    return [b for b in out if b]


def _pool(layout: list[str], rows: int = 2, pairs_per_row: int = 3) -> list[tuple[str, str]]:
    """Adjacent pairs in the middle rows, aligned from a block's edge (no pick of them leaves
    a lone seat, which the product refuses): a small set of seats, so buyers really collide."""
    found: list[tuple[str, str]] = []
    middle = len(layout) // 2 + 1
    for r in range(middle, middle + rows):
        if r >= len(layout):  # the back row is couple seats
            break
        plain = [b for b in _blocks(layout[r - 1]) if all(m in "SV" for _, m in b) and len(b) % 2 == 0]
        if not plain:
            continue
        block = max(plain, key=len)
        for i in range(0, min(len(block), 2 * pairs_per_row), 2):
            found.append((f"{r}排{block[i][0]}座", f"{r}排{block[i + 1][0]}座"))
    return found


async def pick_shows(pg: asyncpg.Connection) -> list[Show]:
    """Two shows the day after tomorrow (Shanghai), each the only one of its film at its
    time (so the request names exactly one): A in a large hall, B in the smallest."""
    day = datetime.now(SHANGHAI).date() + timedelta(days=2)  # clear of midnight mid-run
    start = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
    rows = await pg.fetch(
        "SELECT s.id, s.starts_at, f.title, f.aliases, h.name, h.layout FROM showtime s"
        " JOIN film f ON f.id = s.film_id JOIN hall h ON h.id = s.hall_id"
        " WHERE s.cancelled_at IS NULL AND s.starts_at >= $1 AND s.starts_at < $2 ORDER BY s.starts_at",
        start, start + timedelta(days=1))
    when = Counter((r["title"], r["starts_at"]) for r in rows)
    unique = [r for r in rows if when[(r["title"], r["starts_at"])] == 1]

    def said(r: Any) -> str:
        local = r["starts_at"].astimezone(SHANGHAI)
        aliases = _json(r["aliases"]) or []
        return f"{day.month}月{day.day}日{local:%H:%M}{aliases[0] if aliases else r['title']}"

    def seats(r: Any) -> int:
        return sum(len(b) for line in _json(r["layout"]) for b in _blocks(line))

    with_pool = [r for r in unique if len(_pool(_json(r["layout"]))) >= 4]
    if not with_pool:
        raise RuntimeError("no demo show with a seat pool for the buyers")
    a = max(with_pool, key=lambda r: (r["title"].startswith("沙丘"), seats(r)))
    rest = [r for r in unique if r["id"] != a["id"] and r["starts_at"] != a["starts_at"]] or \
        [r for r in unique if r["id"] != a["id"]]
    b = min(rest, key=seats)
    return [
        Show("A", a["id"], a["title"], said(a), a["name"], _pool(_json(a["layout"]))),
        Show("B", b["id"], b["title"], said(b), b["name"]),
    ]


@dataclass
class Buyer:
    idx: int
    openid: str
    show: Show
    start: float  # seconds into the traffic
    double: bool  # presses the pay button on two processes at once
    count: int = 2
    outcome: str = ""
    order_no: str | None = None
    pays: list[str] = field(default_factory=list)  # each pay POST's outcome, "port:status"
    messages: list[Message] = field(default_factory=list)


def plan_buyers(n: int, seed: int, span: float, shows: list[Show], double_share: float) -> list[Buyer]:
    rng = random.Random(seed * 7919 + 1)
    tag = "B" + "".join(rng.choice(string.ascii_letters) for _ in range(2))
    out = []
    for i in range(n):
        show = shows[i % len(shows)]
        out.append(Buyer(
            i, make_openid(rng, tag), show, rng.uniform(0.02, 0.8) * span, rng.random() < double_share,
            count=2 if show.label == "A" else rng.randint(3, 6),
        ))
    return out


def _reply_kind(text: str) -> str:
    if "座位：" in text and "确认" in text:
        return "offer"
    if "被别人选走" in text or "已经被选走" in text or "换个座位" in text:
        return "taken"
    if "没有" in text and "空座" in text:
        return "sold out"
    if "每人每场最多" in text:
        return "per-buyer cap"
    return "other"


class Buyers:
    """Buyers talking to the bot message by message (each a WeChat callback with its own
    MsgId and the WeChat retries), then paying on the sandbox pay page."""

    def __init__(self, stack: Stack, driver: Driver, pool: asyncpg.Pool, rng: random.Random) -> None:
        self.stack = stack
        self.driver = driver
        self.pool = pool
        self.rng = rng
        self.buyers: list[Buyer] = []
        self.messages: list[Message] = []
        self.outcomes: Counter[str] = Counter()
        self.others: Counter[str] = Counter()  # replies not understood, by their first words

    async def say(self, session: aiohttp.ClientSession, b: Buyer, kind: str, text: str) -> str | None:
        """One message; its reply (in the callback, or the late reply from the outbox)."""
        msg_id = next_msg_id()
        msg = Message(100_000 + len(self.messages), kind, b.openid, text, msg_id,
                      text_xml(ACCOUNT, b.openid, text, msg_id))
        self.messages.append(msg)
        b.messages.append(msg)
        await self.driver.send(session, msg)
        if not msg.answered:
            return None
        if msg.sync_reply is not None:
            return msg.sync_reply
        deadline = now() + LATE_WAIT
        key = f"late-reply:{msg.dedup_key}"
        while now() < deadline:
            try:
                row = await self.pool.fetchrow(
                    "SELECT payload FROM outbound_message WHERE idempotency_key = $1", key)
            except (OSError, asyncpg.PostgresError):
                row = None
            if row is not None:
                return _content(row["payload"])
            await asyncio.sleep(0.5)
        return None

    def done(self, b: Buyer, outcome: str) -> None:
        b.outcome = outcome
        self.outcomes[outcome] += 1

    async def run(self, session: aiohttp.ClientSession, b: Buyer) -> None:
        await asyncio.sleep(max(0.0, b.start - self.driver.elapsed()))
        try:
            await self._run(session, b)
        except Exception as exc:  # noqa: BLE001 - one buyer's surprise is a figure, not a crash
            self.done(b, f"bench error {type(exc).__name__}")

    async def _run(self, session: aiohttp.ClientSession, b: Buyer) -> None:
        show = b.show
        if show.label == "A":
            pairs = self.rng.sample(show.pairs, k=min(3, len(show.pairs)))
            texts = [f"我想买{show.said} {s1} {s2}的票" for s1, s2 in pairs]
        else:
            texts = [f"我想买{CN_COUNT[b.count]}张{show.said}的票"]
        kind = ""
        for text in texts:
            reply = await self.say(session, b, "buy", text)
            if reply is None:
                return self.done(b, "no reply to the request")
            kind = _reply_kind(reply)
            if kind == "offer":
                break
            if kind == "other":
                self.others[reply[:30]] += 1
                return self.done(b, "request answered otherwise")
        if kind != "offer":
            return self.done(b, f"gave up: {kind}")
        reply = await self.say(session, b, "buy-confirm", "确认")
        if reply is None:
            return self.done(b, "no reply to 确认")
        link = PAY_LINK.search(reply)
        if link is None:
            self.others[reply[:30]] += 1
            return self.done(b, "确认 answered without a pay link")
        number = ORDER_NO.search(reply)
        b.order_no = number.group(1) if number else None
        await self.pay(session, b, link.group(1))

    async def _post_pay(self, session: aiohttp.ClientSession, b: Buyer, port: int, token: str) -> str:
        self.driver.paying[port] += 1
        try:
            async with session.post(f"http://127.0.0.1:{port}/pay/{token}", allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=PAY_TIMEOUT)) as resp:
                await resp.read()
                outcome = str(resp.status)
        except asyncio.TimeoutError:
            outcome = "timeout"
        except aiohttp.ClientConnectorError:
            outcome = "refused"
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError):
            outcome = "reset"
        except aiohttp.ClientError as exc:
            outcome = f"error:{type(exc).__name__}"
        finally:
            self.driver.paying[port] -= 1
        b.pays.append(f"{port}:{outcome}")
        return outcome

    async def _page(self, session: aiohttp.ClientSession, port: int, token: str) -> str:
        try:
            async with session.get(f"http://127.0.0.1:{port}/pay/{token}",
                                   timeout=aiohttp.ClientTimeout(total=10)) as resp:
                return await resp.text()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return ""

    async def pay(self, session: aiohttp.ClientSession, b: Buyer, token: str) -> None:
        """确认支付 (the sandbox form's POST; 303 = the bank paid and the notify was taken);
        a double click presses it on two processes at once. A press that fails (the process
        died under it, a 5xx) is followed, like a person would, by reopening the page on
        another process: 已支付 → done; the pay button again → one more press."""
        ports = [w.port for w in self.stack.webs if w.port is not None]
        if b.double and len(ports) > 1:
            p1, p2 = self.rng.sample(ports, 2)
            results = await asyncio.gather(self._post_pay(session, b, p1, token),
                                           self._post_pay(session, b, p2, token))
        else:
            results = [await self._post_pay(session, b, self.rng.choice(ports), token)]
        if "303" in results:
            return self.done(b, "paid (double click)" if b.double else "paid")
        if "409" in results:
            return self.done(b, "pay page refused (409)")
        await asyncio.sleep(2.0)
        port = self.rng.choice(ports)
        page = await self._page(session, port, token)
        if "已支付" in page:
            return self.done(b, "paid (press failed, page says paid)")
        if "确认支付" in page:
            again = await self._post_pay(session, b, port, token)
            if again == "303":
                return self.done(b, "paid (second press after a failed one)")
        return self.done(b, "pay failed: " + "/".join(sorted(set(results))))


# --------------------------------------------------------------------------- chaos


class Chaos:
    def __init__(self, stack: Stack, driver: Driver, outage: str, rng: random.Random) -> None:
        self.stack = stack
        self.driver = driver
        self.outage = outage
        self.rng = rng
        self.events: list[str] = []
        self.restarts: list[asyncio.Task[None]] = []
        self.redis_stopped_at: float | None = None
        self.buyers = False
        self.restarting: set[str] = set()  # names of processes being restarted

    def say(self, text: str) -> None:
        line = f"[{self.driver.elapsed():6.1f}s] chaos: {text}"
        self.events.append(line)
        print(line, file=sys.stderr, flush=True)

    async def aim(self, default: Proc, wait: float = 6.0) -> tuple[Proc, str]:
        """With buyers on: the web process a pay-page POST is in flight on, waited for up to
        ``wait`` s (killed under it, the payment is left half-done: the repair job's work)."""
        if not self.buyers:
            return default, ""
        deadline = now() + wait
        while now() < deadline:
            busy = [w for w in self.stack.webs if w.alive() and w.name not in self.restarting
                    and self.driver.paying[w.port or 0] > 0]
            if busy:
                await asyncio.sleep(self.rng.uniform(0.0, 0.03))
                return self.rng.choice(busy), " during a payment"
            await asyncio.sleep(0.005)
        return default, " (no payment in flight)"

    async def kill_and_restart(self, proc: Proc, session: aiohttp.ClientSession, pause: float = 1.0) -> None:
        why = ""
        if proc.port is not None:
            proc, why = await self.aim(proc)
        self.say(f"SIGKILL {proc.name} (pid {proc.pid}){why}")
        self.restarting.add(proc.name)
        proc.kill(signal.SIGKILL)
        await asyncio.sleep(pause)
        proc.start()
        self.say(f"restarted {proc.name} (pid {proc.pid})")
        try:
            if proc.port is not None:
                await wait_http(proc, session, "/healthz")
            else:
                await wait_log(proc, "cinebot worker running")
            self.say(f"{proc.name} ready again")
        except RuntimeError as exc:
            self.say(f"{proc.name} failed to come back: {exc}")
        finally:
            self.restarting.discard(proc.name)

    async def redis_outage(self, seconds: float) -> None:
        assert self.stack.redis is not None and self.stack.redis.popen is not None
        if self.outage == "sigstop":
            self.say(f"SIGSTOP redis-server for {seconds:.0f} s")
            os.kill(self.stack.redis.popen.pid, signal.SIGSTOP)
            await asyncio.sleep(seconds)
            os.kill(self.stack.redis.popen.pid, signal.SIGCONT)
            self.say("SIGCONT redis-server")
            return
        self.say(f"redis-server shut down (SIGTERM, AOF flushed) for {seconds:.0f} s")
        began = now()
        await asyncio.to_thread(self.stack.redis_down)
        await asyncio.sleep(max(0.0, seconds - (now() - began)))
        await asyncio.to_thread(self.stack.redis_up)
        self.say("redis-server started again on the same data")

    async def run(self, session: aiohttp.ClientSession, span: float) -> None:
        """Events at fixed fractions of the traffic's length."""
        webs = self.stack.webs
        schedule: list[tuple[float, Any]] = [
            (0.15, lambda: self.kill_and_restart(webs[0], session)),
            (0.30, lambda: self.kill_and_restart(self.stack.workers[0], session)),
            (0.45, lambda: self.redis_outage(10.0)),
            (0.70, lambda: self.kill_and_restart(webs[1 % len(webs)], session)),
            (0.85, lambda: self.kill_and_restart(webs[2 % len(webs)], session)),
        ]
        if not self.stack.workers:
            schedule.pop(1)
        for frac, action in schedule:
            await asyncio.sleep(max(0.0, frac * span - self.driver.elapsed()))
            if frac == 0.45:
                await action()  # the outage is the event; nothing else overlaps it
            else:
                self.restarts.append(asyncio.create_task(action()))
        await asyncio.gather(*self.restarts)


# --------------------------------------------------------------------------- settle + audit


async def pending_work(stack: Stack, rds: aioredis.Redis, pg: asyncpg.Connection) -> dict[str, int]:
    out = {"journal": -1, "handoff_lists": -1, "outbox_pending": -1}
    try:
        out["journal"] = int(await rds.hlen(JOURNAL_KEY))
        out["handoff_lists"] = int(await rds.llen(HANDOFF_QUEUE)) + int(await rds.llen(HANDOFF_WORK))
    except Exception:  # noqa: BLE001 - reported as unknown
        pass
    out["outbox_pending"] = int(await pg.fetchval(
        "SELECT count(*) FROM outbound_message WHERE status = 'pending'"
        " AND (idempotency_key LIKE 'late-reply:%' OR idempotency_key LIKE 'handoff:%')"
    ))
    # A payment a killed process left half-done is finished by the payment-repair job
    # (jobs.payments) 2 min after its claim; the order it paid is "paid" until then.
    out["payments_processing"] = int(await pg.fetchval(
        "SELECT count(*) FROM payment WHERE outcome = 'processing'"))
    out["orders_paid_no_tickets"] = int(await pg.fetchval(
        "SELECT count(*) FROM ticket_order WHERE state = 'paid'"))
    return out


async def settle(stack: Stack, rds: aioredis.Redis, pg: asyncpg.Connection, limit: float) -> tuple[float, dict[str, int]]:
    began = now()
    calm = tick = 0
    state: dict[str, int] = {}
    while now() - began < limit:
        state = await pending_work(stack, rds, pg)
        if all(v == 0 for v in state.values()):
            calm += 1
            if calm >= 3:
                break
        else:
            calm = 0
        if tick % 5 == 0:
            print(f"  settling {now() - began:4.0f}s: " + ", ".join(f"{k} {v}" for k, v in state.items()),
                  file=sys.stderr, flush=True)
        tick += 1
        await asyncio.sleep(1.0)
    return now() - began, state


@dataclass
class Audit:
    answered: list[Message] = field(default_factory=list)
    handled: list[Message] = field(default_factory=list)
    lost: list[Message] = field(default_factory=list)
    twice: list[tuple[Message, str]] = field(default_factory=list)
    unanswered_handled: int = 0
    stray_orders: list[str] = field(default_factory=list)
    double_sold: list[tuple[Any, ...]] = field(default_factory=list)
    outbox_status: Counter[str] = field(default_factory=Counter)
    outbox_lapses: int = 0
    standin_sends: int = 0
    standin_dupes: list[str] = field(default_factory=list)
    late_rows: int = 0
    handoff_rows: int = 0
    late_text: dict[str, str] = field(default_factory=dict)  # dedup key → late reply
    orders: int = 0
    # Money, from the database: payment (one row per payment the notify recorded), refund,
    # ticket and ticket_order.
    payments: Counter[str] = field(default_factory=Counter)  # by outcome
    refunds: Counter[str] = field(default_factory=Counter)  # by "reason/state"
    orders_by_state: Counter[str] = field(default_factory=Counter)  # orders with a payment
    tickets_active: int = 0
    money_lost: list[str] = field(default_factory=list)  # "order: why"
    double_charged: list[str] = field(default_factory=list)
    free_tickets: list[str] = field(default_factory=list)
    paid_no_ticket: list[str] = field(default_factory=list)  # every payment refunded, no ticket
    double_clicks: Counter[str] = field(default_factory=Counter)  # pay outcomes of double clicks


def _content(payload: Any) -> str:
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return payload
    if not isinstance(payload, dict):
        return json.dumps(payload, ensure_ascii=False, sort_keys=True)
    text = payload.get("text")
    if isinstance(text, dict) and "content" in text:
        return str(text["content"])
    body = {k: v for k, v in payload.items() if k not in ("touser", "agentid")}
    return json.dumps(body, ensure_ascii=False, sort_keys=True)


async def audit(messages: list[Message], stack: Stack, pg: asyncpg.Connection,
                session: aiohttp.ClientSession, prefix: str, buyers: list[Buyer]) -> Audit:
    a = Audit()
    orders = {r["source_key"] for r in await pg.fetch(
        "SELECT source_key FROM work_order WHERE source_key LIKE $1", f"wechat:wechat:m:{prefix}%")}
    rows = await pg.fetch(
        "SELECT idempotency_key, channel, recipient, payload, status, lapses FROM outbound_message"
        " WHERE idempotency_key LIKE 'late-reply:%' OR idempotency_key LIKE 'handoff:%'")
    late = {r["idempotency_key"][len("late-reply:"):] for r in rows
            if r["idempotency_key"].startswith("late-reply:")}
    handoff_buckets: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        a.outbox_status[r["status"]] += 1
        a.outbox_lapses += r["lapses"]
        key = r["idempotency_key"]
        if key.startswith("handoff:"):
            a.handoff_rows += 1
            _, openid, bucket, _ = key.split(":", 3)
            handoff_buckets[openid].add(bucket)
        else:
            a.late_rows += 1
            a.late_text[key[len("late-reply:"):]] = _content(r["payload"])
    ours = set()
    for m in messages:
        if m.kind in ("complaint", "fault"):
            ours.add(m.source_key)
            effect = m.source_key in orders
        elif m.kind == "handoff":
            effect = bool(handoff_buckets.get(m.openid))
            if len(handoff_buckets.get(m.openid, ())) > 1:
                a.twice.append((m, f"hand-off recorded in {len(handoff_buckets[m.openid])} windows"))
        else:
            effect = m.sync_reply is not None or m.dedup_key in late
        if m.sync_reply is not None and m.dedup_key in late:
            a.twice.append((m, "answered in the callback and again by a late reply"))
        if m.answered:
            a.answered.append(m)
            (a.handled if effect else a.lost).append(m)
        elif effect:
            a.unanswered_handled += 1
    a.stray_orders = sorted(orders - ours)
    a.orders = len(orders & ours)
    a.double_sold = [tuple(r) for r in await pg.fetch(
        "SELECT showtime_id, seat, count(*) FROM ticket WHERE active GROUP BY 1, 2 HAVING count(*) > 1")]
    # What the stand-in received, against the outbox rows that stand for it: a (recipient,
    # content) received more often than there are rows for it was sent twice.
    await audit_money(a, pg, buyers)
    async with session.get(f"{stack.standin_url}/standin/messages") as resp:
        received = (await resp.json())["messages"]
    got: Counter[tuple[str, str]] = Counter()
    for m in received:
        for to in m.get("to") or []:
            got[(to, _content(m.get("payload")))] += 1
    a.standin_sends = sum(got.values())
    want: Counter[tuple[str, str]] = Counter()
    for r in await pg.fetch("SELECT recipient, payload FROM outbound_message WHERE status = 'sent'"):
        want[(r["recipient"], _content(r["payload"]))] += 1
    for (to, content), n in got.items():
        if want[(to, content)] and n > want[(to, content)]:
            a.standin_dupes.append(f"{short_openid(to)} ×{n - want[(to, content)]}: {content[:40]!r}")
    return a


async def audit_money(a: Audit, pg: asyncpg.Connection, buyers: list[Buyer]) -> None:
    """Every payment recorded either issued its order's tickets or was refunded (a refund
    row); no order keeps two payments; no active ticket without a payment kept for it."""
    pays: dict[int, list[Any]] = defaultdict(list)
    for r in await pg.fetch("SELECT order_id, transaction_id, outcome FROM payment ORDER BY id"):
        pays[r["order_id"]].append(r)
        a.payments[r["outcome"]] += 1
    refunds: Counter[int] = Counter()
    for r in await pg.fetch("SELECT order_id, reason, state FROM refund"):
        refunds[r["order_id"]] += 1
        a.refunds[f"{r['reason']}/{r['state']}"] += 1
    tickets: dict[int, list[Any]] = defaultdict(list)
    for r in await pg.fetch("SELECT order_id, seat, active FROM ticket"):
        tickets[r["order_id"]].append(r)
    orders = {r["id"]: r for r in await pg.fetch(
        "SELECT id, no, state, transaction_id FROM ticket_order")}
    for oid in set(pays) | set(tickets):
        order = orders[oid]
        if oid in pays:
            a.orders_by_state[order["state"]] += 1
        issued = [t for t in tickets.get(oid, [])]
        active = [t for t in issued if t["active"]]
        a.tickets_active += len(active)
        left = refunds[oid]  # refund rows not yet matched to a payment
        kept = []  # payments whose money the cinema keeps
        for pay in pays.get(oid, []):
            if pay["outcome"] in ("issued", "reseated"):
                kept.append(pay)
                if not issued or order["transaction_id"] != pay["transaction_id"]:
                    a.money_lost.append(f"{order['no']}: payment {pay['outcome']} but its tickets are missing")
            elif pay["outcome"] == "refunded" and left > 0:
                left -= 1
            elif pay["outcome"] == "refunded":
                kept.append(pay)
                a.money_lost.append(f"{order['no']}: payment marked refunded, no refund recorded")
            else:
                kept.append(pay)
                a.money_lost.append(f"{order['no']}: payment still {pay['outcome']}, no tickets, no refund")
        if len(kept) > 1:
            a.double_charged.append(f"{order['no']}: {len(kept)} payments kept "
                                    f"({', '.join(p['outcome'] for p in pays[oid])})")
        if active and not any(p["outcome"] in ("issued", "reseated") for p in pays.get(oid, [])):
            a.free_tickets.append(f"{order['no']} ({order['state']}): {len(active)} active ticket(s)"
                                  f" without a payment kept for them")
        if pays.get(oid) and not issued and not kept:
            a.paid_no_ticket.append(order["no"])
    by_no = {r["no"]: r["id"] for r in orders.values()}
    for b in buyers:
        if b.double and b.order_no and b.order_no in by_no:
            oid = by_no[b.order_no]
            outcomes = sorted(p["outcome"] for p in pays.get(oid, []))
            a.double_clicks[" + ".join(outcomes) or "no payment"] += 1


def grep_logs(stack: Stack, needles: list[str], limit: int = 12) -> list[str]:
    out: list[str] = []
    for proc in [*stack.webs, *stack.workers]:
        for path in proc.logs:
            try:
                lines = Path(path).read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                if any(n in line for n in needles):
                    out.append(f"    {os.path.basename(path)}: {line[:400]}")
                    if len(out) >= limit:
                        return out
    return out


def log_errors(stack: Stack) -> Counter[str]:
    found: Counter[str] = Counter()
    for proc in [*stack.webs, *stack.workers]:
        for path in proc.logs:
            try:
                text = Path(path).read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    if line.startswith("Traceback"):
                        found["(plain traceback)"] += 1
                    continue
                if isinstance(rec, dict) and rec.get("level") in ("ERROR", "CRITICAL"):
                    found[str(rec.get("msg"))[:80]] += 1
    return found


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace, stack: Stack) -> int:
    print(f"chaos bench: temp dir {stack.workdir}", file=sys.stderr)
    print("  postgres: " + stack.start_postgres(), file=sys.stderr)
    print("  redis:    " + stack.start_redis(), file=sys.stderr)
    stack.start_standin()
    env = stack.cinebot_env(args.budget)
    print("  demo:     " + stack.demo(env), file=sys.stderr)
    for _ in range(args.web):
        stack.add_web(env)
    for _ in range(args.workers):
        stack.add_worker(env)

    rng = random.Random(args.seed)
    messages = plan(args.messages, args.seed)
    pg_dsn = stack.pg_url.replace("postgres://", "postgresql://", 1)
    shows: list[Show] = []
    if args.buyers:
        pg0 = await asyncpg.connect(pg_dsn)
        try:
            shows = await pick_shows(pg0)
        finally:
            await pg0.close()
        for show in shows:
            extra = (f", seats {' '.join(s for pair in show.pairs for s in pair)}" if show.pairs
                     else ", best seats by count until sold out")
            print(f"  buyers' show {show.label}: 《{show.title}》 {show.said} {show.hall}{extra}",
                  file=sys.stderr)
    buyers = plan_buyers(args.buyers, args.seed, args.messages / args.rate, shows, args.double_click)
    prefix = messages[0].openid[:6]
    signer = WeChatSigner(Settings(), ACCOUNT)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        assert stack.standin is not None
        for proc in [stack.standin, *stack.webs, *stack.workers]:
            proc.start()
        started = now()
        await wait_http(stack.standin, session, "/standin/messages")
        await asyncio.gather(*(wait_http(p, session, "/healthz") for p in stack.webs),
                             *(wait_log(p, "cinebot worker running") for p in stack.workers))
        print(f"  {args.web} web + {args.workers} worker processes ready in {now() - started:.1f} s;"
              f" budget {args.budget} s; {len(messages)} messages at {args.rate}/s"
              f" from {len({m.openid for m in messages})} openids"
              + (f"; {len(buyers)} buyers" if buyers else "")
              + ("" if args.chaos else "; no chaos (control run)"), file=sys.stderr, flush=True)

        driver = Driver(stack, signer, rng)
        span = len(messages) / args.rate
        chaos = Chaos(stack, driver, args.redis_outage, rng)
        chaos.buyers = bool(buyers)
        pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
        shop = Buyers(stack, driver, pool, random.Random(args.seed + 17))
        shop.buyers = buyers
        chaos_task = asyncio.create_task(chaos.run(session, span)) if args.chaos else None
        stop_progress = asyncio.Event()

        async def progress() -> None:
            while not stop_progress.is_set():
                t = driver.tally
                o = t.outcomes
                other5 = sum(n for k, n in o.items() if k.startswith("5") and k != "503")
                bought = (f" | buyers done {sum(shop.outcomes.values())}/{len(buyers)}" if buyers else "")
                print(f"[{driver.elapsed():6.1f}s] sent {t.sent}/{len(messages)}+ answered {t.answered}"
                      f" in flight {t.sent - t.finished} | attempts {t.attempts}: 503 {o['503']},"
                      f" other 5xx {other5}, timeout {o['timeout']}, refused {o['refused']},"
                      f" reset {o['reset']}{bought}", file=sys.stderr, flush=True)
                try:
                    await asyncio.wait_for(stop_progress.wait(), 5)
                except asyncio.TimeoutError:
                    pass

        ticker = asyncio.create_task(progress())
        tasks = [asyncio.create_task(shop.run(session, b)) for b in buyers]
        for i, msg in enumerate(messages):
            await asyncio.sleep(max(0.0, i / args.rate - driver.elapsed()))
            tasks.append(asyncio.create_task(driver.send(session, msg)))
        await asyncio.gather(*tasks)
        await pool.close()
        messages = messages + shop.messages
        if chaos_task is not None:
            await chaos_task
        traffic_s = driver.elapsed()
        stop_progress.set()
        await ticker

        rds = aioredis.Redis.from_url(stack.redis_url, socket_timeout=5)
        pg = await asyncpg.connect(stack.pg_url.replace("postgres://", "postgresql://", 1))
        try:
            # Stranded payments are finished 2 min after their claim (+ up to a 30 s tick).
            limit = max(args.settle, args.buyer_settle) if buyers else args.settle
            settle_s, left = await settle(stack, rds, pg, limit)
            result = await audit(messages, stack, pg, session, prefix, buyers)
        finally:
            await pg.close()
            await rds.aclose()
        return report(args, stack, messages, driver, chaos if args.chaos else None, traffic_s,
                      settle_s, left, result, shop, shows)


def report(args: argparse.Namespace, stack: Stack, messages: list[Message], driver: Driver,
           chaos: Chaos | None, traffic_s: float, settle_s: float, left: dict[str, int],
           a: Audit, shop: Buyers, shows: list[Show]) -> int:
    o = driver.tally.outcomes
    unauth_500 = sum(n for k, n in o.items() if k.startswith("5") and k != "503")
    by_kind = Counter(m.kind for m in messages)
    deferred = sum(1 for m in a.answered if m.sync_reply is None)
    lines = [
        "",
        f"chaos bench: {args.web} web, {args.workers} worker(s), budget {args.budget} s, "
        f"{'chaos' if chaos else 'no chaos (control)'}, seed {args.seed}",
        f"  traffic {traffic_s:.1f} s, settled in {settle_s:.1f} s"
        + ("" if all(v == 0 for v in left.values()) else f" (NOT settled: {left})"),
        "  mix: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())),
    ]
    for show in shows:
        lines.append(f"  buyers' show {show.label}: 《{show.title}》 {show.said} {show.hall}"
                     + (f", {len(show.pairs) * 2} named seats" if show.pairs else ", best seats by count"))
    if chaos:
        lines += ["  chaos events:"] + ["    " + e for e in chaos.events]
    rows = [
        ("messages sent", len(messages)),
        ("answered (200)", len(a.answered)),
        ("  of which answered 'success' (no reply in the callback)", deferred),
        ("handled (effect found, of answered)", len(a.handled)),
        ("lost (answered 200, no effect)", len(a.lost)),
        ("handled twice", len(a.twice)),
        ("unanswered after 4 attempts", len(messages) - len(a.answered)),
        ("  of which handled anyway", a.unanswered_handled),
        ("attempts", driver.tally.attempts),
        ("  retries", driver.tally.attempts - len(messages)),
        ("  503 answers", o["503"]),
        ("  unauthenticated 500s (5xx other than 503)", unauth_500),
        ("  4xx answers", sum(n for k, n in o.items() if k.startswith("4"))),
        ("  timeouts (no answer in 5 s)", o["timeout"]),
        ("  connection refused / reset", o["refused"] + o["reset"]),
        ("work orders opened by this run's messages", a.orders),
        ("stray work orders (no message of ours)", len(a.stray_orders)),
        ("double-sold seats (active tickets per seat > 1)", len(a.double_sold)),
        ("buyers", f"{sum(shop.outcomes.values())}"
         + (f" ({sum(1 for m in shop.messages)} chat messages)" if shop.outcomes else "")),
        *[(f"  {k}", n) for k, n in sorted(shop.outcomes.items(), key=lambda kv: -kv[1])],
        ("pay presses (POST /pay)", ", ".join(f"{k} {n}" for k, n in sorted(
            Counter(p.split(":", 1)[1] for b in shop.buyers for p in b.pays).items())) or "-"),
        ("payments recorded, by outcome", ", ".join(f"{k} {n}" for k, n in sorted(a.payments.items())) or "-"),
        ("refunds, by reason/state", ", ".join(f"{k} {n}" for k, n in sorted(a.refunds.items())) or "-"),
        ("paid orders, by state", ", ".join(f"{k} {n}" for k, n in sorted(a.orders_by_state.items())) or "-"),
        ("active tickets", a.tickets_active),
        ("double clicks, payments per order", ", ".join(
            f"{k} ×{n}" for k, n in sorted(a.double_clicks.items())) or "-"),
        ("paid, every payment refunded, no ticket", len(a.paid_no_ticket)),
        ("money lost (payment: no tickets, no refund)", len(a.money_lost)),
        ("double-charged (order keeps 2 payments)", len(a.double_charged)),
        ("free tickets (active, no payment kept)", len(a.free_tickets)),
        ("outbox rows (late replies / hand-offs)", f"{a.late_rows} / {a.handoff_rows}"),
        ("  by status", ", ".join(f"{k} {n}" for k, n in sorted(a.outbox_status.items())) or "-"),
        ("  lapsed claims (worker died mid-send)", a.outbox_lapses),
        ("outbox sends recorded by the stand-in", a.standin_sends),
        ("  received more often than sent rows (duplicates)", len(a.standin_dupes)),
    ]
    width = max(len(r[0]) for r in rows)
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    other = Counter(k for k in o.elements() if k not in ("200", "503", "timeout", "refused", "reset"))
    if other:
        lines.append("  other attempt outcomes: " + ", ".join(f"{k} {n}" for k, n in other.items()))
    unanswered = Counter(" ".join(t.outcome for t in m.attempts) for m in messages if not m.answered)
    if unanswered:
        lines.append("  unanswered messages' attempts: "
                     + "; ".join(f"{seq} ×{n}" for seq, n in unanswered.most_common(6)))
    errors = log_errors(stack)
    if errors:
        lines.append(f"  server ERROR log lines: {sum(errors.values())}")
        lines += [f"    {n:5d}  {msg}" for msg, n in errors.most_common(8)]

    targets = [
        ("0 lost", len(a.lost) == 0 and all(v == 0 for v in left.values())),
        ("0 handled twice", len(a.twice) == 0 and not a.stray_orders),
        ("0 double-sold", not a.double_sold),
        ("0 unauthenticated 500s", unauth_500 == 0),
    ]
    if shop.outcomes:
        targets += [
            ("0 money lost", not a.money_lost),
            ("0 double-charged", not a.double_charged),
            ("0 free tickets", not a.free_tickets),
        ]
    lines.append("")
    lines.append(f"  {len(a.lost)} lost, {len(a.twice)} handled twice, {len(a.double_sold)} double-sold, "
                 f"{unauth_500} unauthenticated 500s"
                 + (f", {len(a.money_lost)} money lost, {len(a.double_charged)} double-charged, "
                    f"{len(a.free_tickets)} free tickets" if shop.outcomes else ""))
    lines += [f"  {target(ok, name)}" for name, ok in targets]
    failed = not all(ok for _, ok in targets)

    def describe(m: Message, why: str = "") -> list[str]:
        tries = ", ".join(f"{t.at:.1f}s→:{t.port} {t.outcome}" for t in m.attempts)
        head = (f"  #{m.idx} {m.kind} {m.text!r} msg_id {m.msg_id} openid {m.openid}"
                f" ({short_openid(m.openid)}) {why}\n    attempts: {tries}")
        said = [f"    reply in the callback: {m.sync_reply[:80]!r}"] if m.sync_reply else []
        if m.dedup_key in a.late_text:
            said.append(f"    late reply (outbox): {a.late_text[m.dedup_key][:80]!r}")
        return [head, *said, *grep_logs(stack, [short_openid(m.openid)])]

    if a.lost:
        lines += ["", f"lost ({len(a.lost)}):"]
        for m in a.lost[:20]:
            lines += describe(m)
    if a.twice:
        lines += ["", f"handled twice ({len(a.twice)}):"]
        for m, why in a.twice[:20]:
            lines += describe(m, why)
    if a.stray_orders:
        lines += ["", "stray work orders: " + ", ".join(a.stray_orders[:10])]
    for title, found in (("double-sold", [f"showtime {r[0]} seat {r[1]} ×{r[2]}" for r in a.double_sold]),
                         ("money lost", a.money_lost), ("double-charged", a.double_charged),
                         ("free tickets", a.free_tickets),
                         ("paid, every payment refunded, no ticket", a.paid_no_ticket)):
        if found:
            lines += ["", f"{title} ({len(found)}):"] + ["  " + f for f in found[:10]]
            for item in found[:5]:
                number = item.split(":")[0].split(" ")[0]
                lines += grep_logs(stack, [number], limit=6)
    if shop.others:
        lines += ["", "buyers' replies not understood: "
                  + "; ".join(f"{k!r} ×{n}" for k, n in shop.others.most_common(6))]
    if a.standin_dupes:
        lines += ["", "outbox messages the stand-in received more than once:"]
        lines += ["  " + d for d in a.standin_dupes[:10]]
    if failed or args.keep:
        stack.keep = True
        lines += ["", f"server logs kept in {stack.workdir}"]
    print("\n".join(lines), flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--web", type=int, default=3, help="web processes (cinebot serve --role web)")
    p.add_argument("--workers", type=int, default=1, help="cinebot worker processes")
    p.add_argument("--messages", type=int, default=1500)
    p.add_argument("--rate", type=float, default=30.0, help="new messages per second")
    p.add_argument("--duration", type=float, help="seconds of traffic: messages = rate × duration")
    p.add_argument("--budget", type=float, default=1.0,
                   help="CINEBOT_HANDLER_BUDGET for the servers (0.1–4.8 s)")
    p.add_argument("--no-chaos", dest="chaos", action="store_false", help="a control run")
    p.add_argument("--redis-outage", choices=("shutdown", "sigstop"), default="shutdown")
    # A hand-off request taken by a process that was then killed waits in the work list
    # for handlers.handoff.STALE_S (60 s) before another process requeues it.
    p.add_argument("--settle", type=float, default=90.0, help="seconds to wait for the backlog")
    p.add_argument("--buyers", type=int, default=None,
                   help="ticket buyers racing for two demo shows (default: messages / 25; 0: none)")
    p.add_argument("--double-click", type=float, default=0.25,
                   help="share of buyers pressing the pay button on two processes at once")
    p.add_argument("--buyer-settle", type=float, default=180.0,
                   help="settle limit with buyers: the repair job finishes stranded payments"
                        " 2 min after their claim")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs) even on success")
    args = p.parse_args(argv)
    if args.duration:
        args.messages = max(1, int(args.rate * args.duration))
    if args.buyers is None:
        args.buyers = args.messages // 25
    if args.web < 1 or (args.chaos and args.workers < 1):
        p.error("chaos needs at least one web process and one worker")

    stack = Stack()

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    code = 2
    try:
        code = asyncio.run(run(args, stack))
    except KeyboardInterrupt:
        print("interrupted; stopping everything", file=sys.stderr)
        code = 130
    except Exception as exc:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        print(f"chaos bench crashed: {exc}", file=sys.stderr)
        stack.keep = True
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop(keep=stack.keep)
        if stack.keep:
            print(f"logs kept in {stack.workdir}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
