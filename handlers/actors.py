"""Who is talking: openid → audience member (created on first contact), WeCom userid → staff."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from bot.chat.channels import Channel, Inbound
from bot.infra.clock import Clock
from bot.infra.groupcommit import GroupCommit
from bot.chat.router import AUDIENCE, UNKNOWN, Actor
from domain.people import Member, find_staff, touch_members

log = logging.getLogger(__name__)
# How stale a member's ``last_seen`` may get: it tells whether WeChat's 48-hour
# customer-service window is open (the post-show survey), so an hour early is safe.
SEEN_EVERY = 3600.0
# New members' rows are written together once this long has passed since the first of
# them: nobody waits for them (the first message is answered without), and a wider
# window makes the batches of a steady stream of first contacts bigger (at 2,500
# messages a second, 3 ms held one new member, so every row cost three queries).
NEW_MEMBERS_WINDOW_S = 0.05


class ActorDirectory:
    """Resolves actors, with a small in-process cache in front of the database.

    Members never change identity, so they are cached until evicted. A
    member's first message does not wait for its row to be written: the row is
    created in the background (a QR code at a hall exit brings dozens of first
    contacts at once, and none of them should queue behind the others' inserts),
    so ``Actor.id`` may be None on that first message. Staff roles and
    deactivations must take effect quickly, so staff entries live for
    ``staff_ttl`` seconds only.
    """

    def __init__(self, clock: Clock, size: int = 50_000, staff_ttl: float = 30.0) -> None:
        self.clock = clock
        self.size = size
        self.staff_ttl = staff_ttl
        self._cache: OrderedDict[str, tuple[float, Actor]] = OrderedDict()
        self._creating: dict[str, asyncio.Task[None]] = {}
        self._seen: OrderedDict[str, float] = OrderedDict()  # openid -> monotonic last write
        self._touching: set[asyncio.Task[None]] = set()
        # New members' rows: concurrent first contacts share one INSERT.
        self._members: GroupCommit[str, tuple[Member, bool]] = GroupCommit(
            lambda openids: touch_members(openids, self.clock.now()),
            max_items=200, delay_s=NEW_MEMBERS_WINDOW_S,
        )

    async def resolve(self, inbound: Inbound) -> Actor:
        key = f"{inbound.channel}:{inbound.user_id}"
        hit = self._cache.get(key)
        if hit is not None and (hit[0] == 0 or hit[0] > time.monotonic()):
            self._cache.move_to_end(key)
            if inbound.channel is Channel.WECHAT:
                self._saw(inbound.user_id)
            return hit[1]
        if inbound.channel is Channel.WECHAT:
            self._remember_member(inbound.user_id, key)
            return Actor(role=AUDIENCE, user_id=inbound.user_id)
        staff = await find_staff(inbound.user_id)
        if staff is None:
            actor = Actor(role=UNKNOWN, user_id=inbound.user_id)
        else:
            actor = Actor(
                role=str(staff.role),
                user_id=staff.userid,
                id=staff.id,
                cinema_id=staff.cinema_id,  # type: ignore[attr-defined]
                name=staff.name,
            )
        self._store(key, time.monotonic() + self.staff_ttl, actor)
        return actor

    def _remember_member(self, openid: str, key: str) -> None:
        if openid in self._creating:
            return

        async def create() -> None:
            try:
                # Known from before this process: touch_members moves last_seen on too.
                member, _ = await self._members.add(openid)
                actor = Actor(role=AUDIENCE, user_id=openid, id=member.id, name=member.nickname)
                self._store(key, 0.0, actor)
                self._seen.setdefault(openid, time.monotonic())
            except Exception:
                log.exception("could not record a new member")
            finally:
                self._creating.pop(openid, None)

        self._creating[openid] = asyncio.create_task(create())

    def _saw(self, openid: str) -> None:
        """A known member wrote again: move ``last_seen`` on, at most once an hour, in the
        background (a new member's row is written with it already)."""
        now = time.monotonic()
        last = self._seen.get(openid)
        if last is not None and now - last < SEEN_EVERY:
            return
        self._seen[openid] = now
        self._seen.move_to_end(openid)
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)

        async def touch() -> None:
            try:
                await Member.filter(openid=openid).update(last_seen=self.clock.now())
            except Exception:
                log.exception("could not record when a member was last seen")

        task = asyncio.create_task(touch())
        self._touching.add(task)
        task.add_done_callback(self._touching.discard)

    async def drain(self) -> None:
        """Wait for member rows still being written (at shutdown, and in tests)."""
        while self._creating or self._touching:
            pending = [*self._creating.values(), *self._touching]
            await asyncio.gather(*pending, return_exceptions=True)

    def _store(self, key: str, expires: float, actor: Actor) -> None:
        self._cache[key] = (expires, actor)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)

    def forget(self, channel: Channel, user_id: str) -> None:
        self._cache.pop(f"{channel}:{user_id}", None)
