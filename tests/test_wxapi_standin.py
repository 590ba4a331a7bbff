"""Outbound API clients against the local stand-in, both real: an aiohttp server and Redis.

The stories: tokens are fetched once and shared by every process, a token that
expires mid-way is refreshed once, and every failure says whether trying again
later can help — while the stand-in shows a person what was "sent".
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.wechat.standin import STATE
from bot.wechat.api import ApiError, QrCode, WeChatApi, WeComApi, button_card
from tests.support import StartStandin, Standin

APPID = "wx5c1ne6b0tdem0001"
WECHAT_SECRET = "wechat-secret-never-logged"
CORP = "ww5c1ne6b0tdem0001"
AGENT = 1000002
WECOM_SECRET = "wecom-secret-never-logged"
AUDIENCE = "oAudience0000000000000000001"


def wechat_client(
    http: aiohttp.ClientSession, redis: aioredis.Redis, server: Standin
) -> WeChatApi:
    return WeChatApi(http, redis, server.url, APPID, WECHAT_SECRET)


def wecom_client(
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    server: Standin,
    agent: int = AGENT,
    secret: str = WECOM_SECRET,
) -> WeComApi:
    return WeComApi(http, redis, server.url, CORP, agent, secret)


@pytest.fixture
def wechat(http: aiohttp.ClientSession, redis: aioredis.Redis, standin: Standin) -> WeChatApi:
    return wechat_client(http, redis, standin)


@pytest.fixture
def wecom(http: aiohttp.ClientSession, redis: aioredis.Redis, standin: Standin) -> WeComApi:
    return wecom_client(http, redis, standin)


def text(content: str) -> dict[str, Any]:
    return {"msgtype": "text", "text": {"content": content}}


def alert_card(task_id: str = "alert-20261121-0001") -> dict[str, Any]:
    return button_card(
        task_id,
        "3号厅 投影机灯泡告警",
        "灯泡已使用 2950/3000 小时",
        rows=[("影厅", "3号厅"), ("设备", "NEC NC1200C")],
        buttons=[("ack", "确认处理", 1), ("reassign", "转派", 2)],
        source="放映监控",
    )


# --- tokens ------------------------------------------------------------------------------------


async def test_two_processes_share_one_token_through_redis(
    standin: Standin, redis: aioredis.Redis, redis_url: str
) -> None:
    other_redis = aioredis.Redis.from_url(redis_url)
    async with aiohttp.ClientSession() as http_a, aiohttp.ClientSession() as http_b:
        first = wechat_client(http_a, redis, standin)
        second = wechat_client(http_b, other_redis, standin)
        await first.send_custom(AUDIENCE, text("您好，第一条"))
        await second.send_custom(AUDIENCE, text("您好，第二条"))
        assert await first.access_token() == await second.access_token()
    await other_redis.aclose()

    fetches = await standin.token_fetches()
    assert [(f["endpoint"], f["owner"], f["force_refresh"]) for f in fetches] == [
        ("stable_token", APPID, False)
    ]
    assert len(await standin.messages(to=AUDIENCE)) == 2
    ttl = await redis.ttl(f"cinebot:token:wechat:{APPID}")
    assert 7200 - 300 - 10 <= ttl <= 7200 - 300  # cached until 5 minutes before expiry


async def test_ten_concurrent_callers_fetch_the_token_once(
    start_standin: StartStandin, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    slow = await start_standin(latency=0.05)
    clients = [wechat_client(http, redis, slow) for _ in range(10)]
    tokens = await asyncio.gather(*(c.access_token() for c in clients))
    assert len(set(tokens)) == 1
    assert len(await slow.token_fetches()) == 1


async def test_a_dead_refresher_lock_is_taken_over(
    standin: Standin, redis: aioredis.Redis, wechat: WeChatApi
) -> None:
    # Another process took the refresh lock and died: its lock lapses, and we refresh.
    await redis.set(f"cinebot:token:wechat:{APPID}:lock", "someone-else", px=300)
    assert await wechat.access_token()
    assert len(await standin.token_fetches()) == 1


async def test_wecom_tokens_are_cached_per_app(
    standin: Standin, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    staff_app = wecom_client(http, redis, standin, agent=1000002, secret="staff-secret")
    alert_app = wecom_client(http, redis, standin, agent=1000003, secret="alert-secret")
    assert await staff_app.access_token() != await alert_app.access_token()
    assert (
        await redis.exists(
            f"cinebot:token:wecom:{CORP}:1000002", f"cinebot:token:wecom:{CORP}:1000003"
        )
        == 2
    )
    fetches = await standin.token_fetches()
    assert [(f["endpoint"], f["owner"]) for f in fetches] == [("gettoken", CORP)] * 2


async def test_a_token_expired_mid_way_is_refreshed_once_and_the_send_succeeds(
    standin: Standin, wechat: WeChatApi
) -> None:
    await wechat.send_custom(AUDIENCE, text("您的影票已出票"))
    await standin.fault("expire", 1)

    await wechat.send_custom(AUDIENCE, text("开场前 30 分钟提醒"))

    contents = [m["payload"]["text"]["content"] for m in await standin.messages(to=AUDIENCE)]
    assert contents == ["您的影票已出票", "开场前 30 分钟提醒"]
    fetches = await standin.token_fetches()
    assert [f["force_refresh"] for f in fetches] == [False, True]


async def test_many_calls_failing_on_one_stale_token_refresh_it_once(
    standin: Standin, wechat: WeChatApi
) -> None:
    await wechat.access_token()
    await standin.fault("expire", 1)

    await asyncio.gather(*(wechat.send_custom(AUDIENCE, text(f"第{i}条")) for i in range(5)))

    assert len(await standin.messages(to=AUDIENCE)) == 5
    assert [f["force_refresh"] for f in await standin.token_fetches()] == [False, True]


async def test_wecom_recovers_when_the_platform_forgets_its_tokens(
    standin: Standin, wecom: WeComApi
) -> None:
    await wecom.send(["engineer01"], text("早班交接"))
    await standin.post("/standin/reset", {})  # every token is now unknown (40014)

    await wecom.send(["engineer01"], text("晚班交接"))

    assert [m["payload"]["text"]["content"] for m in await standin.messages()] == ["晚班交接"]
    assert len(await standin.token_fetches()) == 1  # the log was reset too


async def test_a_token_error_that_survives_the_refresh_is_reported(
    standin: Standin, wechat: WeChatApi
) -> None:
    await standin.fault("expire", 2)
    with pytest.raises(ApiError) as caught:
        await wechat.send_custom(AUDIENCE, text("不会送达"))
    assert caught.value.errcode == 42001
    assert caught.value.token_expired and not caught.value.permanent
    assert await standin.messages() == []


# --- failures and their classification ---------------------------------------------------------


@pytest.mark.parametrize(
    ("openid", "send", "errcode"),
    [
        ("o_out_of_window_0001", "custom", 45015),
        ("o_unsubscribed_0001", "custom", 43004),
        ("o_unsubscribed_0001", "template", 43004),
        ("o_no_subscription_0001", "subscribe", 43101),
    ],
)
async def test_a_recipient_who_cannot_be_reached_is_a_permanent_failure(
    standin: Standin,
    wechat: WeChatApi,
    openid: str,
    send: str,
    errcode: int,
) -> None:
    calls = {
        "custom": lambda: wechat.send_custom(openid, text("您的退票已受理")),
        "template": lambda: wechat.send_template(openid, "tmpl-refund", {"first": "退票成功"}),
        "subscribe": lambda: wechat.send_subscribe(openid, "tmpl-show", {"thing1": "沙丘"}),
    }
    with pytest.raises(ApiError) as caught:
        await calls[send]()
    assert caught.value.errcode == errcode
    assert caught.value.permanent and not caught.value.retryable
    assert await standin.messages() == []
    errors = await standin.errors()
    assert [e["errcode"] for e in errors] == [errcode]


@pytest.mark.parametrize(
    ("mode", "errcode", "status"), [("http502", None, 502), ("busy", -1, None)]
)
async def test_a_flaky_platform_is_a_retryable_failure_and_records_nothing(
    standin: Standin,
    wechat: WeChatApi,
    mode: str,
    errcode: int | None,
    status: int | None,
) -> None:
    await wechat.access_token()
    await standin.fault(mode, 1)
    with pytest.raises(ApiError) as caught:
        await wechat.send_custom(AUDIENCE, text("稍后重试"))
    assert (caught.value.errcode, caught.value.http_status) == (errcode, status)
    assert caught.value.retryable and not caught.value.permanent
    assert await standin.messages() == []

    await wechat.send_custom(AUDIENCE, text("稍后重试"))  # the next attempt goes through
    assert len(await standin.messages()) == 1


async def test_random_failures_are_all_retryable_and_of_both_kinds(
    start_standin: StartStandin, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    flaky = await start_standin(seed=3)
    client = wechat_client(http, redis, flaky)
    await client.access_token()
    flaky.app[STATE].fail_rate = 1.0
    seen: set[tuple[int | None, int | None]] = set()
    for _ in range(20):
        with pytest.raises(ApiError) as caught:
            await client.send_custom(AUDIENCE, text("测试"))
        assert caught.value.retryable
        seen.add((caught.value.errcode, caught.value.http_status))
    assert seen == {(None, 502), (-1, None)}
    assert flaky.app[STATE].messages == []


async def test_an_unreachable_platform_is_a_retryable_failure(
    http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = WeChatApi(http, redis, f"http://127.0.0.1:{port}", APPID, WECHAT_SECRET)
    with pytest.raises(ApiError) as caught:
        await client.send_custom(AUDIENCE, text("无法送达"))
    assert caught.value.retryable and caught.value.errcode is None


@pytest.mark.parametrize(
    ("errcode", "status", "kind"),
    [
        (-1, None, "retryable"),
        (45009, None, "retryable"),
        (45011, None, "retryable"),
        (None, None, "retryable"),
        (None, 500, "retryable"),
        (None, 503, "retryable"),
        (None, 429, "retryable"),
        (None, 404, "permanent"),
        (40001, None, "token_expired"),
        (40014, None, "token_expired"),
        (42001, None, "token_expired"),
        (43004, None, "permanent"),
        (45015, None, "permanent"),
        (43101, None, "permanent"),
        (47003, None, "permanent"),
        (40037, None, "permanent"),
        (41030, None, "permanent"),
        (42014, None, "permanent"),
        (45008, None, "permanent"),
    ],
)
def test_every_error_has_exactly_one_classification(
    errcode: int | None, status: int | None, kind: str
) -> None:
    error = ApiError(errcode, "x", endpoint="message/custom/send", http_status=status)
    flags = {
        "retryable": error.retryable,
        "token_expired": error.token_expired,
        "permanent": error.permanent,
    }
    assert [name for name, on in flags.items() if on] == [kind]


async def test_secrets_and_tokens_never_reach_the_logs(
    standin: Standin,
    wechat: WeChatApi,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await wechat.send_custom(AUDIENCE, text("你好"))
    token = await wechat.access_token()
    await standin.fault("expire", 2)
    with pytest.raises(ApiError) as caught:
        await wechat.send_custom(AUDIENCE, text("你好"))
    new_token = await wechat.access_token()
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "access token refreshed" in logged
    for secret in (WECHAT_SECRET, token, new_token):
        assert secret not in logged
        assert secret not in str(caught.value)
        assert secret not in repr(wechat)


# --- WeChat messages ---------------------------------------------------------------------------


async def test_template_subscribe_qrcode_and_image_calls_reach_the_platform(
    standin: Standin, wechat: WeChatApi
) -> None:
    answer = await wechat.send_template(
        AUDIENCE,
        "tmpl-ticket",
        {"first": "出票成功", "keyword1": {"value": "沙丘2", "color": "#173177"}},
        url="https://cinema.example/t/1",
        client_msg_id="order-42",
    )
    assert answer["msgid"]
    await wechat.send_subscribe(
        AUDIENCE,
        "tmpl-show",
        {"thing1": "沙丘2", "time2": "2026-11-21 19:30"},
        page="pages/order/detail?id=42",
        miniprogram_state="trial",
    )
    temporary = await wechat.create_qrcode("seat:H3-07", expire_seconds=3600)
    permanent = await wechat.create_qrcode("hall:3", permanent=True)
    media_id = await wechat.upload_image(b"\x89PNG fake image bytes", "poster.png")
    await wechat.send_custom(AUDIENCE, {"msgtype": "image", "image": {"media_id": media_id}})
    await wechat.send_custom(
        AUDIENCE,
        {
            "msgtype": "miniprogrampage",
            "miniprogrampage": {
                "title": "选座购票",
                "pagepath": "pages/seat/index",
                "thumb_media_id": media_id,
            },
        },
    )

    assert isinstance(temporary, QrCode) and temporary.expire_seconds == 3600
    assert temporary.image_url.startswith("https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=")
    assert permanent.expire_seconds is None and permanent.ticket != temporary.ticket
    messages = await standin.messages(to=AUDIENCE)
    assert [m["payload"]["msgtype"] for m in messages] == [
        "template",
        "subscribe",
        "image",
        "miniprogrampage",
    ]
    assert messages[0]["payload"]["data"]["first"] == {"value": "出票成功"}
    assert messages[0]["payload"]["client_msg_id"] == "order-42"
    assert messages[1]["payload"]["data"]["thing1"] == {"value": "沙丘2"}
    assets = await standin.assets()
    assert [(a["kind"], a.get("scene"), a.get("permanent")) for a in assets] == [
        ("qrcode", "seat:H3-07", False),
        ("qrcode", "hall:3", True),
        ("media", None, None),
    ]


async def test_a_customer_service_news_message_carries_one_article(
    standin: Standin, wechat: WeChatApi
) -> None:
    article = {"title": "今日排片", "description": "沙丘2 19:30", "url": "https://cinema.example"}
    await wechat.send_custom(AUDIENCE, {"msgtype": "news", "news": {"articles": [article]}})
    with pytest.raises(ApiError) as caught:
        await wechat.send_custom(
            AUDIENCE, {"msgtype": "news", "news": {"articles": [article] * 2}}
        )
    assert caught.value.errcode == 45008 and caught.value.permanent


async def test_an_image_message_needs_an_uploaded_media_id(wechat: WeChatApi) -> None:
    with pytest.raises(ApiError) as caught:
        await wechat.send_custom(
            AUDIENCE, {"msgtype": "image", "image": {"media_id": "never-uploaded"}}
        )
    assert caught.value.errcode == 40007 and caught.value.permanent


async def test_bad_qrcode_arguments_are_refused_before_any_call(
    standin: Standin, wechat: WeChatApi
) -> None:
    for scene, seconds in (("", 60), ("x" * 65, 60), ("seat:1", 2_592_001)):
        with pytest.raises(ValueError):
            await wechat.create_qrcode(scene, expire_seconds=seconds)
    assert await standin.token_fetches() == []


# --- WeCom messages and template cards ---------------------------------------------------------


async def test_an_alert_card_is_sent_and_updated_once(
    standin: Standin, wecom: WeComApi
) -> None:
    answer = await wecom.send(
        ["engineer01"], {"msgtype": "template_card", "template_card": alert_card()}
    )
    code = answer["response_code"]
    assert code and answer["invaliduser"] == ""

    await wecom.update_template_card(["engineer01"], code, button_replace_name="已确认")
    with pytest.raises(ApiError) as caught:
        await wecom.update_template_card(["engineer01"], code, button_replace_name="已确认")
    assert caught.value.errcode == 42022 and caught.value.permanent

    with pytest.raises(ApiError) as unknown:
        await wecom.update_template_card(
            ["engineer01"], "never-issued", button_replace_name="已确认"
        )
    assert unknown.value.errcode == 40078 and unknown.value.permanent

    messages = await standin.messages(to="engineer01")
    assert [m["endpoint"] for m in messages] == ["message/send", "message/update_template_card"]
    assert messages[0]["response"]["response_code"] == code
    assert messages[1]["payload"]["button"] == {"replace_name": "已确认"}


async def test_a_button_click_gives_a_fresh_response_code(
    standin: Standin, wecom: WeComApi
) -> None:
    await wecom.send(["engineer01"], {"msgtype": "template_card", "template_card": alert_card()})
    event = await standin.post(
        "/standin/click",
        {"task_id": "alert-20261121-0001", "userid": "engineer01", "key": "ack"},
    )
    assert (event["Event"], event["EventKey"], event["AgentID"]) == (
        "template_card_event",
        "ack",
        AGENT,
    )

    replaced = alert_card() | {"button_list": [{"key": "done", "text": "已处理", "style": 2}]}
    await wecom.update_template_card(["engineer01"], event["ResponseCode"], template_card=replaced)
    assert len(await standin.messages(to="engineer01")) == 2


async def test_a_task_id_is_used_once_per_app(wecom: WeComApi) -> None:
    card = {"msgtype": "template_card", "template_card": alert_card("alert-dup")}
    await wecom.send(["engineer01"], card)
    with pytest.raises(ApiError) as caught:
        await wecom.send(["engineer02"], card)
    assert caught.value.errcode == 42014 and caught.value.permanent


@pytest.mark.parametrize(
    ("task_id", "buttons"),
    [
        ("has space", [("ack", "确认", 1)]),
        ("告警", [("ack", "确认", 1)]),
        ("x" * 129, [("ack", "确认", 1)]),
        ("", [("ack", "确认", 1)]),
        ("ok", []),
        ("ok", [("ack", "确认", 1), ("ack", "再确认", 1)]),
        ("ok", [("ack", "确认", 5)]),
        ("ok", [(f"k{i}", "按钮", 1) for i in range(7)]),
    ],
)
def test_button_card_refuses_what_wecom_would_refuse(
    task_id: str, buttons: list[tuple[str, str, int]]
) -> None:
    with pytest.raises(ValueError):
        button_card(task_id, "标题", "描述", rows=[], buttons=buttons)


def test_button_card_accepts_the_full_task_id_alphabet() -> None:
    card = button_card(
        "A-z_0@9" + "x" * 121, "标题", "描述", rows=[("影厅", "1号厅")], buttons=[("k", "好", 4)]
    )
    assert card["card_type"] == "button_interaction" and len(card["task_id"]) == 128
    assert card["horizontal_content_list"] == [{"keyname": "影厅", "value": "1号厅"}]


async def test_invalid_members_are_reported_not_fatal(
    standin: Standin, wecom: WeComApi
) -> None:
    answer = await wecom.send(["engineer01", "invalid_left_company"], text("今晚设备巡检"))
    assert answer["invaliduser"] == "invalid_left_company"
    assert [m["to"] for m in await standin.messages()] == [["engineer01"]]
    with pytest.raises(ApiError) as caught:
        await wecom.send(["invalid_a", "invalid_b"], text("无人收到"))
    assert caught.value.errcode == 81013 and caught.value.permanent


async def test_wecom_refuses_ascii_escaped_json(
    standin: Standin, http: aiohttp.ClientSession, wecom: WeComApi
) -> None:
    # What json.dumps' default would send; the clients send UTF-8 instead.
    token = await wecom.access_token()
    async with http.post(
        standin.make_url("/cgi-bin/message/send"),
        params={"access_token": token},
        data='{"touser":"engineer01","agentid":1000002,"msgtype":"text","text":{"content":"\\u4f60\\u597d"}}',
    ) as resp:
        assert (await resp.json())["errcode"] == 40033
    await wecom.send(["engineer01"], text("你好"))
    assert (await standin.messages())[0]["payload"]["text"]["content"] == "你好"


# --- what a person sees ------------------------------------------------------------------------


async def test_the_messages_endpoint_filters_by_recipient_and_position(
    standin: Standin, wechat: WeChatApi
) -> None:
    await wechat.send_custom(AUDIENCE, text("第一条"))
    await wechat.send_custom("oSomeoneElse000000000000001", text("别人的"))
    await wechat.send_custom(AUDIENCE, text("第二条"))

    mine = await standin.messages(to=AUDIENCE)
    assert [m["payload"]["text"]["content"] for m in mine] == ["第一条", "第二条"]
    later = await standin.messages(to=AUDIENCE, since=mine[0]["id"])
    assert [m["payload"]["text"]["content"] for m in later] == ["第二条"]
    assert {"platform", "endpoint", "to", "payload", "at"} <= set(mine[0])
    assert mine[0]["platform"] == "wechat" and mine[0]["endpoint"] == "message/custom/send"


async def test_the_page_shows_a_sent_text_and_card_in_chinese(
    standin: Standin, http: aiohttp.ClientSession, wechat: WeChatApi, wecom: WeComApi
) -> None:
    await wechat.send_custom(AUDIENCE, text("您预订的《沙丘2》19:30 场次\n3号厅 7排8座"))
    answer = await wecom.send(
        ["engineer01"], {"msgtype": "template_card", "template_card": alert_card()}
    )
    await wecom.update_template_card(
        ["engineer01"], answer["response_code"], button_replace_name="已确认"
    )

    async with http.get(standin.make_url("/standin/")) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    for expected in (
        "http-equiv='refresh'",
        "客服消息",
        "您预订的《沙丘2》19:30 场次<br>3号厅 7排8座",
        "企业微信",
        "模板卡片",
        "放映监控",
        "3号厅 投影机灯泡告警",
        "灯泡已使用 2950/3000 小时",
        "NEC NC1200C",
        "确认处理",
        "转派",
        "按钮变为",
        "已确认",
    ):
        assert expected in page, expected


async def test_the_page_escapes_what_it_shows(
    standin: Standin, http: aiohttp.ClientSession, wechat: WeChatApi
) -> None:
    await wechat.send_custom(AUDIENCE, text("<script>alert(1)</script>"))
    async with http.get(standin.make_url("/standin/")) as resp:
        page = await resp.text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_standin_runs_as_a_program() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.wechat.standin", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert asyncio.run(_wait_until_up(f"http://127.0.0.1:{port}/standin/messages"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _wait_until_up(url: str) -> bool:
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(url) as resp:
                    return resp.status == 200 and (await resp.json())["messages"] == []
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    return False
