"""Records → the JSON the mini-program and the H5 pages read.

Money is always integer fen (``*_fen``); times are ISO 8601 with the Shanghai
offset, as people in the cinema read them; seats are labels ``"row-col"`` with
their Chinese names alongside.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from domain.catalog import Film, Showtime
from domain.orders import OPEN_STATES, ORDER_STATE_LABELS, Order, Ticket, TicketState
from domain.pricing import SEAT_NAMES, Quote
from domain.seating import SeatPlan, seat_name
from handlers.api.context import ApiContext

SHANGHAI = ZoneInfo("Asia/Shanghai")
TICKET_STATE_LABELS = {
    TicketState.ISSUED: "可入场",
    TicketState.CHECKED_IN: "已检票",
    TicketState.REFUNDED: "已退票",
    TicketState.CHANGED: "已改签",
}


def when(dt: datetime | None) -> str | None:
    return dt.astimezone(SHANGHAI).isoformat() if dt is not None else None


def seconds_left(expires_at: datetime, now: datetime) -> int:
    return max(int((expires_at - now).total_seconds()), 0)


def film(f: Film) -> dict[str, Any]:
    return {
        "id": f.id,
        "title": f.title,
        "aliases": list(f.aliases or []),
        "duration_min": f.duration_min,
        "genres": list(f.genres or []),
        "rating": f.rating,
        "formats": list(f.formats or []),
        "synopsis": f.synopsis,
        "release_date": f.release_date.isoformat() if f.release_date else None,
    }


def showtime(s: Showtime, now: datetime) -> dict[str, Any]:
    """A showtime whose ``film`` and ``hall`` are fetched."""
    return {
        "id": s.id,
        "cinema_id": s.cinema_id,  # type: ignore[attr-defined]
        "film": {"id": s.film.id, "title": s.film.title},
        "hall": {"id": s.hall.id, "name": s.hall.name, "screen": s.hall.screen},
        "starts_at": when(s.starts_at),
        "ends_at": when(s.ends_at),
        "format": s.format,
        "base_price_fen": s.base_price_fen,
        "cancelled": s.cancelled_at is not None,
        "on_sale": s.cancelled_at is None and s.starts_at > now,
    }


def seat_map(
    plan: SeatPlan, states: Mapping[str, str], mine: Collection[str]
) -> dict[str, Any]:
    """The plan row by row: each seat with its label, kind, state and place in the row.

    ``x`` is the seat's position in the row string (aisles count), so a page can draw
    the aisles; ``partner`` names the other half of a couple pair (sold together).
    """
    rows = []
    for r, blocks in enumerate(plan.rows, start=1):
        seats = []
        for block in blocks:
            for label, kind, x in zip(block.labels, block.kinds, block.positions, strict=True):
                if kind == "blocked":
                    state = "blocked"
                elif label in mine:
                    state = "mine"
                else:
                    state = states.get(label, "free")
                    state = state if state in ("sold", "held", "free") else "sold"
                item: dict[str, Any] = {
                    "label": label,
                    "col": plan.seats[label].col,
                    "x": x,
                    "kind": kind,
                    "state": state,
                }
                partner = plan.partner(label)
                if partner:
                    item["partner"] = partner
                seats.append(item)
        rows.append({"row": r, "seats": seats})
    return {"width": max((len(line) for line in plan.layout), default=0), "rows": rows}


def prices(q: Quote) -> dict[str, Any]:
    """Per-kind prices from a quote of one seat of each kind."""
    return {
        "per_kind": {line.kind: line.fen for line in q.lines},
        "list_per_kind": {line.kind: line.list_fen for line in q.lines},
        "kind_names": {line.kind: SEAT_NAMES.get(line.kind, line.kind) for line in q.lines},
        "tier": q.tier,
        "discount": q.discount,
    }


def ticket(ctx: ApiContext, t: Ticket) -> dict[str, Any]:
    base = ctx.public_url.rstrip("/")
    out: dict[str, Any] = {
        "id": t.id,
        "seat": t.seat,
        "seat_name": seat_name(t.seat),
        "kind": t.kind,
        "price_fen": t.price_fen,
        "state": str(t.state),
        "state_label": TICKET_STATE_LABELS.get(t.state, str(t.state)),
        "checked_in_at": when(t.checked_in_at),
        "page_url": f"{base}/t/{t.secret}",
    }
    if t.state == TicketState.ISSUED:
        out["secret"] = t.secret
        out["qr_url"] = f"{base}/t/{t.secret}.png"
    return out


def order(
    ctx: ApiContext,
    o: Order,
    now: datetime,
    *,
    show: Showtime | None = None,
    tickets: list[Ticket] | None = None,
    changed_from: str | None = None,
) -> dict[str, Any]:
    """An order (its buyer's view). ``show`` with film and hall fetched, when at hand."""
    out: dict[str, Any] = {
        "no": o.no,
        "state": str(o.state),
        "state_label": ORDER_STATE_LABELS.get(o.state, str(o.state)),
        "channel": o.channel,
        "showtime_id": o.showtime_id,  # type: ignore[attr-defined]
        "seats": list(o.seats),
        "seat_names": [seat_name(s) for s in o.seats],
        "quote": o.quote,
        "amount_fen": o.amount_fen,
        "paid_fen": o.paid_fen,
        "refunded_fen": o.refunded_fen,
        "created_at": when(o.created_at),
        "paid_at": when(o.paid_at),
        "expires_at": when(o.expires_at),
    }
    if show is not None:
        out["showtime"] = showtime(show, now)
    if changed_from is not None:
        out["changed_from"] = changed_from
    if o.state in OPEN_STATES:
        out["seconds_left"] = seconds_left(o.expires_at, now)
        if out["seconds_left"] > 0:
            out["pay_url"] = ctx.payments.pay_url(o)
    if tickets is not None:
        out["tickets"] = [ticket(ctx, t) for t in tickets]
    return out
