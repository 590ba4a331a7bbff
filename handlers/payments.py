"""Taking money: pay links for chat, JSAPI parameters for the mini-program, notifies, refunds.

One ``Payments`` per process, over either the sandbox bank (demo, tests) or
WeChat Pay v3. Both produce the same signed, encrypted notify to
``/api/pay/notify``, so everything after "the buyer paid" is the same code.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from collections.abc import Mapping
from typing import Any

import aiohttp

from bot.infra import tokens
from bot.infra.clock import Clock
from bot.wechat.pay import (
    PaymentNotice as WxPaymentNotice,
)
from bot.wechat.pay import (
    PayConfig,
    RefundNotice,
    SandboxGateway,
    SandboxKeys,
    WeChatPayClient,
    jsapi_params,
    notice_from,
    verify_notify,
)
from domain import keys
from domain.orders import Order

PAY_LINK = "pay"
NOTIFY_PATH = "/api/pay/notify"


class Payments:
    def __init__(
        self,
        *,
        config: PayConfig,
        gateway: SandboxGateway | WeChatPayClient,
        public_url: str,
        miniprogram: SandboxGateway | WeChatPayClient | None = None,
        secret_key: str,
        clock: Clock,
    ) -> None:
        self.config = config
        self.gateway = gateway
        # The mini-program pays under its own appid (its openids belong to it).
        self.miniprogram = miniprogram or gateway
        self.public_url = public_url.rstrip("/")
        self.secret_key = secret_key
        self.clock = clock

    @property
    def sandbox(self) -> bool:
        return isinstance(self.gateway, SandboxGateway)

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, settings: Any, clock: Clock) -> Payments:
        """From the settings: the sandbox's keys are made once and kept in the database."""
        notify_url = settings.public_url.rstrip("/") + NOTIFY_PATH
        if settings.pay_mode == "wechatpay":
            with open(settings.wechatpay_private_key) as f:
                private_key = f.read()
            with open(settings.wechatpay_public_key) as f:
                public_key = f.read()
            config = PayConfig(
                mchid=settings.wechatpay_mchid,
                appid=settings.wechat_appid,
                serial_no=settings.wechatpay_serial,
                private_key_pem=private_key,
                apiv3_key=settings.wechatpay_apiv3_key.encode(),
                platform_keys={settings.wechatpay_public_key_id: public_key},
                notify_url=notify_url,
                api_base=settings.wechatpay_api_base,
            )
            gateway: SandboxGateway | WeChatPayClient = WeChatPayClient(http, config)
            miniprogram: SandboxGateway | WeChatPayClient = WeChatPayClient(
                http, replace(config, appid=settings.miniprogram_appid)
            )
        else:
            stored = await keys.get_or_create(
                "paysandbox", lambda: {"keys": SandboxKeys.generate().to_json()}
            )
            sandbox_keys = SandboxKeys.from_json(stored["keys"])
            gateway = SandboxGateway(
                http, sandbox_keys, appid=settings.wechat_appid,
                mchid=settings.wechatpay_mchid, notify_url=notify_url,
                clock=lambda: clock.now().timestamp(),
            )
            config = gateway.cfg
            miniprogram = gateway
        return cls(
            config=config, gateway=gateway, public_url=settings.public_url,
            secret_key=settings.secret_key, clock=clock, miniprogram=miniprogram,
        )

    # Starting a payment ----------------------------------------------------------------
    def pay_url(self, order: Order) -> str:
        """The buyer's pay page for an order (chat links here); valid while the hold is."""
        token = tokens.sign(
            self.secret_key, PAY_LINK, order.no, order.expires_at.timestamp() + 15 * 60
        )
        return f"{self.public_url}/pay/{token}"

    def order_no_from(self, token: str) -> str:
        return tokens.verify(self.secret_key, PAY_LINK, token, self.clock.now().timestamp())

    async def jsapi(self, order: Order, description: str) -> dict[str, str]:
        """``wx.requestPayment`` parameters for the mini-program or the H5 pay page."""
        gateway = self.miniprogram if order.channel == "miniprogram" else self.gateway
        prepay_id = await gateway.create_jsapi(
            order.no, description[:127], order.amount_fen, order.openid
        )
        config = gateway.cfg
        return jsapi_params(
            config, prepay_id, int(self.clock.now().timestamp()), secrets.token_hex(16)
        )

    async def sandbox_pay(self, order: Order, origin: str | None = None) -> int:
        """The demo bank pays: it sends the signed notify to our own endpoint (at ``origin``,
        this server's address as the buyer reached it, when given)."""
        if not isinstance(self.gateway, SandboxGateway):
            raise RuntimeError("not in sandbox mode")
        return await self.gateway.pay(
            order.no, order.amount_fen, order.openid, self.clock.now().timestamp(),
            notify_url=f"{origin.rstrip('/')}{NOTIFY_PATH}" if origin else None,
        )

    # Hearing back ----------------------------------------------------------------------
    def verify(self, headers: Mapping[str, str], body: bytes) -> WxPaymentNotice | RefundNotice:
        """Raises ``bot.wechat.pay.NotifyRejected`` for anything not genuinely from WeChat Pay."""
        return notice_from(verify_notify(self.config, headers, body, self.clock.now().timestamp()))

    async def refund(
        self, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int, reason: str
    ) -> dict[str, Any]:
        return await self.gateway.refund(out_trade_no, out_refund_no, refund_fen, total_fen, reason)

    async def query_refund(self, out_refund_no: str) -> dict[str, Any]:
        return await self.gateway.query_refund(out_refund_no)

    async def drain(self) -> None:
        """Wait for the sandbox's refund notifies on their way (tests)."""
        if isinstance(self.gateway, SandboxGateway):
            await self.gateway.drain()

    async def close(self) -> None:
        if isinstance(self.gateway, SandboxGateway):
            await self.gateway.close()

