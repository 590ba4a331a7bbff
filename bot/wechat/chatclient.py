"""Talk to a running cinebot exactly as WeChat or WeCom would: sign, encrypt, POST, decrypt.

Used by ``cinebot chat`` (a person trying the bot without a WeChat account),
by the benchmark, and by end-to-end tests.
"""

from __future__ import annotations

import html
import itertools
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

from bot.chat.channels.security import sha1_signature
from bot.infra.settings import Settings

_counter = itertools.count(int(time.time() * 1000) % 10**9 * 1000)


def next_msg_id() -> int:
    return next(_counter)


def text_xml(to: str, sender: str, content: str, msg_id: int, agent_id: int | None = None) -> str:
    agent = f"<AgentID>{agent_id}</AgentID>" if agent_id is not None else ""
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
        f"<FromUserName><![CDATA[{sender}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId>{agent}</xml>"
    )


def event_xml(
    to: str, sender: str, event: str, key: str | None = None, agent_id: int | None = None,
    extra: str = "", create_time: int | None = None,
) -> str:
    key_xml = f"<EventKey><![CDATA[{key}]]></EventKey>" if key is not None else ""
    agent = f"<AgentID>{agent_id}</AgentID>" if agent_id is not None else ""
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
        f"<FromUserName><![CDATA[{sender}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>"
        f"{key_xml}{extra}{agent}</xml>"
    )


@dataclass
class SignedRequest:
    params: dict[str, str]
    body: bytes


class WeChatSigner:
    """Builds safe-mode (AES) or plaintext callback requests for the Official Account."""

    def __init__(self, settings: Settings, account: str = "gh_cinebotdemo") -> None:
        self.token = settings.wechat_token
        self.appid = settings.wechat_appid
        self.account = account
        self.crypto = WeChatCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_appid)

    def sign(self, xml: str, encrypted: bool = True, timestamp: int | None = None) -> SignedRequest:
        ts = str(timestamp or int(time.time()))
        nonce = secrets.token_hex(5)
        params = {"timestamp": ts, "nonce": nonce, "signature": sha1_signature(self.token, ts, nonce)}
        if not encrypted:
            return SignedRequest(params, xml.encode("utf-8"))
        envelope = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, int(ts)))["xml"]
        params.update(
            encrypt_type="aes",
            msg_signature=sha1_signature(self.token, ts, nonce, envelope["Encrypt"]),
            openid="",
        )
        body = (
            f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName>"
            f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>"
        )
        return SignedRequest(params, body.encode("utf-8"))

    def open_reply(self, text: str, params: dict[str, str]) -> dict[str, Any] | None:
        """The reply as a dict, decrypting it when the request was in safe mode."""
        if not text or text == "success":
            return None
        doc = xmltodict.parse(text)["xml"]
        if "Encrypt" in doc:
            plain = self.crypto.decrypt_message(
                text, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"]
            )
            doc = xmltodict.parse(plain)["xml"]
        return dict(doc)


class WeComSigner:
    def __init__(self, settings: Settings) -> None:
        self.token = settings.wecom_token
        self.corp_id = settings.wecom_corp_id
        self.agent_id = settings.wecom_agent_id
        self.crypto = WeComCrypto(settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id)

    def sign(self, xml: str, timestamp: int | None = None) -> SignedRequest:
        ts = str(timestamp or int(time.time()))
        nonce = secrets.token_hex(5)
        envelope = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, int(ts)))["xml"]
        params = {
            "timestamp": ts,
            "nonce": nonce,
            "msg_signature": sha1_signature(self.token, ts, nonce, envelope["Encrypt"]),
        }
        body = (
            f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
            f"<AgentID><![CDATA[{self.agent_id}]]></AgentID>"
            f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>"
        )
        return SignedRequest(params, body.encode("utf-8"))

    def open_reply(self, text: str, params: dict[str, str]) -> dict[str, Any] | None:
        if not text or text == "success":
            return None
        doc = xmltodict.parse(text)["xml"]
        plain = self.crypto.decrypt_message(text, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"])
        return dict(xmltodict.parse(plain)["xml"])


_LINK = re.compile(r'<a href="weixin://bizmsgmenu\?msgmenucontent=([^&"]*)&amp;msgmenuid=\d+">([^<]*)</a>')
_LINK_RAW = re.compile(r'<a href="weixin://bizmsgmenu\?msgmenucontent=([^&"]*)&msgmenuid=\d+">([^<]*)</a>')


def reply_buttons(reply: dict[str, Any] | None) -> dict[str, str]:
    """The tappable options of a reply: label → the text a tap sends."""
    if not reply:
        return {}
    content = str(reply.get("Content", ""))
    found: dict[str, str] = {}
    for pattern in (_LINK, _LINK_RAW):
        for payload, label in pattern.findall(content):
            found[html.unescape(label)] = html.unescape(payload)
    for payload in re.findall(r"【([^】]+)】", content):  # WeCom: options to type
        found.setdefault(payload, payload)
    return found


# A web link in a text message (pay page, e-ticket): shown as "label <url>".
_HREF = re.compile(r'<a href="(https?://[^"]+)">([^<]*)</a>')


def reply_links(reply: dict[str, Any] | None) -> list[str]:
    if not reply:
        return []
    return [html.unescape(url) for url, _ in _HREF.findall(str(reply.get("Content", "")))]


def render_for_terminal(reply: dict[str, Any] | None) -> str:
    """A reply as a person would see it in WeChat: tappable links become [buttons]."""
    if reply is None:
        return "（没有回复）"
    if reply.get("MsgType") == "news":
        items = reply.get("Articles", {}).get("item", [])
        items = items if isinstance(items, list) else [items]
        # The terminal has nothing to tap: the article's link is shown as text.
        return "\n".join(
            f"📰 {i.get('Title', '')} — {i.get('Description', '')}"
            + (f" <{i['Url']}>" if i.get("Url") else "")
            for i in items
        )
    content = str(reply.get("Content", ""))
    for pattern in (_LINK, _LINK_RAW):
        content = pattern.sub(lambda m: f"[{html.unescape(m.group(2))}]", content)
    return _HREF.sub(lambda m: f"{html.unescape(m.group(2))} <{html.unescape(m.group(1))}>", content)


class ChatSession:
    """One simulated user talking to a cinebot server."""

    def __init__(
        self, settings: Settings, base_url: str, user: str, staff: bool = False,
        encrypted: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user = user
        self.staff = staff
        self.encrypted = encrypted
        self.wechat = WeChatSigner(settings)
        self.wecom = WeComSigner(settings)
        self.last_buttons: dict[str, str] = {}
        self.links: list[str] = []  # web links received (pay pages, e-tickets), oldest first

    async def send_text(self, http: aiohttp.ClientSession, text: str) -> dict[str, Any] | None:
        if self.staff:
            xml = text_xml(self.wecom.corp_id, self.user, text, next_msg_id(), self.wecom.agent_id)
        else:
            xml = text_xml(self.wechat.account, self.user, text, next_msg_id())
        return await self.post(http, xml)

    async def send_event(
        self, http: aiohttp.ClientSession, event: str, key: str | None = None, extra: str = ""
    ) -> dict[str, Any] | None:
        if self.staff:
            xml = event_xml(self.wecom.corp_id, self.user, event, key, self.wecom.agent_id, extra)
        else:
            xml = event_xml(self.wechat.account, self.user, event, key, None, extra)
        return await self.post(http, xml)

    async def post(self, http: aiohttp.ClientSession, xml: str) -> dict[str, Any] | None:
        if self.staff:
            req = self.wecom.sign(xml)
            url = f"{self.base_url}/wecom/callback"
        else:
            req = self.wechat.sign(xml, encrypted=self.encrypted)
            url = f"{self.base_url}/wechat/callback"
        async with http.post(url, params=req.params, data=req.body) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"server answered {resp.status}: {text[:200]}")
        signer = self.wecom if self.staff else self.wechat
        reply = signer.open_reply(text, req.params)
        self.last_buttons = reply_buttons(reply)
        self.links.extend(reply_links(reply))
        return reply


HELP = """输入文字即可发送。特殊命令：
  /follow [场景]   关注公众号（可带二维码场景，如 /follow touch:hall3-exit）
  /scan 场景       已关注用户扫码（SCAN 事件）
  /qr 内容         用扫一扫扫描二维码（scancode_waitmsg 事件）
  /enter           打开企业微信应用（enter_agent，仅 --staff）
  /pay             打开最近的支付链接并付款（演示沙箱）
  /click 选项      点击上一条回复里的选项（如 /click 查排片），或最近一张卡片上的按钮
  /quit            退出
机器人稍后主动发来的消息（客服消息、卡片）会实时显示在这里。"""


def describe_sent(message: dict[str, Any]) -> str:
    """A message the bot sent through the API, as the recipient's phone would show it."""
    payload = message.get("payload") or {}
    kind = payload.get("msgtype")
    body = payload.get(kind) if isinstance(kind, str) else None
    body = body if isinstance(body, dict) else {}
    if kind == "text":
        return "📩 " + render_for_terminal({"Content": body.get("content", "")})
    if kind == "markdown":
        return "📩 " + str(body.get("content", ""))
    if kind == "textcard":
        return f"🗂 {body.get('title', '')}\n{body.get('description', '')}"
    if kind == "news":
        return "\n".join(
            f"📰 {a.get('title', '')}" + (f" <{a['url']}>" if a.get("url") else "")
            for a in body.get("articles", [])
        )
    if kind == "template_card":
        lines = [f"🃏 {(body.get('main_title') or {}).get('title', '')}"]
        desc = (body.get("main_title") or {}).get("desc")
        if desc:
            lines.append(f"   {desc}")
        for row in body.get("horizontal_content_list") or []:
            lines.append(f"   {row.get('keyname', '')}：{row.get('value', '')}")
        buttons = body.get("button_list") or []
        if buttons:
            lines.append("   " + "  ".join(f"[{b.get('text')}] /click {b.get('key')}" for b in buttons))
        return "\n".join(lines)
    return f"📩 （{kind} 消息）"


class StandinWatcher:
    """Follows what the local API stand-in received for one user, and remembers the last card."""

    def __init__(self, base_url: str, user: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.user = user
        self.last_id = 0
        self.last_card: str | None = None

    async def start(self, http: aiohttp.ClientSession) -> bool:
        try:
            async with http.get(f"{self.base_url}/standin/messages") as resp:
                self.last_id = int((await resp.json())["last_id"])
            return True
        except (aiohttp.ClientError, KeyError, ValueError):
            return False

    async def poll(self, http: aiohttp.ClientSession) -> list[str]:
        params = {"to": self.user, "since": str(self.last_id)}
        async with http.get(f"{self.base_url}/standin/messages", params=params) as resp:
            data = await resp.json()
        shown = []
        for m in data.get("messages", []):
            self.last_id = max(self.last_id, int(m["id"]))
            if m.get("msgtype") == "template_card":
                self.last_card = (m["payload"].get("template_card") or {}).get("task_id")
            shown.append(describe_sent(m))
        return shown

    async def click(self, http: aiohttp.ClientSession, key: str) -> dict[str, Any] | None:
        if not self.last_card:
            return None
        body = {"task_id": self.last_card, "key": key, "userid": self.user}
        async with http.post(f"{self.base_url}/standin/click", json=body) as resp:
            if resp.status != 200:
                raise RuntimeError(await resp.text())
            return dict(await resp.json())


def card_event_xml(fields: dict[str, Any]) -> str:
    parts = "".join(
        f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}><![CDATA[{v}]]></{k}>"
        for k, v in fields.items()
        if v is not None
    )
    return f"<xml>{parts}</xml>"


def _default_standin(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    port = (parts.port or 80) + 1
    return urlunsplit((parts.scheme, f"{parts.hostname}:{port}", "", "", ""))


async def run_chat(settings: Settings, args: Any) -> int:
    import asyncio
    import sys

    user = args.staff or args.openid
    session = ChatSession(settings, args.url, user, staff=bool(args.staff), encrypted=not args.plaintext)
    watcher = StandinWatcher(args.standin or _default_standin(args.url), user)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        watching = await watcher.start(http)

        async def say(line: str) -> None:
            try:
                reply = await _send_line(session, watcher, http, line)
            except aiohttp.ClientConnectionError:
                print(f"连接不上 {args.url}：cinebot serve 启动了吗？", file=sys.stderr)
                raise SystemExit(1) from None
            except RuntimeError as exc:
                print(f"出错了：{exc}", file=sys.stderr)
                return
            print(f"cinebot> {render_for_terminal(reply)}")

        async def follow() -> None:
            while True:
                await asyncio.sleep(1.0)
                try:
                    for text in await watcher.poll(http):
                        print(f"\n{text}\n{user}> ", end="", flush=True)
                except (aiohttp.ClientError, ValueError):
                    continue

        if args.say:
            for line in args.say:
                print(f"{user}> {line}")
                await say(line)
            return 0
        who = f"企业微信员工 {user}" if args.staff else f"微信用户 {user}"
        print(f"以{who}身份连接 {args.url}（{'安全模式' if session.encrypted else '明文模式'}）。{HELP}")
        if not watching:
            print(f"（没有连上接口替身 {watcher.base_url}，主动消息不会显示）")
        poller = asyncio.create_task(follow()) if watching else None
        try:
            while True:
                try:
                    line = (await asyncio.to_thread(input, f"{user}> ")).strip()
                except (EOFError, KeyboardInterrupt):
                    print()
                    return 0
                if line in ("/quit", "/exit"):
                    return 0
                if line in ("/help", "/?"):
                    print(HELP)
                    continue
                if line:
                    await say(line)
        finally:
            if poller is not None:
                poller.cancel()


async def _sandbox_pay(session: ChatSession, http: aiohttp.ClientSession) -> dict[str, Any] | None:
    """What a buyer does on the pay page of the demo's sandbox bank: press 确认支付."""
    links = [url for url in session.links if "/pay/" in url]
    if not links:
        raise RuntimeError("还没有收到支付链接：先买票并回复「确认」")
    async with http.post(links[-1], allow_redirects=True) as resp:
        page = await resp.text()
    if resp.status >= 400:
        raise RuntimeError(f"支付失败（{resp.status}）：{re.sub(r'<[^>]+>', ' ', page)[:120].strip()}")
    done = "已支付" in page
    return {"MsgType": "text", "Content": "（沙箱）支付成功，电子票稍后发来。" if done else "（沙箱）已提交支付。"}


async def _send_line(
    session: ChatSession, watcher: StandinWatcher, http: aiohttp.ClientSession, line: str
) -> dict[str, Any] | None:
    if not line.startswith("/"):
        return await session.send_text(http, line)
    command, _, arg = line.partition(" ")
    arg = arg.strip()
    if command == "/follow":
        return await session.send_event(http, "subscribe", f"qrscene_{arg}" if arg else None)
    if command == "/scan":
        return await session.send_event(http, "SCAN", arg or "demo")
    if command == "/qr":
        info = (
            "<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>"
            f"<ScanResult><![CDATA[{arg}]]></ScanResult></ScanCodeInfo>"
        )
        return await session.send_event(http, "scancode_waitmsg", "scan", extra=info)
    if command == "/enter":
        return await session.send_event(http, "enter_agent", "")
    if command == "/pay":
        return await _sandbox_pay(session, http)
    if command == "/click":
        if arg in session.last_buttons:  # an option of the last reply: a tap sends its text
            return await session.send_text(http, session.last_buttons[arg])
        if session.staff and watcher.last_card:
            fields = await watcher.click(http, arg)
            if fields is not None:
                return await session.post(http, card_event_xml(fields))
        return await session.send_event(http, "CLICK", arg)
    raise RuntimeError(f"不认识的命令 {command}，输入 /help 查看")
