"""WeCom (Enterprise WeChat) app callbacks: always encrypted."""

from __future__ import annotations

from collections.abc import Mapping

from wechatpy.enterprise import parse_message
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.replies import ArticlesReply, TextReply
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from bot.chat.channels.inbound import Channel, Inbound
from bot.chat.channels.mapping import to_inbound
from bot.chat.channels.security import (
    CallbackRejected,
    require_fresh,
    require_params,
    require_signature,
    sha1_signature,
)
from bot.chat.channels.wechat import GARBAGE_ERRORS, envelope, refuse_doctype, render_articles
from bot.chat.replies import Reply


class WeComCodec:
    channel = Channel.WECOM

    def __init__(
        self, token: str, aes_key: str, corp_id: str, agent_id: int, tolerance: int = 300
    ) -> None:
        self.token = token
        self.corp_id = corp_id
        self.agent_id = agent_id
        self.tolerance = tolerance
        self.crypto = WeChatCrypto(token, aes_key, corp_id)

    def verify_url(self, query: Mapping[str, str], now: float) -> str:
        """URL verification: decrypt ``echostr`` and hand back the plaintext as-is."""
        q = dict(query)
        msg_signature, timestamp, nonce, echostr = require_params(
            q, "msg_signature", "timestamp", "nonce", "echostr"
        )
        require_fresh(timestamp, now, self.tolerance)
        require_signature(sha1_signature(self.token, timestamp, nonce, echostr), msg_signature)
        try:
            plain = self.crypto.check_signature(msg_signature, timestamp, nonce, echostr)
        except InvalidSignatureException:
            raise CallbackRejected(403, "bad_signature") from None
        except InvalidCorpIdException:
            raise CallbackRejected(403, "wrong_corpid") from None
        except GARBAGE_ERRORS as exc:
            raise CallbackRejected(400, "bad_echostr", type(exc).__name__) from None
        return plain if isinstance(plain, str) else plain.decode("utf-8")

    def decode(self, query: Mapping[str, str], body: bytes, now: float) -> tuple[Inbound, bool]:
        q = dict(query)
        msg_signature, timestamp, nonce = require_params(q, "msg_signature", "timestamp", "nonce")
        require_fresh(timestamp, now, self.tolerance)
        outer = envelope(body)
        encrypt = outer.get("Encrypt")
        if not isinstance(encrypt, str) or not encrypt:
            raise CallbackRejected(400, "bad_xml", "no <Encrypt>")
        require_signature(sha1_signature(self.token, timestamp, nonce, encrypt), msg_signature)
        try:
            plain = self.crypto.decrypt_message(outer, msg_signature, timestamp, nonce)
        except InvalidSignatureException:
            raise CallbackRejected(403, "bad_signature") from None
        except InvalidCorpIdException:
            raise CallbackRejected(403, "wrong_corpid") from None
        except GARBAGE_ERRORS as exc:
            raise CallbackRejected(400, "bad_ciphertext", type(exc).__name__) from None
        try:
            refuse_doctype(plain)
            message = parse_message(plain)
        except GARBAGE_ERRORS as exc:
            raise CallbackRejected(400, "bad_message", type(exc).__name__) from None
        if message is None:
            raise CallbackRejected(400, "bad_message", "empty")
        return to_inbound(message, Channel.WECOM), True

    def render(self, reply: Reply, inbound: Inbound) -> str:
        common = {"source": inbound.to, "target": inbound.user_id, "agent": inbound.agent_id}
        if reply.articles:
            return render_articles(ArticlesReply(**common), reply)
        return TextReply(content=reply.render_plain_text(), **common).render()

    def encode(self, xml: str, encrypted: bool, nonce: str, timestamp: int) -> str:
        return self.crypto.encrypt_message(xml, nonce, timestamp)
