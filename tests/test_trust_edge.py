"""What the edge trusts: only what WeChat itself could have sent.

An attacker who has seen one callback URL (a proxy log) must not be able to post as
anyone; ids, numbers and XML are read by their real grammar, never by Python's generous
one; and what reaches a log keeps people's phone numbers to itself.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from aiohttp.test_utils import TestClient

from bot.wechat.chatclient import WeChatSigner, WeComSigner, event_xml, next_msg_id, text_xml
from bot.infra.logs import JsonFormatter, RedactingTextFormatter, mask_phone, redact
from bot.chat.router import SORRY
from bot.infra.settings import Settings, SettingsError
from bot.infra.strict import parse_ascii_int
from domain.people import Member
from tests.support import nonce, read_metric, wx_signature
from tests.test_api import call, login

ACCOUNT = "gh_cinebotdemo"
CORP = "ww5c1ne6b0tdem0001"
AGENT = 1000002
ALICE = "oCineBotTrustAlice000000001"
BOB = "oCineBotTrustBob00000000002"
REJECTED = "cinebot_callbacks_rejected_total"

# Digits Python's str.isdigit() or int() accept and WeChat never sends.
ODD_DIGITS = ["²", "٣", "３", "1²", "¹²", "٣٤", "１２", " 7", "7 ", "+7", "1_0", "9" * 5000]

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE xml ['
    '<!ENTITY a "aaaaaaaaaa">'
    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
    '<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
    "<FromUserName>{sender}</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><Content>&d;</Content><MsgId>{msg_id}</MsgId>{agent}</xml>"
)
BARE_DOCTYPE = (
    "<!DOCTYPE xml><xml><ToUserName>x</ToUserName><FromUserName>{sender}</FromUserName>"
    "<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>帮助</Content>"
    "<MsgId>{msg_id}</MsgId>{agent}</xml>"
)


async def rejected(client: TestClient, channel: str, reason: str) -> float:
    return await read_metric(client, REJECTED, channel=channel, reason=reason)


async def post(
    client: TestClient, path: str, params: dict[str, str], body: bytes
) -> tuple[int, str]:
    resp = await client.post(path, params=params, data=body)
    return resp.status, await resp.text()


# --- 1. forged plaintext callbacks ------------------------------------------------------------


def test_the_message_mode_is_safe_unless_an_operator_says_otherwise() -> None:
    assert Settings().wechat_message_mode == "safe"  # the demo config has an AES key
    chosen = Settings.from_mapping({"CINEBOT_WECHAT_MESSAGE_MODE": "Compatible"})
    assert chosen.wechat_message_mode == "compatible"
    with pytest.raises(SettingsError, match="CINEBOT_WECHAT_MESSAGE_MODE"):
        Settings.from_mapping({"CINEBOT_WECHAT_MESSAGE_MODE": "raw"})


async def test_a_forged_plaintext_callback_is_refused_in_safe_mode(
    client, settings, clock, caplog
) -> None:
    # The signature of plain mode covers token, timestamp and nonce only, and every
    # safe-mode URL carries one: whoever saw a URL could post anything as anyone.
    seen_url = WeChatSigner(settings).sign("<xml/>", timestamp=int(clock.timestamp())).params
    params = {k: seen_url[k] for k in ("timestamp", "nonce", "signature")}
    forged = text_xml(ACCOUNT, ALICE, "我的票", next_msg_id()).encode()
    before = await rejected(client, "wechat", "plaintext_refused")
    with caplog.at_level(logging.WARNING):
        status, text = await post(client, "/wechat/callback", params, forged)
    assert status == 403, text
    assert await rejected(client, "wechat", "plaintext_refused") == before + 1
    assert any(getattr(r, "reason", None) == "plaintext_refused" for r in caplog.records)
    assert not await Member.exists(openid=ALICE)


async def test_the_same_message_encrypted_is_answered_in_safe_mode(callbacks) -> None:
    status, reply = await callbacks.wechat_post(text_xml(ACCOUNT, ALICE, "帮助", next_msg_id()))
    assert status == 200 and "查排片" in reply["Content"]


async def test_compatible_mode_takes_both_forms(make_client, settings, clock) -> None:
    client = await make_client(settings={"wechat_message_mode": "compatible"})
    signer = WeChatSigner(settings)
    for encrypted in (True, False):
        req = signer.sign(text_xml(ACCOUNT, ALICE, "帮助", next_msg_id()), encrypted=encrypted,
                          timestamp=int(clock.timestamp()))
        status, text = await post(client, "/wechat/callback", req.params, req.body)
        assert status == 200 and "查排片" in signer.open_reply(text, req.params)["Content"]


async def test_plain_mode_takes_plaintext_only(make_client, settings, clock) -> None:
    client = await make_client(settings={"wechat_message_mode": "plain"})
    signer = WeChatSigner(settings)
    ts = int(clock.timestamp())
    req = signer.sign(text_xml(ACCOUNT, ALICE, "帮助", next_msg_id()), encrypted=False,
                      timestamp=ts)
    status, text = await post(client, "/wechat/callback", req.params, req.body)
    assert status == 200 and "查排片" in text
    req = signer.sign(text_xml(ACCOUNT, ALICE, "帮助", next_msg_id()), timestamp=ts)
    status, _ = await post(client, "/wechat/callback", req.params, req.body)
    assert status == 403


async def test_a_plaintext_wecom_callback_is_refused(client, settings, clock) -> None:
    # WeCom only ever sends ciphertext; a plaintext body signed every way we can think of
    # is still nobody's message.
    ts, n = str(int(clock.timestamp())), nonce()
    body = text_xml(CORP, "staff01", "我的任务", next_msg_id(), AGENT).encode()
    token = settings.wecom_token
    for params in (
        {"timestamp": ts, "nonce": n, "msg_signature": wx_signature(token, ts, n)},
        {"timestamp": ts, "nonce": n, "signature": wx_signature(token, ts, n),
         "msg_signature": wx_signature(token, ts, n, body.decode())},
    ):
        status, text = await post(client, "/wecom/callback", params, body)
        assert 400 <= status < 500, (status, text)
        assert "任务" not in text


# --- 2. user ids --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender",
    ["oCineBot|Trust0000000000001", "oCineBot Trust0000000000001", "oCineBot\x01Trust000000001",
     "oCineBot人Trust000000000001", "oCineBot.Trust0000000000001", "oCineBot@Trust000000000001"],
    ids=["pipe", "space", "control", "non-ascii", "dot", "at"],
)
async def test_an_openid_outside_wechats_alphabet_is_refused_and_touches_no_seat(
    callbacks, redis, sender
) -> None:
    status, _ = await callbacks.wechat_post(text_xml(ACCOUNT, sender, "今晚哪吒2买两张票",
                                                     next_msg_id()))
    assert status == 400
    assert not [k async for k in redis.scan_iter(match="*seat*")]
    assert not await Member.exists(openid=sender)


@pytest.mark.parametrize("sender", ["li.ming@cinema", "eng-01_b", "A" * 64])
async def test_a_wecom_userid_may_use_dots_and_at_signs(callbacks, sender) -> None:
    status, reply = await callbacks.wecom_post(text_xml(CORP, sender, "你好", next_msg_id(), AGENT))
    assert status == 200 and reply is not None


@pytest.mark.parametrize("sender", ["li|ming", "li ming", "李明", "A" * 65])
async def test_a_wecom_userid_outside_its_alphabet_is_refused(callbacks, sender) -> None:
    status, _ = await callbacks.wecom_post(text_xml(CORP, sender, "你好", next_msg_id(), AGENT))
    assert status == 400


# --- 3. dedup by sender -------------------------------------------------------------------------


async def test_another_user_replaying_a_msgid_does_not_get_the_first_users_reply(
    callbacks,
) -> None:
    msg_id = next_msg_id()
    status, first = await callbacks.wechat_post(text_xml(ACCOUNT, ALICE, "你好", msg_id))
    assert status == 200 and first["ToUserName"] == ALICE
    status, second = await callbacks.wechat_post(text_xml(ACCOUNT, BOB, "帮助", msg_id))
    assert status == 200
    assert second["ToUserName"] == BOB
    assert "查排片" in second["Content"]


# --- 4. no DOCTYPE ------------------------------------------------------------------------------


@pytest.mark.parametrize("template", [BILLION_LAUGHS, BARE_DOCTYPE], ids=["entities", "bare"])
async def test_a_doctype_in_a_plaintext_message_is_refused(
    make_client, settings, clock, template
) -> None:
    client = await make_client(settings={"wechat_message_mode": "compatible"})
    xml = template.format(sender=ALICE, msg_id=next_msg_id(), agent="")
    req = WeChatSigner(settings).sign(xml, encrypted=False, timestamp=int(clock.timestamp()))
    status, text = await post(client, "/wechat/callback", req.params, req.body)
    assert status == 400 and text == "bad_message"
    assert not await Member.exists(openid=ALICE)


@pytest.mark.parametrize("template", [BILLION_LAUGHS, BARE_DOCTYPE], ids=["entities", "bare"])
async def test_a_doctype_inside_an_encrypted_message_is_refused(
    client, settings, clock, template
) -> None:
    ts = int(clock.timestamp())
    xml = template.format(sender=ALICE, msg_id=next_msg_id(), agent="")
    req = WeChatSigner(settings).sign(xml, timestamp=ts)
    assert await post(client, "/wechat/callback", req.params, req.body) == (400, "bad_message")
    agent = f"<AgentID>{AGENT}</AgentID>"
    xml = template.format(sender="staff01", msg_id=next_msg_id(), agent=agent)
    req = WeComSigner(settings).sign(xml, timestamp=ts)
    assert await post(client, "/wecom/callback", req.params, req.body) == (400, "bad_message")
    assert not await Member.exists(openid=ALICE)


# --- 5. numbers are ASCII digits ----------------------------------------------------------------


def test_only_ascii_digits_are_numbers() -> None:
    assert parse_ascii_int("0") == 0 and parse_ascii_int("4711") == 4711
    for odd in [*ODD_DIGITS, "", "-1", "1.0", "0x10", None, 7]:
        assert parse_ascii_int(odd) is None, odd  # type: ignore[arg-type]
    assert parse_ascii_int("12345", max_digits=4) is None


@pytest.mark.parametrize("param", ["film_id", "cinema_id", "date"])
async def test_odd_digits_in_a_showtimes_query_are_refused(api, param) -> None:  # noqa: F811
    for odd in ODD_DIGITS:
        value = f"2026-11-2{odd}" if param == "date" else odd
        status, body = await call(api, "GET", "/api/showtimes", params={param: value})
        assert (status, body["code"], body["field"]) == (422, "invalid", param), odd[:20]


async def test_odd_digits_in_a_showtime_path_are_not_found(api) -> None:  # noqa: F811
    token = await login(api, "trust")
    for odd in ("²", "٣", "３", "٣٤", "１２", "1²"):
        status, body = await call(api, "GET", f"/api/showtimes/{odd}/seats", token)
        assert status == 404, (odd, body)
        resp = await api.get(f"/pick/{odd}", params={"token": token})
        assert resp.status == 404, odd


async def test_a_pay_notify_with_an_odd_timestamp_is_refused_not_a_500(client) -> None:
    for stamp in ("²", "1763692200²", "１７６３６９２２００", "9" * 5000):
        resp = await client.post(
            "/api/pay/notify", data=b"{}",
            headers={"Content-Type": "application/json", "Wechatpay-Timestamp": stamp,
                     "Wechatpay-Nonce": "n", "Wechatpay-Signature": "c2ln",
                     "Wechatpay-Serial": "PUB_KEY_ID_0000"},
        )
        assert 400 <= resp.status < 500, (stamp[:20], resp.status)


@pytest.mark.parametrize("key", ["wo:ack:²", "wo:ack:٣", "al:ack:²", "al:silence:１２"])
async def test_a_card_click_with_odd_digits_is_an_expired_card_not_a_crash(
    callbacks, key
) -> None:
    card = "<TaskId><![CDATA[t-1]]></TaskId><CardType>button_interaction</CardType>"
    click = event_xml(CORP, "staff01", "template_card_event", key, AGENT, extra=card)
    status, reply = await callbacks.wecom_post(click)
    assert status == 200
    assert reply is None or SORRY not in reply["Content"]


@pytest.mark.parametrize("text", ["1号厅维护中 99999999999小时", "十十厅亮度红线设为80"])
async def test_staff_numbers_too_large_or_malformed_are_answered_not_crashed(
    callbacks, text
) -> None:
    status, reply = await callbacks.wecom_post(text_xml(CORP, "manager01", text, next_msg_id(),
                                                        AGENT))
    assert status == 200
    assert reply is None or SORRY not in reply["Content"]


async def test_a_count_of_five_thousand_digits_is_answered_not_crashed(callbacks) -> None:
    status, reply = await callbacks.wechat_post(
        text_xml(ACCOUNT, ALICE, f"买{'9' * 5000}张票", next_msg_id())
    )
    assert status == 200
    assert reply is None or SORRY not in reply["Content"]


# --- 7. phone numbers in logs -------------------------------------------------------------------

PHONES = [
    "+8613812345678", "8613812345678", "+86 138 1234 5678", "138-1234-5678", "138 1234 5678",
    "１３８１２３４５６７８", "13812345678", "+86-138-1234-5678", "008613812345678",
    "+86 １３８ １２３４ ５６７８",
]


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize("phone", PHONES)
def test_a_phone_number_in_any_spelling_is_masked_in_the_log(fmt: str, phone: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else RedactingTextFormatter("%(levelname)s %(message)s")
    )
    log = logging.getLogger(f"cinebot.test.trust.{fmt}")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("staff command refused: %s", f"联系我{phone}，谢谢",
                    extra={"text": f"我的电话是 {phone}"})
        try:
            raise ValueError(f"bad phone {phone}")
        except ValueError:
            log.exception("lookup failed")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "5678" in out or "５６７８" in out  # the tail stays: numbers can be told apart
    for line in out.splitlines():
        assert "1234" not in line and "１２３４" not in line, line
    if fmt == "json":
        entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert any("****" in e["msg"] for e in entries)


@pytest.mark.parametrize("phone", PHONES)
def test_mask_phone_keeps_the_first_three_and_last_four_digits(phone: str) -> None:
    masked = mask_phone(f"电话{phone}。")
    assert "****" in masked and masked.startswith("电话") and masked.endswith("。")
    assert redact(phone) == mask_phone(phone)


def test_masking_still_leaves_other_numbers_alone() -> None:
    for text in ("MsgId 23812341234567 at 1763692200", "座机 021-5555-0199", "2026-11-21 13:45",
                 "订单 C20261121000123", "wechat:m:oAbc:7238123456789012"):
        assert mask_phone(text) == text
