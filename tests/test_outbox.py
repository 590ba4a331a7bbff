"""The outbox end to end: every recorded message reaches the (stand-in) API — once each here,
where no worker dies after the platform accepted a call (``tests/test_trust_outbox.py`` has
the stories where at-least-once shows).

Everything here is real: the SQL database, Redis (access tokens), the stand-in
WeChat/WeCom API as an aiohttp server with failure injection, the
``OutboxSender`` with ``ApiTransport`` and the ``WeChatApi`` / ``WeComApi``
clients. What went out is judged from the stand-in's own record
(``/standin/messages``), never from what the sender believes it did.

Clocks: the stories that let the sender loop run on its own use the system
clock with millisecond backoffs (the sender schedules retries from its clock,
so a frozen clock would park them forever); the stories about *when* a message
may be sent (leases, backoff, dead letters) step a ``FakeClock`` and call
``run_once`` so each attempt is explicit.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

import domain
from bot.wechat.chatclient import WeChatSigner, next_msg_id, text_xml
from bot.infra.clock import Clock, SystemClock
from bot.chat.router import Understanding
from bot.wechat.sender import ApiTransport, OutboxSender, SenderPolicy
from bot.infra.storage import open_database
from bot.wechat.api import WeChatApi, WeComApi
from domain import outbox
from domain.outbox import OutboundMessage, OutboundStatus
from tests.support import FakeClock, StartStandin, Standin, cinebot

APPID = "wx5c1ne6b0tdem0001"
CORP = "ww5c1ne6b0tdem0001"
AGENT = 1000002
ACCOUNT = "gh_cinebotdemo"

# Fast but real: retries really wait (a few ms), in real time.
FAST = SenderPolicy(
    batch=50, concurrency=16, max_attempts=100, base_delay=0.01, max_delay=0.05,
    token_retry_delay=0.01, poll_interval=0.01,
)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
async def standin(start_standin: StartStandin) -> Standin:
    return await start_standin(seed=20261121)  # the random failures below are this seed's


@pytest.fixture
def transport(
    http: aiohttp.ClientSession, redis: aioredis.Redis, standin: Standin
) -> ApiTransport:
    return ApiTransport(
        WeChatApi(http, redis, standin.url, APPID, "wechat-secret"),
        WeComApi(http, redis, standin.url, CORP, AGENT, "wecom-secret"),
    )


class CountingStore:
    """The real outbox transitions, counting who marked what sent (to see both workers work)."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    claim_due = staticmethod(outbox.claim_due)
    release = staticmethod(outbox.release)
    mark_retry = staticmethod(outbox.mark_retry)
    mark_failed = staticmethod(outbox.mark_failed)

    async def mark_sent(self, message: Any, worker: str, now: Any) -> bool:
        won = await outbox.mark_sent(message, worker, now)
        if won:
            self.sent[worker] += 1
        return won


# --- helpers -----------------------------------------------------------------------------------


def text(content: str) -> dict[str, Any]:
    return {"msgtype": "text", "text": {"content": content}}


async def enqueue_text(
    channel: str, recipient: str, content: str, clock: Clock
) -> OutboundMessage:
    message, created = await outbox.enqueue(
        channel=channel,
        recipient=recipient,
        payload=text(content),
        idempotency_key=f"test:{uuid.uuid4()}",
        now=clock.now(),
    )
    assert created
    return message


async def enqueue_mix(count: int, clock: Clock, tag: str) -> dict[str, str]:
    """``count`` messages, alternately WeChat custom text and WeCom text: {content: recipient}."""
    expected: dict[str, str] = {}
    for i in range(count):
        if i % 2 == 0:
            channel, recipient = "wechat", f"oUser{tag}{i:06d}xxxxxxxxxxxxx"
        else:
            channel, recipient = "wecom", f"staff{tag}{i:04d}"
        content = f"{tag} 第{i}条消息 {uuid.uuid4().hex[:8]}"
        await enqueue_text(channel, recipient, content, clock)
        expected[content] = recipient
    return expected


async def pending_count() -> int:
    return await OutboundMessage.filter(status=OutboundStatus.PENDING).count()


async def run_until_settled(*senders: OutboxSender, timeout: float) -> float:
    """Run the senders' real loops until nothing is pending; returns the seconds it took."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in senders]
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            while await pending_count():
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return time.perf_counter() - started


def contents(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["payload"]["text"]["content"] for r in records)


def assert_each_delivered_once(expected: dict[str, str], records: list[dict[str, Any]]) -> None:
    seen = contents(records)
    doubles = {c: n for c, n in seen.items() if n > 1}
    missing = [c for c in expected if c not in seen]
    assert not doubles, f"sent more than once: {list(doubles.items())[:5]}"
    assert not missing, f"never sent: {missing[:5]}"
    assert set(seen) == set(expected)
    for record in records:
        assert record["to"] == [expected[record["payload"]["text"]["content"]]]


# --- 1. flaky platform -------------------------------------------------------------------------


async def test_500_messages_through_a_flaky_api_each_arrive_once(
    db: None, standin: Standin, transport: ApiTransport
) -> None:
    # 30 % of calls fail (half HTTP 502, half errcode -1); 5 % of tokens "expire" mid-way.
    await standin.configure(fail_rate=0.3, expire_rate=0.05)
    clock = SystemClock()
    expected = await enqueue_mix(500, clock, "flaky")
    sender = OutboxSender(outbox, transport, clock, FAST, worker="solo")

    elapsed = await run_until_settled(sender, timeout=60)

    rows = await OutboundMessage.all()
    assert Counter(r.status for r in rows) == {OutboundStatus.SENT: 500}
    assert all(r.sent_at is not None and r.claimed_by is None for r in rows)
    assert_each_delivered_once(expected, await standin.messages())
    # The faults really happened: retries, and tokens refreshed after 42001.
    attempts = sum(r.attempts for r in rows)
    assert attempts > 550, attempts
    assert any(r.attempts >= 3 for r in rows)
    assert any(e["errcode"] == 42001 for e in await standin.errors())
    assert len(await standin.token_fetches()) > 2
    assert elapsed < 30, elapsed


# --- 2. permanent errors -----------------------------------------------------------------------


async def test_a_permanent_error_fails_the_message_after_one_attempt_and_never_again(
    db: None, standin: Standin, transport: ApiTransport
) -> None:
    clock = SystemClock()
    window = await enqueue_text("wechat", "o_out_of_window_0000000000001", "你订的票已出票", clock)
    gone = await enqueue_text("wechat", "o_unsubscribed_00000000000001", "明天的场次", clock)
    left = await enqueue_text("wecom", "invalid_staff01", "3号厅灯泡告警", clock)
    fine = await enqueue_text("wechat", "oUserFine000000000000000001", "欢迎再来", clock)
    sender = OutboxSender(outbox, transport, clock, FAST, worker="solo")

    await run_until_settled(sender, timeout=10)
    # Give a would-be retry every chance to happen: the loop keeps polling for a while.
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    await task

    for message, code in ((window, 45015), (gone, 43004), (left, 81013)):
        await message.refresh_from_db()
        assert message.status is OutboundStatus.FAILED
        assert message.attempts == 1
        assert f"errcode={code}" in (message.last_error or ""), message.last_error
    await fine.refresh_from_db()
    assert fine.status is OutboundStatus.SENT and fine.attempts == 1

    # The stand-in saw exactly one attempt per doomed recipient, and delivered only the good one.
    refusals = Counter((e["to"], e["errcode"]) for e in await standin.errors())
    assert refusals == {
        ("o_out_of_window_0000000000001", 45015): 1,
        ("o_unsubscribed_00000000000001", 43004): 1,
        ("invalid_staff01", 81013): 1,
    }
    assert [m["to"] for m in await standin.messages()] == [["oUserFine000000000000000001"]]


# --- 3. two workers ----------------------------------------------------------------------------


async def test_two_workers_share_the_outbox_without_ever_sending_a_message_twice(
    db: None, standin: Standin, transport: ApiTransport
) -> None:
    # A little latency and some failures, so the workers' claims and retries interleave.
    await standin.configure(fail_rate=0.2, latency=0.003)
    clock = SystemClock()
    expected = await enqueue_mix(300, clock, "pair")
    store = CountingStore()
    policy = SenderPolicy(
        batch=10, concurrency=5, max_attempts=100, base_delay=0.01, max_delay=0.05,
        token_retry_delay=0.01, poll_interval=0.01,
    )
    a = OutboxSender(store, transport, clock, policy, worker="worker-a")
    b = OutboxSender(store, transport, clock, policy, worker="worker-b")

    await run_until_settled(a, b, timeout=60)

    assert await OutboundMessage.filter(status=OutboundStatus.SENT).count() == 300
    assert_each_delivered_once(expected, await standin.messages())
    assert store.sent["worker-a"] + store.sent["worker-b"] == 300
    assert store.sent["worker-a"] > 0 and store.sent["worker-b"] > 0, store.sent


# --- 4. a worker dies between claim and send ---------------------------------------------------


async def test_messages_claimed_by_a_crashed_worker_come_back_when_its_lease_lapses(
    db: None, standin: Standin, transport: ApiTransport
) -> None:
    clock = FakeClock()
    expected = await enqueue_mix(30, clock, "crash")
    # Worker A claims everything and dies before sending anything.
    claimed = await outbox.claim_due("A", clock.now(), timedelta(seconds=1), limit=100)
    assert len(claimed) == 30
    b = OutboxSender(outbox, transport, clock, FAST, worker="B")

    assert await b.run_once() == 0  # leased to A
    clock.advance(seconds=0.9)
    assert await b.run_once() == 0  # still leased
    assert await standin.messages() == []

    clock.advance(seconds=0.2)  # the lease has lapsed
    delivered = 0
    while n := await b.run_once():
        delivered += n
    assert delivered == 30
    assert_each_delivered_once(expected, await standin.messages())
    rows = await OutboundMessage.all()
    # A's claim counted as an attempt, and as a lapse: A never said how it went.
    assert {(r.status, r.attempts, r.lapses, r.claimed_by) for r in rows} == {
        (OutboundStatus.SENT, 2, 1, None)
    }

    # A comes back to life and reports one of "its" messages sent: that changes nothing.
    assert not await outbox.mark_sent(claimed[0], "A", clock.now())
    assert not await outbox.mark_failed(claimed[1], "A", "too late")
    assert Counter(r.status for r in await OutboundMessage.all()) == {OutboundStatus.SENT: 30}


async def test_a_retry_is_never_claimed_before_its_backoff_even_by_a_racing_worker(
    db: None, standin: Standin, transport: ApiTransport
) -> None:
    # A slow worker A lets its lease lapse; worker B starts a sweep and reads the
    # candidates (A's rows among them); meanwhile A finishes, fails a message and
    # puts it back for 30 s later. B must not take that message now.
    clock = FakeClock()
    for i in range(20):
        await enqueue_text("wechat", f"oUserRace{i:018d}", f"前面的消息 {i}", clock)
    late = await enqueue_text("wechat", "oUserRaceLate0000000000001", "稍后重试", clock)
    held = {m.id: m for m in await outbox.claim_due("A", clock.now(), timedelta(seconds=1), 50)}
    clock.advance(seconds=2)  # A's lease has lapsed
    retry_at = clock.now() + timedelta(seconds=30)

    taken, _ = await asyncio.gather(
        outbox.claim_due("B", clock.now(), timedelta(seconds=60), limit=50),
        outbox.mark_retry(held[late.id], "A", "HTTP 502", retry_at, max_attempts=5),
    )

    await late.refresh_from_db()
    if late.id in {m.id for m in taken}:
        # B won the row before A's report (possible with a server database): A's retry
        # must then have changed nothing, and B holds a message that is due.
        assert (late.claimed_by, late.attempts) == ("B", 2)
        assert late.next_attempt_at <= clock.now()
    else:
        assert (late.status, late.attempts, late.claimed_by) == (OutboundStatus.PENDING, 1, None)
        assert late.next_attempt_at == retry_at
        clock.advance(seconds=31)  # once its backoff is over, it is claimable again
        again = await outbox.claim_due("C", clock.now(), timedelta(seconds=60))
        assert late.id in {m.id for m in again}
    assert len(taken) >= 20


class ScaledClock:
    """Real time, running ``factor`` times faster: leases of seconds pass in milliseconds."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._start = SystemClock().now()
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self.factor)

    def timestamp(self) -> float:
        return self.now().timestamp()


async def test_a_backlog_longer_than_the_lease_is_left_for_later_not_sent_late(
    db: None, standin: Standin, transport: ApiTransport, redis: aioredis.Redis
) -> None:
    # Each call takes 4 (scaled) seconds and one send runs at a time, so a batch of 6
    # would take 24+ s to get through: past the 20 s lease, when another worker may
    # already have taken the tail. The sender starts no send that, at its worst, could
    # still be running when the lease lapses.
    clock = ScaledClock(100)
    await standin.configure(latency=0.04)
    expected = {}
    for i in range(6):
        content = f"积压的消息 {i}"
        await enqueue_text("wechat", f"oUserBacklog{i:015d}", content, clock)
        expected[content] = f"oUserBacklog{i:015d}"
    # Clients whose worst case (6.1 s, token refresh included) fits the 20 s lease.
    quick = ApiTransport(
        WeChatApi(transport.wechat.http, redis, standin.url, APPID, "wechat-secret", 1.0),
        WeComApi(transport.wecom.http, redis, standin.url, CORP, AGENT, "wecom-secret", 1.0),
    )
    policy = SenderPolicy(
        batch=6, concurrency=1, lease=timedelta(seconds=20), settle=timedelta(seconds=1),
        max_attempts=5,
    )
    sender = OutboxSender(outbox, quick, clock, policy, worker="solo")

    assert await sender.run_once() == 6
    first = len(await standin.messages())
    assert 1 <= first < 6, first
    left = await OutboundMessage.filter(status=OutboundStatus.PENDING)
    # The tail is handed back at once, its claim not counted: no call was made for it.
    assert len(left) == 6 - first
    assert all((m.claimed_by, m.attempts) == (None, 0) for m in left)

    async with asyncio.timeout(10):
        while await pending_count():
            await sender.run_once()
            await asyncio.sleep(0.01)
    assert_each_delivered_once(expected, await standin.messages())


async def test_a_message_enqueued_during_a_sweep_goes_out_at_once_not_at_the_next_poll(
    db: None, standin: Standin, transport: ApiTransport
) -> None:
    clock = SystemClock()

    class EnqueueDuringFirstSweep(CountingStore):
        swept = False

        async def claim_due(self, *args: Any, **kwargs: Any) -> Any:
            claimed = await outbox.claim_due(*args, **kwargs)
            if not self.swept:  # a late reply lands just after this sweep looked
                self.swept = True
                await enqueue_text("wechat", "oUserWakeUp000000000000001", "马上到", clock)
                sender.wake()
            return claimed

    policy = SenderPolicy(poll_interval=30, base_delay=0.01)
    sender = OutboxSender(EnqueueDuringFirstSweep(), transport, clock, policy, worker="solo")
    started = time.perf_counter()
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        [record] = await wait_for_messages(standin, "oUserWakeUp000000000000001", timeout=5)
    finally:
        stop.set()
        await task
    assert record["payload"]["text"]["content"] == "马上到"
    assert time.perf_counter() - started < 2  # not after the 30 s poll interval


# --- 5. dead letters ---------------------------------------------------------------------------


async def test_a_message_dies_after_max_attempts_and_a_requeue_delivers_it(
    db: None, standin: Standin, transport: ApiTransport
) -> None:
    await standin.configure(fail_rate=1.0)
    clock = FakeClock()
    policy = SenderPolicy(max_attempts=3, base_delay=0.5, max_delay=2.0, poll_interval=0.01)
    sender = OutboxSender(outbox, transport, clock, policy, worker="solo")
    message = await enqueue_text("wechat", "oUserDead0000000000000000001", "退票成功通知", clock)

    for attempt in (1, 2):
        assert await sender.run_once() == 1
        await message.refresh_from_db()
        assert (message.status, message.attempts) == (OutboundStatus.PENDING, attempt)
        assert message.next_attempt_at > clock.now()  # backing off …
        assert await sender.run_once() == 0  # … so not tried again at once
        clock.advance(seconds=3)
    assert await sender.run_once() == 1
    await message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboundStatus.DEAD, 3)
    error = message.last_error or ""
    assert "HTTP 502" in error or "errcode=-1" in error, error
    clock.advance(hours=1)
    assert await sender.run_once() == 0  # a dead letter is not retried by itself
    assert await standin.messages() == []

    assert await outbox.requeue([message.id], clock.now()) == 1
    await message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboundStatus.PENDING, 0)
    await standin.configure(fail_rate=0.0)  # the platform has recovered
    assert await sender.run_once() == 1
    await message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboundStatus.SENT, 1)
    [record] = await standin.messages()
    assert record["to"] == ["oUserDead0000000000000000001"]
    assert record["payload"]["text"]["content"] == "退票成功通知"


# --- 6. the 5-second fallback, end to end ------------------------------------------------------


async def post_text(client: Any, signer: WeChatSigner, xml: str, ts: int) -> tuple[int, str]:
    req = signer.sign(xml, timestamp=ts)  # safe mode, fresh nonce each time, as WeChat does
    resp = await client.post("/wechat/callback", params=req.params, data=req.body)
    return resp.status, await resp.text()


async def wait_for_messages(standin: Standin, to: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await standin.messages(to=to)
        if got:
            return got
        await asyncio.sleep(0.05)
    return []


async def test_a_reply_that_misses_the_budget_arrives_once_as_a_customer_service_message(
    make_client: Callable[..., Any], settings: Any, clock: FakeClock, standin: Standin
) -> None:
    openid = "oCineBotLateReply0000000001"
    finished = asyncio.Event()

    async def slow(text_: str, role: str) -> Understanding:
        await asyncio.sleep(0.6)
        finished.set()
        return Understanding("greeting")

    client = await make_client(
        run_jobs=True,
        settings={
            "handler_budget": 0.3,
            "wechat_api_base": standin.url,
            "wecom_api_base": standin.url,
        },
        understand=slow,
        sender_policy=SenderPolicy(poll_interval=0.05, base_delay=0.01),
    )
    signer = WeChatSigner(settings)
    xml = text_xml(ACCOUNT, openid, "你好", next_msg_id())
    ts = int(clock.timestamp())

    started = time.perf_counter()
    assert await post_text(client, signer, xml, ts) == (200, "success")
    assert time.perf_counter() - started < 0.6
    # WeChat retries while the handler is still busy …
    assert await post_text(client, signer, xml, ts) == (200, "success")
    await asyncio.wait_for(finished.wait(), 2)

    [record] = await wait_for_messages(standin, openid, timeout=5)
    assert record["endpoint"] == "message/custom/send"
    assert record["msgtype"] == "text"
    assert "小助手" in record["payload"]["text"]["content"]

    # … and again after the reply went out: still one message, and the row is done.
    assert await post_text(client, signer, xml, ts) == (200, "success")
    await asyncio.sleep(0.3)  # several sender polls
    assert len(await standin.messages(to=openid)) == 1
    [row] = await OutboundMessage.filter(recipient=openid)
    assert (row.status, row.attempts) == (OutboundStatus.SENT, 1)


# --- 7. the operator's view: `cinebot outbox` ---------------------------------------------------


async def test_an_operator_lists_dead_letters_and_sends_them_again(
    tmp_path: Path, redis_url: str
) -> None:
    database_url = f"sqlite://{tmp_path / 'outbox.sqlite3'}"
    clock = SystemClock()
    async with open_database(database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
        dead1 = await enqueue_text("wechat", "oCliDeadAAAAAAAAAAAAAAA0001", "一", clock)
        dead2 = await enqueue_text("wecom", "staff02", "二", clock)
        failed = await enqueue_text("wechat", "oCliFailedBBBBBBBBBBBBB0003", "三", clock)
        sent = await enqueue_text("wechat", "oCliSentCCCCCCCCCCCCCCC0004", "四", clock)
        claimed = {m.id: m for m in await outbox.claim_due("t", clock.now(), timedelta(minutes=1))}
        for m in (dead1, dead2):
            await outbox.mark_retry(
                claimed[m.id], "t", "message/custom/send: HTTP 502 unexpected HTTP status",
                clock.now(), max_attempts=1,
            )
        await outbox.mark_failed(
            claimed[failed.id], "t", "errcode=45015 response out of time limit"
        )
        await outbox.mark_sent(claimed[sent.id], "t", clock.now())
        pending = await enqueue_text("wechat", "oCliPendingDDDDDDDDDDDD0005", "五", clock)

    def run(*args: str) -> Awaitable[tuple[int, str, str]]:
        return cinebot(*args, database_url=database_url, redis_url=redis_url, cwd=tmp_path)

    code, out, err = await run("outbox", "list", "--status", "dead")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "pending: 1  sent: 1  failed: 1  dead: 2  expired: 0"
    assert len(lines) == 3  # the two dead letters, newest first
    assert lines[1].startswith(f"#{dead2.id} ") and lines[2].startswith(f"#{dead1.id} ")
    for line in lines[1:]:
        assert "dead" in line and "尝试1次" in line and "HTTP 502" in line
    assert "staff02" in lines[1] and "oCliDe…0001" in lines[2]
    assert "oCliDeadAAAAAAAAAAAAAAA0001" not in out  # openids are shortened on screen

    code, out, err = await run("outbox", "retry")
    assert code == 1 and "请给出要重发的消息编号" in err

    code, out, err = await run("outbox", "retry", str(dead1.id))
    assert (code, out.strip()) == (0, "已重新排队 1 条消息。"), err
    code, out, err = await run("outbox", "retry", "--all")
    assert (code, out.strip()) == (0, "已重新排队 2 条消息。"), err

    code, out, err = await run("outbox", "list", "--status", "dead")
    assert code == 0 and out.strip() == "pending: 4  sent: 1  failed: 0  dead: 0  expired: 0", (
        out, err
    )

    async with open_database(database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
        status = {m.id: (m.status, m.attempts) for m in await OutboundMessage.all()}
    assert status == {
        dead1.id: (OutboundStatus.PENDING, 0),
        dead2.id: (OutboundStatus.PENDING, 0),
        failed.id: (OutboundStatus.PENDING, 0),
        sent.id: (OutboundStatus.SENT, 1),
        pending.id: (OutboundStatus.PENDING, 0),
    }
