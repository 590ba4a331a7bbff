"""Stories through the real protocol: signed, encrypted callbacks to the running app."""

from __future__ import annotations

import asyncio

from bot.app import ACTORS
from bot.wechat.chatclient import event_xml, next_msg_id, render_for_terminal, text_xml
from domain.people import Member
from tests.conftest import Callbacks

OPENID = "oCineBotTestAudience00000001"


async def test_an_audience_says_hello_in_safe_mode_and_gets_the_menu(callbacks) -> None:
    status, reply = await callbacks.wechat_post(text_xml("gh_demo", OPENID, "你好", next_msg_id()))
    assert status == 200
    assert reply["MsgType"] == "text"
    assert reply["ToUserName"] == OPENID and reply["FromUserName"] == "gh_demo"
    shown = render_for_terminal(reply)
    assert "cinebot 示例影城" in shown
    assert "[查排片]" in shown and "[人工服务]" in shown


async def test_first_contact_creates_a_member_once(callbacks, client) -> None:
    # Two messages at once from someone new: one member row, written in the background.
    await asyncio.gather(
        *(callbacks.wechat_post(text_xml("gh_demo", OPENID, t, next_msg_id())) for t in ("你好", "在吗"))
    )
    await client.app[ACTORS].drain()
    assert await Member.filter(openid=OPENID).count() == 1
    await callbacks.wechat_post(text_xml("gh_demo", OPENID, "帮助", next_msg_id()))
    await client.app[ACTORS].drain()
    assert await Member.filter(openid=OPENID).count() == 1


async def test_plaintext_mode_works_too(make_client, wechat, wecom, clock) -> None:
    # Only when the operator chose it: the default (safe) refuses plaintext.
    client = await make_client(settings={"wechat_message_mode": "plain"})
    status, reply = await Callbacks(client, wechat, wecom, clock).wechat_post(
        text_xml("gh_demo", OPENID, "帮助", next_msg_id()), encrypted=False
    )
    assert status == 200
    assert "查排片" in reply["Content"]


async def test_following_by_qr_records_the_scene(callbacks) -> None:
    status, reply = await callbacks.wechat_post(
        event_xml("gh_demo", OPENID, "subscribe", "qrscene_touch:hall3-exit",
                  extra="<Ticket><![CDATA[t]]></Ticket>")
    )
    assert status == 200
    assert "感谢扫码关注" in reply["Content"]
    member = await Member.get(openid=OPENID)
    assert member.subscribed and member.subscribe_scene == "touch:hall3-exit"


async def test_staff_member_is_greeted_by_name_and_stranger_is_refused(callbacks) -> None:
    status, reply = await callbacks.wecom_post(
        text_xml("ww_corp", "staff01", "你好", next_msg_id(), 1000002)
    )
    assert status == 200 and "李小青" in reply["Content"]
    status, reply = await callbacks.wecom_post(
        text_xml("ww_corp", "stranger9", "你好", next_msg_id(), 1000002)
    )
    assert status == 200 and "还没有开通" in reply["Content"]


def test_a_news_reply_shows_its_link_in_the_terminal() -> None:
    # A terminal cannot tap a card: the link a WeChat/WeCom news reply opens is printed.
    from bot.wechat.chatclient import describe_sent

    reply = {"MsgType": "news", "Articles": {"item": [
        {"Title": "影城看板", "Description": "点击进入", "Url": "http://x/console/enter?t=a"}]}}
    assert render_for_terminal(reply) == "📰 影城看板 — 点击进入 <http://x/console/enter?t=a>"
    sent = {"payload": {"msgtype": "news", "news": {"articles": [{"title": "影城看板", "url": "http://x/c"}]}}}
    assert "<http://x/c>" in describe_sent(sent)
