"""「转人工」 through the real protocol: the audience is answered at once, the managers are told
once per person per ten minutes, and a request a crashed drainer held is still delivered."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from bot.app import HANDOFFS, REDIS
from bot.wechat.chatclient import next_msg_id, text_xml
from bot.infra.redisbatch import CommandBatcher
from domain.outbox import OutboundMessage
from domain.people import Member, Staff
from handlers.handoff import QUEUE, STALE_S, WORK, HandoffQueue
from handlers.reference import ReferenceData

OPENID = "oCineBotHandoffAudience00001"


async def _handoff_rows(expect: int, timeout: float = 5.0) -> list[OutboundMessage]:
    """The hand-off messages in the outbox, once there are ``expect`` of them (the drainer
    writes them within a second of the request)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rows = await OutboundMessage.filter(idempotency_key__startswith="handoff:").order_by("id")
        if len(rows) >= expect or loop.time() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def test_the_manager_is_told_once_with_the_masked_phone(callbacks, client) -> None:
    await Member.create(openid=OPENID, first_seen=callbacks.clock.now(),
                        last_seen=callbacks.clock.now(), phone="13812345678")
    status, reply = await callbacks.wechat_post(text_xml("gh_demo", OPENID, "转人工", next_msg_id()))
    assert status == 200 and "已为您转人工" in reply["Content"]
    rows = await _handoff_rows(1)
    assert [r.recipient for r in rows] == ["manager01"]
    content = rows[0].payload["text"]["content"]
    assert "138****5678" in content and "13812345678" not in content and "「转人工」" in content

    # Asking again within ten minutes answers the audience but tells nobody twice.
    status, reply = await callbacks.wechat_post(text_xml("gh_demo", OPENID, "转人工", next_msg_id()))
    assert status == 200 and "已为您转人工" in reply["Content"]
    await asyncio.sleep(0.3)
    assert len(await _handoff_rows(2, timeout=0.5)) == 1
    assert await client.app[REDIS].llen(QUEUE) == 0 and await client.app[REDIS].llen(WORK) == 0


async def test_with_nobody_to_answer_the_audience_gets_the_phone_number(callbacks, client) -> None:
    await Staff.all().update(active=False)
    status, reply = await callbacks.wechat_post(text_xml("gh_demo", OPENID, "转人工", next_msg_id()))
    assert status == 200
    assert "没有同事在线" in reply["Content"] and "电话" in reply["Content"]
    assert client.app[HANDOFFS].delivered == 0


async def test_a_request_a_crashed_drainer_held_is_put_back_and_delivered_once(
    client, clock, redis: aioredis.Redis
) -> None:
    app = client.app
    app[HANDOFFS].stop()  # this test is the only drainer
    await asyncio.sleep(0.05)
    queue = HandoffQueue(app[REDIS], CommandBatcher(app[REDIS]), clock, ReferenceData(), 1000002)
    cinema_id = (await Staff.get(userid="manager01")).cinema_id  # type: ignore[attr-defined]
    # A drainer took this request and died before writing it: it sits in the work list.
    held = json.dumps({"cinema": cinema_id, "openid": OPENID, "text": "转人工", "at": clock.timestamp()})
    await redis.rpush(WORK, held, "not json")
    assert await queue.requeue_stale() == 1  # the unreadable entry goes back; the fresh one waits
    clock.advance(seconds=STALE_S + 1)
    assert await queue.requeue_stale() == 1
    while await queue.drain_once():
        pass
    assert await redis.llen(WORK) == 0 and await redis.llen(QUEUE) == 0
    rows = await _handoff_rows(1)
    assert [r.recipient for r in rows] == ["manager01"]
    # The same request delivered again (a slow drainer's copy) is recorded once.
    await redis.rpush(QUEUE, held)
    assert await queue.drain_once() == 1
    assert len(await _handoff_rows(2, timeout=0.3)) == 1
