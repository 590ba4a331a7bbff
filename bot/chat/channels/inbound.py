"""What arrives: one typed value for every message, event and click."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Channel(StrEnum):
    WECHAT = "wechat"  # Official Account / mini-program customer service: audiences
    WECOM = "wecom"  # Enterprise WeChat app: staff, engineers, managers


@dataclass(frozen=True, slots=True)
class Inbound:
    channel: Channel
    kind: str  # text | image | voice | video | location | link | event | unknown
    user_id: str  # openid (WeChat) or WeCom userid
    to: str  # the account that received it (gh_… / corp id)
    create_time: int  # seconds since the epoch, as WeChat sent it
    msg_id: int | None = None
    # For kind == "event": subscribe, unsubscribe, scan, click, view,
    # scancode_waitmsg, enter_agent, template_card_event, location, …
    event: str | None = None
    text: str = ""
    event_key: str | None = None  # CLICK key, VIEW url, card button key
    scene: str | None = None  # parametric QR scene (``qrscene_`` already stripped)
    scan_result: str | None = None  # scancode_waitmsg: what the camera read
    media_id: str | None = None
    pic_url: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    label: str | None = None  # location label, or voice recognition text
    task_id: str | None = None  # template card task id
    response_code: str | None = None  # single-use code to update a clicked card
    agent_id: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dedup_key(self) -> str:
        """WeChat's own retry identity: sender+MsgId for messages, sender+time+event for
        events. The sender is part of it because a MsgId is only unique per account as
        WeChat hands it out: anyone can send another's MsgId, and must not get its reply."""
        if self.msg_id:
            return f"{self.channel}:m:{self.user_id}:{self.msg_id}"
        # A card click names its card and its button: two buttons of one card tapped in
        # the same second are two clicks, a retry of one click is the same.
        extra = ":".join(p for p in (self.task_id, self.event_key) if p)
        return f"{self.channel}:e:{self.user_id}:{self.create_time}:{self.event}:{extra}"

    @property
    def is_event(self) -> bool:
        return self.kind == "event"
