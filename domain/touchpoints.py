"""Touchpoints: the places in a cinema where audiences rate their visit.

Each hall's exit, the restrooms, the ticket machines, the concession stand and
the e-ticket page have a touchpoint with a short ``code``. The code names its
WeChat parametric QR scene (``tp:<code>``: a scan follows the account or sends
SCAN with it) and its H5 survey page (``/s/<code>``). Two more are never printed:
the survey pushed after a show, and a rating given in plain chat.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from tortoise import fields
from tortoise.models import Model
from tortoise.transactions import in_transaction

from domain.cinemas import Cinema, Hall

SCENE_PREFIX = "tp"
CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


class TouchpointKind(StrEnum):
    HALL_EXIT = "hall_exit"
    RESTROOM = "restroom"
    TICKET_MACHINE = "ticket_machine"
    CONCESSION = "concession"
    ETICKET = "eticket"  # the link on the e-ticket page
    PUSH = "push"  # the survey pushed after a show
    CHAT = "chat"  # a rating given in chat, not after a scan


# What gets a printed QR code: a place someone can stick a sign on.
PRINTED = (
    TouchpointKind.HALL_EXIT, TouchpointKind.RESTROOM, TouchpointKind.TICKET_MACHINE,
    TouchpointKind.CONCESSION,
)
KIND_LABELS = {
    TouchpointKind.HALL_EXIT: "影厅出口", TouchpointKind.RESTROOM: "洗手间",
    TouchpointKind.TICKET_MACHINE: "自助取票机", TouchpointKind.CONCESSION: "卖品部",
    TouchpointKind.ETICKET: "电子票页面", TouchpointKind.PUSH: "散场推送",
    TouchpointKind.CHAT: "公众号对话",
}


class Touchpoint(Model):
    id = fields.IntField(primary_key=True)
    cinema_id = fields.IntField(db_index=True)
    code = fields.CharField(max_length=40, unique=True)  # in the QR scene and the survey URL
    name = fields.CharField(max_length=32)  # 3号厅出口, 东侧洗手间
    kind = fields.CharEnumField(TouchpointKind, max_length=16)
    hall = fields.CharField(max_length=16, null=True)  # the hall a hall exit belongs to
    position = fields.IntField(default=0)  # order on the printed sheet
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "touchpoint"

    @property
    def scene(self) -> str:
        return scene_for(self.code)

    @property
    def printed(self) -> bool:
        return self.kind in PRINTED


def scene_for(code: str) -> str:
    """The WeChat QR scene string of a touchpoint (1–64 characters)."""
    return f"{SCENE_PREFIX}:{code}"


def code_from_scene(scene_args: list[str]) -> str | None:
    """The code in a scene's arguments (``tp:demo-h3`` → ``demo-h3``), if well formed."""
    if len(scene_args) != 1 or not CODE.fullmatch(scene_args[0]):
        return None
    return scene_args[0]


def _hall_slug(hall: str) -> str:
    digits = "".join(ch for ch in hall if ch.isdigit())
    if digits:
        return f"h{digits}"
    ascii_part = "".join(ch for ch in hall.lower() if ch.isascii() and ch.isalnum())
    return ascii_part or "hall"


# Places every cinema has besides its halls: (slug, name, kind).
STANDARD_PLACES = (
    ("wc-east", "东侧洗手间", TouchpointKind.RESTROOM),
    ("wc-west", "西侧洗手间", TouchpointKind.RESTROOM),
    ("kiosk", "自助取票机", TouchpointKind.TICKET_MACHINE),
    ("bar", "卖品部", TouchpointKind.CONCESSION),
    ("eticket", "电子票页面", TouchpointKind.ETICKET),
    ("push", "散场推送", TouchpointKind.PUSH),
    ("chat", "公众号对话", TouchpointKind.CHAT),
)


async def ensure_touchpoints(cinema: Cinema, now: datetime) -> int:
    """Each hall's exit and the standard places, created when missing; returns how many
    were new. Idempotent: found by code."""
    halls = await Hall.filter(cinema=cinema).order_by("id")
    wanted: list[tuple[str, str, TouchpointKind, str | None]] = [
        (f"{cinema.code}-{_hall_slug(h.name)}", f"{h.name}出口", TouchpointKind.HALL_EXIT, h.name)
        for h in halls
    ]
    wanted += [(f"{cinema.code}-{slug}", name, kind, None) for slug, name, kind in STANDARD_PLACES]
    created = 0
    async with in_transaction() as conn:
        existing = set(
            await Touchpoint.filter(cinema_id=cinema.id).using_db(conn).values_list("code", flat=True)
        )
        for position, (code, name, kind, hall) in enumerate(wanted):
            code = code.lower()[:40]
            if code in existing or not CODE.fullmatch(code):
                continue
            await Touchpoint.create(
                cinema_id=cinema.id, code=code, name=name, kind=kind, hall=hall,
                position=position, created_at=now, using_db=conn,
            )
            created += 1
    return created


async def by_code(code: str) -> Touchpoint | None:
    return await Touchpoint.get_or_none(code=code.lower(), active=True)


async def of_cinema(cinema_id: int, *, printed_only: bool = False) -> list[Touchpoint]:
    query = Touchpoint.filter(cinema_id=cinema_id, active=True)
    if printed_only:
        query = query.filter(kind__in=[k.value for k in PRINTED])
    return await query.order_by("position", "id")


async def special(cinema_id: int, kind: TouchpointKind, now: datetime) -> Touchpoint:
    """The cinema's push or chat touchpoint, made if a cinema was seeded before they existed."""
    found = await Touchpoint.filter(cinema_id=cinema_id, kind=kind, active=True).order_by("id").first()
    if found is not None:
        return found
    cinema = await Cinema.get(id=cinema_id)
    await ensure_touchpoints(cinema, now)
    return await Touchpoint.filter(cinema_id=cinema_id, kind=kind).order_by("id").first()  # type: ignore[return-value]
