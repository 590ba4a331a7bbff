"""What the callback endpoints do with forgeries, replays, garbage, floods, retries, slow handlers.

Every refusal is a 4xx (WeChat and WeCom must never see a 500 for something
that is the sender's fault), is counted in ``cinebot_callbacks_rejected_total``,
and leaves no trace in the database.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.crypto.base import WeChatCipher

from bot.wechat.chatclient import WeChatSigner, WeComSigner, event_xml, next_msg_id, text_xml
from bot.chat.router import Understanding
from bot.infra.settings import Settings
from domain.outbox import OutboundMessage
from domain.people import Member
from tests.support import nonce, read_metric, wx_signature

OPENID = "oCineBotEdgeCases0000000001"
ACCOUNT = "gh_cinebotdemo"
CORP = "ww_corp"
AGENT = 1000002
REJECTED = "cinebot_callbacks_rejected_total"
ONE_MB = 1024 * 1024


# --- small builders ------------------------------------------------------------------------


def aes_params(token: str, encrypt: str, ts: int, wecom: bool = False) -> dict[str, str]:
    """A correctly signed safe-mode query for whatever ``encrypt`` holds."""
    n = nonce()
    params = {"timestamp": str(ts), "nonce": n,
              "msg_signature": wx_signature(token, str(ts), n, encrypt)}
    if not wecom:
        params.update(encrypt_type="aes", signature=wx_signature(token, str(ts), n))
    return params


def envelope(encrypt: str) -> bytes:
    return f"<xml><ToUserName>x</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()


def cipher_text(settings: Settings, raw: bytes, wecom: bool = False) -> str:
    """``raw`` (a multiple of 16 bytes) encrypted with our key but without WeChat's framing."""
    key = settings.wecom_aes_key if wecom else settings.wechat_aes_key
    cipher = WeChatCipher(base64.b64decode(key + "="))
    return base64.b64encode(cipher.encrypt(raw)).decode()


def sealed(settings: Settings, plaintext: str, wecom: bool = False) -> str:
    """``plaintext`` framed and encrypted exactly as WeChat would, for our account."""
    if wecom:
        return xmltodict.parse(
            WeComSigner(settings).crypto.encrypt_message(plaintext, "n", 1)
        )["xml"]["Encrypt"]
    crypto = WeChatCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_appid)
    return xmltodict.parse(crypto.encrypt_message(plaintext, "n", 1))["xml"]["Encrypt"]


async def rejected(client: Any, channel: str, reason: str | None = None) -> float:
    labels = {"channel": channel}
    if reason:
        labels["reason"] = reason
    return await read_metric(client, REJECTED, **labels)


async def expect_refusal(
    client: Any, method: str, path: str, params: dict[str, str], body: bytes | None,
    status: int | tuple[int, ...], reason: str | None = None,
) -> str:
    channel = path.split("/")[1]
    before = await rejected(client, channel, reason)
    resp = await client.request(method, path, params=params, data=body)
    text = await resp.text()
    allowed = status if isinstance(status, tuple) else (status,)
    assert resp.status in allowed, (resp.status, text)
    assert await rejected(client, channel, reason) == before + 1
    return text


# --- forged signatures ----------------------------------------------------------------------


async def test_a_forged_wechat_url_check_is_refused_and_counted(client, settings, clock):
    ts, n = str(int(clock.timestamp())), nonce()
    params = {"signature": wx_signature("guess", ts, n), "timestamp": ts, "nonce": n,
              "echostr": "123"}
    await expect_refusal(client, "GET", "/wechat/callback", params, None, 403, "bad_signature")


async def test_a_forged_plaintext_wechat_message_is_refused(make_client, settings, clock):
    # Even where plaintext is accepted at all (compatible mode), it must be signed by us.
    client = await make_client(settings={"wechat_message_mode": "compatible"})
    req = WeChatSigner(replace(settings, wechat_token="guess")).sign(
        text_xml(ACCOUNT, OPENID, "你好", next_msg_id()), encrypted=False,
        timestamp=int(clock.timestamp()),
    )
    await expect_refusal(client, "POST", "/wechat/callback", req.params, req.body, 403,
                         "bad_signature")
    assert not await Member.exists(openid=OPENID)


async def test_a_safe_mode_message_signed_with_another_token_is_refused(client, settings, clock):
    req = WeChatSigner(replace(settings, wechat_token="guess")).sign(
        text_xml(ACCOUNT, OPENID, "你好", next_msg_id()), timestamp=int(clock.timestamp())
    )
    await expect_refusal(client, "POST", "/wechat/callback", req.params, req.body, 403,
                         "bad_signature")
    assert not await Member.exists(openid=OPENID)


async def test_a_safe_mode_message_whose_ciphertext_was_swapped_is_refused(
    client, settings, clock
):
    signer = WeChatSigner(settings)
    ts = int(clock.timestamp())
    genuine = signer.sign(text_xml(ACCOUNT, OPENID, "你好", next_msg_id()), timestamp=ts)
    other = signer.sign(text_xml(ACCOUNT, "oSomeoneElse", "退票", next_msg_id()), timestamp=ts)
    await expect_refusal(client, "POST", "/wechat/callback", genuine.params, other.body, 403,
                         "bad_signature")


async def test_a_forged_wecom_url_check_is_refused(client, settings, clock):
    ts, n = int(clock.timestamp()), nonce()
    echostr = sealed(settings, "4711", wecom=True)
    params = {"msg_signature": wx_signature("guess", str(ts), n, echostr), "timestamp": str(ts),
              "nonce": n, "echostr": echostr}
    text = await expect_refusal(client, "GET", "/wecom/callback", params, None, 403,
                                "bad_signature")
    assert "4711" not in text


async def test_a_forged_wecom_message_is_refused(client, settings, clock):
    req = WeComSigner(replace(settings, wecom_token="guess")).sign(
        text_xml(CORP, "staff01", "你好", next_msg_id(), AGENT), timestamp=int(clock.timestamp())
    )
    await expect_refusal(client, "POST", "/wecom/callback", req.params, req.body, 403,
                         "bad_signature")


# --- replays: stale or future timestamps ------------------------------------------------------


@pytest.mark.parametrize("skew", [-301, -3600, 301, 86400], ids=["5min-old", "1h-old",
                                                                  "5min-ahead", "1day-ahead"])
async def test_callbacks_outside_the_five_minute_window_are_refused(
    make_client, settings, clock, skew
):
    # Compatible mode, so that both forms of an OA message reach the timestamp check.
    client = await make_client(settings={"wechat_message_mode": "compatible"})
    ts = int(clock.timestamp()) + skew
    xml = text_xml(ACCOUNT, OPENID, "你好", next_msg_id())
    wechat = WeChatSigner(settings)
    for encrypted in (True, False):
        req = wechat.sign(xml, encrypted=encrypted, timestamp=ts)
        await expect_refusal(client, "POST", "/wechat/callback", req.params, req.body, 403,
                             "stale_timestamp")
    n = nonce()
    get = {"signature": wx_signature(settings.wechat_token, str(ts), n), "timestamp": str(ts),
           "nonce": n, "echostr": "1"}
    await expect_refusal(client, "GET", "/wechat/callback", get, None, 403, "stale_timestamp")
    req = WeComSigner(settings).sign(text_xml(CORP, "staff01", "你好", next_msg_id(), AGENT), ts)
    await expect_refusal(client, "POST", "/wecom/callback", req.params, req.body, 403,
                         "stale_timestamp")
    echostr = sealed(settings, "4711", wecom=True)
    get = {"msg_signature": wx_signature(settings.wecom_token, str(ts), n, echostr),
           "timestamp": str(ts), "nonce": n, "echostr": echostr}
    await expect_refusal(client, "GET", "/wecom/callback", get, None, 403, "stale_timestamp")
    assert not await Member.exists(openid=OPENID)


async def test_a_callback_just_inside_the_window_is_accepted(callbacks, clock) -> None:
    signer = callbacks.wechat
    req = signer.sign(text_xml(ACCOUNT, OPENID, "你好", next_msg_id()),
                      timestamp=int(clock.timestamp()) - 299)
    resp = await callbacks.client.post("/wechat/callback", params=req.params, data=req.body)
    assert resp.status == 200


# --- the wrong account ------------------------------------------------------------------------


async def test_a_message_encrypted_for_another_appid_is_refused(client, settings, clock):
    # Same token and key (a leaked pair reused across accounts), another account's appid.
    other = WeChatSigner(replace(settings, wechat_appid="wx0ther0ther0ther0"))
    req = other.sign(text_xml(ACCOUNT, OPENID, "你好", next_msg_id()),
                     timestamp=int(clock.timestamp()))
    await expect_refusal(client, "POST", "/wechat/callback", req.params, req.body, 403,
                         "wrong_appid")
    assert not await Member.exists(openid=OPENID)


async def test_a_message_encrypted_for_another_corp_is_refused_not_crashed(
    client, settings, clock
):
    other = WeComSigner(replace(settings, wecom_corp_id="ww0ther0ther0ther0"))
    req = other.sign(text_xml(CORP, "staff01", "你好", next_msg_id(), AGENT),
                     timestamp=int(clock.timestamp()))
    await expect_refusal(client, "POST", "/wecom/callback", req.params, req.body, 403,
                         "wrong_corpid")


async def test_a_url_check_encrypted_for_another_corp_is_refused_not_crashed(
    client, settings, clock
):
    ts, n = int(clock.timestamp()), nonce()
    echostr = sealed(replace(settings, wecom_corp_id="ww0ther0ther0ther0"), "4711", wecom=True)
    params = {"msg_signature": wx_signature(settings.wecom_token, str(ts), n, echostr),
              "timestamp": str(ts), "nonce": n, "echostr": echostr}
    text = await expect_refusal(client, "GET", "/wecom/callback", params, None, 403,
                                "wrong_corpid")
    assert "4711" not in text


# --- missing or malformed query parameters ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "drop"),
    [
        ("GET", "/wechat/callback", "signature"),
        ("GET", "/wechat/callback", "echostr"),
        ("GET", "/wechat/callback", "timestamp"),
        ("POST", "/wechat/callback", "nonce"),
        ("POST", "/wechat/callback", "msg_signature"),
        ("POST", "/wechat/callback", "timestamp"),
        ("GET", "/wecom/callback", "msg_signature"),
        ("GET", "/wecom/callback", "echostr"),
        ("POST", "/wecom/callback", "msg_signature"),
        ("POST", "/wecom/callback", "nonce"),
    ],
)
async def test_callbacks_missing_a_parameter_are_bad_requests(
    client, settings, clock, method, path, drop
) -> None:
    ts = int(clock.timestamp())
    if path.startswith("/wechat"):
        req = WeChatSigner(settings).sign(text_xml(ACCOUNT, OPENID, "hi", next_msg_id()), True, ts)
        params = dict(req.params, echostr="1")
    else:
        req = WeComSigner(settings).sign(text_xml(CORP, "staff01", "hi", next_msg_id()), ts)
        params = dict(req.params, echostr=sealed(settings, "1", wecom=True))
    params.pop(drop)
    body = req.body if method == "POST" else None
    await expect_refusal(client, method, path, params, body, 400, "missing_params")


async def test_a_plaintext_post_without_its_signature_is_a_bad_request(
    make_client, settings, clock
):
    client = await make_client(settings={"wechat_message_mode": "compatible"})
    req = WeChatSigner(settings).sign(text_xml(ACCOUNT, OPENID, "hi", next_msg_id()), False,
                                      int(clock.timestamp()))
    req.params.pop("signature")
    await expect_refusal(client, "POST", "/wechat/callback", req.params, req.body, 400)


async def test_a_timestamp_that_is_not_a_number_is_a_bad_request(client, settings, clock):
    req = WeChatSigner(settings).sign(text_xml(ACCOUNT, OPENID, "hi", next_msg_id()), True,
                                      int(clock.timestamp()))
    req.params["timestamp"] = "yesterday"
    await expect_refusal(client, "POST", "/wechat/callback", req.params, req.body, 400,
                         "bad_timestamp")


# --- garbage bodies ---------------------------------------------------------------------------

JUNK_PLAINTEXTS = {
    "not-xml": "this is not xml",
    "no-msgtype": "<xml><FromUserName>oX</FromUserName><CreateTime>1</CreateTime></xml>",
    "text-root": "<xml>just words</xml>",
    "empty-root": "<xml/>",
    "other-root": "<message><MsgType>text</MsgType></message>",
}


def garbage_cases(
    settings: Settings, wecom: bool, ts: int
) -> dict[str, tuple[dict[str, str], bytes]]:
    """Bodies broken in every way we could think of, each correctly signed where it can be:
    the signature is not what stops them."""
    token = settings.wecom_token if wecom else settings.wechat_token

    def signed(encrypt: str) -> tuple[dict[str, str], bytes]:
        return aes_params(token, encrypt, ts, wecom), envelope(encrypt)

    cases: dict[str, tuple[dict[str, str], bytes]] = {
        "empty-body": (aes_params(token, "x", ts, wecom), b""),
        "not-xml": (aes_params(token, "x", ts, wecom), b"GET / HTTP/1.1\r\n\r\n"),
        "truncated-xml": (aes_params(token, "x", ts, wecom), b"<xml><Encrypt><![CDATA[abc"),
        "no-encrypt": (aes_params(token, "x", ts, wecom),
                       b"<xml><ToUserName>x</ToUserName></xml>"),
        "empty-encrypt": signed(""),
        "two-encrypts": (aes_params(token, "a", ts, wecom),
                         b"<xml><Encrypt>a</Encrypt><Encrypt>a</Encrypt></xml>"),
        "not-base64": signed("!!!definitely not base64!!!"),
        "base64-not-block-sized": signed(base64.b64encode(b"seventeen bytes!!").decode()),
        "zero-padding": signed(cipher_text(settings, b"\x00" * 32, wecom)),
        "junk-padding": signed(cipher_text(settings, b"junk" * 8, wecom)),
        "short-frame": signed(cipher_text(settings, b"0123456789abcdef" + b"\x10" * 16, wecom)),
        "non-utf8-frame": signed(cipher_text(
            settings, b"0123456789abcdef" + b"\x00\x00\x00\x04\xff\xfe\xfd\xfc" + b"\x08" * 8,
            wecom)),
        "entity-bomb": (aes_params(token, "x", ts, wecom), (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
            b"<xml><Encrypt>&c;</Encrypt></xml>")),
    }
    for name, plaintext in JUNK_PLAINTEXTS.items():
        cases[f"sealed-{name}"] = signed(sealed(settings, plaintext, wecom))
    return cases


GARBAGE_NAMES = sorted(garbage_cases(Settings(), wecom=False, ts=0))


@pytest.mark.parametrize("case", GARBAGE_NAMES)
@pytest.mark.parametrize("channel", ["wechat", "wecom"])
async def test_garbage_bodies_are_refused_with_a_4xx_never_a_500(
    client, settings, clock, channel, case
) -> None:
    wecom = channel == "wecom"
    params, body = garbage_cases(settings, wecom, int(clock.timestamp()))[case]
    text = await expect_refusal(client, "POST", f"/{channel}/callback", params, body, 400)
    assert "Traceback" not in text
    assert await Member.all().count() == 0


async def test_plaintext_garbage_is_refused_too(make_client, settings, clock) -> None:
    client = await make_client(settings={"wechat_message_mode": "compatible"})
    ts, n = str(int(clock.timestamp())), nonce()
    params = {"timestamp": ts, "nonce": n, "signature": wx_signature(settings.wechat_token, ts, n)}
    for body in [b"", b"\xff\xfe not utf-8", b"<xml><MsgType>text</MsgType>", *[
        p.encode() for p in JUNK_PLAINTEXTS.values()
    ]]:
        await expect_refusal(client, "POST", "/wechat/callback", params, body, 400)


async def test_an_event_of_a_kind_we_do_not_know_yet_is_acknowledged(client, settings, clock):
    # wechatpy 1.8.18 does not know this one (UnknownMessage); WeChat must still get its 200.
    popup = event_xml(
        ACCOUNT, OPENID, "subscribe_msg_popup_event",
        extra="<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[tpl-1]]></TemplateId>"
              "<SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString>"
              "<PopupScene>2</PopupScene></List></SubscribeMsgPopupEvent>",
    )
    status, text, _ = await post_signed(client, WeChatSigner(settings), popup,
                                        int(clock.timestamp()))
    assert (status, text) == (200, "success")


@pytest.mark.parametrize(
    "sender", ["", "o" * 65, "员工" * 11], ids=["empty", "65-chars", "66-bytes"]
)
async def test_a_message_without_a_usable_sender_is_refused(client, settings, clock, sender):
    # Nobody to answer: WeChat openids are 28 characters, WeCom userids 1–64 bytes.
    ts = int(clock.timestamp())
    req = WeChatSigner(settings).sign(text_xml(ACCOUNT, sender, "你好", next_msg_id()), True, ts)
    await expect_refusal(client, "POST", "/wechat/callback", req.params, req.body, 400,
                         "bad_message")
    req = WeComSigner(settings).sign(text_xml(CORP, sender, "你好", next_msg_id(), AGENT), ts)
    await expect_refusal(client, "POST", "/wecom/callback", req.params, req.body, 400,
                         "bad_message")
    assert await Member.all().count() == 0


async def test_a_sender_of_exactly_64_bytes_is_fine(callbacks) -> None:
    status, reply = await callbacks.wecom_post(
        text_xml(CORP, "u" * 64, "你好", next_msg_id(), AGENT)
    )
    assert status == 200 and "还没有开通" in reply["Content"]


# --- floods -----------------------------------------------------------------------------------


async def test_a_body_over_a_megabyte_is_refused_by_its_content_length(client, settings, clock):
    req = WeChatSigner(settings).sign("<xml/>", encrypted=False, timestamp=int(clock.timestamp()))
    await expect_refusal(client, "POST", "/wechat/callback", req.params, b"<" * (ONE_MB + 1), 413,
                         "body_too_large")


async def test_a_chunked_body_over_a_megabyte_is_refused_while_it_streams(client, settings, clock):
    req = WeComSigner(settings).sign("<xml/>", timestamp=int(clock.timestamp()))
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(24):  # 1.5 MB if nobody stops us
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    before = await rejected(client, "wecom", "body_too_large")
    resp = await client.post("/wecom/callback", params=req.params, data=stream())
    assert "Content-Length" not in resp.request_info.headers
    assert resp.status == 413
    assert await rejected(client, "wecom", "body_too_large") == before + 1


async def test_a_body_of_exactly_a_megabyte_is_still_read(make_client, settings, clock) -> None:
    # Plaintext, so the body's size is exactly what we pad it to.
    client = await make_client(settings={"wechat_message_mode": "compatible"})
    xml = text_xml(ACCOUNT, OPENID, "帮助", next_msg_id())
    padded = xml + " " * (ONE_MB - len(xml.encode()))
    req = WeChatSigner(settings).sign(padded, encrypted=False, timestamp=int(clock.timestamp()))
    assert len(req.body) == ONE_MB
    resp = await client.post("/wechat/callback", params=req.params, data=req.body)
    assert resp.status == 200
    assert "查排片" in await resp.text()


# --- retries ------------------------------------------------------------------------------------


def counting_understander() -> tuple[list[str], Callable[[str, str], Any]]:
    heard: list[str] = []

    async def understand(text: str, role: str) -> Understanding:
        heard.append(text)
        if "电影" in text:
            return Understanding("query_showtimes")
        return Understanding("greeting" if "你好" in text else "help")

    return heard, understand


async def post_signed(
    client: Any, signer: WeChatSigner, xml: str, ts: int
) -> tuple[int, str, dict[str, str]]:
    req = signer.sign(xml, timestamp=ts)  # a fresh nonce and signature each time, as WeChat does
    resp = await client.post("/wechat/callback", params=req.params, data=req.body)
    return resp.status, await resp.text(), req.params


async def test_a_retried_message_runs_its_handler_once_and_gets_the_same_reply(
    make_client, settings, clock
) -> None:
    heard, understand = counting_understander()
    client = await make_client(understand=understand)
    signer = WeChatSigner(settings)
    xml = text_xml(ACCOUNT, OPENID, "今天有什么电影", next_msg_id())
    replies = []
    for attempt in range(4):  # the first delivery and WeChat's three retries
        clock.advance(seconds=5)
        status, text, params = await post_signed(client, signer, xml, int(clock.timestamp()))
        assert status == 200
        reply = signer.open_reply(text, params)
        assert xmltodict.parse(text)["xml"]["Nonce"] == params["nonce"]
        replies.append(reply["Content"])
    assert heard == ["今天有什么电影"]
    assert len(set(replies)) == 1 and "的场次" in replies[0]
    assert await read_metric(client, "cinebot_dedup_hits_total", channel="wechat") == 3


async def test_a_retried_event_is_handled_once(client, settings, clock) -> None:
    signer = WeChatSigner(settings)
    ts = int(clock.timestamp())
    follow = event_xml(ACCOUNT, OPENID, "subscribe", create_time=ts - 10)
    status, first, _ = await post_signed(client, signer, follow, ts)
    assert status == 200 and "感谢关注" in signer.open_reply(first, {})["Content"]
    unfollow = event_xml(ACCOUNT, OPENID, "unsubscribe")
    status, text, _ = await post_signed(client, signer, unfollow, ts)
    assert (status, text) == (200, "success")
    # WeChat retries the follow (same sender, same CreateTime): it must not re-subscribe them.
    clock.advance(seconds=5)
    status, again, _ = await post_signed(client, signer, follow, int(clock.timestamp()))
    assert status == 200
    assert signer.open_reply(again, {})["Content"] == signer.open_reply(first, {})["Content"]
    assert not (await Member.get(openid=OPENID)).subscribed
    # A later follow is a new event, and counts.
    status, _, _ = await post_signed(client, signer, event_xml(ACCOUNT, OPENID, "subscribe"), ts)
    assert (await Member.get(openid=OPENID)).subscribed


async def test_a_retried_wecom_event_is_handled_once(make_client, settings, clock) -> None:
    client = await make_client()
    signer = WeComSigner(settings)
    ts = int(clock.timestamp())
    enter = event_xml(CORP, "staff01", "enter_agent", "", agent_id=AGENT, create_time=ts - 3)
    for _ in range(2):
        req = signer.sign(enter, timestamp=ts)
        resp = await client.post("/wecom/callback", params=req.params, data=req.body)
        assert resp.status == 200
        assert "李小青" in signer.open_reply(await resp.text(), req.params)["Content"]
    assert await read_metric(client, "cinebot_dedup_hits_total", channel="wecom") == 1


async def test_concurrent_retries_run_the_handler_once_and_all_get_the_reply(
    make_client, settings, clock
) -> None:
    heard: list[str] = []

    async def slowish(text: str, role: str) -> Understanding:
        heard.append(text)
        await asyncio.sleep(0.2)  # long enough for every copy to arrive while it runs
        return Understanding("greeting")

    client = await make_client(understand=slowish)
    signer = WeChatSigner(settings)
    xml = text_xml(ACCOUNT, OPENID, "你好", next_msg_id())
    ts = int(clock.timestamp())
    results = await asyncio.gather(*(post_signed(client, signer, xml, ts) for _ in range(4)))
    assert [status for status, _, _ in results] == [200] * 4
    contents = {signer.open_reply(text, params)["Content"] for _, text, params in results}
    assert len(contents) == 1 and "小助手" in contents.pop()
    assert heard == ["你好"]
    assert await Member.filter(openid=OPENID).count() == 1


async def test_a_delivery_that_failed_inside_is_handled_afresh_on_the_retry(
    make_client, settings, clock
) -> None:
    heard: list[str] = []

    async def flaky(text: str, role: str) -> Understanding:
        heard.append(text)
        if len(heard) == 1:
            raise ConnectionError("classifier went away")
        return Understanding("greeting")

    client = await make_client(understand=flaky)
    signer = WeChatSigner(settings)
    xml = text_xml(ACCOUNT, OPENID, "你好", next_msg_id())
    ts = int(clock.timestamp())
    status, _, _ = await post_signed(client, signer, xml, ts)
    assert status == 500  # not 200: WeChat must retry
    started = time.perf_counter()
    status, text, params = await post_signed(client, signer, xml, ts)
    assert status == 200
    assert "小助手" in signer.open_reply(text, params)["Content"]
    assert time.perf_counter() - started < 1  # not parked behind the failed delivery's lease
    assert heard == ["你好", "你好"]


# --- the handler budget -------------------------------------------------------------------------


async def wait_for_rows(**filters: Any) -> list[OutboundMessage]:
    for _ in range(100):
        rows = await OutboundMessage.filter(**filters)
        if rows:
            return rows
        await asyncio.sleep(0.05)
    return []


async def test_a_slow_handler_answers_success_in_time_and_replies_later_through_the_outbox(
    make_client, settings, clock
) -> None:
    heard: list[str] = []
    finished = asyncio.Event()

    async def slow_understand(text: str, role: str) -> Understanding:
        heard.append(text)
        await asyncio.sleep(0.6)
        finished.set()
        return Understanding("greeting")

    client = await make_client(settings={"handler_budget": 0.3}, understand=slow_understand)
    signer = WeChatSigner(settings)
    xml = text_xml(ACCOUNT, OPENID, "你好", next_msg_id())
    ts = int(clock.timestamp())

    started = time.perf_counter()
    status, text, _ = await post_signed(client, signer, xml, ts)
    elapsed = time.perf_counter() - started
    assert (status, text) == (200, "success")
    assert 0.25 <= elapsed < 0.6, elapsed  # about the budget, well before the handler ends
    assert not finished.is_set()

    # WeChat retries while the handler is still working…
    status, text, _ = await post_signed(client, signer, xml, ts)
    assert (status, text) == (200, "success")
    await asyncio.wait_for(finished.wait(), 2)

    rows = await wait_for_rows(recipient=OPENID)
    assert len(rows) == 1
    row = rows[0]
    assert row.channel == "wechat" and row.recipient == OPENID
    assert row.payload["msgtype"] == "text"
    assert "cinebot 示例影城的小助手" in row.payload["text"]["content"]
    assert "late-reply:wechat:m:" in row.idempotency_key

    # …and after it finished: still `success`, still one row, and the handler ran once.
    status, text, _ = await post_signed(client, signer, xml, ts)
    assert (status, text) == (200, "success")
    await asyncio.sleep(0.1)
    assert await OutboundMessage.filter(recipient=OPENID).count() == 1
    assert heard == ["你好"]
    assert await read_metric(client, "cinebot_replies_deferred_total", channel="wechat") == 1


async def test_a_slow_handler_that_then_fails_is_logged_and_sends_nothing(
    make_client, settings, clock, caplog
) -> None:
    finished = asyncio.Event()

    async def slow_then_broken(text: str, role: str) -> Understanding:
        await asyncio.sleep(0.5)
        finished.set()
        raise ConnectionError("classifier went away")

    client = await make_client(settings={"handler_budget": 0.2}, understand=slow_then_broken)
    signer = WeChatSigner(settings)
    xml = text_xml(ACCOUNT, OPENID, "你好", next_msg_id())
    status, text, _ = await post_signed(client, signer, xml, int(clock.timestamp()))
    assert (status, text) == (200, "success")
    await asyncio.wait_for(finished.wait(), 2)
    for _ in range(50):
        if any("late handler failed" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.02)
    assert any("late handler failed" in r.getMessage() for r in caplog.records)
    assert await OutboundMessage.filter(recipient=OPENID).count() == 0


async def test_shutting_down_waits_for_a_handler_that_overran_and_sends_its_reply(
    make_client, settings, clock
) -> None:
    sent: list[tuple[str, str]] = []

    async def slow_understand(text: str, role: str) -> Understanding:
        await asyncio.sleep(0.5)
        return Understanding("greeting")

    async def late_reply(inbound: Any, reply: Any) -> None:
        sent.append((inbound.user_id, reply.text))

    client = await make_client(
        settings={"handler_budget": 0.1}, understand=slow_understand, late_reply=late_reply
    )
    signer = WeChatSigner(settings)
    xml = text_xml(ACCOUNT, OPENID, "你好", next_msg_id())
    status, text, _ = await post_signed(client, signer, xml, int(clock.timestamp()))
    assert (status, text) == (200, "success")
    assert sent == []
    await client.close()  # the app's cleanup waits for the handler still running
    assert len(sent) == 1 and sent[0][0] == OPENID and "小助手" in sent[0][1]


async def test_budgets_run_out_one_by_one_whatever_else_is_in_flight(
    make_client, settings, clock
) -> None:
    async def understand(text: str, role: str) -> Understanding:
        if text.startswith("慢"):
            await asyncio.sleep(0.7)
        return Understanding("greeting")

    client = await make_client(settings={"handler_budget": 0.3}, understand=understand)
    signer = WeChatSigner(settings)
    ts = int(clock.timestamp())

    async def send(text: str, user: str) -> tuple[str, float]:
        started = time.perf_counter()
        status, body, params = await post_signed(
            client, signer, text_xml(ACCOUNT, user, text, next_msg_id()), ts
        )
        assert status == 200
        answer = "success" if body == "success" else signer.open_reply(body, params)["Content"]
        return answer, time.perf_counter() - started

    slow = asyncio.create_task(send("慢一", OPENID))
    await asyncio.sleep(0.1)
    fast = await send("你好", OPENID[:-1] + "f")
    assert "小助手" in fast[0] and fast[1] < 0.25  # not held up by the slow one's budget
    second_slow = asyncio.create_task(send("慢二", OPENID[:-1] + "s"))
    answer, took = await slow
    assert answer == "success" and 0.25 <= took < 0.6, took
    answer, took = await second_slow  # its own budget, counted from its own start
    assert answer == "success" and 0.25 <= took < 0.6, took
