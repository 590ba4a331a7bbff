"""The Official Account channel as WeChat speaks it: signatures, safe mode, every message kind.

The codec is exercised directly (sans-I/O, with ``now`` given), and the same
messages go through the running app behind a real aiohttp server.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import xmltodict
from wechatpy.crypto import WeChatCrypto

from bot.chat.channels import CallbackRejected, Channel
from bot.chat.channels.wechat import WeChatCodec
from bot.wechat.chatclient import WeChatSigner, event_xml, next_msg_id, text_xml
from bot.infra.settings import Settings
from domain.people import Member
from tests.support import nonce, wx_signature

OPENID = "oCineBotWeChatChannel0000001"
ACCOUNT = "gh_cinebotdemo"
ADDRESS = "上海市徐汇区漕溪北路 88 号 5 楼"


def codec_for(settings: Settings, mode: str = "safe") -> WeChatCodec:
    return WeChatCodec(
        settings.wechat_token, settings.wechat_aes_key, settings.wechat_appid, mode=mode
    )


def message_xml(msg_type: str, body: str, sender: str = OPENID, msg_id: int | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{sender}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>"
        f"{body}<MsgId>{msg_id or next_msg_id()}</MsgId></xml>"
    )


def image_xml() -> str:
    return message_xml(
        "image",
        "<PicUrl><![CDATA[http://mmbiz.qpic.cn/seat.jpg]]></PicUrl>"
        "<MediaId><![CDATA[media-image-1]]></MediaId>",
    )


def voice_xml(recognition: str | None) -> str:
    words = "" if recognition is None else f"<Recognition><![CDATA[{recognition}]]></Recognition>"
    return message_xml(
        "voice",
        f"<MediaId><![CDATA[media-voice-1]]></MediaId><Format><![CDATA[amr]]></Format>{words}",
    )


def location_xml(lat: float, lon: float) -> str:
    return message_xml(
        "location",
        f"<Location_X>{lat}</Location_X><Location_Y>{lon}</Location_Y><Scale>15</Scale>"
        "<Label><![CDATA[人民广场]]></Label>",
    )


def scancode_xml(result: str) -> str:
    return event_xml(
        ACCOUNT, OPENID, "scancode_waitmsg", "scan-menu",
        extra=(
            "<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>"
            f"<ScanResult><![CDATA[{result}]]></ScanResult></ScanCodeInfo>"
        ),
    )


async def post_raw(client: Any, signer: WeChatSigner, xml: str, ts: int, encrypted: bool = True):
    req = signer.sign(xml, encrypted=encrypted, timestamp=ts)
    resp = await client.post("/wechat/callback", params=req.params, data=req.body)
    return resp.status, await resp.text(), req.params


def open_encrypted_reply(text: str, settings: Settings) -> dict[str, Any]:
    """Check the reply as WeChat would (signature with our token) and decrypt it."""
    envelope = xmltodict.parse(text)["xml"]
    assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert envelope["MsgSignature"] == wx_signature(
        settings.wechat_token, envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"]
    )
    crypto = WeChatCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_appid)
    plain = crypto.decrypt_message(
        text, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
    )
    return {"envelope": envelope, "reply": dict(xmltodict.parse(plain)["xml"])}


# --- the codec on its own ---------------------------------------------------------------


def test_a_safe_mode_message_decrypts_and_verifies_in_the_codec(settings: Settings) -> None:
    signer = WeChatSigner(settings)
    now = 1_800_000_000
    req = signer.sign(text_xml(ACCOUNT, OPENID, "今晚哪吒2几点", 4242), timestamp=now)
    inbound, encrypted = codec_for(settings).decode(req.params, req.body, now=now + 3)
    assert encrypted is True
    assert inbound.channel is Channel.WECHAT
    assert (inbound.kind, inbound.text, inbound.msg_id) == ("text", "今晚哪吒2几点", 4242)
    assert inbound.user_id == OPENID and inbound.to == ACCOUNT
    assert inbound.dedup_key == f"wechat:m:{OPENID}:4242"


def test_a_plaintext_message_verifies_by_its_query_signature(settings: Settings) -> None:
    signer = WeChatSigner(settings)
    now = 1_800_000_000
    req = signer.sign(text_xml(ACCOUNT, OPENID, "帮助", 7), encrypted=False, timestamp=now)
    inbound, encrypted = codec_for(settings, "compatible").decode(req.params, req.body, now=now)
    assert encrypted is False and inbound.text == "帮助"
    req.params["nonce"] = "tampered"
    with pytest.raises(CallbackRejected) as err:
        codec_for(settings, "compatible").decode(req.params, req.body, now=now)
    assert err.value.status == 403


def test_a_reply_encrypted_by_the_codec_decrypts_with_wechatpy(settings: Settings) -> None:
    codec = codec_for(settings)
    xml = "<xml><Content><![CDATA[你好]]></Content></xml>"
    out = codec.encode(xml, encrypted=True, nonce="n0nce", timestamp=1_800_000_000)
    opened = open_encrypted_reply(out, settings)
    assert opened["envelope"]["Nonce"] == "n0nce"
    assert opened["envelope"]["TimeStamp"] == "1800000000"
    assert opened["reply"]["Content"] == "你好"
    assert codec.encode(xml, encrypted=False, nonce="n", timestamp=1) == xml


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (image_xml(), {"kind": "image", "media_id": "media-image-1",
                       "pic_url": "http://mmbiz.qpic.cn/seat.jpg"}),
        (voice_xml("你好"), {"kind": "voice", "text": "你好", "label": "你好"}),
        (voice_xml(None), {"kind": "voice", "text": "", "media_id": "media-voice-1"}),
        (location_xml(31.2304, 121.4737), {"kind": "location", "latitude": 31.2304,
                                            "longitude": 121.4737, "label": "人民广场"}),
        (event_xml(ACCOUNT, OPENID, "subscribe", "qrscene_touch:hall3-exit",
                   extra="<Ticket><![CDATA[t]]></Ticket>"),
         {"kind": "event", "event": "subscribe", "scene": "touch:hall3-exit", "msg_id": None}),
        (event_xml(ACCOUNT, OPENID, "subscribe"), {"kind": "event", "event": "subscribe",
                                                   "scene": None}),
        (event_xml(ACCOUNT, OPENID, "unsubscribe"), {"kind": "event", "event": "unsubscribe"}),
        (event_xml(ACCOUNT, OPENID, "SCAN", "seat:H3-07", extra="<Ticket><![CDATA[t]]></Ticket>"),
         {"kind": "event", "event": "scan", "scene": "seat:H3-07"}),
        (event_xml(ACCOUNT, OPENID, "CLICK", "menu"), {"event": "click", "event_key": "menu"}),
        (event_xml(ACCOUNT, OPENID, "VIEW", "https://cinema.example/m"),
         {"event": "view", "event_key": "https://cinema.example/m"}),
        (scancode_xml("https://cinema.example/t/123"),
         {"event": "scancode_waitmsg", "event_key": "scan-menu",
          "scan_result": "https://cinema.example/t/123"}),
    ],
    ids=["image", "voice-recognised", "voice-silent", "location", "subscribe-qr", "subscribe",
         "unsubscribe", "scan", "click", "view", "scancode_waitmsg"],
)
def test_every_message_kind_parses_into_the_right_inbound(
    settings: Settings, xml: str, expected: dict[str, Any]
) -> None:
    now = 1_800_000_000
    req = WeChatSigner(settings).sign(xml, timestamp=now)
    inbound, _ = codec_for(settings).decode(req.params, req.body, now=now)
    assert inbound.user_id == OPENID
    for name, value in expected.items():
        assert getattr(inbound, name) == value, name


def test_events_are_deduplicated_by_sender_time_and_event(settings: Settings) -> None:
    now = 1_800_000_000
    codec, signer = codec_for(settings), WeChatSigner(settings)
    xml = event_xml(ACCOUNT, OPENID, "subscribe", create_time=1_799_999_990)
    req1, req2 = signer.sign(xml, timestamp=now), signer.sign(xml, timestamp=now + 5)
    assert req1.params["nonce"] != req2.params["nonce"]
    first, _ = codec.decode(req1.params, req1.body, now=now)
    again, _ = codec.decode(req2.params, req2.body, now=now + 5)
    assert first.msg_id is None
    assert first.dedup_key == again.dedup_key
    assert OPENID in first.dedup_key and "1799999990" in first.dedup_key
    assert "subscribe" in first.dedup_key


# --- GET: the URL check when the server is configured ------------------------------------


async def test_wechat_url_check_echoes_echostr_when_signed_with_our_token(client, settings, clock):
    ts, n = str(int(clock.timestamp())), nonce()
    params = {"signature": wx_signature(settings.wechat_token, ts, n), "timestamp": ts,
              "nonce": n, "echostr": "8371613949463418563"}
    resp = await client.get("/wechat/callback", params=params)
    assert resp.status == 200
    assert await resp.text() == "8371613949463418563"


async def test_a_forged_wechat_url_check_is_refused(client, settings, clock):
    ts, n = str(int(clock.timestamp())), nonce()
    params = {"signature": wx_signature("not-our-token", ts, n), "timestamp": ts,
              "nonce": n, "echostr": "8371613949463418563"}
    resp = await client.get("/wechat/callback", params=params)
    assert resp.status == 403
    assert "8371613949463418563" not in await resp.text()


# --- POST through the running app ---------------------------------------------------------


async def test_a_safe_mode_reply_is_encrypted_and_signed_with_our_token(
    client, settings, clock
) -> None:
    ts = int(clock.timestamp())
    status, text, params = await post_raw(
        client, WeChatSigner(settings), text_xml(ACCOUNT, OPENID, "你好", next_msg_id()), ts
    )
    assert status == 200
    opened = open_encrypted_reply(text, settings)
    # The reply answers this very request: its nonce, our clock.
    assert opened["envelope"]["Nonce"] == params["nonce"]
    assert opened["envelope"]["TimeStamp"] == str(ts)
    reply = opened["reply"]
    assert reply["MsgType"] == "text"
    assert reply["ToUserName"] == OPENID and reply["FromUserName"] == ACCOUNT
    assert "cinebot 示例影城" in reply["Content"]


async def test_compatible_mode_with_plaintext_alongside_the_ciphertext_is_answered_encrypted(
    client, settings, clock
) -> None:
    ts = int(clock.timestamp())
    signer = WeChatSigner(settings)
    xml = text_xml(ACCOUNT, OPENID, "帮助", next_msg_id())
    req = signer.sign(xml, timestamp=ts)
    encrypt = xmltodict.parse(req.body)["xml"]["Encrypt"]
    body = xml.replace("</xml>", f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
    resp = await client.post("/wechat/callback", params=req.params, data=body.encode())
    assert resp.status == 200
    assert "查排片" in open_encrypted_reply(await resp.text(), settings)["reply"]["Content"]


async def test_a_picture_is_acknowledged_with_a_hint_to_describe_it(callbacks) -> None:
    status, reply = await callbacks.wechat_post(image_xml())
    assert status == 200 and "图片收到了" in reply["Content"]


async def test_a_recognised_voice_message_is_understood_like_text(callbacks) -> None:
    status, reply = await callbacks.wechat_post(voice_xml("你好"))
    assert status == 200
    assert "cinebot 示例影城的小助手" in reply["Content"]


async def test_a_voice_message_without_recognition_asks_for_text(callbacks) -> None:
    status, reply = await callbacks.wechat_post(voice_xml(None))
    assert status == 200 and "请发文字" in reply["Content"]


async def test_sharing_a_location_answers_with_the_cinema_address_and_distance(callbacks) -> None:
    # People's Square is about 5 km from the demo cinema in Xuhui.
    status, reply = await callbacks.wechat_post(location_xml(31.2304, 121.4737))
    assert status == 200
    assert ADDRESS in reply["Content"]
    assert "距你约 5." in reply["Content"] and "公里" in reply["Content"]
    status, reply = await callbacks.wechat_post(location_xml(31.1890, 121.4370))
    assert "距你约" in reply["Content"] and "米" in reply["Content"]


async def test_a_location_with_nonsense_coordinates_still_gets_the_address(callbacks) -> None:
    status, reply = await callbacks.wechat_post(
        location_xml(31.2, 121.4).replace("31.2<", "nan<").replace("121.4<", "inf<")
    )
    assert status == 200
    assert ADDRESS in reply["Content"] and "距你约" not in reply["Content"]


async def test_following_without_a_qr_code_thanks_and_subscribes(callbacks) -> None:
    status, reply = await callbacks.wechat_post(event_xml(ACCOUNT, OPENID, "subscribe", ""))
    assert status == 200
    assert reply["Content"].startswith("感谢关注！")
    member = await Member.get(openid=OPENID)
    assert member.subscribed and member.subscribe_scene is None


async def test_following_by_qr_code_records_the_scene(callbacks) -> None:
    status, reply = await callbacks.wechat_post(
        event_xml(ACCOUNT, OPENID, "subscribe", "qrscene_seat:H3-07",
                  extra="<Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8v]]></Ticket>")
    )
    assert status == 200 and reply["Content"].startswith("感谢扫码关注！")
    member = await Member.get(openid=OPENID)
    assert member.subscribed and member.subscribe_scene == "seat:H3-07"


async def test_unfollowing_is_remembered_and_answered_with_success(client, settings, clock):
    signer = WeChatSigner(settings)
    ts = int(clock.timestamp())
    follow = event_xml(ACCOUNT, OPENID, "subscribe", create_time=ts - 60)
    await post_raw(client, signer, follow, ts)
    assert (await Member.get(openid=OPENID)).subscribed
    status, text, _ = await post_raw(client, signer, event_xml(ACCOUNT, OPENID, "unsubscribe"), ts)
    assert (status, text) == (200, "success")
    assert not (await Member.get(openid=OPENID)).subscribed


async def test_a_follower_scanning_a_qr_code_is_welcomed_back(callbacks) -> None:
    status, reply = await callbacks.wechat_post(
        event_xml(ACCOUNT, OPENID, "SCAN", "seat:H3-07", extra="<Ticket><![CDATA[t]]></Ticket>")
    )
    assert status == 200 and "扫码成功" in reply["Content"]


async def test_the_menu_button_opens_the_menu(callbacks) -> None:
    status, reply = await callbacks.wechat_post(event_xml(ACCOUNT, OPENID, "CLICK", "menu"))
    assert status == 200 and reply["Content"].startswith("请选择")


@pytest.mark.parametrize(
    "xml",
    [
        event_xml(ACCOUNT, OPENID, "CLICK", "promo:unknown"),
        event_xml(ACCOUNT, OPENID, "VIEW", "https://cinema.example/m",
                  extra="<MenuId>1</MenuId>"),
        event_xml(ACCOUNT, OPENID, "LOCATION",
                  extra="<Latitude>31.2</Latitude><Longitude>121.4</Longitude>"
                        "<Precision>30</Precision>"),
    ],
    ids=["click", "view", "location-report"],
)
async def test_silent_events_are_answered_with_success(client, settings, clock, xml) -> None:
    status, text, _ = await post_raw(client, WeChatSigner(settings), xml, int(clock.timestamp()))
    assert (status, text) == (200, "success")


async def test_a_scanned_code_from_the_menu_is_read_back(callbacks) -> None:
    status, reply = await callbacks.wechat_post(scancode_xml("https://cinema.example/t/123"))
    assert status == 200
    assert "已识别二维码：https://cinema.example/t/123" in reply["Content"]


# The fast parser must agree with wechatpy's own on every message: same class, same fields.
_PARSER_CASES = {
    "text": "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]>"
    "</FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[this is a test]]></Content><MsgId>1234567890123456</MsgId></xml>",
    "text-padded": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1"
    "</CreateTime><MsgType>text</MsgType><Content><![CDATA[  你好  ]]></Content>"
    "<MsgId>1</MsgId></xml>",
    "text-empty": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1"
    "</CreateTime><MsgType>text</MsgType><Content><![CDATA[]]></Content><MsgId>2</MsgId></xml>",
    "image": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1"
    "</CreateTime><MsgType>image</MsgType><PicUrl>http://x/y.jpg</PicUrl><MediaId>m</MediaId>"
    "<MsgId>3</MsgId></xml>",
    "location": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1"
    "</CreateTime><MsgType>location</MsgType><Location_X>23.134521</Location_X><Location_Y>"
    "113.358803</Location_Y><Scale>20</Scale><Label><![CDATA[位置信息]]></Label><MsgId>4</MsgId></xml>",
    "subscribe-qrscene": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName>"
    "<CreateTime>1</CreateTime><MsgType>event</MsgType><Event>subscribe</Event>"
    "<EventKey>qrscene_tp:H3</EventKey><Ticket>T</Ticket></xml>",
    "subscribe-barcode": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName>"
    "<CreateTime>1</CreateTime><MsgType>event</MsgType><Event>subscribe</Event>"
    "<EventKey>scanbarcode|EAN13|123</EventKey></xml>",
    "scan": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1"
    "</CreateTime><MsgType>event</MsgType><Event>SCAN</Event><EventKey>123</EventKey></xml>",
    "click": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1"
    "</CreateTime><MsgType>event</MsgType><Event>CLICK</Event><EventKey>menu</EventKey></xml>",
    "event-without-event": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName>"
    "<CreateTime>1</CreateTime><MsgType>event</MsgType></xml>",
    "device": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1"
    "</CreateTime><MsgType>device_event</MsgType><Event>bind</Event><DeviceType>t</DeviceType>"
    "<DeviceID>d</DeviceID><Content>c</Content><SessionID>1</SessionID><OpenID>o</OpenID></xml>",
    "unknown-type": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1"
    "</CreateTime><MsgType>hologram</MsgType></xml>",
    "nested-scancode": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1"
    "</CreateTime><MsgType>event</MsgType><Event>scancode_waitmsg</Event><EventKey>k</EventKey>"
    "<ScanCodeInfo><ScanType>qrcode</ScanType><ScanResult>r</ScanResult></ScanCodeInfo></xml>",
    "repeated-tag": "<xml><ToUserName>a</ToUserName><ToUserName>c</ToUserName><FromUserName>b"
    "</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content></xml>",
    "attribute": "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1"
    "</CreateTime><MsgType>text</MsgType><Content lang='zh'>x</Content><MsgId>5</MsgId></xml>",
}


@pytest.mark.parametrize("xml", _PARSER_CASES.values(), ids=_PARSER_CASES.keys())
def test_the_fast_parser_agrees_with_wechatpy(xml: str) -> None:
    from wechatpy import parse_message

    from bot.chat.channels.wechat import parse_wechat

    ours, theirs = parse_wechat(xml.encode()), parse_message(xml)
    assert type(ours) is type(theirs)
    assert dict(ours._data) == dict(theirs._data)


def test_only_flat_messages_take_the_fast_path() -> None:
    from bot.chat.channels.wechat import flat_fields

    assert flat_fields(_PARSER_CASES["text"].encode())["Content"] == "this is a test"
    assert flat_fields(_PARSER_CASES["text-empty"].encode())["Content"] is None
    for name in ("nested-scancode", "repeated-tag", "attribute"):
        assert flat_fields(_PARSER_CASES[name].encode()) is None, name
    assert flat_fields(b"<xml><a>") is None


@pytest.mark.parametrize(
    "content",
    ["你好", "", "选哪一场？\n\n<a href=\"weixin://bizmsgmenu?msgmenucontent=1&amp;msgmenuid=1\">1</a>",
     "a & b < c > d \"'", "emoji 🎬 and tabs\t"],
)
def test_the_text_reply_template_agrees_with_wechatpy(content: str) -> None:
    from wechatpy.replies import TextReply

    from bot.chat.channels.wechat import text_reply_xml

    theirs = TextReply(source="gh_cinebot", target="oUser-1", content=content, time=1732000000)
    assert text_reply_xml("gh_cinebot", "oUser-1", content, 1732000000) == theirs.render()


def test_a_text_reply_survives_content_that_would_end_its_cdata() -> None:
    from bot.chat.channels.wechat import parse_wechat, text_reply_xml

    content = "look: ]]> <b>not a tag</b> ]]>"
    parsed = parse_wechat(text_reply_xml("gh", "o1", content, 1).encode())
    assert parsed is not None and parsed.content == content


_TRICKY_FLAT = [
    "<xml><A><![CDATA[a]]>]]></A></xml>",  # "]]>" outside CDATA: not XML
    "<xml><A><![CDATA[a]]]]><![CDATA[>]]></A></xml>",  # two sections
    "<xml><A>a &amp; b</A></xml>",  # an entity
    "<xml><A>a\r\nb</A></xml>",  # XML turns CR LF into LF
    "<xml><A><![CDATA[a\rb]]></A></xml>",
    "<xml><A>a\x01b</A></xml>",  # a control character: not XML
    "<xml><A><![CDATA[\x08]]></A></xml>",
    "<xml><A>1</A><A>2</A></xml>",  # repeated
    "<xml><A>1</B></xml>",  # mismatched
    "<xml><A b='1'>1</A></xml>",  # attribute
    "<xml><A/></xml>",  # self-closing
    "<xml><A><B>1</B></A></xml>",  # nested
    "<?xml version='1.0'?><xml><A>1</A></xml>",  # declaration
    "\ufeff<xml><A>1</A></xml>",  # byte-order mark
    "<xml>junk<A>1</A></xml>",  # text between
    "<xml><A>  <![CDATA[ x ]]>  </A></xml>",  # CDATA with blanks around
    "<xml><A>\u3000全角空格\u3000</A></xml>",
    "<xml><A>a ] b</A></xml>",
    "<xml><A>a > b</A></xml>",
    "<xml><A></A><B><![CDATA[]]></B></xml>",
    "<xml><ns:A>1</ns:A></xml>",
    "<xml><A>1</A></xml>trailing",
    "  \n<xml>\n  <A>1</A>\n  <B><![CDATA[二]]></B>\n</xml>\n",
    "<xml><A>1</A>",
    "<XML><A>1</A></XML>",
    "<xml><A>\ud83c\udfac</A></xml>",
]


@pytest.mark.parametrize("xml", _TRICKY_FLAT)
def test_the_flat_pattern_reads_what_elementtree_reads_or_steps_aside(xml: str) -> None:
    from bot.chat.channels.wechat import _flat_by_pattern, _flat_by_tree

    for doc in (xml, xml.encode("utf-8", "surrogatepass")):
        fast = _flat_by_pattern(doc)
        assert fast is None or fast == _flat_by_tree(doc), doc


def test_the_flat_pattern_agrees_with_elementtree_on_random_documents() -> None:
    import random

    from bot.chat.channels.wechat import _flat_by_pattern, _flat_by_tree

    pieces = [
        "<xml>", "</xml>", "<A>", "</A>", "<B>", "</B>", "<![CDATA[", "]]>", "]", ">", "<",
        "&amp;", "&", "x", "你好", " ", "\n", "\r", "\t", "\x01", "<C/>", "<A k='v'>", "1",
        "\u3000", "🎬",
    ]
    rng = random.Random(20261122)
    fast_path = 0
    for _ in range(4000):
        body = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        # Mostly well-formed skeletons with random content, some pure noise.
        doc = f"<xml><A>{body}</A><B><![CDATA[{body}]]></B></xml>" if rng.random() < 0.7 else body
        fast = _flat_by_pattern(doc)
        if fast is not None:
            fast_path += 1
            assert fast == _flat_by_tree(doc), repr(doc)
    assert fast_path > 200  # the pattern does take the usual shapes (321 with this seed)


def test_the_sample_messages_take_the_pattern() -> None:
    from bot.chat.channels.wechat import _flat_by_pattern

    for name in ("text", "text-padded", "text-empty", "image", "location", "scan", "click"):
        assert _flat_by_pattern(_PARSER_CASES[name].encode()) is not None, name
