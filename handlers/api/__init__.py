"""The JSON API for the mini-program and the H5 pages (thin views: parse, call domain, serialise)."""

from __future__ import annotations

from aiohttp import web

from handlers.api.context import API, ApiContext  # first: the views below import it
from handlers.api.notify import pay_notify
from handlers.api import buyers, checkin, openapi, picker
from handlers.api import feedback as feedback_api
from handlers.api import projectors as projectors_api
from handlers.api.auth import page_token, session_token, staff_token
from handlers.api.http import error
from handlers.api.picker import picker_url

__all__ = [
    "API",
    "ApiContext",
    "add_routes",
    "page_token",
    "picker_url",
    "session_token",
    "staff_token",
]

ORDER = r"/api/orders/{no:[A-Za-z0-9]{1,32}}"
# Any character, a newline too (``.`` stops at one): a path like ``/api/x%0Ay`` must get the
# API's JSON 404, not aiohttp's plain-text one.
FALLBACK = r"/api/{tail:[\s\S]*}"


def add_routes(app: web.Application) -> None:
    """Register every API route; the views reach their services through ``app[API]``,
    which the app sets at start-up."""
    r = app.router
    r.add_post("/api/pay/notify", pay_notify)
    r.add_post("/api/login", buyers.login)
    r.add_get("/api/films", buyers.films)
    r.add_get("/api/showtimes", buyers.showtimes)
    r.add_get(r"/api/showtimes/{id:\d{1,10}}/seats", buyers.seats)
    r.add_post("/api/holds", buyers.hold)
    r.add_get(ORDER, buyers.get_order)
    r.add_delete(ORDER, buyers.release)
    r.add_post(ORDER + "/pay", buyers.pay)
    r.add_post(ORDER + "/refund", buyers.refund)
    r.add_post(ORDER + "/change", buyers.change)
    r.add_get("/api/tickets", buyers.my_tickets)
    r.add_post("/api/checkin", checkin.checkin)
    r.add_get("/api/openapi.json", openapi.openapi_json)
    r.add_get(r"/pick/{id:\d{1,10}}", picker.picker_page)
    feedback_api.add_routes(app)  # /api/feedback..., /s/{code}
    projectors_api.add_routes(app)  # /api/projectors...
    # Last: whatever else is asked under /api/ is answered in the API's JSON shape too.
    r.add_route("*", FALLBACK, _fallback)


async def _fallback(request: web.Request) -> web.Response:
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical.startswith("/api/") and resource.canonical != FALLBACK:
            match, methods = await resource.resolve(request)
            if match is None:
                allowed |= methods
    if allowed:
        return error(
            405, "method_not_allowed", "这个接口不支持该请求方法。",
            headers={"Allow": ",".join(sorted(allowed))},
        )
    return error(404, "not_found", "没有这个接口。")
