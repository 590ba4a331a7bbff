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

from bot.settings import Settings, SettingsError
from domain import demo, ticketing
from domain.catalog import Film, Showtime
from domain.cinemas import Cinema, Hall
from domain.orders import Order, OrderState, Payment, Refund, Ticket
from domain.ticketing import Buyer, PaymentNotice
from handlers.api.context import API
from tests.support import FakeClock, cinebot_command
from tests.test_ticketing import (  # noqa: F401 (fixtures: the world of the ticketing stories)
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
