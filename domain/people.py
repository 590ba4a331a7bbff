"""Who talks to cinebot: audience members (WeChat openid) and staff (WeCom userid)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.models import Model
from tortoise.transactions import in_transaction

from domain import audit
from domain.cinemas import Cinema


class StaffRole(StrEnum):
    STAFF = "staff"
    ENGINEER = "engineer"
    MANAGER = "manager"


class Member(Model):
    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64, unique=True)
    nickname = fields.CharField(max_length=64, default="")
    phone = fields.CharField(max_length=20, null=True)
    tier = fields.CharField(max_length=16, default="regular")
    subscribed = fields.BooleanField(default=False)
    subscribe_scene = fields.CharField(max_length=64, null=True)
    first_seen = fields.DatetimeField()
    last_seen = fields.DatetimeField()

    class Meta:
        table = "member"


class Staff(Model):
    id = fields.IntField(primary_key=True)
    cinema: fields.ForeignKeyRelation[Cinema] = fields.ForeignKeyField(
        "models.Cinema", related_name="staff", on_delete=fields.CASCADE
    )
    userid = fields.CharField(max_length=64, unique=True)  # WeCom userid, unique in the corp
    name = fields.CharField(max_length=32)
    role = fields.CharEnumField(StaffRole, max_length=16)
    phone = fields.CharField(max_length=20, null=True)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "staff"


async def touch_member(openid: str, now: datetime) -> tuple[Member, bool]:
    """The member for an openid, created on first contact. Returns (member, created).

    ``touch_members`` for one openid, as cheap as can be: it runs on every API request,
    so a known member's ``last_seen`` is left alone, and a new member is one
    autocommitted INSERT (first contacts arrive in bursts, a QR code at a hall exit,
    and an explicit transaction would double their cost)."""
    [result] = await _touch([openid], now, batch=False)
    return result


async def touch_members(openids: list[str], now: datetime) -> list[tuple[Member, bool]]:
    """``touch_member`` for a batch (the actor directory's group commit): one SELECT,
    and for new openids one INSERT and one SELECT, plus one UPDATE moving ``last_seen``
    of those that were known. Results are in the order of ``openids``."""
    return await _touch(openids, now, batch=True)


async def _touch(openids: list[str], now: datetime, *, batch: bool) -> list[tuple[Member, bool]]:
    """Both of them: look the openids up, create the missing ones and, for a batch, move
    the known ones' ``last_seen`` on."""
    unique = list(dict.fromkeys(openids))
    found = {m.openid: m for m in await Member.filter(openid__in=unique)}
    missing = [o for o in unique if o not in found]
    created: set[str] = set()
    if batch and missing:
        await Member.bulk_create(
            [Member(openid=o, first_seen=now, last_seen=now) for o in missing],
            ignore_conflicts=True,  # another process's first contact may have won
        )
        for m in await Member.filter(openid__in=missing):
            found[m.openid] = m
            created.add(m.openid)
    elif missing:
        [o] = missing  # touch_member: one openid
        try:
            found[o] = await Member.create(openid=o, first_seen=now, last_seen=now)
            created.add(o)
        except IntegrityError:
            # Two first messages at once: the other one created it.
            found[o] = await Member.get(openid=o)
    known = [o for o in unique if o not in created]
    if batch and known:
        await Member.filter(openid__in=known).update(last_seen=now)
    return [(found[o], o in created) for o in openids]


async def member_phones(openids: list[str]) -> list[str | None]:
    """The phone numbers members gave (None if none or unknown), in the order asked."""
    rows = await Member.filter(openid__in=list(set(openids))).values_list("openid", "phone")
    phones = dict(rows)
    return [phones.get(o) or None for o in openids]


async def set_subscription(
    openid: str, subscribed: bool, now: datetime, scene: str | None = None
) -> Member:
    member, _ = await touch_member(openid, now)
    member.subscribed = subscribed
    member.last_seen = now
    update = ["subscribed", "last_seen"]
    if subscribed and scene:
        member.subscribe_scene = scene[:64]
        update.append("subscribe_scene")
    await member.save(update_fields=update)
    return member


async def find_staff(userid: str) -> Staff | None:
    return await Staff.get_or_none(userid=userid, active=True)


class UnknownCinema(LookupError):
    pass


async def add_staff(
    *, userid: str, role: StaffRole, name: str, now: datetime, cinema_code: str | None = None,
    by: str = "cli",
) -> tuple[Staff, bool]:
    """Create or update a staff member. Without ``cinema_code`` the only cinema is used."""
    if cinema_code:
        cinema = await Cinema.get_or_none(code=cinema_code)
    else:
        cinemas = await Cinema.all().limit(2)
        cinema = cinemas[0] if len(cinemas) == 1 else None
        if len(cinemas) > 1:
            raise UnknownCinema("several cinemas exist; say which one with --cinema")
    if cinema is None:
        raise UnknownCinema(cinema_code or "no cinema yet; run `cinebot demo` first")
    async with in_transaction() as conn:
        staff = await Staff.get_or_none(userid=userid).using_db(conn)
        created = staff is None
        before = None if created else f"{staff.role}:{'active' if staff.active else 'off'}"
        if staff is None:
            staff = await Staff.create(
                userid=userid, name=name, role=role, cinema=cinema, using_db=conn
            )
        else:
            staff.name, staff.role, staff.cinema, staff.active = name, role, cinema, True
            await staff.save(using_db=conn)
        await audit.record(
            entity="staff",
            entity_id=userid,
            action="add" if created else "update",
            actor=by,
            at=now,
            cinema_id=cinema.id,
            from_state=before,
            to_state=f"{role}:active",
            using=conn,
        )
    return staff, created


async def deactivate_staff(userid: str, now: datetime, by: str = "cli") -> bool:
    async with in_transaction() as conn:
        changed = await Staff.filter(userid=userid, active=True).using_db(conn).update(active=False)
        if changed:
            staff = await Staff.get(userid=userid).using_db(conn)
            await audit.record(
                entity="staff", entity_id=userid, action="deactivate", actor=by, at=now,
                cinema_id=staff.cinema_id, from_state="active", to_state="off", using=conn,
            )
    return bool(changed)
