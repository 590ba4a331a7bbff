"""The mini-program's JSON API, through the real app: a real server, Redis, SQL, the WeChat
stand-in for logins and the sandbox bank, whose signed notify really issues the tickets.

The stories: a buyer logs in with a wx.login code, picks seats, pays and finds the QR code;
nobody sees anyone else's order; refunds stop at the cut-off; a ticket opens the gate once.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from bot.infra import tokens
from bot.infra.settings import Settings
from bot.wechat.standin import STATE
from bot.wechat.api import ApiError, WeChatApi
from domain.cinemas import Cinema
from domain.orders import Order
from domain.outbox import OutboundMessage
from domain.people import Member, StaffRole, add_staff
from handlers.api import API, picker_url, staff_token
from handlers.api.http import MAX_BODY_BYTES
from handlers.api.openapi import DOCUMENT
from tests.support import FakeClock, Standin

SHANGHAI = ZoneInfo("Asia/Shanghai")
CHINESE = re.compile(r"[\u4e00-\u9fff]")


# --- helpers (the app itself is conftest's ``api``: the stand-in as its WeChat API) ----------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    api: TestClient, method: str, path: str, token: str | None = None, **kw: Any
) -> tuple[int, Any]:
    headers = {**kw.pop("headers", {}), **(bearer(token) if token else {})}
    resp = await api.request(method, path, headers=headers, **kw)
    assert resp.content_type == "application/json", (resp.status, await resp.text())
    return resp.status, await resp.json()


async def login(api: TestClient, name: str) -> str:
    status, body = await call(api, "POST", "/api/login", json={"code": f"test-{name}"})
    assert status == 200, body
    return body["token"]


def local(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(SHANGHAI)


async def show_at(api: TestClient, hhmm: str, hall: str = "1号厅", day: str | None = None) -> dict:
    params = {"date": day} if day else {}
    status, body = await call(api, "GET", "/api/showtimes", params=params)
    assert status == 200, body
    for show in body["showtimes"]:
        if show["hall"]["name"] == hall and local(show["starts_at"]).strftime("%H:%M") == hhmm:
            return show
    raise AssertionError(f"no {hhmm} show in {hall}: {body}")


async def seat_map(api: TestClient, token: str, showtime_id: int) -> dict:
    status, body = await call(api, "GET", f"/api/showtimes/{showtime_id}/seats", token)
    assert status == 200, body
    return body


def states(body: dict) -> dict[str, str]:
    return {s["label"]: s["state"] for row in body["map"]["rows"] for s in row["seats"]}


async def hold(api: TestClient, token: str, showtime_id: int, **choice: Any) -> tuple[int, Any]:
    body = {"showtime_id": showtime_id, **choice}
    return await call(api, "POST", "/api/holds", token, json=body)


async def buy(api: TestClient, token: str, showtime_id: int, seats: list[str]) -> dict:
    """Hold, confirm and pay through the sandbox bank: the notify issues the tickets."""
    status, body = await hold(api, token, showtime_id, seats=seats)
    assert status == 201, body
    no = body["order"]["no"]
    status, body = await call(api, "POST", f"/api/orders/{no}/pay", token)
    assert status == 200, body
    assert await api.app[API].payments.sandbox_pay(await Order.get(no=no)) == 204
    status, body = await call(api, "GET", f"/api/orders/{no}", token)
    assert status == 200 and body["order"]["state"] == "issued", body
    return body["order"]


def assert_chinese_error(body: Any, code: str) -> None:
    assert body["code"] == code, body
    assert CHINESE.search(body["message"]), body


# --- logging in ---------------------------------------------------------------------------------


async def test_a_buyer_logs_in_with_a_wx_login_code_once(api: TestClient) -> None:
    status, body = await call(api, "POST", "/api/login", json={"code": "test-alice"})
    assert status == 200, body
    assert body["expires_in"] == 7 * 24 * 3600
    assert "session_key" not in body
    assert tokens.verify(
        api.app[API].secret_key, "mp", body["token"], api.app[API].clock.now().timestamp()
    ) == "mp-alice"
    assert await Member.filter(openid="mp-alice").count() == 1
    # The session works on the API.
    status, _ = await call(api, "GET", "/api/tickets", body["token"])
    assert status == 200

    # wx.login codes work once; a made-up one not at all.
    status, again = await call(api, "POST", "/api/login", json={"code": "test-alice"})
    assert status == 401
    assert_chinese_error(again, "bad_code")
    status, made_up = await call(api, "POST", "/api/login", json={"code": "0a1b2c"})
    assert status == 401
    assert_chinese_error(made_up, "bad_code")
    status, missing = await call(api, "POST", "/api/login", json={})
    assert status == 422
    assert_chinese_error(missing, "invalid")


async def test_a_wrong_miniprogram_secret_is_our_problem_not_the_buyers(
    api: TestClient, standin: Standin
) -> None:
    standin.app[STATE].miniprogram_secret = "rotated-on-the-platform"
    status, body = await call(api, "POST", "/api/login", json={"code": "test-bob"})
    assert status == 502
    assert_chinese_error(body, "login_failed")


async def test_jscode2session_answers_like_the_platform(
    standin: Standin, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    defaults = Settings()
    wechat = WeChatApi(http, redis, standin.url, defaults.wechat_appid, "oa-secret")
    mp = (defaults.miniprogram_appid, defaults.miniprogram_secret)
    answer = await wechat.jscode2session(*mp, "test-carol")
    assert answer["openid"] == "mp-carol" and answer["session_key"]
    cases = [
        ((*mp, "test-carol"), 40163),  # used before
        ((*mp, "garbage"), 40029),
        (("wx0000000000000000", mp[1], "test-dave"), 40013),
        ((mp[0], "wrong-secret", "test-dave"), 40125),
    ]
    for args, errcode in cases:
        with pytest.raises(ApiError) as caught:
            await wechat.jscode2session(*args)
        assert caught.value.errcode == errcode
        assert caught.value.permanent
        assert mp[1] not in str(caught.value)
    # A refused attempt does not spend the code.
    assert (await wechat.jscode2session(*mp, "test-dave"))["openid"] == "mp-dave"


# --- tokens ------------------------------------------------------------------------------------


async def test_requests_without_a_valid_session_are_401(api: TestClient, clock: FakeClock) -> None:
    token = await login(api, "alice")
    secret = api.app[API].secret_key
    now = clock.timestamp()
    forged = tokens.sign("not-our-key", "mp", "mp-alice", now + 3600)
    staff = staff_token(secret, "staff01", clock.now())
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for header in (
        {},
        {"Authorization": "Basic abc"},
        bearer("garbage"),
        bearer(forged),
        bearer(tampered),
        bearer(staff),  # a gate token is not a buyer's session
    ):
        resp = await api.get("/api/tickets", headers=header)
        assert resp.status == 401, header
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        body = await resp.json()
        assert body["code"] in ("unauthorized", "bad_token"), body
        assert CHINESE.search(body["message"])

    clock.advance(days=7, seconds=1)
    status, body = await call(api, "GET", "/api/tickets", token)
    assert status == 401
    assert_chinese_error(body, "token_expired")


# --- buying -------------------------------------------------------------------------------------


async def test_a_whole_purchase_through_the_api(api: TestClient, clock: FakeClock) -> None:
    status, films = await call(api, "GET", "/api/films")
    assert status == 200 and any(f["title"] == "沙丘：第二部" for f in films["films"])
    token = await login(api, "alice")
    show = await show_at(api, "13:00")
    assert show["on_sale"]

    before = await seat_map(api, token, show["id"])
    assert states(before)["5-5"] == "free" and before["hold"] is None
    assert before["prices"]["per_kind"]["standard"] == show["base_price_fen"]
    assert before["prices"]["per_kind"]["vip"] == show["base_price_fen"] * 3 // 2

    status, held = await hold(api, token, show["id"], seats=["5-5", "5-6"])
    assert status == 201, held
    order = held["order"]
    assert order["state"] == "held" and order["channel"] == "miniprogram"
    assert order["seats"] == ["5-5", "5-6"] and order["seat_names"] == ["5排5座", "5排6座"]
    assert order["amount_fen"] == order["quote"]["total_fen"] == 2 * show["base_price_fen"]
    assert order["seconds_left"] == 600

    clock.advance(seconds=90)
    mine = await seat_map(api, token, show["id"])
    assert states(mine)["5-5"] == states(mine)["5-6"] == "mine"
    assert mine["hold"]["no"] == order["no"] and mine["hold"]["seconds_left"] == 510
    other = await seat_map(api, await login(api, "bob"), show["id"])
    assert states(other)["5-5"] == "held" and other["hold"] is None

    status, paying = await call(api, "POST", f"/api/orders/{order['no']}/pay", token)
    assert status == 200, paying
    assert paying["order"]["state"] == "pending_payment"
    assert paying["pay"]["package"] == f"prepay_id=sandbox_{order['no']}"
    assert set(paying["pay"]) == {
        "appId", "timeStamp", "nonceStr", "package", "signType", "paySign"
    }
    assert paying["sandbox"] is True and "/pay/" in paying["pay_url"]

    # The sandbox bank pays: its signed notify reaches /api/pay/notify and issues the tickets.
    assert await api.app[API].payments.sandbox_pay(await Order.get(no=order["no"])) == 204
    status, listed = await call(api, "GET", "/api/tickets", token)
    assert status == 200
    [bought] = listed["orders"]
    assert bought["no"] == order["no"] and bought["state"] == "issued"
    assert bought["paid_fen"] == order["amount_fen"]
    assert [t["seat"] for t in bought["tickets"]] == ["5-5", "5-6"]
    assert bought["showtime"]["film"]["title"] == show["film"]["title"]
    for ticket in bought["tickets"]:
        assert ticket["state"] == "issued"
        qr = await api.get(ticket["qr_url"].replace(str(api.make_url("")), ""))
        assert qr.status == 200 and qr.content_type == "image/png"
        assert (await qr.read()).startswith(b"\x89PNG")
        page = await api.get(ticket["page_url"].replace(str(api.make_url("")), ""))
        assert page.status == 200
    assert states(await seat_map(api, token, show["id"]))["5-5"] == "sold"
    # A mini-program order shows in the mini-program: nothing is sent to a chat.
    assert await OutboundMessage.filter(recipient="mp-alice").count() == 0

    status, again = await call(api, "POST", f"/api/orders/{order['no']}/pay", token)
    assert status == 409
    assert_chinese_error(again, "paid")


async def test_best_seats_by_count_and_a_hold_given_up(api: TestClient) -> None:
    token = await login(api, "alice")
    show = await show_at(api, "16:00")
    status, held = await hold(api, token, show["id"], count=3)
    assert status == 201, held
    seats = held["order"]["seats"]
    assert len(seats) == 3 and len({s.split("-")[0] for s in seats}) == 1

    status, released = await call(api, "DELETE", f"/api/orders/{held['order']['no']}", token)
    assert status == 200 and released["order"]["state"] == "cancelled"
    after = states(await seat_map(api, token, show["id"]))
    assert all(after[s] == "free" for s in seats)
    status, body = await call(api, "DELETE", f"/api/orders/{held['order']['no']}", token)
    assert status == 409
    assert_chinese_error(body, "state")


async def test_held_seats_cannot_be_held_again(api: TestClient) -> None:
    alice, bob = await login(api, "alice"), await login(api, "bob")
    show = await show_at(api, "13:00")
    status, _ = await hold(api, alice, show["id"], seats=["6-5", "6-6"])
    assert status == 201

    status, body = await hold(api, bob, show["id"], seats=["6-6", "6-7"])
    assert status == 409
    assert_chinese_error(body, "bad_choice")
    assert "6排6座" in body["message"]
    status, body = await hold(api, bob, show["id"], count=7)
    assert status == 409
    assert_chinese_error(body, "showtime_cap")
    assert "6张" in body["message"]
    # Bob still gets seats, just not Alice's.
    status, body = await hold(api, bob, show["id"], seats=["6-7", "6-8"])
    assert status == 201, body


async def test_nobody_sees_or_touches_someone_elses_order(api: TestClient) -> None:
    alice, bob = await login(api, "alice"), await login(api, "bob")
    show = await show_at(api, "13:00")
    order = await buy(api, alice, show["id"], ["7-5", "7-6"])
    no = order["no"]
    for method, path, body in (
        ("GET", f"/api/orders/{no}", None),
        ("DELETE", f"/api/orders/{no}", None),
        ("POST", f"/api/orders/{no}/pay", None),
        ("POST", f"/api/orders/{no}/refund", None),
        ("POST", f"/api/orders/{no}/change", {"showtime_id": show["id"]}),
    ):
        status, answer = await call(api, method, path, bob, json=body)
        assert status == 404, (method, path, answer)
        assert_chinese_error(answer, "no_order")
    status, nothing = await call(api, "GET", "/api/orders/CB20261121NOSUCHORDER", alice)
    assert status == 404 and nothing["code"] == "no_order"
    status, bobs = await call(api, "GET", "/api/tickets", bob)
    assert bobs["orders"] == []
    status, still = await call(api, "GET", f"/api/orders/{no}", alice)
    assert status == 200 and still["order"]["state"] == "issued"


# --- refunds and changes ----------------------------------------------------------------------


async def test_a_refund_before_the_cut_off_and_none_after(
    api: TestClient, clock: FakeClock
) -> None:
    token = await login(api, "alice")
    show = await show_at(api, "13:00")
    first = await buy(api, token, show["id"], ["8-5", "8-6"])
    status, body = await call(api, "POST", f"/api/orders/{first['no']}/refund", token)
    assert status == 200, body
    assert body["order"]["state"] == "refunded"
    assert body["refund"]["amount_fen"] == first["paid_fen"]
    # Accepted by the bank; its notify says when the money is back.
    assert body["refund"]["state"] in ("processing", "succeeded")
    assert all(t["state"] == "refunded" for t in body["order"]["tickets"])
    assert states(await seat_map(api, token, show["id"]))["8-5"] == "free"

    second = await buy(api, token, show["id"], ["8-5", "8-6"])
    clock.set(datetime.fromisoformat(show["starts_at"]) - timedelta(minutes=29))
    status, body = await call(api, "POST", f"/api/orders/{second['no']}/refund", token)
    assert status == 409
    assert_chinese_error(body, "cutoff")
    assert "30分钟" in body["message"]
    status, body = await call(api, "GET", f"/api/orders/{second['no']}", token)
    assert body["order"]["state"] == "issued"


async def test_a_change_to_a_later_show_of_the_same_film(api: TestClient) -> None:
    token = await login(api, "alice")
    show = await show_at(api, "13:00")
    order = await buy(api, token, show["id"], ["9-5", "9-6"])
    day = local(show["starts_at"]).date()
    target = None
    for offset in range(1, 8):
        when = (day + timedelta(days=offset)).isoformat()
        params = {"date": when, "film_id": show["film"]["id"]}
        status, listed = await call(api, "GET", "/api/showtimes", params=params)
        assert status == 200
        target = next((s for s in listed["showtimes"] if s["id"] != show["id"]), None)
        if target:
            break
    assert target is not None and target["film"]["id"] == show["film"]["id"]

    status, body = await call(
        api, "POST", f"/api/orders/{order['no']}/change", token, json={"showtime_id": target["id"]}
    )
    assert status == 200, body
    new = body["order"]
    assert body["from"] == order["no"] and new["showtime_id"] == target["id"]
    assert new["channel"] == "miniprogram"
    assert body["due_fen"] == new["quote"]["total_fen"] - order["paid_fen"]
    if body["due_fen"] > 0:
        assert new["state"] == "pending_payment" and body["pay"]["package"]
        assert await api.app[API].payments.sandbox_pay(await Order.get(no=new["no"])) == 204
    status, fresh = await call(api, "GET", f"/api/orders/{new['no']}", token)
    assert fresh["order"]["state"] == "issued" and len(fresh["order"]["tickets"]) == 2
    assert fresh["order"]["changed_from"] == order["no"]
    status, old = await call(api, "GET", f"/api/orders/{order['no']}", token)
    assert old["order"]["state"] == "changed"
    # Once only.
    status, again = await call(
        api, "POST", f"/api/orders/{new['no']}/change", token, json={"showtime_id": show["id"]}
    )
    assert status == 409
    assert_chinese_error(again, "once")


# --- the gate ---------------------------------------------------------------------------------


async def test_a_ticket_opens_the_gate_once(api: TestClient, clock: FakeClock) -> None:
    token = await login(api, "alice")
    show = await show_at(api, "13:00")
    order = await buy(api, token, show["id"], ["4-5"])
    secret = order["tickets"][0]["secret"]
    secret_key = api.app[API].secret_key
    gate = staff_token(secret_key, "staff01", clock.now())
    clock.set(datetime.fromisoformat(show["starts_at"]) - timedelta(minutes=50))

    async def scan(token: str, code: str, nonce: str) -> tuple[int, Any]:
        body = {"secret": code, "nonce": nonce}
        return await call(api, "POST", "/api/checkin", token, json=body)

    status, first = await scan(gate, secret, "scan-1")
    assert status == 200, first
    assert first["ok"] and first["code"] == "ok" and "检票成功" in first["message"]
    assert first["ticket"]["seat_name"] == "4排5座" and first["ticket"]["hall"] == "1号厅"

    status, second = await scan(gate, secret, "scan-2")
    assert status == 409 and not second["ok"]
    assert_chinese_error(second, "used")
    assert "4排5座" in second["message"]

    # The first scan uploaded again (the gate's network hiccuped): the same answer.
    clock.advance(seconds=20)
    status, replay = await scan(gate, secret, "scan-1")
    assert (status, replay) == (200, first)
    # A nonce belongs to its scanner: another gate's "scan-1" is a scan of its own.
    other_gate = staff_token(secret_key, "staff02", clock.now())
    status, elsewhere = await scan(other_gate, secret, "scan-1")
    assert status == 409 and elsewhere["code"] == "used"

    status, forged = await scan(gate, "a" * 32, "scan-3")
    assert status == 409 and not forged["ok"] and "ticket" not in forged
    assert_chinese_error(forged, "unknown")

    status, listed = await call(api, "GET", f"/api/orders/{order['no']}", token)
    assert listed["order"]["state"] == "checked_in"
    assert listed["order"]["tickets"][0]["state"] == "checked_in"


async def test_the_gate_refuses_other_days_and_other_cinemas(
    api: TestClient, clock: FakeClock
) -> None:
    token = await login(api, "alice")
    today = await show_at(api, "13:00")
    tomorrow_day = (local(today["starts_at"]).date() + timedelta(days=1)).isoformat()
    tomorrow = await show_at(api, "13:00", day=tomorrow_day)
    later = await buy(api, token, tomorrow["id"], ["3-5"])
    tonight = await buy(api, token, today["id"], ["3-5"])
    secret_key = api.app[API].secret_key
    gate = staff_token(secret_key, "staff01", clock.now())
    clock.set(datetime.fromisoformat(today["starts_at"]) - timedelta(minutes=30))

    status, body = await call(
        api, "POST", "/api/checkin", gate, json={"secret": later["tickets"][0]["secret"]}
    )
    assert status == 409
    assert_chinese_error(body, "wrong_day")

    await Cinema.create(code="other", name="别家影城")
    await add_staff(
        userid="elsewhere01", role=StaffRole.STAFF, name="周明", now=clock.now(),
        cinema_code="other",
    )
    foreign_gate = staff_token(secret_key, "elsewhere01", clock.now())
    status, body = await call(
        api, "POST", "/api/checkin", foreign_gate, json={"secret": tonight["tickets"][0]["secret"]}
    )
    assert status == 409 and "ticket" not in body
    assert_chinese_error(body, "foreign")

    # Only active staff hold the gate; a buyer's session is no gate token.
    status, body = await call(
        api, "POST", "/api/checkin", staff_token(secret_key, "nobody", clock.now()),
        json={"secret": tonight["tickets"][0]["secret"]},
    )
    assert status == 403
    assert_chinese_error(body, "not_staff")
    status, body = await call(
        api, "POST", "/api/checkin", token, json={"secret": tonight["tickets"][0]["secret"]}
    )
    assert status == 401


# --- the H5 seat picker ----------------------------------------------------------------------


async def test_the_seat_picker_page_for_a_chat_buyer(api: TestClient) -> None:
    ctx = api.app[API]
    show = await show_at(api, "19:00")
    url = picker_url(ctx, "oChatBuyer000000000000000001", show["id"])
    path = url.replace(ctx.public_url, "")
    assert path.startswith(f"/pick/{show['id']}?token=")
    resp = await api.get(path)
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    html = await resp.text()
    assert show["film"]["title"] in html and "/api/holds" in html and "/api/showtimes/" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "no external resources"

    # The page's token is a session on the same API; its orders are chat orders.
    token = path.split("token=", 1)[1]
    status, held = await hold(api, token, show["id"], seats=["5-5", "5-6"])
    assert status == 201 and held["order"]["channel"] == "chat"
    assert held["order"]["pay_url"].startswith(ctx.public_url + "/pay/")
    seats = await seat_map(api, token, show["id"])
    assert seats["hold"]["no"] == held["order"]["no"]
    # Picking again replaces the unconfirmed hold rather than stacking a second order.
    status, moved = await hold(api, token, show["id"], seats=["6-5", "6-6"])
    assert status == 201 and moved["order"]["no"] == held["order"]["no"]
    assert states(await seat_map(api, token, show["id"]))["5-5"] == "free"

    bad = await api.get(f"/pick/{show['id']}?token=forged")
    assert bad.status == 401 and "链接" in await bad.text()


# --- the contract -----------------------------------------------------------------------------


async def test_the_openapi_document_covers_every_api_route(api: TestClient) -> None:
    status, served = await call(api, "GET", "/api/openapi.json")
    assert status == 200 and served == DOCUMENT
    assert served["openapi"].startswith("3.1")
    registered = {
        (route.resource.canonical, route.method.lower())
        for route in api.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method not in ("HEAD", "*")  # "*": the JSON 404/405 for everything else
    }
    assert len(registered) >= 14
    documented = {(path, method) for path, ops in served["paths"].items() for method in ops}
    assert registered <= documented, registered - documented
    assert documented <= registered, documented - registered
    for path, ops in served["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (path, method)


async def test_unreadable_or_invalid_requests_get_json_errors(api: TestClient) -> None:
    token = await login(api, "alice")
    sid = (await show_at(api, "13:00"))["id"]
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "/api/holds", {"data": b"{not json"}, 400, "bad_json"),
        ("POST", "/api/holds", {"data": b"\xff\xfe"}, 400, "bad_json"),
        ("POST", "/api/holds", {"json": [1, 2]}, 400, "bad_json"),
        ("POST", "/api/holds", {"data": b"{" + b" " * MAX_BODY_BYTES + b"}"}, 413, "too_large"),
        ("POST", "/api/holds", {"json": {}}, 422, "invalid"),
        ("POST", "/api/holds", {"json": {"showtime_id": "1"}}, 422, "invalid"),
        ("POST", "/api/holds", {"json": {"showtime_id": True, "count": 1}}, 422, "invalid"),
        ("POST", "/api/holds", {"json": {"showtime_id": 10**30, "count": 1}}, 422, "invalid"),
        ("POST", "/api/holds", {"json": {"showtime_id": sid}}, 422, "invalid"),
        ("POST", "/api/holds", {"json": {"showtime_id": sid, "seats": ["5排5座"]}}, 422, "invalid"),
        ("POST", "/api/holds", {"json": {"showtime_id": sid, "seats": ["5-5"] * 2}}, 422, "invalid"),
        ("POST", "/api/holds", {"json": {"showtime_id": sid, "count": 0}}, 422, "invalid"),
        ("POST", "/api/holds", {"json": {"showtime_id": 999999, "count": 1}}, 404, "no_showtime"),
        ("GET", "/api/showtimes", {"params": {"date": "2026-13-45"}}, 422, "invalid"),
        ("GET", "/api/showtimes", {"params": {"film_id": "abc"}}, 422, "invalid"),
        ("GET", "/api/showtimes/99999999999/seats", {}, 404, "not_found"),
        ("GET", "/api/showtimes/999999/seats", {}, 404, "no_showtime"),
        ("GET", "/api/nothing/here", {}, 404, "not_found"),
        ("GET", "/api/login", {}, 405, "method_not_allowed"),
        ("POST", "/api/checkin", {"data": b"nope"}, 401, "unauthorized"),
    ]
    for method, path, kw, status_wanted, code in cases:
        headers = bearer(token) if path != "/api/checkin" else {}
        status, body = await call(api, method, path, headers=headers, **kw)
        assert (status, body.get("code")) == (status_wanted, code), (method, path, kw, body)
        assert CHINESE.search(body["message"]), body
