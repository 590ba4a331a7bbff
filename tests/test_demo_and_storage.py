"""`cinebot demo` data, the schema's migrations, and database access from tasks and jobs."""

from __future__ import annotations

import asyncio
import copy
import sys
import types
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from tortoise import fields
from tortoise.cli.cli import tortoise_cli_context
from tortoise.connection import get_connection
from tortoise.migrations.autodetector import MigrationAutodetector
from tortoise.migrations.executor import MigrationExecutor
from tortoise.models import Model

import domain
from bot.app import DISPATCHER, REDIS, SCHEDULER
from bot.wechat.chatclient import next_msg_id, text_xml
from bot.chat.replies import Reply
from bot.infra.storage import open_database, tortoise_config
from domain import demo
from domain.audit import AuditLog
from domain.catalog import Film, Showtime
from domain.cinemas import Cinema, Hall, parse_layout
from domain.devices import Projector
from domain.people import Member, Staff
from jobs.context import JobContext
from jobs.locks import LeaderLocks
from jobs.schedule import JOB_ID, top_up_demo_schedule
from tests.support import FakeClock

SHANGHAI = ZoneInfo("Asia/Shanghai")
MODELS = (Cinema, Hall, Film, Showtime, Staff, Projector, Member, AuditLog)
# One new day of the rolling week: every hall, every daily slot.
ONE_DAY_OF_SHOWS = len(demo.HALLS) * len(demo.DAILY_SLOTS)


async def row_counts() -> dict[str, int]:
    return {m.__name__: await m.all().count() for m in MODELS}


# --- the demo cinema ------------------------------------------------------------------------


async def test_seeding_twice_changes_nothing_the_second_time(
    client: TestClient, clock: FakeClock
) -> None:
    before = await row_counts()  # the app seeded once at start-up
    report = await demo.seed(clock.now())
    assert report.showtimes_created == 0
    assert await row_counts() == before
    assert before["Showtime"] == demo.SCHEDULE_DAYS * ONE_DAY_OF_SHOWS
    assert (report.cinema, report.halls, report.staff, report.projectors) == (
        "cinebot 示例影城", 6, 6, 6,
    )


async def test_the_demo_cinema_has_six_real_looking_halls(client: TestClient) -> None:
    cinema = await Cinema.get(code=demo.DEMO_CINEMA_CODE)
    assert cinema.name == "cinebot 示例影城"
    halls = await Hall.filter(cinema=cinema).order_by("id")
    assert [h.name for h in halls] == ["1号厅", "2号厅", "3号厅", "4号厅", "5号厅", "IMAX厅"]
    for hall in halls:
        assert 8 <= len(hall.layout) <= 14, hall.name
        seats = hall.seats()
        kinds = Counter(s.kind for s in seats)
        assert kinds["wheelchair"] >= 2, hall.name
        assert kinds["couple"] >= 2 and kinds["couple"] % 2 == 0, hall.name
        # A couple row exists and its couple seats come in adjacent pairs.
        couple_rows = [line for line in hall.layout if "C" in line]
        assert couple_rows, hall.name
        for line in couple_rows:
            runs = [run for run in line.replace("_", " ").split() if "C" in run]
            assert all(set(run) == {"C"} and len(run) % 2 == 0 for run in runs), line
    imax = halls[-1]
    assert imax.screen == "IMAX" and len(imax.seats()) > len(halls[2].seats())


async def test_the_demo_films_include_the_ones_people_ask_for_by_nickname(
    client: TestClient,
) -> None:
    films = {f.title: f for f in await Film.all()}
    assert len(films) >= 6
    assert "沙丘2" in films["沙丘：第二部"].aliases
    assert "哪吒2" in films["哪吒之魔童闹海"].aliases
    for film in films.values():
        assert film.duration_min > 60 and film.synopsis and film.formats


async def test_there_are_shows_every_day_of_the_coming_week_including_at_seven_in_the_evening(
    client: TestClient, clock: FakeClock
) -> None:
    today = clock.now().astimezone(SHANGHAI).date()
    shows = await Showtime.all()
    local_starts = [s.starts_at.astimezone(SHANGHAI) for s in shows]
    days = {t.date() for t in local_starts}
    for offset in range(8):
        assert today + timedelta(days=offset) in days, f"no shows on day +{offset}"
    evening = [t for t in local_starts if (t.hour, t.minute) == (19, 0)]
    assert evening and {t.date() for t in evening} >= {today + timedelta(days=i) for i in range(8)}
    # Prime time costs more than the same format in the morning.
    prices = {(s.format, s.starts_at.astimezone(SHANGHAI).hour): s.base_price_fen for s in shows}
    assert prices[("2D", 19)] > prices[("2D", 10)]
    # No hall shows two films at once.
    for s in shows:
        assert s.ends_at > s.starts_at
    by_hall: dict[int, list[Showtime]] = {}
    for s in sorted(shows, key=lambda s: s.starts_at):
        by_hall.setdefault(s.hall_id, []).append(s)  # type: ignore[attr-defined]
    for hall_shows in by_hall.values():
        for earlier, later in zip(hall_shows, hall_shows[1:]):
            assert earlier.ends_at <= later.starts_at


async def test_the_demo_staff_have_the_right_roles(client: TestClient) -> None:
    roles = {s.userid: str(s.role) for s in await Staff.filter(active=True)}
    assert roles == {
        "manager01": "manager",
        "staff01": "staff",
        "staff02": "staff",
        "staff03": "staff",
        "eng01": "engineer",
        "eng02": "engineer",
    }


async def test_every_hall_has_one_projector_with_its_own_id_and_key(client: TestClient) -> None:
    halls = await Hall.all()
    projectors = await Projector.all()
    hall_of = [p.hall_id for p in projectors]  # type: ignore[attr-defined]
    assert sorted(hall_of) == sorted(h.id for h in halls)
    assert len({p.device_id for p in projectors}) == len(projectors)
    assert len({p.key for p in projectors}) == len(projectors)
    assert all(len(p.key) >= 32 for p in projectors)


@pytest.mark.parametrize(
    "layout",
    [
        ["SSSS", "SSZS"],  # Z is no kind of seat
        ["SS_SS", "SCCC"],  # three couple seats: one of them has no partner
        ["C_C"],  # an aisle splits a pair
        ["SSSC"],  # a lone couple seat at the row end
    ],
)
def test_a_layout_with_unknown_marks_or_unpaired_couple_seats_is_refused(
    layout: list[str],
) -> None:
    with pytest.raises(ValueError, match="row 2|row 1"):
        parse_layout(layout)


def test_a_layout_reads_rows_front_first_and_skips_aisles_in_seat_numbers() -> None:
    seats = parse_layout(["WS_SW", "CC_CCCC"])
    assert [s.label for s in seats[:4]] == ["1-1", "1-2", "1-3", "1-4"]
    assert [s.kind for s in seats[:4]] == ["wheelchair", "standard", "standard", "wheelchair"]
    assert [s.kind for s in seats[4:]] == ["couple"] * 6


# --- migrations -----------------------------------------------------------------------------


async def _pending_operations(config: dict[str, Any]) -> list[str]:
    """What `tortoise makemigrations` would write for this config, as operation descriptions."""
    async with tortoise_cli_context(config) as ctx:
        writers = await MigrationAutodetector(ctx.apps, config["apps"]).changes()
    return [
        f"{type(op).__name__}({getattr(op, 'name', '')})" for w in writers for op in w.operations
    ]


async def test_the_migrations_capture_every_model_change() -> None:
    pending = await _pending_operations(copy.deepcopy(domain.TORTOISE_ORM))
    assert pending == [], (
        "models changed without a migration; run `tortoise -c domain.TORTOISE_ORM "
        "makemigrations` and commit the result: " + ", ".join(pending)
    )


async def test_the_migration_check_would_notice_a_model_without_a_migration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class ForgottenNote(Model):
        id = fields.IntField(primary_key=True)
        body = fields.TextField()

        class Meta:
            table = "forgotten_note"

    probe = types.ModuleType("cinebot_probe_models")
    probe.__models__ = [ForgottenNote]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, probe.__name__, probe)
    config = copy.deepcopy(domain.TORTOISE_ORM)
    config["apps"]["models"]["models"] = [*domain.MODEL_MODULES, probe.__name__]

    assert await _pending_operations(config) == ["CreateModel(ForgottenNote)"]


async def test_reopening_the_database_keeps_the_data_and_migrates_nothing_twice(
    database_url: str, clock: FakeClock
) -> None:
    async with open_database(database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
        first = await demo.seed(clock.now())
    async with open_database(database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
        config = tortoise_config(database_url, domain.MODEL_MODULES, domain.MIGRATIONS)
        executor = MigrationExecutor(get_connection("default"), config["apps"])
        assert await executor.plan(None) == []
        assert await Showtime.all().count() == first.showtimes_created == 240
        assert (await demo.seed(clock.now())).showtimes_created == 0


# --- the database from tasks and jobs ---------------------------------------------------


async def test_a_task_spawned_by_a_handler_can_still_use_the_database(
    client: TestClient, callbacks: Any, clock: FakeClock
) -> None:
    spawned: list[asyncio.Task[int]] = []
    dispatcher = client.app[DISPATCHER]

    # A handler that kicks off work and answers at once, the way a slow job would be handed off.
    @dispatcher.on(when=lambda u: u.inbound.text == "补排片")
    async def top_up(clock: FakeClock, redis: Any) -> Reply:
        ctx = JobContext(clock=clock, locks=LeaderLocks(redis))
        spawned.append(asyncio.create_task(top_up_demo_schedule(ctx)))
        return Reply.say("正在补排片")

    before = await Showtime.all().count()
    clock.advance(days=1)  # a new day: one more day of the rolling week to fill
    status, reply = await callbacks.wecom_post(
        text_xml("ww_corp", "manager01", "补排片", next_msg_id(), 1000002)
    )
    assert status == 200 and reply["Content"] == "正在补排片"
    assert len(spawned) == 1

    created = await asyncio.wait_for(spawned[0], 10)

    assert created == ONE_DAY_OF_SHOWS
    assert await Showtime.all().count() == before + ONE_DAY_OF_SHOWS


async def test_the_scheduler_inside_the_app_runs_the_schedule_job_against_the_database(
    make_client: Callable[..., Any], clock: FakeClock
) -> None:
    client = await make_client(run_jobs=True)
    scheduler = client.app[SCHEDULER]
    job = scheduler.get_job(JOB_ID)
    assert job is not None, "the demo app schedules the top-up job"

    done: asyncio.Future[JobExecutionEvent] = asyncio.get_running_loop().create_future()

    def finished(event: JobExecutionEvent) -> None:
        if event.job_id == JOB_ID and not done.done():
            done.set_result(event)

    scheduler.add_listener(finished, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    before = await Showtime.all().count()
    clock.advance(days=1)
    job.modify(next_run_time=datetime.now(SHANGHAI))  # run now instead of in an hour

    event = await asyncio.wait_for(done, 10)

    assert event.exception is None, event.traceback
    assert event.retval == ONE_DAY_OF_SHOWS
    assert await Showtime.all().count() == before + ONE_DAY_OF_SHOWS


async def test_only_one_of_two_concurrent_replicas_runs_the_job(
    client: TestClient, clock: FakeClock
) -> None:
    redis = client.app[REDIS]
    # Two replicas: separate lock objects, the same Redis.
    replica_a = JobContext(clock=clock, locks=LeaderLocks(redis))
    replica_b = JobContext(clock=clock, locks=LeaderLocks(redis))
    before = await Showtime.all().count()
    clock.advance(days=1)

    results = await asyncio.gather(
        top_up_demo_schedule(replica_a), top_up_demo_schedule(replica_b)
    )

    assert sorted(results) == [0, ONE_DAY_OF_SHOWS]
    assert await Showtime.all().count() == before + ONE_DAY_OF_SHOWS
    # The leader let go when it finished: the next tick can run (and finds nothing to do).
    assert await redis.exists(f"cinebot:leader:{JOB_ID}") == 0
    assert await top_up_demo_schedule(replica_b) == 0


async def test_a_leader_lock_is_exclusive_until_released(client: TestClient) -> None:
    locks = LeaderLocks(client.app[REDIS])
    async with locks.leader("nightly-report", ttl_seconds=30) as first:
        async with locks.leader("nightly-report", ttl_seconds=30) as second:
            assert (first, second) == (True, False)
        # The loser's exit must not release the winner's lock.
        async with locks.leader("nightly-report", ttl_seconds=30) as third:
            assert third is False
    async with locks.leader("nightly-report", ttl_seconds=30) as after:
        assert after is True
