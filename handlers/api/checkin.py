"""``POST /api/checkin``: a gate scanner (or a staff member's phone) admits a ticket.

The staff member's token names them; their cinema is the one whose tickets
they may admit. A scan is valid once; the scanner's ``nonce`` makes a
re-uploaded scan get the very same answer (a flaky network at the gate must
not turn "✅ 检票成功" into "⚠️ 已检过票"). Refusals (forged code, another
cinema's ticket, wrong day, used, refunded, too early, ended) come back as 409
with the reason in ``code`` and a Chinese ``message`` for the staff member.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from domain.seating import seat_name
from domain.ticketing import check_in
from handlers.api import serialise
from handlers.api.auth import staff_member
from handlers.api.context import API
from handlers.api.http import json_view, ok, read_json, str_field

# Details of the ticket are shown to the staff member only when it is their cinema's.
_SHOW_TICKET = frozenset({"ok", "used", "refunded", "wrong_day", "too_early", "ended"})


def _scan_key(userid: str, nonce: str | None) -> str | None:
    """The scanner's nonce, scoped to the staff member: nonces share one table with chat
    scans and other gates, and one gate's nonce must never replay another's answer."""
    if not nonce:
        return None
    return "api:" + hashlib.sha256(f"{userid}\0{nonce}".encode()).hexdigest()[:40]


def _secret_from(scanned: str) -> str:
    """The ticket secret from what was scanned: the code itself, or a ticket page link."""
    text = scanned.strip()
    if "/t/" in text:
        text = text.rsplit("/t/", 1)[1].split("?", 1)[0].removesuffix(".png")
    return text


@json_view
async def checkin(request: web.Request) -> web.Response:
    ctx = request.app[API]
    staff = await staff_member(request)
    body = await read_json(request)
    scanned = str_field(body, "secret", max_len=256)
    nonce = str_field(body, "nonce", required=False, max_len=64)
    assert scanned is not None
    now = ctx.clock.now()
    cinema_id: int = staff.cinema_id  # type: ignore[attr-defined]
    result = await check_in(
        _secret_from(scanned), cinema_id=cinema_id, staff=staff.userid, now=now,
        nonce=_scan_key(staff.userid, nonce),
    )
    out: dict[str, Any] = {"ok": result.ok, "code": result.code, "message": result.message}
    ticket = result.ticket
    show = ticket.showtime if ticket is not None else None
    # Another cinema's ticket stays opaque, also when a replayed nonce brings it back.
    if ticket is not None and result.code in _SHOW_TICKET and show.cinema_id == cinema_id:
        out["ticket"] = {
            "seat": ticket.seat,
            "seat_name": seat_name(ticket.seat),
            "kind": ticket.kind,
            "state": str(ticket.state),
            "order_no": ticket.order.no,
            "film": show.film.title,
            "hall": show.hall.name,
            "starts_at": serialise.when(show.starts_at),
            "checked_in_at": serialise.when(ticket.checked_in_at),
        }
    return ok(out, status=200 if result.ok else 409)
