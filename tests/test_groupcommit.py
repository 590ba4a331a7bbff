"""Group commit: concurrent writes share one statement (or one Redis pipeline), every caller
still learns its own outcome, and nothing is acknowledged before it is written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from tortoise.exceptions import IntegrityError

import domain
from bot.infra.groupcommit import GroupCommit
from bot.infra.storage import open_database
from domain.outbox import OutboundMessage, Outgoing, insert_many
from domain.people import Member, member_phones, touch_member, touch_members
from handlers.reference import ReferenceData

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[None]:
    async with open_database(database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
        yield


async def test_concurrent_items_share_a_flush_and_get_their_own_results() -> None:
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        batches.append(list(items))
        await asyncio.sleep(0.01)
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(flush, delay_s=0.001)
    results = await asyncio.gather(*(group.add(i) for i in range(20)))
    assert results == [i * 10 for i in range(20)]
    assert batches == [list(range(20))]


async def test_items_arriving_during_a_flush_wait_for_the_next_one() -> None:
    batches: list[list[str]] = []
    writing = asyncio.Event()
    release = asyncio.Event()

    async def flush(items: list[str]) -> list[None]:
        batches.append(list(items))
        writing.set()
        await release.wait()
        return [None] * len(items)

    group: GroupCommit[str, None] = GroupCommit(flush, delay_s=0.0)
    first = asyncio.ensure_future(group.add("a"))
    await writing.wait()
    later = [asyncio.ensure_future(group.add(x)) for x in "bcd"]
    await asyncio.sleep(0.01)
    assert batches == [["a"]]  # one flush at a time: b, c, d are collecting
    assert not any(f.done() for f in [first, *later])  # nobody is told before the write
    release.set()
    await asyncio.gather(first, *later)
    assert batches == [["a"], ["b", "c", "d"]]


async def test_a_failed_flush_fails_every_caller_of_its_batch_and_not_the_next() -> None:
    calls = 0

    async def flush(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database gone")
        return items

    group: GroupCommit[int, int] = GroupCommit(flush, delay_s=0.001)
    outcomes = await asyncio.gather(group.add(1), group.add(2), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert await group.add(3) == 3


async def test_at_most_max_inflight_flushes_run_and_what_waits_goes_when_one_returns() -> None:
    batches: list[list[int]] = []
    running = 0
    most = 0
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        nonlocal running, most
        batches.append(list(items))
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return items

    group: GroupCommit[int, int] = GroupCommit(flush, max_inflight=2)  # delay 0: one loop turn
    first = group.submit(1)
    await asyncio.sleep(0.01)
    second = group.submit(2)
    await asyncio.sleep(0.01)
    rest = [group.submit(i) for i in range(3, 8)]
    await asyncio.sleep(0.01)
    assert batches == [[1], [2]] and group.inflight == 2  # 3..7 wait for one to return
    release.set()
    assert await asyncio.gather(first, second, *rest) == list(range(1, 8))
    assert batches == [[1], [2], [3, 4, 5, 6, 7]] and most == 2


async def test_an_urgent_item_does_not_wait_for_the_flushes_in_flight_when_allowed() -> None:
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def flush(items: list[str]) -> list[str]:
        batches.append(list(items))
        await release.wait()
        return items

    for allowed in (False, True):
        batches.clear()
        release.clear()
        group: GroupCommit[str, str] = GroupCommit(flush, allow_urgent=allowed)
        first = group.submit("a")
        await asyncio.sleep(0.01)
        waiting = group.submit("b")
        urgent = group.submit("c", urgent=True)
        await asyncio.sleep(0.01)
        # Allowed, it goes at once and takes what waited before it along, in order.
        assert batches == ([["a"], ["b", "c"]] if allowed else [["a"]])
        release.set()
        assert await asyncio.gather(first, waiting, urgent) == ["a", "b", "c"]


async def test_an_exception_as_a_result_fails_only_its_caller() -> None:
    async def flush(items: list[int]) -> list[int | BaseException]:
        return [ValueError(i) if i % 2 else i for i in items]

    group: GroupCommit[int, int] = GroupCommit(flush)
    outcomes = await asyncio.gather(*(group.add(i) for i in range(4)), return_exceptions=True)
    assert outcomes[0::2] == [0, 2]
    assert all(isinstance(o, ValueError) for o in outcomes[1::2])


async def test_a_flush_with_too_few_results_fails_its_callers() -> None:
    async def flush(items: list[int]) -> list[int]:
        return items[1:]

    group: GroupCommit[int, int] = GroupCommit(flush)
    outcomes = await asyncio.gather(group.add(1), group.add(2), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)


async def test_closing_fails_what_waits_lets_the_flush_in_flight_finish_and_refuses_more() -> None:
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        await release.wait()
        return items

    group: GroupCommit[int, int] = GroupCommit(flush)
    first = group.submit(1)
    await asyncio.sleep(0.01)
    waiting = group.submit(2)
    closing = asyncio.ensure_future(group.aclose(ConnectionError("closed")))
    await asyncio.sleep(0.01)
    assert not closing.done()  # it waits for the flush in flight
    release.set()
    await closing
    assert await first == 1
    with pytest.raises(ConnectionError):
        await waiting
    with pytest.raises(ConnectionError):
        await group.add(3)


async def test_drain_writes_what_is_gathered_and_waits_for_it() -> None:
    written: list[int] = []

    async def flush(items: list[int]) -> list[None]:
        await asyncio.sleep(0.01)
        written.extend(items)
        return [None] * len(items)

    group: GroupCommit[int, None] = GroupCommit(flush, max_items=3, delay_s=10.0)
    futures = [group.submit(i) for i in range(7)]
    await group.drain()
    assert written == list(range(7)) and all(f.done() for f in futures)


async def test_batches_are_capped_at_max_items() -> None:
    sizes: list[int] = []

    async def flush(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    group: GroupCommit[int, int] = GroupCommit(flush, max_items=4, delay_s=0.001)
    assert await asyncio.gather(*(group.add(i) for i in range(10))) == list(range(10))
    assert max(sizes) <= 4 and sum(sizes) == 10


async def test_a_batch_of_messages_records_each_key_once(db: None) -> None:
    payload = {"msgtype": "text", "text": {"content": "hi"}}
    batch = [Outgoing("wecom", f"u{i % 3}", payload, f"k{i % 3}", NOW) for i in range(9)]
    assert await insert_many(batch) == [None] * 9
    await insert_many([Outgoing("wecom", "u0", payload, "k0", NOW)])  # a replay
    rows = await OutboundMessage.all().order_by("idempotency_key")
    assert [(r.idempotency_key, r.recipient) for r in rows] == [("k0", "u0"), ("k1", "u1"), ("k2", "u2")]


async def test_members_are_created_once_in_a_batch_and_known_ones_are_touched(db: None) -> None:
    old = await Member.create(openid="known", first_seen=NOW.replace(year=2025),
                              last_seen=NOW.replace(year=2025), phone="13812341234")
    results = await touch_members(["new1", "known", "new2", "new1"], NOW)
    assert [(m.openid, created) for m, created in results] == [
        ("new1", True), ("known", False), ("new2", True), ("new1", True),
    ]
    assert results[0][0].id == results[3][0].id
    assert await Member.all().count() == 3
    await old.refresh_from_db()
    assert old.last_seen == NOW
    assert await member_phones(["known", "new1", "nobody"]) == ["13812341234", None, None]


async def test_one_member_is_created_on_first_contact_and_then_only_found(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    member, created = await touch_member("solo", NOW)
    assert created and member.first_seen == member.last_seen == NOW
    later = NOW.replace(hour=13)
    again, created = await touch_member("solo", later)
    assert (again.id, created) == (member.id, False)
    await again.refresh_from_db()
    assert again.last_seen == NOW  # unlike touch_members, a known member is only found

    # Two first messages at once: the INSERT that loses finds the other one's row.
    create = Member.create

    async def lost_race(**fields: object) -> Member:
        await create(**fields)
        raise IntegrityError("UNIQUE constraint failed: member.openid")

    monkeypatch.setattr(Member, "create", lost_race)
    member, created = await touch_member("racer", NOW)
    assert (member.openid, created) == ("racer", False)
    assert await Member.filter(openid="racer").count() == 1


async def test_concurrent_cache_misses_load_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = ReferenceData()
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return "rows"

    assert await asyncio.gather(*(reference._cached("k", load) for _ in range(64))) == ["rows"] * 64
    assert loads == 1

    async def broken() -> str:
        raise RuntimeError("db down")

    reference.clear()
    outcomes = await asyncio.gather(*(reference._cached("k", broken) for _ in range(3)),
                                    return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert await reference._cached("k", load) == "rows"  # a failure is not cached


async def test_shows_from_cuts_the_sorted_day_at_the_start_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    day = datetime(2026, 11, 22, tzinfo=UTC)
    films = ("哪吒", "沙丘", "哪吒", "阿凡达", "沙丘")
    shows = [
        SimpleNamespace(id=i, starts_at=day.replace(hour=h), film=SimpleNamespace(title=films[i]))
        for i, h in enumerate((10, 13, 13, 19, 22))
    ]
    reference = ReferenceData()

    async def upcoming(*args: object, **kwargs: object) -> list[SimpleNamespace]:
        return shows

    monkeypatch.setattr("handlers.reference.upcoming_showtimes", upcoming)
    ids = lambda found: [s.id for s in found]  # noqa: E731
    assert ids(await reference.shows_from(1, day, day.replace(hour=13))) == [1, 2, 3, 4]
    assert ids(await reference.shows_from(1, day, day.replace(hour=13), after=True)) == [3, 4]
    assert ids(await reference.shows_from(1, day, day.replace(hour=12, minute=59))) == [1, 2, 3, 4]
    assert ids(await reference.shows_from(1, day, day.replace(hour=23))) == []
    assert ids(await reference.shows_from(1, day, day)) == [0, 1, 2, 3, 4]
    # The titles of the same shows, each once, in the order of its first show.
    assert await reference.titles_from(1, day, day) == ("哪吒", "沙丘", "阿凡达")
    assert await reference.titles_from(1, day, day.replace(hour=13)) == ("沙丘", "哪吒", "阿凡达")
    assert await reference.titles_from(1, day, day.replace(hour=13), after=True) == ("阿凡达", "沙丘")
    assert await reference.titles_from(1, day, day.replace(hour=23)) == ()
    # day_from names a part of the schedule: the same cached day until it is reloaded.
    cached, first = await reference.day_from(1, day, day.replace(hour=13))
    assert first == 1
    assert await reference.day_from(1, day, day.replace(hour=10), after=True) == (cached, 1)
    assert {(cached, first): "text"}[(cached, 1)] == "text"  # hashed by identity
    reference.clear()
    reloaded, _ = await reference.day_from(1, day, day)
    assert reloaded is not cached and reloaded != cached
