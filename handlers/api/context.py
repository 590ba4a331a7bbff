"""What the JSON API and the pages need from the running app, reached via ``API``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from bot.infra.clock import Clock
from bot.wechat.api import WeChatApi
from domain.refunds import RefundAlert
from domain.ticketing import Inventory
from handlers.payments import Payments
from handlers.ticket_messages import TicketMessages


@dataclass
class ApiContext:
    clock: Clock
    inventory: Inventory
    payments: Payments
    notify: TicketMessages
    wechat: WeChatApi  # for the mini-program login (jscode2session)
    secret_key: str
    public_url: str
    miniprogram_appid: str = ""
    miniprogram_secret: str = ""
    # Hooks into the app: count notify outcomes, wake the outbox sender after a change.
    metrics_notify: Callable[[str], None] = field(default=lambda outcome: None)
    wake_sender: Callable[[], None] = field(default=lambda: None)
    # The duty manager hears of a refund WeChat Pay reports abnormal or closed.
    refund_alerts: RefundAlert | None = None


API = web.AppKey("ticket_api", ApiContext)
