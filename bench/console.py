"""The manager's console at chain scale (issue 17, item 5): seed a chain of cinemas with a
year of data into PostgreSQL, rebuild the rollups, then time every console page and export
through the real app, counting the SQL statements each one sends.

    .venv/bin/python bench/console.py                       # 10 cinemas, 365 days, scale 1.0
    .venv/bin/python bench/console.py --scale 0.01          # a quick look (< 1 min)
    .venv/bin/python bench/console.py --database-url postgres://postgres@127.0.0.1:55500/bench

Scale 1.0 is the issue's chain: ≈ 2,000,000 tickets, 300,000 ratings, 50,000 work orders
and per-minute projector aggregates (two metrics of one projector per cinema, every minute
of the period: a year × every metric × every projector would be ~300 M rows, which no one
seeds in minutes; what was seeded is printed). The database is emptied first (its public
schema is dropped): give a database of its own. Without ``--database-url`` a throwaway
PostgreSQL cluster is started (``bench._common.Postgres``).

Seeding is bulk SQL (``INSERT … SELECT generate_series``) into the raw tables, then
``domain.rollups.rebuild``. Timing: the real app (``bot.app.init_app``) in this process
behind an aiohttp test server, logged in as the demo cinema's manager with a one-time
console link; each page is fetched ``--repeat`` times after one warm-up; the SQL
statements are counted at the driver (asyncpg's ``Connection``). Targets: p95 ≤ 300 ms and
≤ 10 statements per page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Postgres, Table, as_postgres, find_pgbin, nearest_rank, target

P95_MS = 300.0
MAX_QUERIES = 10

# The pages timed: (name, path). {today} and {month} become dates of the seeded period;
# each section's exports are added from its ``tables`` (handlers.console.base.Section).
PAGES: list[tuple[str, str]] = [
    ("home", "/console/"),
    ("experience today", "/console/experience?range=today"),
    ("experience 7d", "/console/experience?range=7d"),
    ("experience 30d", "/console/experience?range=30d"),
    ("experience year", "/console/experience?range=custom&start={year_ago}&end={today}"),
    ("service 7d", "/console/service?range=7d"),
    ("service 30d", "/console/service?range=30d"),
    ("service year", "/console/service?range=custom&start={year_ago}&end={today}"),
    ("sales today", "/console/sales?range=today"),
    ("sales 7d", "/console/sales?range=7d"),
    ("sales 30d", "/console/sales?range=30d"),
    ("sales year", "/console/sales?range=custom&start={year_ago}&end={today}"),
    ("projectors 7d", "/console/projectors?range=7d"),
    ("projectors 30d", "/console/projectors?range=30d"),
    ("projectors year", "/console/projectors?range=custom&start={year_ago}&end={today}"),
]
EXPORT_RANGE = "range=30d"
EXPORT_FORMATS = ("csv", "xlsx")

# The chain at scale 1.0.
TICKETS = 2_000_000
RATINGS = 300_000
WORK_ORDERS = 50_000
SLOTS = ("10:05", "13:05", "15:35", "18:35", "21:05")  # off the demo's own slots
MINUTE_METRICS = ("temperature_c", "brightness_pct")


# --------------------------------------------------------------------------- seeding


@dataclass
class Seeded:
    cinemas: int = 0
    halls: int = 0
    showtimes: int = 0
    orders: int = 0
    tickets: int = 0
    ratings: int = 0
    work_orders: int = 0
    events: int = 0
    minute_rows: int = 0
    minute_devices: int = 0
    health_days: int = 0
    rollups: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


async def _count(conn: object, table: str) -> int:
    rows = await conn.execute_query_dict(f'SELECT COUNT(*) AS n FROM "{table}"')  # type: ignore[attr-defined]
    return int(rows[0]["n"])


async def seed(cinemas: int, days: int, scale: float, minute_days: int | None, say: callable) -> Seeded:  # type: ignore[valid-type]
    """The chain: the demo cinema and ``cinemas - 1`` copies of it, ``days`` of shows up
    to today, tickets, ratings, work orders and minutes in bulk, then the rollups."""
    from tortoise.connection import get_connection

    from domain import demo, rollups
    from domain.cinemas import Cinema, Hall
    from domain.devices import Projector
    from domain.people import Staff, StaffRole
    from domain.touchpoints import ensure_touchpoints

    got = Seeded()
    now = datetime.now(UTC)
    t0 = time.monotonic()
    await demo.seed(now)
    base = await Cinema.get(code=demo.DEMO_CINEMA_CODE)
    halls = await Hall.filter(cinema_id=base.id).order_by("id")
    for i in range(2, cinemas + 1):
        cinema, _ = await Cinema.get_or_create(code=f"c{i:02d}", defaults={"name": f"连锁{i:02d}号店", "city": "上海"})
        for h in halls:
            hall, _ = await Hall.get_or_create(cinema=cinema, name=h.name, defaults={"screen": h.screen, "layout": h.layout})
            await Projector.get_or_create(
                device_id=f"PJ-C{i:02d}-{h.name.replace('号厅', '').replace('厅', '')}",
                defaults={"cinema": cinema, "hall": hall, "key": "bench", "model": "Christie CP4440-RGB"},
            )
        await Staff.get_or_create(userid=f"manager{i:02d}", defaults={"name": f"经理{i:02d}", "role": StaffRole.MANAGER, "cinema": cinema})
        await ensure_touchpoints(cinema, now)
    got.seconds["basics"] = time.monotonic() - t0
    conn = get_connection("default")
    run = conn.execute_script
    today = (now.astimezone(demo.LOCAL) - timedelta(hours=3)).date()
    first = today - timedelta(days=days - 1)
    got.cinemas = await _count(conn, "cinema")
    got.halls = await _count(conn, "hall")

    # Shows: every hall, every day of the period, five a day (films in turn).
    t0 = time.monotonic()
    slots = ",".join(f"'{s}'::time" for s in SLOTS)
    await run(f"""
        INSERT INTO showtime (cinema_id, hall_id, film_id, starts_at, ends_at, format, base_price_fen)
        SELECT h.cinema_id, h.id, f.ids[1 + (d + s.n + h.id) % array_length(f.ids, 1)],
               ((DATE '{first}' + d) + s.slot) AT TIME ZONE 'Asia/Shanghai',
               ((DATE '{first}' + d) + s.slot) AT TIME ZONE 'Asia/Shanghai' + interval '130 minutes',
               '2D', 4000 + 500 * (h.id % 3)
        FROM hall h
        CROSS JOIN generate_series(0, {days - 1}) AS d
        CROSS JOIN (SELECT slot, row_number() OVER () AS n FROM unnest(ARRAY[{slots}]) AS slot) s
        CROSS JOIN (SELECT array_agg(id ORDER BY id) AS ids FROM film) f
        ON CONFLICT DO NOTHING
    """)
    shows = await conn.execute_query_dict(
        f"SELECT COUNT(*) AS n FROM showtime WHERE starts_at < TIMESTAMPTZ '{first}' + interval '{days} days'"
    )
    n_shows = max(1, int(shows[0]["n"]))
    per_show = TICKETS * scale / n_shows  # tickets a show sells on average
    orders_avg = max(per_show / 2, 0.05)
    # Orders: two seats each, side by side, ten pairs a row; how many varies by show.
    await run(f"""
        INSERT INTO ticket_order (no, cinema_id, showtime_id, openid, channel, state, hold_id, seats, quote,
            amount_fen, paid_fen, refunded_fen, expires_at, created_at, paid_at, closed_at, note)
        SELECT 'B' || s.id || 'N' || o, s.cinema_id, s.id, 'o-bench-' || ((s.id * 31 + o) % 50000), 'chat',
               CASE WHEN (s.id + o) % 33 = 0 THEN 'refunded' WHEN (s.id + o) % 97 = 0 THEN 'changed'
                    WHEN s.starts_at < now() THEN 'checked_in' ELSE 'issued' END,
               o::text, '[]', '{{}}', 2 * s.base_price_fen, 2 * s.base_price_fen,
               CASE WHEN (s.id + o) % 33 = 0 THEN 2 * s.base_price_fen ELSE 0 END,
               s.starts_at - interval '1 day', s.starts_at - interval '1 day', s.starts_at - interval '1 day',
               NULL, ''
        FROM showtime s
        CROSS JOIN LATERAL generate_series(1, LEAST(FLOOR(
            {orders_avg} * (0.2 + 1.6 * ((s.id * 2654435761) % 1000) / 1000.0)  -- mean: orders_avg
            + ((s.id::bigint * 40503) % 997) / 997.0)::int, 60)) AS o  -- floor(x + u): mean x
        WHERE s.starts_at >= TIMESTAMPTZ '{first}' - interval '1 day'
    """)
    await run("""
        INSERT INTO ticket (order_id, showtime_id, seat, kind, price_fen, secret, state, active, checked_in_at, checked_in_by)
        SELECT o.id, o.showtime_id,
               (1 + (o.hold_id::int - 1) / 10) || '-' || (2 * ((o.hold_id::int - 1) % 10) + k),
               'standard', o.amount_fen / 2, 'b' || o.id || 'k' || k,
               CASE WHEN o.state IN ('refunded', 'changed', 'checked_in') THEN o.state ELSE 'issued' END,
               CASE WHEN o.state IN ('refunded', 'changed') THEN NULL ELSE TRUE END,
               CASE WHEN o.state = 'checked_in' THEN o.created_at + interval '1 day' END,
               CASE WHEN o.state = 'checked_in' THEN 'gate' END
        FROM ticket_order o CROSS JOIN generate_series(1, 2) AS k
        WHERE o.no LIKE 'B%N%'
    """)
    got.showtimes, got.orders, got.tickets = n_shows, await _count(conn, "ticket_order"), await _count(conn, "ticket")
    got.seconds["sales"] = time.monotonic() - t0

    # Ratings: one per visitor and day, at each cinema's first touchpoint, films and halls in turn.
    t0 = time.monotonic()
    n_ratings = max(1, int(RATINGS * scale))
    await run(f"""
        WITH c AS (SELECT row_number() OVER (ORDER BY id) - 1 AS i, id,
                          (SELECT MIN(t.id) FROM touchpoint t WHERE t.cinema_id = cinema.id) AS tp
                   FROM cinema),
             h AS (SELECT array_agg(DISTINCT name ORDER BY name) AS names FROM hall),
             f AS (SELECT array_agg(id ORDER BY id) AS ids, array_agg(title ORDER BY id) AS titles FROM film)
        INSERT INTO feedback_response (cinema_id, touchpoint_id, visitor, visit_day, channel, film_id, film_title,
            hall, stars, nps, aspects, comment, category, sentiment, priority, follow_up, edits, created_at, updated_at)
        SELECT c.id, c.tp, 'v-' || g, DATE '{first}' + ((g::bigint * 7919) % {days})::int, 'chat',
               f.ids[1 + g % array_length(f.ids, 1)], f.titles[1 + g % array_length(f.ids, 1)],
               h.names[1 + g % array_length(h.names, 1)],
               CASE WHEN g % 10 < 5 THEN 5 WHEN g % 10 < 8 THEN 4 WHEN g % 10 = 8 THEN 3 ELSE 1 + g % 2 END,
               CASE WHEN g % 3 = 0 THEN NULL ELSE (g * 13) % 11 END,
               '[]',
               CASE WHEN g % 4 = 0 THEN '空调太冷了，希望调高一点' ELSE '' END,
               CASE WHEN g % 4 = 0 THEN (ARRAY['temperature','seat','sound','cleanliness','staff'])[1 + g % 5] END,
               CASE WHEN g % 4 = 0 THEN (ARRAY['neg','neu','pos'])[1 + g % 3] END,
               'P3', 'none', 0,
               (DATE '{first}' + ((g::bigint * 7919) % {days})::int)::timestamp AT TIME ZONE 'Asia/Shanghai' + interval '21 hours',
               (DATE '{first}' + ((g::bigint * 7919) % {days})::int)::timestamp AT TIME ZONE 'Asia/Shanghai' + interval '21 hours'
        FROM generate_series(1, {n_ratings}) AS g
        JOIN c ON c.i = g % (SELECT COUNT(*) FROM cinema)
        CROSS JOIN h CROSS JOIN f
    """)
    got.ratings = await _count(conn, "feedback_response")
    got.seconds["ratings"] = time.monotonic() - t0

    # Work orders: opened through the period; most acknowledged and resolved, some breached.
    t0 = time.monotonic()
    n_orders = max(1, int(WORK_ORDERS * scale))
    await run(f"""
        WITH c AS (SELECT row_number() OVER (ORDER BY id) - 1 AS i, id FROM cinema)
        INSERT INTO work_order (ref, cinema_id, kind, category, severity, source, summary, description, photos,
            reporter, reporter_role, reporter_name, team, assignee, watchers, state, cause, action,
            created_at, updated_at, version)
        SELECT 'B' || g, c.id, (ARRAY['fault','complaint','task','alert'])[1 + g % 4],
               (ARRAY['seat','temperature','sound','picture','cleanliness','staff'])[1 + g % 6],
               'P3', 'chat', '座椅坏了', '', '[]', 'o-bench', 'audience', '',
               (ARRAY['engineering','floor','management'])[1 + g % 3], 'staff01', '[]',
               CASE WHEN g % 10 < 8 THEN 'resolved' WHEN g % 10 = 8 THEN 'acknowledged' ELSE 'assigned' END,
               '', '',
               (DATE '{first}' + ((g::bigint * 7919) % {days})::int)::timestamp AT TIME ZONE 'Asia/Shanghai'
                   + interval '10 hours' + (g % 600) * interval '1 minute',
               now(), 3
        FROM generate_series(1, {n_orders}) AS g JOIN c ON c.i = g % (SELECT COUNT(*) FROM cinema)
    """)
    await run("""
        INSERT INTO work_order_event (work_order_id, at, actor, action, from_state, to_state, detail, internal)
        SELECT w.id, w.created_at, 'o-bench', 'open', NULL, 'open', '{}'::jsonb, FALSE FROM work_order w WHERE w.ref LIKE 'B%'
        UNION ALL
        SELECT w.id, w.created_at + (1 + w.id % 20) * interval '1 minute', 'staff01', 'acknowledge',
               'assigned', 'acknowledged', '{}'::jsonb, FALSE
        FROM work_order w WHERE w.ref LIKE 'B%' AND w.state IN ('resolved', 'acknowledged')
        UNION ALL
        SELECT w.id, w.created_at + (30 + w.id % 300) * interval '1 minute', 'staff01', 'resolve',
               'acknowledged', 'resolved', '{"action": "已处理"}'::jsonb, FALSE
        FROM work_order w WHERE w.ref LIKE 'B%' AND w.state = 'resolved'
        UNION ALL
        SELECT w.id, w.created_at + interval '2 hours', 'system', 'escalate', 'assigned', 'escalated',
               '{"clock": "ack", "assignee_before": "staff01", "assignee": "manager01", "level": 1}'::jsonb, FALSE
        FROM work_order w WHERE w.ref LIKE 'B%' AND w.id % 20 = 0
    """)
    got.work_orders, got.events = await _count(conn, "work_order"), await _count(conn, "work_order_event")
    got.seconds["work orders"] = time.monotonic() - t0

    # Minutes: two metrics of one projector per cinema, every minute of the last minute_days.
    t0 = time.monotonic()
    mdays = days if minute_days is None else min(days, minute_days)
    start = datetime.combine(today - timedelta(days=mdays - 1), datetime.min.time(), demo.LOCAL) + timedelta(hours=3)
    metrics = ",".join(f"'{m}'" for m in MINUTE_METRICS)
    await run(f"""
        INSERT INTO telemetry_minute (cinema_id, device_id, minute, metric, n, vmin, vmax, vsum)
        SELECT p.cinema_id, p.device_id, m.at, x.metric, 6,
               40 + (m.i % 97) / 10.0, 42 + (m.i % 97) / 10.0, 6 * (41 + (m.i % 97) / 10.0)
        FROM (SELECT DISTINCT ON (cinema_id) cinema_id, device_id FROM projector ORDER BY cinema_id, id) p
        CROSS JOIN (SELECT i, TIMESTAMPTZ '{start.isoformat()}' + i * interval '1 minute' AS at
                    FROM generate_series(0, {mdays * 1440 - 1}) AS i) m
        CROSS JOIN unnest(ARRAY[{metrics}]) AS x(metric)
    """)
    got.minute_rows = await _count(conn, "telemetry_minute")
    got.minute_devices = min(got.cinemas, await _count(conn, "projector"))
    got.seconds["minutes"] = time.monotonic() - t0

    t0 = time.monotonic()
    got.rollups = await rollups.rebuild()
    # Health snapshots are not kept as raw rows: one health_score day per projector per day.
    await run(f"""
        INSERT INTO device_day (cinema_id, device_id, day, metric, n, vmin, vmax, vsum, vlast, last_at)
        SELECT p.cinema_id, p.device_id, DATE '{first}' + d, 'health_score', 288, 70, 95, 288 * 85,
               80 + (p.id + d) % 15, (DATE '{first}' + d + 1)::timestamp AT TIME ZONE 'Asia/Shanghai'
        FROM projector p CROSS JOIN generate_series(0, {days - 1}) AS d
        ON CONFLICT DO NOTHING
    """)
    await run(
        "UPDATE projector SET health_score = 85, health = '{\"score\": 85}', health_at = now()"
    )
    got.health_days = int((await conn.execute_query_dict(
        "SELECT COUNT(*) AS n FROM device_day WHERE metric = 'health_score'"))[0]["n"])
    await run("ANALYZE")
    got.seconds["rollups"] = time.monotonic() - t0
    say(
        f"seeded: {got.cinemas} cinemas, {got.halls} halls, {got.showtimes} shows over {days} days "
        f"(to {today}), {got.orders} orders, {got.tickets} tickets, {got.ratings} ratings, "
        f"{got.work_orders} work orders ({got.events} timeline rows), {got.minute_rows} minute rows "
        f"({len(MINUTE_METRICS)} metrics × {got.minute_devices} projectors × {mdays} days × 1440), "
        f"{got.health_days} health days; rollups {got.rollups}"
    )
    say("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in got.seconds.items()))
    return got


# --------------------------------------------------------------------------- counting and timing


POOL_RESET = "SELECT pg_advisory_unlock_all()"


class Statements:
    """Counts the statements sent through asyncpg (every query tortoise makes on PostgreSQL),
    but not the reset asyncpg's pool sends when a connection goes back to it."""

    def __init__(self) -> None:
        self.n = 0
        self.texts: list[str] | None = None  # set to a list to keep each statement's SQL

    def install(self) -> None:
        import asyncpg.connection

        cls = asyncpg.connection.Connection
        counter = self
        # Public methods only: fetch() runs _execute() inside, and must count once.
        for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
            if not hasattr(cls, name) or getattr(getattr(cls, name), "_counted", False):
                continue
            original = getattr(cls, name)

            def wrapped(self_: object, *a: object, _original: object = original, **kw: object) -> object:
                text = str(a[0] if a else kw.get("query", ""))
                if not text.startswith(POOL_RESET):  # the pool's own reset on release
                    counter.n += 1
                    if counter.texts is not None:
                        counter.texts.append(text[:300])
                return _original(self_, *a, **kw)  # type: ignore[operator]

            wrapped._counted = True  # type: ignore[attr-defined]
            setattr(cls, name, wrapped)


@dataclass
class Timing:
    name: str
    path: str
    ms: list[float] = field(default_factory=list)
    queries: int = 0
    status: int = 0
    size: int = 0


async def time_pages(
    database_url: str, repeat: int, today: date, say: callable, show_sql: str | None = None,  # type: ignore[valid-type]
) -> list[Timing]:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.app import init_app
    from bot.infra.settings import Settings
    from handlers.console import auth
    from handlers.console.shell import load_sections

    counter = Statements()
    counter.install()
    settings = Settings.from_env({"CINEBOT_DATABASE_URL": database_url}, env_file=None)
    app = init_app(settings, run_jobs=False)
    pages = list(PAGES)
    for section in load_sections():
        for table in section.tables:
            for fmt in EXPORT_FORMATS:
                pages.append((f"{section.key} {table}.{fmt}", f"/console/{section.key}/export/{table}.{fmt}?{EXPORT_RANGE}"))
    fill = {"today": today.isoformat(), "year_ago": (today - timedelta(days=364)).isoformat()}
    results: list[Timing] = []
    async with TestClient(TestServer(app)) as client:
        link = auth.enter_link(settings, time.time(), "manager01", next_path="/console/")
        path = link.split("://", 1)[1].split("/", 1)[1]
        entered = await client.get("/" + path, allow_redirects=False)
        assert entered.status in (200, 302, 303), await entered.text()
        for name, template in pages:
            url = template.format(**fill)
            t = Timing(name, url)
            for i in range(repeat + 1):
                before = counter.n
                t0 = time.perf_counter()
                resp = await client.get(url, allow_redirects=False)
                body = await resp.read()
                ms = (time.perf_counter() - t0) * 1000
                t.status, t.size = resp.status, len(body)
                if i:  # the first is a warm-up (templates, plans, caches)
                    t.ms.append(ms)
                    t.queries = max(t.queries, counter.n - before)
            results.append(t)
            if show_sql and show_sql == name:
                counter.texts = []
                await (await client.get(url, allow_redirects=False)).read()
                for text in counter.texts:
                    say("    SQL " + " ".join(text.split()))
                counter.texts = None
            say(f"  {name}: {nearest_rank(t.ms, 0.5):.0f} ms, {t.queries} statements, HTTP {t.status}")
    return results


def report(results: list[Timing]) -> tuple[list[str], bool]:
    table = Table([("page", 34), ("n", 4), ("p50 ms", 8), ("p95 ms", 8), ("max ms", 8), ("queries", 7),
                   ("HTTP", 4), ("", 0)])
    rows, ok_all = [], True
    for t in results:
        p95 = nearest_rank(t.ms, 0.95)
        ok = t.status < 400 and p95 <= P95_MS and t.queries <= MAX_QUERIES
        ok_all &= ok
        rows.append((t.name, len(t.ms), f"{nearest_rank(t.ms, 0.5):.1f}", f"{p95:.1f}", f"{max(t.ms):.1f}",
                     t.queries, t.status, "PASS" if ok else "FAIL"))
    lines = table.lines(rows)
    worst = max((nearest_rank(t.ms, 0.95) for t in results), default=float("nan"))
    most = max((t.queries for t in results), default=0)
    lines.append(target(all(nearest_rank(t.ms, 0.95) <= P95_MS for t in results),
                        f"p95 ≤ {P95_MS:.0f} ms on every page (worst {worst:.1f} ms)"))
    lines.append(target(most <= MAX_QUERIES, f"≤ {MAX_QUERIES} queries per page (most {most})"))
    lines.append(target(all(t.status < 400 for t in results), "every page answered (2xx/3xx)"))
    return lines, ok_all


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> int:
    import asyncpg

    import domain
    from bot.infra.storage import open_database

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    url = args.database_url
    raw = url.replace("postgres://", "postgresql://", 1)
    conn = await asyncpg.connect(raw)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()
    t0 = time.monotonic()
    async with open_database(url, domain.MODEL_MODULES, domain.MIGRATIONS):
        seeded = await seed(args.cinemas, args.days, args.scale, args.minute_days, say)
    seed_s = time.monotonic() - t0
    from domain.days import business_day

    today = business_day(datetime.now(UTC))
    say(f"seeding took {seed_s:.1f} s; timing pages ({args.repeat} times each after a warm-up)")
    results = await time_pages(url, args.repeat, today, say, args.show_sql)
    lines, ok = report(results)
    print(f"console at chain scale: {args.cinemas} cinemas × {args.days} days, scale {args.scale} — "
          f"{seeded.tickets} tickets, {seeded.ratings} ratings, {seeded.work_orders} work orders, "
          f"{seeded.minute_rows} minute rows; seeded in {seed_s:.0f} s")
    print("\n".join(lines))
    return 0 if ok or not args.strict else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cinemas", type=int, default=10)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--scale", type=float, default=1.0, help="share of the issue's row counts")
    parser.add_argument("--minute-days", type=int, default=None,
                        help="days of per-minute aggregates (default: all of --days)")
    parser.add_argument("--repeat", type=int, default=20, help="timed fetches per page")
    parser.add_argument("--database-url", default=os.environ.get("CINEBOT_BENCH_DATABASE_URL"),
                        help="a PostgreSQL database of its own (emptied); default: a throwaway cluster")
    parser.add_argument("--show-sql", metavar="PAGE", help="print the SQL of one page (its name in the table)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.minute_days is None:
        args.minute_days = max(1, round(args.days * min(1.0, args.scale)))
    if args.database_url:
        return asyncio.run(run(args))
    pgbin, as_pg = find_pgbin(), as_postgres()
    if pgbin is None or as_pg is None:
        print("no --database-url and no PostgreSQL binaries to start one", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-console-") as workdir:
        pg = Postgres(pgbin, workdir, as_pg)
        pg.start(max_connections=50)
        try:
            args.database_url = pg.url
            return asyncio.run(run(args))
        finally:
            pg.stop()


if __name__ == "__main__":
    raise SystemExit(main())
