"""Money moves once: told as the cinema's operator, its buyers and its duty manager live it.

Issue 16, "Money": the sandbox bank is never taken by mistake for a real one; a crash
between selling seats and recording the tickets neither strands the seats nor re-seats the
buyer; a refund's state follows WeChat Pay's and a refund that fails or stalls reaches the
duty manager; a buyer who clicks pay twice gets one set of tickets and one refund.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.infra.settings import Settings, SettingsError
from bot.wechat.pay import SandboxGateway, build_notify
from domain import demo, refunds, ticketing
from domain.audit import AuditLog
from domain.catalog import Film, Showtime
from domain.cinemas import Cinema, Hall
from domain.orders import Order, OrderState, Payment, Refund, RefundState, Ticket
from domain.outbox import OutboundMessage
from domain.ticketing import Buyer, PaymentNotice
from handlers.api.context import API
from handlers.refund_alerts import RefundAlerts
from tests.support import FakeClock, cinebot_command
from tests.test_ticketing import (  # noqa: F401 (fixtures: the world of the ticketing stories)
    Bank,
    World,
    assert_no_seat_sold_twice,
    outbox_events,
    seats_redis,
    world,
)

REAL_APPID = "wx0123456789abcdef"


# --- 12. the sandbox bank is asked for by name ----------------------------------------------


def test_a_fresh_checkout_pays_at_the_sandbox_bank_without_being_told() -> None:
    assert Settings.from_env(environ={}, env_file=None).pay_mode == "sandbox"


@pytest.mark.parametrize(
    "name, value",
    [
        ("WECHAT_APPID", REAL_APPID),
        ("WECHAT_SECRET", "prod-wechat-secret"),
        ("MINIPROGRAM_APPID", "wx00000000000000ab"),
        ("WECHATPAY_MCHID", "1612345678"),
    ],
)
def test_an_operator_with_real_wechat_credentials_who_forgets_the_pay_mode_is_stopped(
    name: str, value: str
) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(environ={f"CINEBOT_{name}": value}, env_file=None)
    (problem,) = [p for p in info.value.problems if "PAY_MODE" in p]
    assert "wechatpay" in problem and "sandbox" in problem


def test_an_operator_may_still_choose_the_sandbox_with_real_credentials_by_saying_so() -> None:
    settings = Settings.from_env(
        environ={"CINEBOT_WECHAT_APPID": REAL_APPID, "CINEBOT_PAY_MODE": "sandbox"}, env_file=None
    )
    assert settings.pay_mode == "sandbox"


def test_the_pay_mode_from_an_env_file_counts_as_said(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CINEBOT_PAY_MODE=sandbox\n")
    settings = Settings.from_env(environ={"CINEBOT_WECHAT_APPID": REAL_APPID}, env_file=env_file)
    assert settings.pay_mode == "sandbox"


async def test_cinebot_serve_with_real_credentials_and_no_pay_mode_refuses_to_start(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_")}
    env["CINEBOT_WECHAT_APPID"] = REAL_APPID
    proc = await asyncio.create_subprocess_exec(
        *cinebot_command(), "serve", "--port", "0", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 2
    assert "CINEBOT_PAY_MODE" in err.decode()


# --- 13. a crash between the seat sale and the tickets ----------------------------------------


class Crash(Exception):
    """The process dies here (kill -9): nothing after this line runs."""


async def _crash_before_the_tickets(
    world: World, monkeypatch: pytest.MonkeyPatch, notice: PaymentNotice
) -> None:
    """Deliver ``notice`` in a process that dies after Redis sold the seats and before the
    tickets are committed."""

    async def die(*args: object, **kwargs: object) -> None:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(ticketing, "_create_tickets", die)
        with pytest.raises(Crash):
            await world.deliver(notice)
    assert await Ticket.filter(order__no=notice.out_trade_no).count() == 0


async def test_seats_sold_by_a_process_that_died_before_the_tickets_become_sellable_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    show = await world.show(("SSSSSS", "SSSSSS"))
    order = await world.hold(show, "fan", seats=["2-3", "2-4"])
    await ticketing.checkout(order, now=world.now)
    await _crash_before_the_tickets(world, monkeypatch, world.notice(order))

    # No retry of the notify comes; the buyer's hold runs out.
    world.clock.advance(minutes=30)
    late = await world.hold(show, "next-buyer", seats=["2-3", "2-4"])

    assert late.seats == ["2-3", "2-4"]
    assert await world.states(show) == {"2-3": "held", "2-4": "held"}


async def test_a_notify_retried_after_a_crash_issues_the_seats_the_buyer_chose_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    show = await world.show(("SSSSSS", "SSSSSS"))
    order = await world.hold(show, "fan", seats=["2-3", "2-4"])
    await ticketing.checkout(order, now=world.now)
    notice = world.notice(order)
    await _crash_before_the_tickets(world, monkeypatch, notice)

    # WeChat Pay retries the notify; the dead process's claim on it has gone stale.
    world.clock.advance(seconds=ticketing.PROCESSING_TIMEOUT.total_seconds() + 1)
    outcome = await world.deliver(notice)
    again = await world.deliver(notice)

    assert (outcome.outcome, again.outcome) == ("issued", "duplicate")
    assert sorted(t.seat for t in outcome.tickets) == ["2-3", "2-4"]
    assert sorted(await assert_no_seat_sold_twice(show)) == ["2-3", "2-4"]
    assert (await Order.get(id=order.id)).state == OrderState.ISSUED
    assert await outbox_events(order) == ["issued"]
    assert world.bank.calls == []
    world.clock.advance(minutes=30)  # long after: Redis still agrees with the database
    assert await world.states(show) == {"2-3": "sold", "2-4": "sold"}


# --- 15. a buyer who clicks pay twice -----------------------------------------------------------


def _stall_first_sale(monkeypatch: pytest.MonkeyPatch, inventory: Any) -> None:
    """The first process to sell the seats stalls right after (a GC pause, a slow disk), so
    the second payment overtakes it: the interleaving two processes produce."""
    real_sell = inventory.sell
    calls = 0

    async def sell(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        answer = await real_sell(*args, **kwargs)
        if calls == 1:
            await asyncio.sleep(0.3)
        return answer

    monkeypatch.setattr(inventory, "sell", sell)


async def test_a_buyer_who_pays_twice_at_once_gets_one_set_of_tickets_and_one_refund(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    show = await world.show(("SS",))  # no other seats to re-seat anyone on
    order = await world.hold(show, "fan", seats=["1-1", "1-2"])
    await ticketing.checkout(order, now=world.now)
    one, two = world.notice(order), world.notice(order)
    _stall_first_sale(monkeypatch, world.inventory)

    outcomes = await asyncio.gather(world.deliver(one), world.deliver(two))

    assert sorted(o.outcome for o in outcomes) == ["issued", "refunded"]
    fresh = await Order.get(id=order.id)
    assert fresh.state == OrderState.ISSUED and fresh.paid_fen == order.amount_fen
    seats = await Ticket.filter(order_id=order.id, active=True).values_list("seat", flat=True)
    assert sorted(seats) == ["1-1", "1-2"]
    (refund,) = await Refund.filter(order_id=order.id)
    assert (refund.reason, refund.amount_fen) == ("duplicate_payment", order.amount_fen)
    calls = [(c.out_trade_no, c.refund_fen) for c in world.bank.calls]
    assert calls == [(order.no, order.amount_fen)]
    assert sorted(await Payment.filter(order_id=order.id).values_list("outcome", flat=True)) == [
        "issued", "refunded"
    ]
    assert sorted(await outbox_events(order)) == ["issued", "payment_refunded"]
    assert await world.states(show) == {"1-1": "sold", "1-2": "sold"}


async def test_a_buyer_who_presses_the_pay_button_twice_gets_one_set_of_tickets_and_one_refund(
    client: TestClient, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = client.app[API]
    cinema = await Cinema.get(code=demo.DEMO_CINEMA_CODE)
    hall = await Hall.create(cinema=cinema, name="双人厅", layout=["SS"])
    film = await Film.first()
    starts = clock.now() + timedelta(hours=5)
    show = await Showtime.create(
        cinema=cinema, hall=hall, film=film, starts_at=starts,
        ends_at=starts + timedelta(minutes=150), format="2D", base_price_fen=4500,
    )
    buyer = Buyer("oCineBotDoubleClick000000001")
    order = await ticketing.hold_seats(
        api.inventory, show, buyer, clock.now(), seats=["1-1", "1-2"]
    )
    path = "/pay/" + api.payments.pay_url(order).split("/pay/", 1)[1]
    _stall_first_sale(monkeypatch, api.inventory)

    first, second = await asyncio.gather(
        client.post(path, allow_redirects=False), client.post(path, allow_redirects=False)
    )

    assert (first.status, second.status) == (303, 303)
    fresh = await Order.get(id=order.id)
    assert fresh.state == OrderState.ISSUED
    assert await Ticket.filter(order_id=order.id, active=True).count() == 2
    (refund,) = await Refund.filter(order_id=order.id)
    assert (refund.reason, refund.amount_fen) == ("duplicate_payment", order.amount_fen)
    assert sorted(await Payment.filter(order_id=order.id).values_list("outcome", flat=True)) == [
        "issued", "refunded"
    ]


# --- 14. refunds follow WeChat Pay, and a person hears of the ones that go wrong ----------------


class SlowBank(Bank):
    """WeChat Pay as it usually answers: a refund is accepted (PROCESSING) and ends later;
    a query of it says how it stands (``ends``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ends = "PROCESSING"
        self.queries: list[str] = []

    async def refund(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = await super().refund(*args, **kwargs)
        return {**answer, "status": "PROCESSING", "refund_id": "50300000000000000000000000001"}

    async def query_refund(self, out_refund_no: str) -> dict[str, Any]:
        self.queries.append(out_refund_no)
        return {"out_refund_no": out_refund_no, "status": self.ends}


def _alerts(clock: FakeClock) -> RefundAlerts:
    return RefundAlerts(agent_id=1000002, clock=clock)


async def manager_messages(refund: Refund) -> list[tuple[str, str]]:
    """(recipient, text) of what the duty manager was sent about ``refund``."""
    rows = await OutboundMessage.filter(
        channel="wecom", idempotency_key__startswith=f"refund:{refund.no}:"
    ).order_by("id")
    return [(r.recipient, r.payload["text"]["content"]) for r in rows]


async def refund_trail(refund: Refund) -> list[str]:
    rows = await AuditLog.filter(entity="refund", entity_id=refund.no).order_by("id")
    return [r.action for r in rows]


async def test_a_refund_wechat_pay_is_still_processing_is_not_called_done_until_it_is(
    world: World,
) -> None:
    bank = world.bank = SlowBank()
    order = await world.buy(await world.show(), "fan", count=2)

    refund = await world.refund(order)

    accepted = await Refund.get(id=refund.id)
    assert accepted.state == RefundState.PROCESSING and accepted.done_at is None
    assert await refunds.chase_refunds(bank, world.now, _alerts(world.clock)) == 0
    assert bank.queries == []  # the notify normally comes first: no query yet
    # The notify was lost; a query some minutes later finds the money back.
    world.clock.advance(minutes=6)
    bank.ends = "SUCCESS"
    assert await refunds.chase_refunds(bank, world.now, _alerts(world.clock)) == 1
    done = await Refund.get(id=refund.id)
    assert done.state == RefundState.SUCCEEDED and done.done_at == world.now
    assert bank.queries == [refund.no]
    assert await refund_trail(refund) == ["processing", "succeeded"]
    assert await manager_messages(refund) == []


async def test_a_refund_still_processing_after_three_days_reaches_the_duty_manager_once(
    world: World,
) -> None:
    bank = world.bank = SlowBank()
    order = await world.buy(await world.show(), "fan", count=2)
    refund = await world.refund(order)

    for _ in range(4 * 24):
        world.clock.advance(hours=1)
        await refunds.chase_refunds(bank, world.now, _alerts(world.clock))

    assert (await Refund.get(id=refund.id)).state == RefundState.PROCESSING
    ((manager, text),) = await manager_messages(refund)
    assert manager == "manager01" and "未到账" in text and refund.no in text
    assert len(bank.queries) < 30  # asked with a growing pause, not every 30 s
    bank.ends = "SUCCESS"
    world.clock.advance(hours=7)
    assert await refunds.chase_refunds(bank, world.now, _alerts(world.clock)) == 1
    assert (await Refund.get(id=refund.id)).state == RefundState.SUCCEEDED
    assert "alert_stalled" in await refund_trail(refund)


async def test_a_refund_wechat_pay_never_accepts_fails_and_the_duty_manager_is_told(
    world: World,
) -> None:
    order = await world.buy(await world.show(), "fan", count=2)
    world.bank.down = True
    refund = await world.refund(order)

    for _ in range(24):
        world.clock.advance(hours=1)
        await refunds.chase_refunds(world.bank, world.now, _alerts(world.clock))

    failed = await Refund.get(id=refund.id)
    assert failed.state == RefundState.FAILED and failed.attempts == refunds.RETRY_LIMIT
    assert "ConnectionError" in (failed.last_error or "")
    ((manager, text),) = await manager_messages(refund)
    assert manager == "manager01" and "退款发起失败" in text and order.no in text
    assert await refund_trail(refund) == ["failed"]
    # Nobody asks WeChat Pay again behind the manager's back.
    world.bank.down = False
    world.clock.advance(hours=1)
    await refunds.chase_refunds(world.bank, world.now, _alerts(world.clock))
    assert len(world.bank.calls) == refunds.RETRY_LIMIT


async def _paid_by_the_pay_page(client: TestClient, clock: FakeClock, openid: str) -> Order:
    api = client.app[API]
    cinema = await Cinema.get(code=demo.DEMO_CINEMA_CODE)
    hall = await Hall.create(cinema=cinema, name="小厅", layout=["SSSS"])
    starts = clock.now() + timedelta(days=1)
    show = await Showtime.create(
        cinema=cinema, hall=hall, film=await Film.first(), starts_at=starts,
        ends_at=starts + timedelta(minutes=150), format="2D", base_price_fen=4500,
    )
    order = await ticketing.hold_seats(api.inventory, show, Buyer(openid), clock.now(), count=2)
    paid = await client.post(
        "/pay/" + api.payments.pay_url(order).split("/pay/", 1)[1], allow_redirects=False
    )
    assert paid.status == 303
    return await Order.get(id=order.id)


async def test_a_refund_at_the_sandbox_bank_is_processing_until_its_notify_says_success(
    client: TestClient, clock: FakeClock
) -> None:
    api = client.app[API]
    order = await _paid_by_the_pay_page(client, clock, "oCineBotRefundBuyer00000001")

    refund = await ticketing.refund_order(
        api.inventory, api.payments, order, by=order.openid, now=clock.now(), notify=api.notify
    )

    assert (await Refund.get(id=refund.id)).state == RefundState.PROCESSING
    await api.payments.drain()  # the REFUND.SUCCESS notify reaches /api/pay/notify
    done = await Refund.get(id=refund.id)
    assert done.state == RefundState.SUCCEEDED and done.refund_id
    assert await refund_trail(refund) == ["processing", "succeeded"]
    answer = await api.payments.query_refund(refund.no)
    assert answer["status"] == "SUCCESS"


async def test_an_abnormal_refund_notify_reaches_the_duty_manager_once(
    client: TestClient, clock: FakeClock
) -> None:
    api = client.app[API]
    order = await _paid_by_the_pay_page(client, clock, "oCineBotRefundBuyer00000002")
    sandbox = api.payments.gateway
    assert isinstance(sandbox, SandboxGateway)
    sandbox.refund_outcome = "ABNORMAL"  # the buyer's bank card was closed meanwhile

    refund = await ticketing.refund_order(
        api.inventory, api.payments, order, by=order.openid, now=clock.now(), notify=api.notify
    )
    await api.payments.drain()
    # WeChat Pay sends the notify again (it did not hear our answer).
    resource = {
        "mchid": sandbox.cfg.mchid, "out_trade_no": order.no, "out_refund_no": refund.no,
        "refund_id": "503", "refund_status": "ABNORMAL",
        "amount": {"total": order.paid_fen, "refund": refund.amount_fen,
                   "payer_total": order.paid_fen, "payer_refund": refund.amount_fen},
    }
    headers, body = build_notify(
        sandbox.keys.private_key_pem, sandbox.keys.serial, sandbox.keys.apiv3_key, resource,
        clock.timestamp(), event_type="REFUND.ABNORMAL",
    )
    again = await client.post("/api/pay/notify", data=body, headers=headers)

    assert again.status == 204
    assert (await Refund.get(id=refund.id)).state == RefundState.ABNORMAL
    ((manager, text),) = await manager_messages(refund)
    assert manager == "manager01" and "退款异常" in text and order.no in text
    assert await refund_trail(refund) == ["processing", "abnormal"]
