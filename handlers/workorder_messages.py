"""Who hears what when a work order changes: WeCom cards for staff, a message for the reporter.

``WorkOrderMessages`` is the ``notify`` of ``domain.workorders``: every change
calls it inside its own transaction, so a card, a card update or a message is
recorded (outbox) exactly when the change is — and once per order version and
recipient however often a notify is replayed.

Cards are WeCom ``button_interaction`` template cards, one per recipient (a
task_id names one card send). A card is changed later with
``update_template_card``, which needs a single-use response_code: the one a
click brought (for the person who clicked), else the one WeCom answered when
the card was sent (kept on the card's outbox row). A card whose codes are
spent is not updated; the people who must know get a new card or a line of
text instead.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tortoise.backends.base.client import BaseDBAsyncClient

from bot.infra.clock import Clock, local_time_text
from bot.infra.strict import parse_ascii_int
from bot.wechat.api import CARD_MAX_ROWS, button_card
from domain.cinemas import Cinema
from domain.outbox import OutboundMessage, OutboundStatus, enqueue
from domain.people import Staff
from domain.workorders import (
    CATEGORY_LABELS,
    KIND_LABELS,
    STATE_LABELS,
    TEAM_LABELS,
    State,
    WorkOrder,
    managers,
    sla,
)

# What a card offers in each state: (key action, label, style).
BUTTONS = {"ack": ("接单", 1), "fwd": ("转派", 2), "done": ("完成", 1)}
WAITING = (State.OPEN, State.ASSIGNED, State.ESCALATED, State.REOPENED)
WORKING = (State.ACKNOWLEDGED, State.IN_PROGRESS, State.PAUSED)
FINISHED = {State.RESOLVED: "✅ 已完成", State.CLOSED: "已关闭"}
AUDIENCE = "audience"
STAFF_ROLES = ("staff", "engineer", "manager")


def buttons_for(state: State | str) -> list[str]:
    if state in WAITING:
        return ["ack", "fwd", "done"]
    if state in WORKING:
        return ["fwd", "done"]
    return []


def button_key(action: str, order_id: int, card_version: int) -> str:
    return f"wo:{action}:{order_id}:{card_version}"


def task_id_for(order: WorkOrder, letter: str, recipient: str) -> str:
    """Unique per card send (WeCom refuses a task_id twice): order, version, kind, person."""
    digest = hashlib.sha1(recipient.encode("utf-8")).hexdigest()[:6]
    return f"wo{order.id}v{order.version}{letter}{digest}"


def place_text(order: WorkOrder) -> str:
    parts = []
    if order.hall:
        parts.append(order.hall)
    if order.seat:
        row, _, col = order.seat.partition("-")
        parts.append(f"{row}排{col}座" if col else order.seat)
    if order.touchpoint:
        parts.append(order.touchpoint)
    return " ".join(parts) or "未说明"


def what_text(order: WorkOrder) -> str:
    return f"{KIND_LABELS.get(order.kind, order.kind)}·{CATEGORY_LABELS.get(order.category, order.category)}"


def reporter_text(order: WorkOrder) -> str:
    """Audiences are never named on a card; colleagues are."""
    if order.reporter_role == AUDIENCE:
        return "顾客"
    if order.reporter_role == "system":
        return "系统"
    return order.reporter_name or order.reporter


async def deadline_text(
    order: WorkOrder, now: datetime, using: BaseDBAsyncClient | None = None,
    cinema: Cinema | None = None,
) -> str:
    """「10:35前接单」「11:00前完成」, from the SLA clocks of the order's timeline."""
    if order.state in FINISHED:
        return "已完成"
    ack, resolve = await sla(order, now, cinema, using=using)
    clock = ack if ack.running else resolve
    verb = "接单" if clock.name == "ack" else "完成"
    if clock.paused:
        return f"暂停计时（等配件），恢复后继续{verb}时限"
    if clock.due_at is None:
        return "—"
    if clock.breached:
        return f"⚠️ 已超时（应{local_time_text(clock.due_at, now)}前{verb}）"
    return f"{local_time_text(clock.due_at, now)}前{verb}"


@dataclass(frozen=True, slots=True)
class Click:
    """The click that caused a change: its code updates the clicker's card."""

    userid: str
    response_code: str
    task_id: str


class KindView(Protocol):
    """How one kind of work order draws its own cards (ALERT: the ``handlers.alert_cards``
    module). Handed in by the composition root, so this module never imports its views."""

    async def card(
        self, desk: WorkOrderMessages, order: WorkOrder, conn: BaseDBAsyncClient | None,
        task_id: str, card_version: int, *, head: str = "", copy: bool = False,
        keys: list[str] | None = None,
    ) -> dict[str, Any]: ...

    async def warn_staff(
        self, desk: WorkOrderMessages, order: WorkOrder, conn: BaseDBAsyncClient
    ) -> None: ...

    def finished_label(self, order: WorkOrder) -> str: ...

    def buttons_for(self, state: State | str) -> list[str]: ...


class WorkOrderMessages:
    """The ``notify`` of ``domain.workorders`` (see the module docstring).

    ``views``: the kinds that draw their own cards (``{Kind.ALERT: handlers.alert_cards}``).
    Needs only plain values, so a scheduled job can be handed one. ``wake`` (optional)
    nudges the outbox sender; handlers call :meth:`wake` after a change has committed.
    """

    def __init__(
        self, public_url: str, wecom_agent_id: int, clock: Clock, *,
        views: Mapping[str, KindView], wake: Any = None,
    ) -> None:
        self.public_url = public_url.rstrip("/")
        self.agent_id = wecom_agent_id
        self.clock = clock
        self.views = dict(views)
        self._wake = wake
        self.click: Click | None = None

    def clicked(self, userid: str, response_code: str | None, task_id: str | None) -> WorkOrderMessages:
        """The same notify, knowing that ``userid`` clicked card ``task_id``."""
        if not response_code or not task_id:
            return self
        bound = WorkOrderMessages(
            self.public_url, self.agent_id, self.clock, views=self.views, wake=self._wake
        )
        bound.click = Click(userid, response_code, task_id)
        return bound

    def wake(self) -> None:
        if self._wake is not None:
            self._wake()

    async def __call__(
        self, event: str, order: WorkOrder, *, using: BaseDBAsyncClient, **info: Any
    ) -> None:
        react = getattr(self, f"_on_{event}", None)
        if react is not None:
            await react(order, using, info)

    # --- the events --------------------------------------------------------------------------

    async def _on_assign(self, order: WorkOrder, conn: BaseDBAsyncClient, info: dict[str, Any]) -> None:
        first = info.get("before") == State.OPEN
        new = order.assignee
        click = self.click
        fresh: set[int] = set()
        # Whoever took the order by clicking their own card keeps that card (updated below).
        if new and not (click and click.userid == new):
            head = "🆕 " if first else "↪️ 转给你 "
            fresh.add(await self._send_card(order, conn, new, "c", head=head))
        if first:
            for watcher in order.watchers:
                if watcher != new:
                    fresh.add(await self._send_card(order, conn, watcher, "c", copy=True))
        await self._update_holders(order, conn, fresh)

    async def _on_acknowledge(self, order: WorkOrder, conn: BaseDBAsyncClient, info: dict[str, Any]) -> None:
        await self._update_holders(order, conn)

    _on_start = _on_acknowledge
    _on_pause = _on_acknowledge
    _on_resume = _on_acknowledge

    async def _on_resolve(self, order: WorkOrder, conn: BaseDBAsyncClient, info: dict[str, Any]) -> None:
        by = info.get("by")
        note = f"✅ {order.ref} 已完成：{order.action}"
        await self._update_holders(order, conn, fallback=note)
        await self._tell_reporter(order, conn, by_user=getattr(by, "user_id", None))

    async def _on_close(self, order: WorkOrder, conn: BaseDBAsyncClient, info: dict[str, Any]) -> None:
        await self._update_holders(order, conn, fallback=f"{order.ref} 已关闭。")

    async def _on_reopen(self, order: WorkOrder, conn: BaseDBAsyncClient, info: dict[str, Any]) -> None:
        fresh: set[int] = set()
        if order.assignee:
            fresh.add(await self._send_card(order, conn, order.assignee, "c", head="🔁 重新打开 "))
        await self._update_holders(order, conn, fresh)

    async def _on_escalate(self, order: WorkOrder, conn: BaseDBAsyncClient, info: dict[str, Any]) -> None:
        """A breach: the new assignee gets the card; the previous one and the managers a copy."""
        clock_name = info.get("clock")
        head = "⚠️ 超时未接单 " if clock_name == "ack" else "⚠️ 超时未完成 "
        fresh: set[int] = set()
        if order.assignee:
            fresh.add(await self._send_card(order, conn, order.assignee, "e", head=head))
        for manager in await managers(order.cinema_id, using=conn):
            if manager.userid != order.assignee:
                fresh.add(await self._send_card(order, conn, manager.userid, "e", head=head, copy=True))
        # The previous assignee's cards now say who has it; if none can be updated, a copy
        # tells them.
        updated = await self._update_holders(order, conn, fresh)
        previous = info.get("assignee_before")
        if previous and previous != order.assignee and previous not in updated:
            await self._send_card(order, conn, previous, "e", head=head, copy=True)

    async def _on_sla_warning(self, order: WorkOrder, conn: BaseDBAsyncClient, info: dict[str, Any]) -> None:
        clock = info.get("clock")
        if not order.assignee or clock is None:
            return
        left = max(1, math.ceil((clock.target_s - clock.elapsed_s) / 60))
        verb = "接单" if clock.name == "ack" else "完成"
        await self._send_card(
            order, conn, order.assignee, f"w{clock.name[0]}", head=f"⏰ 还有{left}分钟超时（{verb}） ",
            key_part=f"warn-{clock.name}",
        )

    # --- alert orders (handlers.alert_cards) ----------------------------------------------------

    async def _on_opened(self, order: WorkOrder, conn: BaseDBAsyncClient, info: dict[str, Any]) -> None:
        view = self.views.get(order.kind)
        if view is not None:
            await view.warn_staff(self, order, conn)

    async def _on_alert_update(self, order: WorkOrder, conn: BaseDBAsyncClient, info: dict[str, Any]) -> None:
        """An alert joined the order or rose in severity: every card is redrawn. A rise in
        priority is news: the holder gets a fresh card (whose code also lets the final
        「已恢复」 reach it), and the floor staff may need to know. A holder whose card can no
        longer be updated (its codes spent) gets a fresh one too."""
        raised = bool(info.get("raised"))
        fresh: set[int] = set()
        if raised and order.assignee:
            fresh.add(await self._send_card(order, conn, order.assignee, "u", head="⬆️ 升级 ",
                                            key_part="raised"))
        updated = await self._update_holders(order, conn, fresh)
        if not raised and order.assignee and order.assignee not in updated:
            await self._send_card(order, conn, order.assignee, "u", head="➕ 新告警 ", key_part="joined")
        view = self.views.get(order.kind)
        if raised and view is not None:
            await view.warn_staff(self, order, conn)

    async def _on_alert_reminder(self, order: WorkOrder, conn: BaseDBAsyncClient, info: dict[str, Any]) -> None:
        n = int(info.get("n") or 1)
        if order.assignee:
            await self._send_card(order, conn, order.assignee, f"r{n}", head=f"🔔 第{n}次提醒 ",
                                  key_part=f"remind{n}")

    async def _on_photo(self, order: WorkOrder, conn: BaseDBAsyncClient, info: dict[str, Any]) -> None:
        media = str(info.get("media") or "")
        if not order.assignee or not media:
            return
        who = reporter_text(order)
        head = f"📷 {order.ref}（{place_text(order)}）{who}补充了照片"
        if media.startswith("http"):
            payload: dict[str, Any] = {
                "msgtype": "news",
                "agentid": self.agent_id,
                "news": {"articles": [{
                    "title": head, "description": order.summary[:60], "url": media, "picurl": media,
                }]},
            }
        else:
            payload = self._text(f"{head}（图片编号 {media[:24]}）")
        await enqueue(
            channel="wecom", recipient=order.assignee, payload=payload,
            idempotency_key=f"wo:{order.id}:photo:{len(order.photos)}:{order.assignee}",
            now=self.clock.now(), using=conn,
        )

    # --- the reporter --------------------------------------------------------------------------

    async def _tell_reporter(self, order: WorkOrder, conn: BaseDBAsyncClient, by_user: str | None) -> None:
        if order.reporter_role == AUDIENCE and order.source in ("chat", "qr"):
            text = (
                f"您反馈的问题已处理 ✅\n编号 {order.ref}：{order.summary[:40]}\n"
                f"处理结果：{order.action}\n"
                "感谢您的耐心！如果还有问题，直接回复告诉我们。"
            )
            await enqueue(
                channel="wechat", recipient=order.reporter,
                payload={"msgtype": "text", "text": {"content": text}},
                idempotency_key=f"wo:{order.id}:v{order.version}:resolved:{order.reporter}",
                now=self.clock.now(), using=conn,
            )
        elif order.reporter_role in STAFF_ROLES and order.reporter != by_user:
            await enqueue(
                channel="wecom", recipient=order.reporter,
                payload=self._text(f"✅ 你报的 {order.ref}（{order.summary[:40]}）已处理：{order.action}"),
                idempotency_key=f"wo:{order.id}:v{order.version}:resolved:{order.reporter}",
                now=self.clock.now(), using=conn,
            )

    # --- cards ---------------------------------------------------------------------------------

    async def card(
        self, order: WorkOrder, conn: BaseDBAsyncClient | None, task_id: str, card_version: int,
        *, head: str = "", copy: bool = False, keys: list[str] | None = None,
    ) -> dict[str, Any]:
        """The template card for ``order`` as it is now; ``keys``: the actions it may offer."""
        view = self.views.get(order.kind)
        if view is not None:
            return await view.card(self, order, conn, task_id, card_version, head=head,
                                   copy=copy, keys=keys)
        now = self.clock.now()
        cinema = await Cinema.get_or_none(id=order.cinema_id).using_db(conn)
        assignee = (
            await Staff.get_or_none(userid=order.assignee).using_db(conn) if order.assignee else None
        )
        rows = [
            ("地点", place_text(order)),
            ("报告人", reporter_text(order)),
            ("状态", STATE_LABELS.get(order.state, str(order.state))),
            ("时限", await deadline_text(order, now, conn, cinema)),
            ("负责人", assignee.name if assignee else (order.assignee or TEAM_LABELS.get(order.team, "—"))),
        ]
        if order.state in FINISHED and order.action:
            rows.append(("处理", order.action[:30]))
        elif order.photos:
            rows.append(("照片", f"{len(order.photos)}张（已发送）"))
        actions = buttons_for(order.state) if keys is None else keys
        source = f"影城工单 · {cinema.name if cinema else ''}" + ("（抄送）" if copy else "")
        return button_card(
            task_id,
            f"{head}{what_text(order)} {order.ref}"[:36],
            f"{order.severity} · {order.summary}"[:44],
            rows[:CARD_MAX_ROWS],
            [(button_key(a, order.id, card_version), *BUTTONS[a]) for a in actions]
            or [(button_key("fwd", order.id, card_version), *BUTTONS["fwd"])],
            source=source,
        )

    async def _send_card(
        self, order: WorkOrder, conn: BaseDBAsyncClient, recipient: str, letter: str, *,
        head: str = "", copy: bool = False, key_part: str = "card",
    ) -> int:
        """A new card for ``recipient``; returns its outbox row id."""
        task_id = task_id_for(order, letter, recipient)
        card = await self.card(order, conn, task_id, order.version, head=head, copy=copy)
        row, _ = await enqueue(
            channel="wecom", recipient=recipient,
            payload={"msgtype": "template_card", "agentid": self.agent_id, "template_card": card},
            idempotency_key=f"wo:{order.id}:v{order.version}:{key_part}:{recipient}",
            now=self.clock.now(), using=conn,
        )
        return int(row.id)

    async def _update_holders(
        self, order: WorkOrder, conn: BaseDBAsyncClient, fresh: set[int] | None = None, *,
        fallback: str | None = None,
    ) -> set[str]:
        """Bring every card of this order on anyone's phone up to date (all but the ``fresh``
        ones just made); returns whose cards were updated."""
        fresh = fresh or set()
        rows = await OutboundMessage.filter(
            idempotency_key__startswith=f"wo:{order.id}:"
        ).using_db(conn).order_by("id")
        spent = {r.payload.get("response_code") for r in rows if r.payload.get("kind") == "update_card"}
        cards = [r for r in rows if r.payload.get("msgtype") == "template_card" and r.id not in fresh]
        click = self.click
        updated: set[str] = set()
        stale: set[str] = set()
        for row in cards:
            code = None
            if (
                click is not None and _task(row) == click.task_id and row.recipient == click.userid
                and click.response_code not in spent
            ):
                code = click.response_code
            elif row.status == OutboundStatus.SENT and row.response:
                stored = row.response.get("response_code")
                code = stored if stored and stored not in spent else None
            if code is None and row.status != OutboundStatus.PENDING:
                stale.add(row.recipient)
                continue
            fresh_card = await self._refreshed(order, conn, row)
            if code is not None:
                spent.add(code)
                payload: dict[str, Any] = {
                    "kind": "update_card", "userids": [row.recipient], "response_code": code,
                }
                if isinstance(fresh_card, str):
                    payload["button_replace_name"] = fresh_card
                else:
                    payload["template_card"] = fresh_card
                await enqueue(
                    channel="wecom", recipient=row.recipient, payload=payload,
                    idempotency_key=f"wo:{order.id}:v{order.version}:upd:{_task(row)}",
                    now=self.clock.now(), using=conn,
                )
                updated.add(row.recipient)
            elif row.status == OutboundStatus.PENDING and await self._rewrite_unsent(row, fresh_card, conn):
                updated.add(row.recipient)
            else:
                stale.add(row.recipient)
        if fallback:
            for who in sorted(stale - updated):
                await enqueue(
                    channel="wecom", recipient=who, payload=self._text(fallback),
                    idempotency_key=f"wo:{order.id}:v{order.version}:note:{who}",
                    now=self.clock.now(), using=conn,
                )
        return updated

    async def _refreshed(
        self, order: WorkOrder, conn: BaseDBAsyncClient, row: OutboundMessage
    ) -> dict[str, Any] | str:
        """The card ``row`` sent, as it should look now (or the label its buttons become)."""
        view = self.views.get(order.kind)
        if order.state in FINISHED:
            return view.finished_label(order) if view else FINISHED[order.state]
        old = row.payload.get("template_card") or {}
        offered = [_action_of(b.get("key", "")) for b in old.get("button_list") or []]
        menu = view.buttons_for(order.state) if view else buttons_for(order.state)
        keys = [a for a in menu if a in offered]
        if not keys:
            return STATE_LABELS.get(order.state, str(order.state))
        source = (old.get("source") or {}).get("desc", "")
        card = await self.card(
            order, conn, _task(row), _card_version(old, order.version), keys=keys,
            copy=source.endswith("（抄送）"),
        )
        return card

    async def _rewrite_unsent(
        self, row: OutboundMessage, fresh: dict[str, Any] | str, conn: BaseDBAsyncClient
    ) -> bool:
        """A card not yet sent (and not being sent) goes out as it should look now."""
        if isinstance(fresh, str):
            old = dict(row.payload["template_card"])
            fresh = {**old, "main_title": {**old.get("main_title", {}), "desc": fresh}}
        payload = {**row.payload, "template_card": fresh}
        changed = await OutboundMessage.filter(
            id=row.id, status=OutboundStatus.PENDING, claimed_by__isnull=True
        ).using_db(conn).update(payload=payload)
        return bool(changed)

    def _text(self, content: str) -> dict[str, Any]:
        return {"msgtype": "text", "agentid": self.agent_id, "text": {"content": content}}


def _task(row: OutboundMessage) -> str:
    return str((row.payload.get("template_card") or {}).get("task_id") or "")


def _action_of(key: str) -> str:
    parts = key.split(":")
    return parts[1] if len(parts) >= 2 and parts[0] in ("wo", "al") else ""  # al: alert cards


def _card_version(card: dict[str, Any], default: int) -> int:
    for button in card.get("button_list") or []:
        parts = str(button.get("key", "")).split(":")
        if len(parts) == 4 and (version := parse_ascii_int(parts[3])) is not None:
            return version
    return default

