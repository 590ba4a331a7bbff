"""Projector health and stored alert limits, as chat and the API see them.

The telemetry process writes each projector's health snapshot (``Projector.health_score``,
``health``, ``health_at``) and reads the stored limits (``TelemetryRule``); this module is
the other side: reading the snapshots (a stale one is "no data", never "good") and
changing a limit — validated by the telemetry rules code, which comes in as a
:class:`RuleBook` because the domain does not import telemetry.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from tortoise.functions import Count, Max
from tortoise.transactions import in_transaction

from domain import audit, rollups
from domain.devices import Projector, TelemetryRule

log = logging.getLogger(__name__)

RED_LINE = "brightness_warning_pct"
CRITICAL_LINE = "brightness_critical_pct"
# The telemetry process refreshes every snapshot at least every few minutes while it runs;
# an older one means nobody is watching that projector.
HEALTH_STALE = timedelta(minutes=15)
NO_DATA = "无数据"


class RuleBook(Protocol):
    """The telemetry rules code, as the domain needs it (``telemetry.ingest.StoredRulesBook``)."""

    def default(self, key: str) -> float: ...

    def check(self, cinema: Mapping[str, Any], devices: Mapping[str, Mapping[str, Any]]) -> None:
        """Raise ValueError (with a reason) if these stored settings of one cinema — its own
        and its devices' — would not load."""


# --- stored limits, for the telemetry process ------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredRules:
    cinemas: dict[str, dict[str, Any]]  # cinema code -> settings
    devices: dict[str, dict[str, Any]]  # device id -> settings
    device_cinema: dict[str, str]  # every projector -> its cinema code
    models: dict[str, str]  # every projector -> its model


async def stored_rules() -> StoredRules:
    rows = await TelemetryRule.all().prefetch_related("cinema")
    cinemas: dict[str, dict[str, Any]] = {}
    devices: dict[str, dict[str, Any]] = {}
    for row in rows:
        settings = dict(row.settings or {})
        if row.device_id:
            devices[row.device_id] = settings
        else:
            cinemas[row.cinema.code] = settings
    rows = await Projector.all().values_list("device_id", "cinema__code", "model")
    return StoredRules(cinemas, devices, {d: c for d, c, _ in rows}, {d: m for d, _, m in rows})


async def rules_version() -> tuple[Any, ...]:
    """Changes whenever a stored limit or the set of projectors does (two small queries)."""
    rules = await TelemetryRule.all().annotate(n=Count("id"), last=Max("updated_at")).values("n", "last")
    devices = await Projector.all().annotate(n=Count("id"), top=Max("id")).values("n", "top")
    r, d = (rules[0] if rules else {}), (devices[0] if devices else {})
    return (r.get("n"), str(r.get("last")), d.get("n"), d.get("top"))


# --- health snapshots --------------------------------------------------------------------------


async def save_health(snapshots: list[tuple[str, int | None, dict[str, Any]]], at: datetime) -> None:
    """Health snapshots (device id, score, health) taken at `at`: one SELECT and one UPDATE
    per hundred projectors (a statement per projector held the database for seconds at the
    first tick of a big fleet, and alerts waited behind it)."""
    by_device = {device_id: (score, health) for device_id, score, health in snapshots}
    rows = await Projector.filter(device_id__in=list(by_device))
    for p in rows:
        p.health_score, p.health = by_device[p.device_id]
        p.health_at = at
    if rows:
        async with in_transaction() as conn:
            await Projector.bulk_update(
                rows, fields=["health_score", "health", "health_at"], batch_size=100, using_db=conn
            )
            await rollups.merge_health(
                [(p.cinema_id, p.device_id, p.health_score) for p in rows if p.health_score is not None],  # type: ignore[attr-defined]
                at, conn,
            )


@dataclass(frozen=True, slots=True)
class ProjectorHealth:
    device_id: str
    hall: str
    model: str
    score: int | None  # None: no data
    grade: str  # 良好 | 注意 | 危险 | 无数据
    reasons: tuple[str, ...]
    health: dict[str, Any] | None  # the latest snapshot, even a stale one (its last values)
    at: datetime | None  # when the snapshot was written
    fresh: bool
    red_line_pct: float | None  # the red line in force; None: the default one
    red_line_from: str  # device | cinema | default
    own_settings: dict[str, Any] = field(default_factory=dict)


def _hall_number(word: str) -> str:
    return re.sub(r"\s+", "", word).removesuffix("厅").removesuffix("号").upper()


def same_hall(name: str, word: str) -> bool:
    """「3号厅」 is 「3号厅」, 「3厅」 or 「3」; 「IMAX厅」 is 「imax」."""
    return bool(word) and _hall_number(name) == _hall_number(word)


async def health_of(cinema_id: int, now: datetime, hall: str | None = None) -> list[ProjectorHealth]:
    """Every projector of the cinema (or of one hall) with its latest health, hall order."""
    rows = await Projector.filter(cinema_id=cinema_id).prefetch_related("hall").order_by("hall_id", "id")
    if hall is not None:
        rows = [p for p in rows if same_hall(p.hall.name, hall)]
    rules = {r.device_id: dict(r.settings or {}) for r in await TelemetryRule.filter(cinema_id=cinema_id)}
    cinema_rules = rules.get("", {})
    out = []
    for p in rows:
        own = rules.get(p.device_id, {})
        if RED_LINE in own:
            red, source = float(own[RED_LINE]), "device"
        elif RED_LINE in cinema_rules:
            red, source = float(cinema_rules[RED_LINE]), "cinema"
        else:
            snap = (p.health or {}).get("red_line_pct")
            red, source = (float(snap) if snap is not None else None), "default"
        fresh = p.health_at is not None and p.health is not None and now - p.health_at <= HEALTH_STALE
        if fresh:
            snapshot = p.health or {}
            score, grade, reasons = p.health_score, snapshot.get("grade", NO_DATA), tuple(snapshot.get("reasons", ()))
        elif p.health_at is None:
            score, grade, reasons = None, NO_DATA, ("还没有收到数据",)
        else:
            minutes = (now - p.health_at).total_seconds() / 60
            score, grade, reasons = None, NO_DATA, (f"监测数据 {minutes:.0f} 分钟没有更新",)
        out.append(ProjectorHealth(
            p.device_id, p.hall.name, p.model, score, grade, reasons, p.health, p.health_at, fresh,
            red, source, own,
        ))
    return out


async def health_of_device(cinema_id: int, device_id: str, now: datetime) -> ProjectorHealth | None:
    return next((h for h in await health_of(cinema_id, now) if h.device_id == device_id), None)


# --- changing a limit -------------------------------------------------------------------------


class RuleRefused(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class RuleChange:
    key: str
    device_id: str  # '' = the whole cinema
    hall: str  # '' = the whole cinema
    old: float
    new: float
    changed: bool
    # For a cinema-wide change: halls whose own value still wins, hall -> value.
    overridden: dict[str, float] = field(default_factory=dict)


async def set_rule(
    cinema_id: int, key: str, value: float, *, device_id: str = "", hall: str = "", by: str,
    now: datetime, book: RuleBook,
) -> RuleChange:
    """Store one limit for the cinema (``device_id`` '') or one of its projectors: the old
    and new value in force there. Settings the rules code would not load are refused
    (:class:`RuleRefused`), nothing is written; a change writes an audit row."""
    async with in_transaction() as conn:
        rows = {r.device_id: r for r in await TelemetryRule.filter(cinema_id=cinema_id).using_db(conn)}
        cinema = dict(rows[""].settings or {}) if "" in rows else {}
        devices = {d: dict(r.settings or {}) for d, r in rows.items() if d}
        default = book.default(key)
        if device_id:
            old = float(devices.get(device_id, {}).get(key, cinema.get(key, default)))
        else:
            old = float(cinema.get(key, default))
        overridden = {d: float(s[key]) for d, s in devices.items() if key in s}
        if old == value:
            return RuleChange(key, device_id, hall, old, value, False, overridden if not device_id else {})
        if device_id:
            devices[device_id] = {**devices.get(device_id, {}), key: value}
        else:
            cinema = {**cinema, key: value}
        try:
            book.check(cinema, devices)
        except ValueError as exc:
            raise RuleRefused("inconsistent", str(exc)) from None
        row = rows.get(device_id)
        settings = devices[device_id] if device_id else cinema
        if row is None:
            row = await TelemetryRule.create(
                cinema_id=cinema_id, device_id=device_id, settings=settings, updated_by=by[:64],
                updated_at=now, using_db=conn,
            )
        else:
            await TelemetryRule.filter(id=row.id).using_db(conn).update(
                settings=settings, updated_by=by[:64], updated_at=now,
            )
        await audit.record(
            entity="telemetry_rule", entity_id=row.id, action="set", actor=by, at=now, cinema_id=cinema_id,
            detail={"device_id": device_id, "hall": hall, "key": key, "from": old, "to": value},
            using=conn,
        )
    log.info("telemetry rule set", extra={"cinema_id": cinema_id, "device": device_id, "key": key, "by": by})
    return RuleChange(key, device_id, hall, old, value, True, overridden if not device_id else {})


RED_LINE_MIN, RED_LINE_MAX = 30.0, 100.0
SMPTE_FLOOR = 78.75  # % of nominal: the theatre floor of SMPTE ST 431-1 (14 ± 3 fL of 14)


def red_line_problem(value: float, critical: float) -> str | None:
    """Why `value` cannot be a brightness red line (None if it can)."""
    if not RED_LINE_MIN <= value <= RED_LINE_MAX:
        return f"亮度红线要在 {RED_LINE_MIN:g}%–{RED_LINE_MAX:g}% 之间（额定亮度的百分比），{value:g}% 不合理。"
    if value <= critical:
        return (
            f"亮度红线要高于危险线 {critical:g}%：低于危险线已按严重告警处理，"
            f"红线设在它下面就不会再提前提醒。"
        )
    return None


async def set_red_line(
    cinema_id: int, value: float, *, device_id: str = "", hall: str = "", by: str, now: datetime,
    book: RuleBook,
) -> RuleChange:
    """A manager's new brightness red line for the cinema or one projector; absurd values
    (outside 30–100 %, or not above the critical line in force there) are refused."""
    rows = {r.device_id: dict(r.settings or {}) for r in await TelemetryRule.filter(cinema_id=cinema_id)}
    own, cinema = rows.get(device_id, {}) if device_id else {}, rows.get("", {})
    critical = float(own.get(CRITICAL_LINE, cinema.get(CRITICAL_LINE, book.default(CRITICAL_LINE))))
    problem = red_line_problem(value, critical)
    if problem is None and not device_id:
        # A cinema-wide line must also stay above a hall's own critical line.
        for other, settings in rows.items():
            if other and CRITICAL_LINE in settings and RED_LINE not in settings:
                problem = red_line_problem(value, float(settings[CRITICAL_LINE]))
                if problem:
                    break
    if problem:
        raise RuleRefused("absurd", problem)
    return await set_rule(cinema_id, RED_LINE, value, device_id=device_id, hall=hall, by=by, now=now, book=book)
