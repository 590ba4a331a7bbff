"""The JSON conventions every ``/api/`` view shares: errors, bodies, validation.

Every error is ``{"code": "...", "message": "<中文>"}`` with a status that says
whose fault it is: 400 unreadable request, 401 no or bad session, 403 not
allowed, 404 no such thing (or not yours), 409 the rules refuse it now
(``TicketingError``), 413 body too large, 422 readable but invalid, 429 slow
down, 502/503 WeChat is not answering. Views raise ``Problem``; ``json_view``
turns it, a ``TicketingError`` and aiohttp's own HTTP errors into that shape.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from typing import Any

from aiohttp import web

from bot.infra.strict import parse_ascii_int
from domain.ticketing import TicketingError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024  # the largest request the mini-program sends is a seat list
MAX_ID = 2**31 - 1  # database integer ids; anything larger is not an id
# [0-9], not \d: Python's \d also matches "٣" and "３", which no seat label is made of.
SEAT_LABEL = re.compile(r"[0-9]{1,3}-[0-9]{1,3}")
# Years 2000–2099 only: no cinema has a day outside them, and a date near year 1 or 9999
# overflows the conversion to UTC (a 500 found by Schemathesis, tests/test_api_schema.py).
ISO_DATE = re.compile(r"20[0-9]{2}-[0-9]{2}-[0-9]{2}")
MAX_SEATS = 20

View = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Chinese words for aiohttp's own refusals, by status.
_STATUS_WORDS = {
    400: ("bad_request", "请求格式不正确。"),
    404: ("not_found", "没有这个接口。"),
    405: ("method_not_allowed", "这个接口不支持该请求方法。"),
    413: ("too_large", "请求内容太大。"),
}


class Problem(Exception):
    """An API error: HTTP ``status``, a stable machine ``code`` and a Chinese ``message``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.extra = status, code, message, extra


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> web.Response:
    return web.json_response(
        {"code": code, "message": message, **extra}, status=status, dumps=dumps, headers=headers
    )


def _jsonable(info: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, tuple):
            value = list(value)
        if value is None or isinstance(value, str | int | float | bool | list | dict):
            out[key] = value
    return out


def json_view(view: View) -> View:
    """Wraps a view so that whatever goes wrong, the answer is the API's JSON error shape."""

    @functools.wraps(view)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await view(request)
        except Problem as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return error(exc.status, exc.code, exc.message, headers, **exc.extra)
        except TicketingError as exc:
            return error(409, exc.code, exc.message, **_jsonable(exc.info))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code, message = _STATUS_WORDS.get(exc.status, ("http_error", "请求未能完成。"))
            return error(exc.status, code, message)
        except Exception:
            log.exception("api view failed", extra={"path": request.path})
            return error(500, "internal", "服务器开小差了，请稍后再试。")

    return wrapped


# --- reading requests --------------------------------------------------------------------------


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise Problem(413, "too_large", "请求内容太大。")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Problem(413, "too_large", "请求内容太大。") from None
    if len(raw) > MAX_BODY_BYTES:
        raise Problem(413, "too_large", "请求内容太大。")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "bad_json", "请求内容不是有效的 JSON。") from None
    if not isinstance(body, dict):
        raise Problem(400, "bad_json", "请求内容应为 JSON 对象。")
    if not _storable(body):
        # JSON may spell NUL (\u0000) and lone surrogates (\ud800); no text column
        # takes them (PostgreSQL refuses NUL outright), so they are bad input, not a 500.
        raise Problem(400, "bad_json", "请求内容含有无法处理的字符。")
    return body


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is None
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


def invalid(field: str, what: str) -> Problem:
    return Problem(422, "invalid", f"参数 {field} {what}。", field=field)


def int_field(
    body: Mapping[str, Any], name: str, *, required: bool = True, low: int = 1, high: int = MAX_ID
) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(name, "不能为空")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, "应为整数")
    if not low <= value <= high:
        raise invalid(name, f"应在 {low} 到 {high} 之间")
    return value


def str_field(
    body: Mapping[str, Any], name: str, *, required: bool = True, max_len: int = 128
) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise invalid(name, "不能为空")
        return None
    if not isinstance(value, str):
        raise invalid(name, "应为字符串")
    if len(value) > max_len:
        raise invalid(name, f"不能超过 {max_len} 个字符")
    return value


def seats_field(body: Mapping[str, Any], name: str = "seats") -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise invalid(name, "应为非空的座位列表，如 [\"7-8\", \"7-9\"]")
    if len(value) > MAX_SEATS:
        raise invalid(name, f"最多 {MAX_SEATS} 个座位")
    seats: list[str] = []
    for item in value:
        if not isinstance(item, str) or not SEAT_LABEL.fullmatch(item):
            raise invalid(name, "中的座位应写成「排-座」，如 \"7-8\"")
        if item in seats:
            raise invalid(name, f"中的座位 {item} 重复了")
        seats.append(item)
    return seats


def query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    value = parse_ascii_int(raw, max_digits=10)
    if value is None or not 1 <= value <= MAX_ID:
        raise invalid(name, "应为正整数")
    return value


def query_date(request: web.Request, name: str) -> date | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        if not ISO_DATE.fullmatch(raw):
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise invalid(name, "应为日期 YYYY-MM-DD") from None


def path_int(request: web.Request, name: str) -> int:
    value = parse_ascii_int(request.match_info[name], max_digits=10)
    if value is None or not 1 <= value <= MAX_ID:
        raise Problem(404, "not_found", "没有找到。")
    return value
