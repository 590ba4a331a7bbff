"""Reference data that changes rarely (cinemas, films, the day's schedule), cached briefly.

Every chat message about showtimes would otherwise reload the same rows; a
short TTL keeps replies fresh within a minute of a schedule change while the
hot path stays off the database. Concurrent misses of one key share one load
(single flight): sixty-four requests arriving as an entry expires would
otherwise send sixty-four identical queries to the database.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from domain.catalog import Film, Showtime, upcoming_showtimes
from domain.cinemas import Cinema, Hall, home_cinema
from domain.people import Staff, StaffRole

T = TypeVar("T")


def normalise_name(s: str) -> str:
    """Width-, case- and punctuation-insensitive form of a title: 沙丘：第二部 ~ 沙丘第二部."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", s).lower() if ch.isalnum())


@dataclass(frozen=True, slots=True, eq=False)  # equal and hashed by identity: a cache key
class CachedDay:
    """One cinema day's schedule as cached (see :meth:`ReferenceData.day_from`)."""

    shows: list[Showtime]
    starts: list[datetime]
    titles: list[tuple[str, ...]]  # titles[i]: the titles showing from shows[i] on


class ReferenceData:
    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._loading: dict[Hashable, asyncio.Future[Any]] = {}

    def _fresh(self, key: Hashable) -> tuple[bool, Any]:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def _store(self, key: Hashable, value: Any) -> None:
        now = time.monotonic()
        self._entries[key] = (now + self.ttl, value)
        if len(self._entries) > 1024:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}

    async def _cached(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        found, value = self._fresh(key)
        if found:
            return value  # type: ignore[no-any-return]
        loading = self._loading.get(key)
        if loading is not None:
            return await asyncio.shield(loading)  # type: ignore[no-any-return]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            self._store(key, value)
            future.set_result(value)
        finally:
            del self._loading[key]
        return value  # type: ignore[no-any-return]

    def rendered(self, key: Hashable, build: Callable[[], str]) -> str:
        """Text built from cached rows, itself cached as long as they are."""
        found, value = self._fresh(("text", key))
        if not found:
            value = build()
            self._store(("text", key), value)
        return value  # type: ignore[no-any-return]

    def clear(self) -> None:
        self._entries.clear()

    async def cinema(self, cinema_id: int | None) -> Cinema | None:
        return await self._cached(("cinema", cinema_id), lambda: home_cinema(cinema_id))

    async def responders(self, cinema_id: int) -> list[str]:
        """WeCom userids of who answers a 「转人工」: the cinema's active managers, else
        any active staff (a deactivation takes effect within the TTL)."""

        async def load() -> list[str]:
            active = Staff.filter(cinema_id=cinema_id, active=True)
            managers = await active.filter(role=StaffRole.MANAGER).order_by("id").values_list(
                "userid", flat=True
            )
            if managers:
                return list(managers)
            return list(await active.order_by("id").values_list("userid", flat=True))

        return await self._cached(("responders", cinema_id), load)

    async def halls(self, cinema_id: int) -> list[Hall]:
        return await self._cached(
            ("halls", cinema_id), lambda: Hall.filter(cinema_id=cinema_id).order_by("id").all()
        )

    async def film_names(self) -> list[tuple[Film, list[str]]]:
        async def load() -> list[tuple[Film, list[str]]]:
            films = await Film.all().order_by("id")
            return [(f, [n for n in map(normalise_name, f.names()) if n]) for f in films]

        return await self._cached("films", load)

    async def find_films(self, text: str) -> list[Film]:
        """Films whose title or an alias appears in ``text``."""
        needle = normalise_name(text)
        return [f for f, names in await self.film_names() if any(n in needle for n in names)]

    async def _day(self, cinema_id: int, day_start: datetime) -> CachedDay:
        """All showtimes of a cinema day (it runs until 03:00 the next morning), by start,
        their start times, and from each show on the titles still showing."""

        async def load() -> CachedDay:
            end = day_start + timedelta(days=1, hours=3)
            shows = await upcoming_showtimes(cinema_id, day_start, end, limit=1000)
            # Walking back from the last show: the titles showing from show i on, in the
            # order of their first show.
            titles: list[tuple[str, ...]] = [()] * (len(shows) + 1)
            for i in range(len(shows) - 1, -1, -1):
                title = shows[i].film.title
                titles[i] = (title, *(t for t in titles[i + 1] if t != title))
            return CachedDay(shows, [s.starts_at for s in shows], titles)

        return await self._cached(("day", cinema_id, day_start), load)

    async def day_from(
        self, cinema_id: int, day_start: datetime, start: datetime, *, after: bool = False
    ) -> tuple[CachedDay, int]:
        """The cached day and the index of its first show starting at ``start`` or later
        (strictly later with ``after``), found by bisection. The pair names that part of
        the schedule: text built from it can be cached under it."""
        day = await self._day(cinema_id, day_start)
        return day, (bisect_right if after else bisect_left)(day.starts, start)

    async def shows_from(
        self, cinema_id: int, day_start: datetime, start: datetime, *, after: bool = False
    ) -> list[Showtime]:
        """The day's showtimes starting at ``start`` or later (strictly later with ``after``)."""
        day, first = await self.day_from(cinema_id, day_start, start, after=after)
        return day.shows[first:]

    async def titles_from(
        self, cinema_id: int, day_start: datetime, start: datetime, *, after: bool = False
    ) -> tuple[str, ...]:
        """The titles of :meth:`shows_from`'s shows, each once, in the order of their first
        show (read from the day's cache, not from every show's film)."""
        day, first = await self.day_from(cinema_id, day_start, start, after=after)
        return day.titles[first]
