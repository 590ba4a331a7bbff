"""The seat inventory against a real Redis: all-or-nothing holds, expiry by the caller's
clock, releases, quotas, replacements, sales, reloads after Redis loses its data, and
what happens when many people click at once."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass

import redis.asyncio as aioredis

from bot.seats.inventory import SeatInventory, SeatStatus, Sold

SHOW = 42
NOW = 1_795_000_000_000  # ms; the caller's clock, moved by hand
TTL = 600_000  # a 10-minute hold
CAP = 6


class SoldDb:
    """Stands in for the database: what is sold for the showtime, and how often it was asked."""

    def __init__(self, seats: tuple[str, ...] = (), per_owner: dict[str, int] | None = None):
        self.seats = list(seats)
        self.per_owner = dict(per_owner or {})
        self.loads = 0

    async def load(self, showtime: int) -> Sold:
        assert showtime == SHOW
        self.loads += 1
        return Sold(tuple(self.seats), dict(self.per_owner))


def inventory(redis: aioredis.Redis, db: SoldDb | None = None) -> SeatInventory:
    return SeatInventory(redis, (db or SoldDb()).load)


def hall(rows: int = 15, cols: int = 20) -> list[str]:
    return [f"{r}-{c}" for r in range(1, rows + 1) for c in range(1, cols + 1)]


async def hold(inv: SeatInventory, seats: list[str], owner: str, now: int = NOW, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("ttl_ms", TTL)
    kw.setdefault("cap", CAP)
    return await inv.hold(SHOW, seats, owner, now_ms=now, **kw)


async def states(inv: SeatInventory, now: int = NOW, labels: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    return await inv.states(SHOW, labels or hall(), now_ms=now)


def held(owner: str, hold_id: str) -> SeatStatus:
    return SeatStatus("held", owner=owner, hold_id=hold_id)


SOLD = SeatStatus("sold")


# --------------------------------------------------------------------------- holds


async def test_a_hold_is_all_or_nothing(redis: aioredis.Redis) -> None:
    inv = inventory(redis)
    alice = await hold(inv, ["5-8"], "alice")
    assert alice.ok and alice.expires_ms == NOW + TTL

    bob = await hold(inv, ["5-7", "5-8", "5-9"], "bob")
    assert not bob.ok and not bob.over_quota
    assert bob.taken == ("5-8",)
    # Nothing of Bob's attempt stayed behind: 5-7 and 5-9 are free, 5-8 still Alice's.
    assert await states(inv) == {"5-8": held("alice", alice.hold_id)}
    carol = await hold(inv, ["5-7", "5-9"], "carol")
    assert carol.ok
    # Bob's failed attempt did not count against his quota either.
    assert (await hold(inv, [f"1-{c}" for c in range(1, CAP + 1)], "bob")).ok


async def test_a_hold_expires_when_the_clock_passes_it(redis: aioredis.Redis) -> None:
    inv = inventory(redis)
    alice = await hold(inv, ["3-3", "3-4"], "alice", ttl_ms=1_000)
    assert alice.ok

    early = await hold(inv, ["3-4"], "bob", now=NOW + 999)
    assert not early.ok and early.taken == ("3-4",)
    assert set(await states(inv, now=NOW + 999)) == {"3-3", "3-4"}

    assert await states(inv, now=NOW + 1_000) == {}  # lapsed: nobody's any more
    bob = await hold(inv, ["3-3", "3-4"], "bob", now=NOW + 1_000)
    assert bob.ok
    assert await states(inv, now=NOW + 1_000) == {
        "3-3": held("bob", bob.hold_id),
        "3-4": held("bob", bob.hold_id),
    }


async def test_release_frees_only_the_holds_own_seats(redis: aioredis.Redis) -> None:
    inv = inventory(redis)
    alice = await hold(inv, ["2-1", "2-2"], "alice", ttl_ms=1_000)
    later = NOW + 5_000
    bob = await hold(inv, ["2-2"], "bob", now=later)  # Alice's hold lapsed; Bob took 2-2
    assert bob.ok

    freed = await inv.release(SHOW, alice.hold_id, "alice", ["2-1", "2-2"])
    assert freed == 1  # her lapsed key on 2-1; nothing of Bob's
    assert await states(inv, now=later) == {"2-2": held("bob", bob.hold_id)}
    assert (await hold(inv, ["2-2"], "carol", now=later)).taken == ("2-2",)

    # Releasing a live hold frees its seats at once.
    assert await inv.release(SHOW, bob.hold_id, "bob", ["2-2"]) == 1
    assert await states(inv, now=later) == {}
    assert (await hold(inv, ["2-2"], "carol", now=later)).ok


async def test_the_quota_counts_held_and_sold_seats_but_not_lapsed_holds(
    redis: aioredis.Redis,
) -> None:
    inv = inventory(redis, SoldDb(per_owner={"dave": 3}))
    first = await hold(inv, ["1-1", "1-2"], "alice", cap=4)
    assert (await inv.sell(SHOW, first.hold_id, "alice", ["1-1", "1-2"], now_ms=NOW)).ok
    second = await hold(inv, ["1-3", "1-4"], "alice", cap=4, ttl_ms=1_000)
    assert second.ok  # 2 sold + 2 held = 4

    over = await hold(inv, ["1-5"], "alice", cap=4)
    assert not over.ok and over.over_quota and over.already == 4
    assert "1-5" not in await states(inv)

    # Once the second hold lapses it stops counting: 2 sold + 2 new = 4 again.
    assert (await hold(inv, ["1-5", "1-6"], "alice", cap=4, now=NOW + 1_000)).ok
    again = await hold(inv, ["1-7"], "alice", cap=4, now=NOW + 1_000)
    assert again.over_quota and again.already == 4

    # What the database says an owner already bought counts too.
    dave = await hold(inv, ["9-1", "9-2"], "dave", cap=4)
    assert dave.over_quota and dave.already == 3
    assert (await hold(inv, ["9-1"], "dave", cap=4)).ok


async def test_owner_bookkeeping_lives_as_long_as_the_owners_longest_hold(
    redis: aioredis.Redis,
) -> None:
    """A short hold after a long one must not shorten how long Redis keeps the owner's
    hold count: the long hold would stop counting against the quota while still live."""
    inv = inventory(redis)
    long = await hold(inv, ["4-1", "4-2"], "alice", ttl_ms=30 * 60_000)
    assert long.ok
    assert (await hold(inv, ["4-5"], "alice", ttl_ms=1_000)).ok
    keys = [k async for k in redis.scan_iter(match=f"*{{{SHOW}}}*alice*")]
    assert keys, "no per-owner key found"
    for key in keys:
        assert await redis.pttl(key) >= 30 * 60_000, key


async def test_replace_swaps_a_hold_in_one_step(redis: aioredis.Redis) -> None:
    inv = inventory(redis)
    old = await hold(inv, ["6-1", "6-2"], "alice", cap=2)
    # At the cap, the old hold's seats do not count against the new one, and 6-2
    # (held by the old hold) is free for it.
    new = await hold(
        inv, ["6-2", "6-3"], "alice", cap=2, replace=old.hold_id, replace_seats=["6-1", "6-2"]
    )
    assert new.ok and new.hold_id != old.hold_id
    assert await states(inv) == {"6-2": held("alice", new.hold_id), "6-3": held("alice", new.hold_id)}
    assert (await hold(inv, ["6-1"], "bob")).ok  # 6-1 went back on sale

    # A failed replacement (a seat taken) keeps the old hold whole, and its quota.
    failed = await hold(
        inv, ["6-3", "6-1"], "alice", cap=2, replace=new.hold_id, replace_seats=["6-2", "6-3"]
    )
    assert not failed.ok and failed.taken == ("6-1",)
    seats = await states(inv)
    assert seats["6-2"] == seats["6-3"] == held("alice", new.hold_id)
    assert (await hold(inv, ["7-1"], "alice", cap=2)).over_quota

    # Over the quota: same, nothing changes.
    too_many = await hold(
        inv, ["7-1", "7-2", "7-3"], "alice", cap=2, replace=new.hold_id,
        replace_seats=["6-2", "6-3"],
    )
    assert too_many.over_quota
    assert await states(inv) == seats


# --------------------------------------------------------------------------- sales


async def test_selling_a_live_hold(redis: aioredis.Redis) -> None:
    inv = inventory(redis)
    alice = await hold(inv, ["8-8", "8-9"], "alice")
    sale = await inv.sell(SHOW, alice.hold_id, "alice", ["8-8", "8-9"], now_ms=NOW + 10)
    assert sale.ok and not sale.lapsed
    assert await states(inv, now=NOW + 10) == {"8-8": SOLD, "8-9": SOLD}
    # Sold stays sold: after the hold would have lapsed, and whatever a release says.
    much_later = NOW + 10 * TTL
    assert await inv.release(SHOW, alice.hold_id, "alice", ["8-8", "8-9"]) == 0
    assert (await hold(inv, ["8-9"], "bob", now=much_later)).taken == ("8-9",)
    assert await states(inv, now=much_later) == {"8-8": SOLD, "8-9": SOLD}


async def test_selling_a_lapsed_hold_whose_seats_are_still_free(redis: aioredis.Redis) -> None:
    inv = inventory(redis)
    alice = await hold(inv, ["8-1", "8-2"], "alice", ttl_ms=1_000)
    sale = await inv.sell(SHOW, alice.hold_id, "alice", ["8-1", "8-2"], now_ms=NOW + 5_000)
    assert sale.ok and sale.lapsed
    assert await states(inv, now=NOW + 5_000) == {"8-1": SOLD, "8-2": SOLD}


async def test_selling_a_lapsed_hold_after_someone_took_a_seat(redis: aioredis.Redis) -> None:
    inv = inventory(redis)
    alice = await hold(inv, ["8-3", "8-4"], "alice", ttl_ms=1_000)
    later = NOW + 5_000
    bob = await hold(inv, ["8-4"], "bob", now=later)
    assert bob.ok
    sale = await inv.sell(SHOW, alice.hold_id, "alice", ["8-3", "8-4"], now_ms=later)
    assert not sale.ok and sale.taken == ("8-4",)
    assert await states(inv, now=later) == {"8-4": held("bob", bob.hold_id)}  # 8-3 not sold
    assert (await hold(inv, ["8-3"], "carol", now=later)).ok
    assert (await inv.sell(SHOW, bob.hold_id, "bob", ["8-4"], now_ms=later)).ok
    # A seat sold to Bob cannot be sold again through Alice's old hold.
    again = await inv.sell(SHOW, alice.hold_id, "alice", ["8-4"], now_ms=later)
    assert not again.ok and again.taken == ("8-4",)


async def test_unsell_puts_seats_back_and_gives_back_quota(redis: aioredis.Redis) -> None:
    inv = inventory(redis)
    alice = await hold(inv, ["10-1", "10-2"], "alice", cap=2)
    assert (await inv.sell(SHOW, alice.hold_id, "alice", ["10-1", "10-2"], now_ms=NOW)).ok
    assert (await hold(inv, ["10-5"], "alice", cap=2)).over_quota

    assert await inv.unsell(SHOW, "alice", ["10-2"]) == 1
    assert await states(inv) == {"10-1": SOLD}
    assert (await hold(inv, ["10-2"], "bob")).ok
    # One seat of quota came back, not more.
    assert (await hold(inv, ["10-5", "10-6"], "alice", cap=2)).over_quota
    assert (await hold(inv, ["10-5"], "alice", cap=2)).ok
    assert await inv.unsell(SHOW, "alice", ["10-2", "10-7"]) == 0  # not sold: nothing to undo


async def test_sold_seats_come_back_from_the_database_after_redis_loses_them(
    redis: aioredis.Redis,
) -> None:
    db = SoldDb(seats=("11-1",), per_owner={"zoe": 1})
    inv = inventory(redis, db)
    assert (await hold(inv, ["11-1"], "bob")).taken == ("11-1",)
    assert db.loads == 1
    alice = await hold(inv, ["11-2"], "alice")
    assert (await inv.sell(SHOW, alice.hold_id, "alice", ["11-2"], now_ms=NOW)).ok
    db.seats.append("11-2")  # the order is committed to the database
    db.per_owner["alice"] = 1
    assert db.loads == 1  # loaded once, not on every call

    await redis.flushdb()  # Redis restarted empty

    assert (await hold(inv, ["11-2"], "bob")).taken == ("11-2",)
    assert db.loads == 2
    assert await states(inv) == {"11-1": SOLD, "11-2": SOLD}
    assert (await hold(inv, ["11-3", "11-4"], "zoe", cap=2)).over_quota  # zoe's 1 came back
    # A sale that arrives first after the loss loads too.
    await redis.flushdb()
    carol = await hold(inv, ["11-5"], "carol")
    await redis.flushdb()
    sale = await inv.sell(SHOW, carol.hold_id, "carol", ["11-5"], now_ms=NOW)
    assert sale.ok and sale.lapsed  # its hold key was lost with the rest; the seat was free
    assert await states(inv) == {"11-1": SOLD, "11-2": SOLD, "11-5": SOLD}


async def test_a_rush_after_redis_lost_its_data_asks_the_database_once(
    redis: aioredis.Redis,
) -> None:
    db = SoldDb(seats=("13-1",))
    failures = [RuntimeError("database unavailable")]
    load = db.load

    async def slow_load(showtime: int) -> Sold:
        await asyncio.sleep(0.01)  # a real query takes a while: everyone arrives meanwhile
        if failures:
            raise failures.pop()
        return await load(showtime)

    db.load = slow_load  # type: ignore[method-assign]
    inv = inventory(redis, db)
    # The database fails the first load: every waiting caller hears of it, nothing is cached.
    first = await asyncio.gather(
        *(hold(inv, [f"13-{i}"], f"u{i}") for i in range(2, 12)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in first)

    results = await asyncio.gather(*(hold(inv, [f"13-{i}"], f"u{i}") for i in range(1, 101)))
    assert db.loads == 1
    assert results[0].taken == ("13-1",)
    assert all(r.ok for r in results[1:])


async def test_states_show_sold_and_live_held_seats_only(redis: aioredis.Redis) -> None:
    inv = inventory(redis, SoldDb(seats=("12-1",)))
    short = await hold(inv, ["12-2"], "alice", ttl_ms=1_000)
    long = await hold(inv, ["12-3", "12-4"], "bob", ttl_ms=TTL)
    assert short.ok and long.ok
    later = NOW + 1_000
    assert await states(inv, now=later) == {
        "12-1": SOLD,
        "12-3": held("bob", long.hold_id),
        "12-4": held("bob", long.hold_id),
    }
    assert await states(inv, now=NOW) == {
        "12-1": SOLD,
        "12-2": held("alice", short.hold_id),
        "12-3": held("bob", long.hold_id),
        "12-4": held("bob", long.hold_id),
    }


# --------------------------------------------------------------------------- concurrency


async def test_two_hundred_people_click_the_same_two_seats(redis: aioredis.Redis) -> None:
    await redis.script_flush()  # a Redis that never saw the scripts: they load under the rush
    inv = inventory(redis)
    results = await asyncio.gather(
        *(hold(inv, ["7-10", "7-11"], f"user{i:03d}") for i in range(200))
    )
    winners = [(i, r) for i, r in enumerate(results) if r.ok]
    assert len(winners) == 1, f"{len(winners)} holds succeeded"
    (i, winner), = winners
    assert all(r.taken for r in results if not r.ok)
    assert await states(inv) == {
        "7-10": held(f"user{i:03d}", winner.hold_id),
        "7-11": held(f"user{i:03d}", winner.hold_id),
    }


@dataclass
class Tracked:
    hold_id: str
    owner: str
    seats: list[str]
    expires: int
    done: bool = False  # sold or released


async def test_random_concurrent_traffic_never_double_holds_or_double_sells(
    redis: aioredis.Redis,
) -> None:
    rng = random.Random(20261122)
    seats = hall()  # 300 seats
    owners = [f"o{i:02d}" for i in range(60)]
    inv = inventory(redis)
    holds: list[Tracked] = []
    sold: dict[str, str] = {}  # seat → hold id of the sale
    counts: Counter[str] = Counter()
    now = NOW

    def pick_seats() -> list[str]:
        # 1–4 seats around a random spot, biased to the middle rows: plenty of contention.
        row = min(15, max(1, int(rng.gauss(8, 3))))
        col = rng.randint(1, 17)
        n = rng.randint(1, 4)
        return [f"{row}-{c}" for c in range(col, col + n)]

    for _round in range(30):
        now += rng.randint(0, 1_500)  # time moves between rounds; holds last 0.5–4 s
        open_holds = [h for h in holds if not h.done]
        rng.shuffle(open_holds)
        to_sell, to_release = open_holds[:8], open_holds[8:14]
        new: list[tuple[str, list[str]]] = [(rng.choice(owners), pick_seats()) for _ in range(50)]
        ops = [
            *(hold(inv, s, o, now=now, ttl_ms=rng.randint(500, 4_000), cap=8) for o, s in new),
            *(inv.sell(SHOW, h.hold_id, h.owner, h.seats, now_ms=now) for h in to_sell),
            *(inv.release(SHOW, h.hold_id, h.owner, h.seats) for h in to_release),
        ]
        order = list(range(len(ops)))
        rng.shuffle(order)  # interleave holds, sales and releases
        shuffled = await asyncio.gather(*(ops[k] for k in order))
        results = [None] * len(ops)
        for k, r in zip(order, shuffled, strict=True):
            results[k] = r

        for (owner, s), r in zip(new, results[: len(new)], strict=True):
            counts["hold ok" if r.ok else "quota" if r.over_quota else "taken"] += 1
            if r.ok:
                assert r.expires_ms > now
                holds.append(Tracked(r.hold_id, owner, s, r.expires_ms))
        for h, r in zip(to_sell, results[len(new) : len(new) + len(to_sell)], strict=True):
            if r.ok:
                counts["sold lapsed" if r.lapsed else "sold"] += 1
                for seat in h.seats:
                    assert seat not in sold, f"{seat} sold twice ({sold[seat]}, {h.hold_id})"
                    sold[seat] = h.hold_id
                h.done = True
        for h in to_release:
            h.done = True

        live: dict[str, list[Tracked]] = {}
        for h in holds:
            if not h.done and h.expires > now:
                for seat in h.seats:
                    live.setdefault(seat, []).append(h)
        doubles = {seat: [h.hold_id for h in hs] for seat, hs in live.items() if len(hs) > 1}
        assert not doubles, f"seats held by two live holds: {doubles}"
        assert not set(live) & set(sold), "a live hold on a sold seat"
        expected = {seat: SOLD for seat in sold}
        expected.update({seat: held(hs[0].owner, hs[0].hold_id) for seat, hs in live.items()})
        assert await states(inv, now=now, labels=seats) == expected

    # The run did exercise every path.
    assert counts["hold ok"] > 100 and counts["taken"] > 100, counts
    assert counts["sold"] > 10 and counts["sold lapsed"] > 0, counts
