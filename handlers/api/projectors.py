"""``GET /api/projectors`` and ``GET /api/projectors/{device_id}``: projector health for the
staff of a cinema (a staff token, as for check-in; any role may read).

Each projector carries its latest health snapshot (written by the telemetry process):
score 0–100, grade, its safety and quality parts, the reasons, the latest readings, the
active alerts and the red line in force. A missing or stale snapshot is ``"grade": "无数据"``
with ``"score": null`` — never a good score by default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from domain.projectors import ProjectorHealth, health_of, health_of_device
from handlers.api import serialise
from handlers.api.auth import staff_member
from handlers.api.context import API
from handlers.api.http import Problem, json_view, ok

DEVICE = r"/api/projectors/{device_id:[A-Za-z0-9_.:\-]{1,64}}"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/projectors", projectors)
    app.router.add_get(DEVICE, projector)


def _local(iso: Any) -> Any:
    if not isinstance(iso, str):
        return iso
    try:
        return serialise.when(datetime.fromisoformat(iso))
    except ValueError:
        return iso


def serialise_health(p: ProjectorHealth) -> dict[str, Any]:
    snap = dict(p.health or {})
    out: dict[str, Any] = {
        "device_id": p.device_id, "hall": p.hall, "model": p.model,
        "score": p.score, "grade": p.grade, "reasons": list(p.reasons),
        "fresh": p.fresh, "updated_at": serialise.when(p.at),
        "last_seen": _local(snap.get("last_seen")),
        "red_line_pct": p.red_line_pct if p.red_line_pct is not None else snap.get("red_line_pct"),
        "red_line_from": p.red_line_from,
        "health": None,
    }
    if p.fresh:
        parts = {k: snap.get(k) for k in (
            "safety", "quality", "power", "temperature_c", "ambient_c", "brightness_pct", "fan_rpm",
            "usual_fan_rpm", "light_hours", "rated_light_hours", "critical_line_pct", "days_to_red_line",
        )}
        parts["alerts"] = [
            {**a, "since": _local(a.get("since")), "predicted_at": _local(a.get("predicted_at"))}
            for a in snap.get("alerts") or []
        ]
        out["health"] = parts
    return out


async def _cinema(request: web.Request) -> int:
    staff = await staff_member(request)
    if staff.cinema_id is None:  # type: ignore[attr-defined]
        raise Problem(403, "not_staff", "您的账号没有关联影城。")
    return staff.cinema_id  # type: ignore[attr-defined,no-any-return]


@json_view
async def projectors(request: web.Request) -> web.Response:
    cinema_id = await _cinema(request)
    rows = await health_of(cinema_id, request.app[API].clock.now())
    return ok({"projectors": [serialise_health(p) for p in rows]})


@json_view
async def projector(request: web.Request) -> web.Response:
    cinema_id = await _cinema(request)
    found = await health_of_device(cinema_id, request.match_info["device_id"], request.app[API].clock.now())
    if found is None:  # another cinema's projector is as unknown as a made-up id
        raise Problem(404, "not_found", "本影城没有这台放映机。")
    return ok({"projector": serialise_health(found)})
