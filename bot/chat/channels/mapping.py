"""wechatpy message objects → :class:`Inbound`."""

from __future__ import annotations

import math
import re
from typing import Any

from bot.chat.channels.inbound import Channel, Inbound
from bot.chat.channels.security import CallbackRejected
from bot.infra.strict import parse_ascii_int

# WeCom userids are 1–64 bytes; openids are 28 characters.
MAX_USER_ID_BYTES = 64
# The alphabets the ids are made of: an openid (or unionid) is letters, digits, "_" and "-";
# a WeCom userid also "." and "@". Anything else ("|", spaces, control characters, Chinese)
# is no id WeChat hands out, and would break the keys we build from ids (seat owners,
# dedup keys, dialog state).
USER_ID = {
    Channel.WECHAT: re.compile(r"[A-Za-z0-9_-]{1,%d}" % MAX_USER_ID_BYTES),
    Channel.WECOM: re.compile(r"[A-Za-z0-9_.@-]{1,%d}" % MAX_USER_ID_BYTES),
}


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    # "nan" and "inf" parse as floats but are no coordinate.
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    """A numeric field (CreateTime, MsgId, AgentID) when it is ASCII digits; None when
    absent (AgentID on WeChat) or anything else."""
    return parse_ascii_int(value)


def to_inbound(message: Any, channel: Channel) -> Inbound:
    data: dict[str, Any] = dict(getattr(message, "_data", {}) or {})
    msg_type = str(data.get("MsgType", "unknown")).lower()
    user_id = data.get("FromUserName")
    if not isinstance(user_id, str) or USER_ID[channel].fullmatch(user_id) is None:
        # Nobody to answer (or to remember): the message is malformed.
        raise CallbackRejected(400, "bad_message", "FromUserName")
    to = str(data.get("ToUserName") or "")
    create_time = _int(data.get("CreateTime")) or 0
    agent_id = _int(data.get("AgentID"))
    if msg_type == "text":  # most of the traffic: keywords spelled out, no ** merge
        return Inbound(
            channel=channel, kind="text", user_id=user_id, to=to, create_time=create_time,
            msg_id=_int(data.get("MsgId") or data.get("MsgID")),
            text=str(data.get("Content") or "").strip(), agent_id=agent_id, raw=data,
        )
    common: dict[str, Any] = {
        "channel": channel,
        "user_id": user_id,
        "to": to,
        "create_time": create_time,
        "msg_id": _int(data.get("MsgId") or data.get("MsgID")) if msg_type != "event" else None,
        "agent_id": agent_id,
        "raw": data,
    }
    if msg_type == "image":
        return Inbound(
            kind="image", pic_url=data.get("PicUrl"), media_id=data.get("MediaId"), **common
        )
    if msg_type == "voice":
        # With speech recognition on, WeChat hands us the words too: treat them as text.
        recognition = str(data.get("Recognition") or "").strip()
        return Inbound(
            kind="voice", media_id=data.get("MediaId"), text=recognition, label=recognition, **common
        )
    if msg_type in ("video", "shortvideo"):
        return Inbound(kind="video", media_id=data.get("MediaId"), **common)
    if msg_type == "location":
        return Inbound(
            kind="location",
            latitude=_float(data.get("Location_X")),
            longitude=_float(data.get("Location_Y")),
            label=data.get("Label"),
            **common,
        )
    if msg_type == "link":
        return Inbound(kind="link", text=str(data.get("Title") or ""), **common)
    if msg_type != "event":
        return Inbound(kind="unknown", **common)

    # wechatpy has already normalised subscribe-by-QR (event ``subscribe_scan``, prefix stripped).
    event = str(getattr(message, "event", None) or data.get("Event") or "").lower()
    key = data.get("EventKey")
    key = str(key) if key is not None else None
    scene: str | None = None
    if event == "subscribe_scan":
        event, scene = "subscribe", key
    elif event == "subscribe" and key and key.startswith("qrscene_"):
        scene = key[len("qrscene_") :]
    elif event == "scan":
        scene = key
    scan_info = data.get("ScanCodeInfo") or {}
    scan_result = scan_info.get("ScanResult") if isinstance(scan_info, dict) else None
    if event == "location":
        common["label"] = None
        return Inbound(
            kind="event",
            event=event,
            latitude=_float(data.get("Latitude")),
            longitude=_float(data.get("Longitude")),
            **common,
        )
    return Inbound(
        kind="event",
        event=event,
        event_key=key,
        scene=scene,
        scan_result=scan_result,
        task_id=data.get("TaskId"),
        response_code=data.get("ResponseCode"),
        **common,
    )
