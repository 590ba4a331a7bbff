"""WeChat Official Account / mini-program callbacks: safe (AES), compatible and plain mode."""

from __future__ import annotations

import binascii
import re
import struct
import time
from collections.abc import Mapping
from typing import Any
from xml.parsers import expat
from xml.parsers.expat import ExpatError

import xml.etree.ElementTree as ET

import xmltodict
from wechatpy import parse_message
from wechatpy.events import EVENT_TYPES
from wechatpy.messages import MESSAGE_TYPES, BaseMessage, UnknownMessage
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import ArticlesReply

from bot.chat.channels.inbound import Channel, Inbound
from bot.chat.channels.mapping import to_inbound
from bot.chat.channels.security import (
    CallbackRejected,
    require_fresh,
    require_params,
    require_signature,
    sha1_signature,
)
from bot.chat.replies import Reply
from bot.infra.settings import MESSAGE_MODES

# What garbage inside a correctly signed envelope makes wechatpy/xmltodict raise.
GARBAGE_ERRORS: tuple[type[BaseException], ...] = (
    binascii.Error,
    ValueError,
    struct.error,
    KeyError,
    IndexError,
    TypeError,
    UnicodeDecodeError,
    ExpatError,
    AttributeError,
)


# The envelope WeChat and WeCom actually send: read its <Encrypt> without a full XML
# parse on the hot path; anything else takes the general parser below.
_ENVELOPE = re.compile(rb"<Encrypt><!\[CDATA\[([A-Za-z0-9+/=]{16,})\]\]></Encrypt>")


def envelope(body: bytes) -> dict[str, Any]:
    """The encrypted envelope as a dict with at least ``Encrypt``."""
    found = _ENVELOPE.findall(body)
    if len(found) == 1 and body.lstrip().startswith(b"<xml>") and body.rstrip().endswith(b"</xml>"):
        return {"Encrypt": found[0].decode("ascii")}
    return parse_xml(body)


# A flat message exactly as WeChat writes it: <xml>, then leaf elements whose content is
# one CDATA section or plain text, then </xml>. Content with anything XML would rewrite
# (entities, carriage returns, "]]>" outside CDATA) or refuse (control characters) does
# not match, and such messages go through ElementTree, as does everything else unusual.
_XML_BAD = "\x00-\x08\x0b\x0c\r\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_FLAT_HEAD = re.compile(r"[ \t\n]*<xml>[ \t\n]*")
_FLAT_FIELD = re.compile(
    r"<([A-Za-z_][A-Za-z0-9_]*)>"
    rf"(?:(?><!\[CDATA\[([^{_XML_BAD}]*?)\]\]>)|([^<&\]{_XML_BAD}]*))"
    r"</\1>[ \t\n]*"
)
_FLAT_TAIL = re.compile(r"</xml>[ \t\n]*\Z")


def _flat_by_pattern(plain: bytes | str) -> dict[str, Any] | None:
    """:func:`flat_fields` for the usual shape without building a tree; None when the
    message has any other shape (ElementTree then decides)."""
    if isinstance(plain, bytes):
        try:
            text = plain.decode("utf-8")
        except UnicodeDecodeError:
            return None
    else:
        text = plain
    head = _FLAT_HEAD.match(text)
    if head is None:
        return None
    out: dict[str, Any] = {}
    pos = head.end()
    while (field := _FLAT_FIELD.match(text, pos)) is not None:
        tag, cdata, raw = field.group(1, 2, 3)
        if tag in out:
            return None
        value = cdata if cdata is not None else raw
        out[tag] = value.strip() or None
        pos = field.end()
    if _FLAT_TAIL.match(text, pos) is None:
        return None
    return out


class _Prolog(Exception):
    """The first element started: the prolog, the only place a DOCTYPE may be, had none."""


def _refuse_dtd(*_: Any) -> None:
    raise ValueError("DOCTYPE refused")


def _prolog_read(*_: Any) -> None:
    raise _Prolog


def refuse_doctype(xml: bytes | str) -> None:
    """Raise ValueError if ``xml`` declares a DOCTYPE. WeChat never sends one; with one,
    ElementTree expands internal entities (a "billion laughs" in a few hundred bytes) and
    xmltodict, which refuses entities, still lets a bare DOCTYPE through. ValueError is
    also what wechatpy raises for entities, so both answer the same 400.

    Only the prolog is read: parsing stops at the first element. Malformed XML passes
    here and is refused by the parser that reads it properly."""
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.StartElementHandler = _prolog_read
    try:
        parser.Parse(xml, True)
    except (_Prolog, ExpatError):
        return


def _flat_by_tree(plain: bytes | str) -> dict[str, Any] | None:
    refuse_doctype(plain)
    try:
        root = ET.fromstring(plain)
    except (ET.ParseError, ValueError, TypeError):
        return None
    if root.tag != "xml" or root.attrib:
        return None
    out: dict[str, Any] = {}
    for child in root:
        if len(child) or child.attrib or child.tag in out:
            return None
        text = child.text.strip() if child.text else ""
        out[child.tag] = text or None
    return out


def flat_fields(plain: bytes | str) -> dict[str, Any] | None:
    """The fields of a flat message (every child of <xml> a leaf), exactly as xmltodict
    gives them (text stripped, empty → None); None when the XML is anything else.
    ValueError when it declares a DOCTYPE (see :func:`refuse_doctype`).

    A pattern reads the shape WeChat sends; ElementTree's C parser reads any other (in a
    few microseconds, where xmltodict's pure-Python callbacks take tens); anything
    unusual (nested elements such as ScanCodeInfo, attributes, repeated tags, bad XML)
    is left to wechatpy's own parser."""
    fields = _flat_by_pattern(plain)
    return fields if fields is not None else _flat_by_tree(plain)


def parse_wechat(plain: bytes | str) -> BaseMessage | None:
    """``wechatpy.parse_message`` with a fast path for flat messages.

    The class choice below is wechatpy 1.8.18's ``parse_message``, line for line, applied
    to the fields read by :func:`flat_fields`; ``tests/test_wechat_channel.py`` checks the
    two agree on every sample message."""
    message = flat_fields(plain)
    if message is None or not isinstance(message.get("MsgType"), str):
        return parse_message(plain)  # type: ignore[no-any-return]
    message_type = message["MsgType"].lower()
    event_type = None
    if message_type == "event" or message_type.startswith("device_"):
        if isinstance(message.get("Event"), str):
            event_type = message["Event"].lower()
        elif "Event" in message:
            return parse_message(plain)  # type: ignore[no-any-return]
        if event_type is None and message_type.startswith("device_"):
            event_type = message_type
        elif message_type.startswith("device_"):
            event_type = f"device_{event_type}"
        if event_type == "subscribe" and message.get("EventKey"):
            event_key = message["EventKey"]
            if event_key.startswith(("scanbarcode|", "scanimage|")):
                event_type = "subscribe_scan_product"
                message["Event"] = event_type
            elif event_key.startswith("qrscene_"):
                event_type = "subscribe_scan"
                message["Event"] = event_type
                message["EventKey"] = event_key[len("qrscene_"):]
        message_class = EVENT_TYPES.get(event_type, UnknownMessage)
    else:
        message_class = MESSAGE_TYPES.get(message_type, UnknownMessage)
    return message_class(message)  # type: ignore[no-any-return]


def _cdata(value: str) -> str:
    # "]]>" would end the section early: split it across two sections.
    return value.replace("]]>", "]]]]><![CDATA[>")


def text_reply_xml(source: str, target: str, content: str, create_time: int) -> str:
    """What ``wechatpy.replies.TextReply(...).render()`` writes, field for field, without
    its generic field machinery (a sixth of a reply's cost); unlike it, a ``]]>`` in the
    content cannot break the XML. ``tests/test_wechat_channel.py`` checks both agree."""
    return (
        "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n"
        f"<Content><![CDATA[{_cdata(content)}]]></Content>\n"
        f"<FromUserName><![CDATA[{_cdata(source)}]]></FromUserName>\n"
        f"<ToUserName><![CDATA[{_cdata(target)}]]></ToUserName>\n"
        f"<CreateTime>{create_time}</CreateTime>\n</xml>"
    )


def parse_xml(body: bytes | str) -> dict[str, Any]:
    try:
        refuse_doctype(body)
        doc = xmltodict.parse(body)
        xml = doc["xml"]
    except GARBAGE_ERRORS as exc:
        raise CallbackRejected(400, "bad_xml", type(exc).__name__) from None
    if not isinstance(xml, dict):
        raise CallbackRejected(400, "bad_xml", "empty <xml>")
    return xml


def render_articles(articles: Any, reply: Reply) -> str:
    """A passive news reply (both platforms): at most 8 articles."""
    for a in reply.articles[:8]:
        articles.add_article(
            {"title": a.title, "description": a.description, "image": a.image, "url": a.url}
        )
    return str(articles.render())


class WeChatCodec:
    channel = Channel.WECHAT

    def __init__(
        self, token: str, aes_key: str, appid: str, tolerance: int = 300, mode: str = "safe"
    ) -> None:
        if mode not in MESSAGE_MODES:
            raise ValueError(f"message mode must be one of {MESSAGE_MODES}, not {mode!r}")
        self.token = token
        self.appid = appid
        self.tolerance = tolerance
        self.mode = mode
        self.crypto = WeChatCrypto(token, aes_key, appid)

    def verify_url(self, query: Mapping[str, str], now: float) -> str:
        """GET check when the URL is configured: echo ``echostr`` if the signature holds."""
        q = dict(query)
        signature, timestamp, nonce, echostr = require_params(
            q, "signature", "timestamp", "nonce", "echostr"
        )
        require_fresh(timestamp, now, self.tolerance)
        require_signature(sha1_signature(self.token, timestamp, nonce), signature)
        return echostr

    def decode(self, query: Mapping[str, str], body: bytes, now: float) -> tuple[Inbound, bool]:
        """Verify, decrypt if needed and parse. Returns the message and whether it was encrypted."""
        q = dict(query)
        # The request names its own form; our setting, not the request, decides what is
        # acceptable (see Settings.wechat_message_mode), before any other work.
        encrypted = q.get("encrypt_type", "raw").lower() == "aes"
        if not encrypted and self.mode == "safe":
            raise CallbackRejected(403, "plaintext_refused")
        if encrypted and self.mode == "plain":
            raise CallbackRejected(403, "encrypted_refused")
        timestamp, nonce = require_params(q, "timestamp", "nonce")
        require_fresh(timestamp, now, self.tolerance)
        if encrypted:
            (msg_signature,) = require_params(q, "msg_signature")
            outer = envelope(body)
            encrypt = outer.get("Encrypt")
            if not isinstance(encrypt, str) or not encrypt:
                raise CallbackRejected(400, "bad_xml", "no <Encrypt>")
            require_signature(sha1_signature(self.token, timestamp, nonce, encrypt), msg_signature)
            try:
                plain = self.crypto.decrypt_message(outer, msg_signature, timestamp, nonce)
            except InvalidSignatureException:
                raise CallbackRejected(403, "bad_signature") from None
            except InvalidAppIdException:
                raise CallbackRejected(403, "wrong_appid") from None
            except GARBAGE_ERRORS as exc:
                raise CallbackRejected(400, "bad_ciphertext", type(exc).__name__) from None
        else:
            (signature,) = require_params(q, "signature")
            require_signature(sha1_signature(self.token, timestamp, nonce), signature)
            plain = body
        try:
            message = parse_wechat(plain)
        except GARBAGE_ERRORS as exc:
            raise CallbackRejected(400, "bad_message", type(exc).__name__) from None
        if message is None:
            raise CallbackRejected(400, "bad_message", "empty")
        return to_inbound(message, Channel.WECHAT), encrypted

    def render(self, reply: Reply, inbound: Inbound) -> str:
        """The passive reply XML (plaintext)."""
        if reply.articles:
            return render_articles(ArticlesReply(source=inbound.to, target=inbound.user_id), reply)
        return text_reply_xml(inbound.to, inbound.user_id, reply.render_wechat_text(), int(time.time()))

    def encode(self, xml: str, encrypted: bool, nonce: str, timestamp: int) -> str:
        if not encrypted:
            return xml
        return self.crypto.encrypt_message(xml, nonce, timestamp)
