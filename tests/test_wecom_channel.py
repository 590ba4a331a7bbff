"""The WeCom (Enterprise WeChat) staff app: the official sample, access control, every event kind.

The sample values are WeCom's own, as used in wechatpy's tests/test_crypto.py
(tag v1.8.18): token ``123456``, corp ``wx49f0ab532d5d035a``, signed in 2014.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

from bot.chat.channels import CallbackRejected, Channel
from bot.chat.channels.wecom import WeComCodec
from bot.wechat.chatclient import WeComSigner, event_xml, next_msg_id, text_xml
from bot.infra.settings import Settings
from tests.support import wx_signature

# --- WeCom's official sample -------------------------------------------------------------

SAMPLE_TOKEN = "123456"
SAMPLE_AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
SAMPLE_CORP_ID = "wx49f0ab532d5d035a"
SAMPLE_SETTINGS = {
    "wecom_token": SAMPLE_TOKEN,
    "wecom_aes_key": SAMPLE_AES_KEY,
    "wecom_corp_id": SAMPLE_CORP_ID,
}

SAMPLE_URL_CHECK = {
    "msg_signature": "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96",
    "timestamp": "1411443780",
    "nonce": "437374425",
    "echostr": "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==",
}
SAMPLE_ECHO = "5927782489442352469"

SAMPLE_MESSAGE_QUERY = {
    "msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
    "timestamp": "1411525903",
    "nonce": "461056294",
}
SAMPLE_MESSAGE = b"""<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>
<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]></Encrypt>
<AgentID><![CDATA[1]]></AgentID>
</xml>"""

CORP = "ww_corp"
AGENT = 1000002


def sample_codec() -> WeComCodec:
    return WeComCodec(SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_CORP_ID, agent_id=1)


def codec_for(settings: Settings) -> WeComCodec:
    s = settings
    return WeComCodec(s.wecom_token, s.wecom_aes_key, s.wecom_corp_id, s.wecom_agent_id)


def at(timestamp: str | int) -> datetime:
    return datetime.fromtimestamp(int(timestamp), UTC)


def open_reply(text: str, token: str, aes_key: str, corp_id: str) -> dict[str, Any]:
    """Check an encrypted reply as WeCom would: our token's signature, our corp id inside."""
    envelope = xmltodict.parse(text)["xml"]
    assert envelope["MsgSignature"] == wx_signature(
        token, envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"]
    )
    plain = WeComCrypto(token, aes_key, corp_id).decrypt_message(
        text, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
    )
    return {"envelope": envelope, "reply": dict(xmltodict.parse(plain)["xml"])}


def test_the_official_url_check_sample_decrypts_to_its_echo() -> None:
    echo = sample_codec().verify_url(SAMPLE_URL_CHECK, now=int(SAMPLE_URL_CHECK["timestamp"]))
    assert echo == SAMPLE_ECHO


def test_the_official_url_check_sample_with_another_nonce_is_refused() -> None:
    forged = {**SAMPLE_URL_CHECK, "nonce": "437374424"}
    with pytest.raises(CallbackRejected) as err:
        sample_codec().verify_url(forged, now=int(SAMPLE_URL_CHECK["timestamp"]))
    assert err.value.status == 403


def test_the_official_url_check_sample_is_stale_today() -> None:
    with pytest.raises(CallbackRejected) as err:
        sample_codec().verify_url(SAMPLE_URL_CHECK, now=int(SAMPLE_URL_CHECK["timestamp"]) + 301)
    assert (err.value.status, err.value.reason) == (403, "stale_timestamp")


def test_the_official_message_sample_decrypts_to_messenses_test() -> None:
    inbound, encrypted = sample_codec().decode(
        SAMPLE_MESSAGE_QUERY, SAMPLE_MESSAGE, now=int(SAMPLE_MESSAGE_QUERY["timestamp"])
    )
    assert encrypted is True
    assert inbound.channel is Channel.WECOM
    assert (inbound.kind, inbound.text, inbound.user_id) == ("text", "test", "messense")
    assert inbound.to == SAMPLE_CORP_ID and inbound.agent_id == 1
    assert inbound.create_time == 1411525903
    assert inbound.msg_id == 4363689963896700987


async def test_the_official_url_check_sample_passes_through_http(make_client, clock) -> None:
    client = await make_client(settings=SAMPLE_SETTINGS)
    clock.set(at(SAMPLE_URL_CHECK["timestamp"]))
    # As WeCom sends it: URL-encoded (the echostr holds '+', '/' and '=').
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in SAMPLE_URL_CHECK.items())
    resp = await client.get(f"/wecom/callback?{query}")
    assert resp.status == 200
    assert await resp.read() == SAMPLE_ECHO.encode()  # as-is: no quotes, no newline


async def test_the_official_message_sample_is_answered_through_http(make_client, clock) -> None:
    client = await make_client(settings=SAMPLE_SETTINGS)
    clock.set(at(SAMPLE_MESSAGE_QUERY["timestamp"]))
    resp = await client.post("/wecom/callback", params=SAMPLE_MESSAGE_QUERY, data=SAMPLE_MESSAGE)
    assert resp.status == 200
    opened = open_reply(await resp.text(), SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_CORP_ID)
    assert opened["envelope"]["Nonce"] == SAMPLE_MESSAGE_QUERY["nonce"]
    reply = opened["reply"]
    assert reply["ToUserName"] == "messense" and reply["FromUserName"] == SAMPLE_CORP_ID
    # messense is nobody on our staff.
    assert "还没有开通" in reply["Content"]


# --- the codec on our own credentials ----------------------------------------------------

CARD_EVENT = event_xml(
    CORP, "eng01", "template_card_event", "ack",
    agent_id=AGENT,
    extra=(
        "<TaskId><![CDATA[alert-20261121-0001]]></TaskId>"
        "<CardType><![CDATA[button_interaction]]></CardType>"
        "<ResponseCode><![CDATA[RC-single-use-0001]]></ResponseCode>"
    ),
)
SCAN_EVENT = event_xml(
    CORP, "staff01", "scancode_waitmsg", "scan",
    agent_id=AGENT,
    extra=(
        "<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>"
        "<ScanResult><![CDATA[TICKET-8842]]></ScanResult></ScanCodeInfo>"
    ),
)


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (text_xml(CORP, "staff01", "你好", 99, AGENT),
         {"kind": "text", "text": "你好", "msg_id": 99, "user_id": "staff01", "agent_id": AGENT}),
        (event_xml(CORP, "staff01", "enter_agent", "", agent_id=AGENT),
         {"kind": "event", "event": "enter_agent", "msg_id": None, "agent_id": AGENT}),
        (SCAN_EVENT, {"event": "scancode_waitmsg", "event_key": "scan",
                      "scan_result": "TICKET-8842"}),
        (CARD_EVENT, {"event": "template_card_event", "event_key": "ack",
                      "task_id": "alert-20261121-0001", "response_code": "RC-single-use-0001",
                      "agent_id": AGENT, "user_id": "eng01"}),
    ],
    ids=["text", "enter_agent", "scancode_waitmsg", "template_card_event"],
)
def test_wecom_messages_parse_into_the_right_inbound(
    settings: Settings, xml: str, expected: dict[str, Any]
) -> None:
    now = 1_800_000_000
    req = WeComSigner(settings).sign(xml, timestamp=now)
    inbound, encrypted = codec_for(settings).decode(req.params, req.body, now=now)
    assert encrypted is True and inbound.channel is Channel.WECOM
    for name, value in expected.items():
        assert getattr(inbound, name) == value, name


def test_a_card_click_keeps_the_card_type_and_dedups_by_task_and_button(settings: Settings) -> None:
    now = 1_800_000_000
    req = WeComSigner(settings).sign(CARD_EVENT, timestamp=now)
    inbound, _ = codec_for(settings).decode(req.params, req.body, now=now)
    assert inbound.raw["CardType"] == "button_interaction"
    assert inbound.dedup_key.endswith(":template_card_event:alert-20261121-0001:ack")
    other_button = CARD_EVENT.replace("[ack]", "[done]")
    req = WeComSigner(settings).sign(other_button, timestamp=now)
    other, _ = codec_for(settings).decode(req.params, req.body, now=now)
    assert other.dedup_key != inbound.dedup_key


def test_a_wecom_url_check_on_our_credentials_round_trips(settings: Settings) -> None:
    crypto = WeComCrypto(settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id)
    envelope = xmltodict.parse(crypto.encrypt_message("1616140317555161061", "n1", 1_800_000_000))
    echostr = envelope["xml"]["Encrypt"]
    query = {"msg_signature": wx_signature(settings.wecom_token, "1800000000", "n1", echostr),
             "timestamp": "1800000000", "nonce": "n1", "echostr": echostr}
    assert codec_for(settings).verify_url(query, now=1_800_000_000) == "1616140317555161061"


# --- through the running app ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("userid", "name"), [("staff01", "李小青"), ("manager01", "张经理"), ("eng01", "赵工")]
)
async def test_known_staff_are_greeted_by_name(callbacks, userid, name) -> None:
    status, reply = await callbacks.wecom_post(text_xml(CORP, userid, "你好", next_msg_id(), AGENT))
    assert status == 200
    assert reply["Content"].startswith(f"{name}，你好！")
    assert reply["ToUserName"] == userid
    assert "【3号厅下一场几点】" in reply["Content"]


async def test_an_unknown_wecom_user_gets_the_polite_refusal(callbacks) -> None:
    status, reply = await callbacks.wecom_post(
        text_xml(CORP, "visitor42", "你好", next_msg_id(), AGENT)
    )
    assert status == 200
    assert "还没有开通影城工作台权限" in reply["Content"]
    assert "cinebot staff add" in reply["Content"]


async def test_a_wecom_reply_is_encrypted_and_signed_with_our_token(client, settings, clock):
    req = WeComSigner(settings).sign(
        text_xml(CORP, "staff01", "你好", next_msg_id(), AGENT), timestamp=int(clock.timestamp())
    )
    resp = await client.post("/wecom/callback", params=req.params, data=req.body)
    assert resp.status == 200
    opened = open_reply(
        await resp.text(), settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id
    )
    assert opened["envelope"]["Nonce"] == req.params["nonce"]
    assert opened["envelope"]["TimeStamp"] == str(int(clock.timestamp()))
    assert opened["reply"]["AgentID"] == str(AGENT)
    assert "李小青" in opened["reply"]["Content"]


async def test_opening_the_app_greets_staff_and_refuses_strangers(callbacks) -> None:
    status, reply = await callbacks.wecom_post(
        event_xml(CORP, "manager01", "enter_agent", "", agent_id=AGENT)
    )
    assert status == 200 and reply["Content"].startswith("张经理，你好！这里是cinebot 示例影城")
    status, reply = await callbacks.wecom_post(
        event_xml(CORP, "visitor42", "enter_agent", "", agent_id=AGENT)
    )
    assert status == 200 and "还没有开通" in reply["Content"]


async def test_staff_scanning_a_foreign_code_is_told_what_was_read(callbacks) -> None:
    status, reply = await callbacks.wecom_post(SCAN_EVENT)
    assert status == 200
    assert "不是本影城的电子票" in reply["Content"] and "TICKET-8842" in reply["Content"]


async def test_a_click_on_a_card_nobody_claims_says_it_is_stale(callbacks) -> None:
    status, reply = await callbacks.wecom_post(CARD_EVENT)
    assert status == 200 and "这张卡片已失效" in reply["Content"]


async def test_a_stranger_clicking_a_card_is_refused(callbacks) -> None:
    status, reply = await callbacks.wecom_post(CARD_EVENT.replace("eng01", "visitor42"))
    assert status == 200 and "还没有开通" in reply["Content"]
