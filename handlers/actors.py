"""Who is talking: openid → audience member (created on first contact), WeCom userid → staff."""

from __future__ import annotations

import time
from collections import OrderedDict

from bot.channels import Channel, Inbound
from bot.clock import Clock
from bot.router import AUDIENCE, UNKNOWN, Actor
from domain.people import find_staff, touch_member


class ActorDirectory:
    """Resolves actors, with a small in-process cache in front of the database.

    Members never change identity, so they are cached until evicted. Staff
    roles and deactivations must take effect quickly, so staff entries live
    for ``staff_ttl`` seconds only.
    """

    def __init__(self, clock: Clock, size: int = 50_000, staff_ttl: float = 30.0) -> None:
        self.clock = clock
        self.size = size
        self.staff_ttl = staff_ttl
        self._cache: OrderedDict[str, tuple[float, Actor]] = OrderedDict()

    async def resolve(self, inbound: Inbound) -> Actor:
        key = f"{inbound.channel}:{inbound.user_id}"
        hit = self._cache.get(key)
        if hit is not None and (hit[0] == 0 or hit[0] > time.monotonic()):
            self._cache.move_to_end(key)
            return hit[1]
        if inbound.channel is Channel.WECHAT:
            member, _ = await touch_member(inbound.user_id, self.clock.now())
            actor = Actor(role=AUDIENCE, user_id=inbound.user_id, id=member.id, name=member.nickname)
            expires = 0.0
        else:
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
            expires = time.monotonic() + self.staff_ttl
        self._cache[key] = (expires, actor)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return actor

    def forget(self, channel: Channel, user_id: str) -> None:
        self._cache.pop(f"{channel}:{user_id}", None)
