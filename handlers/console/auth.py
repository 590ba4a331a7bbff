"""Who is looking at the console: WeCom web login, one-time links, sessions.

Two ways in, both ending in a session:

- **WeCom web OAuth** — ``/console/login`` links to WeCom's ``connect/oauth2/authorize``
  (``scope=snsapi_base``: silent inside the WeCom app); WeCom sends the browser back to
  ``/console/oauth?code=…&state=…`` and ``auth/getuserinfo`` turns the code into a userid.
  ``state`` is a nonce, its expiry and an HMAC (alphanumeric, as WeCom requires, ≤ 128
  bytes) and must equal the nonce in the ``cinebot_console_state`` cookie set with the
  login page: a return that this browser did not start is refused (CSRF).
- **A one-time link** — ``/console/enter?t=…``, a ``bot.infra.tokens`` token of purpose
  ``console`` (default 10 minutes), sent to one person in WeCom (「看板」) or printed by
  ``cinebot console link``. Its first use is marked in Redis (``SET NX``); a second use,
  an expired or a forged one is refused (403).

Sessions: a random id (256 bits) in an HttpOnly, SameSite=Lax cookie (Secure when
PUBLIC_URL is https), stored in Redis under its SHA-256. A session lasts 12 hours from
the last request (sliding), and never more than 7 days from the login; both are judged
by the app's clock, and Redis drops the key after the same idle time. The staff row is
read again on every request: a deactivated member is logged out at their next click.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import hdrs, web

from bot.infra import tokens
from bot.infra.settings import Settings
from bot.wechat.api import ApiError
from domain.people import Staff, StaffRole, find_staff
from handlers.console import layout
from handlers.console.base import Viewer
from handlers.console.context import CONSOLE, Console

log = logging.getLogger(__name__)

SESSION_COOKIE = "cinebot_console"
STATE_COOKIE = "cinebot_console_state"
SESSION_IDLE_S = 12 * 3600
SESSION_MAX_S = 7 * 24 * 3600
SESSION_TOUCH_S = 60  # a request refreshes the idle clock at most this often (one write)
LINK_PURPOSE = "console"
LINK_TTL_S = 600
LINK_MAX_TTL_S = 24 * 3600
LOGIN_TTL_S = 600  # from the login page to WeCom's return
HOME = "/console/"

_SID = re.compile(r"[A-Za-z0-9_-]{43}")
# A console path: segments of letters, digits and _-, the last may end in an extension.
_NEXT_PATH = re.compile(r"/console/(?:[A-Za-z0-9_-]+/)*(?:[A-Za-z0-9_-]+(?:\.[a-z]{1,8})?)?")
_QUERY_SAFE = "!$&'()*+,;=:@/?%[]~"  # kept as they are in a query; the rest is %-encoded
MAX_NEXT = 1024
_STATE = re.compile(r"(?P<nonce>[0-9a-f]{20})(?P<expires>[0-9]{10})(?P<mac>[0-9a-f]{32})")
_CODE = re.compile(r"[\x21-\x7e]{1,512}")  # WeCom's codes are short printable ASCII
_USED_TTL_S = LINK_MAX_TTL_S + 3600  # longer than any link lives
VIEWER = web.RequestKey("console_viewer", Viewer | None)  # type: ignore[arg-type]


def _key(kind: str, secret_value: str) -> str:
    # Redis holds digests only: a copy of Redis opens no session and replays no link.
    return f"cinebot:console:{kind}:{hashlib.sha256(secret_value.encode()).hexdigest()}"


# --- who may see what --------------------------------------------------------------------------


def viewer_for(staff: Staff) -> Viewer:
    """The one place that says which cinemas a person may see: today a staff member's own
    cinema (issue 19's chain roles will widen it here, and only here)."""
    return Viewer(
        userid=staff.userid,
        name=staff.name,
        role=StaffRole(staff.role),
        cinema_ids=(staff.cinema_id,),  # type: ignore[attr-defined]
    )


# --- sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    userid: str
    created: float
    seen: float


class Sessions:
    def __init__(self, console: Console) -> None:
        self.redis, self.clock = console.redis, console.clock

    async def create(self, userid: str) -> str:
        sid = secrets.token_urlsafe(32)
        now = self.clock.timestamp()
        await self._save(sid, Session(userid, now, now))
        return sid

    async def load(self, sid: str) -> Session | None:
        """The live session for ``sid`` (its idle clock moved on), or None (and it is gone)."""
        raw = await self.redis.get(_key("session", sid))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            session = Session(str(data["u"]), float(data["c"]), float(data["s"]))
        except (ValueError, KeyError, TypeError):
            await self.delete(sid)
            return None
        now = self.clock.timestamp()
        if now - session.seen > SESSION_IDLE_S or now - session.created > SESSION_MAX_S:
            await self.delete(sid)
            return None
        if now - session.seen >= SESSION_TOUCH_S:
            session = Session(session.userid, session.created, now)
            await self._save(sid, session)
        return session

    async def delete(self, sid: str) -> None:
        await self.redis.delete(_key("session", sid))

    async def _save(self, sid: str, session: Session) -> None:
        value = json.dumps({"u": session.userid, "c": session.created, "s": session.seen})
        await self.redis.set(_key("session", sid), value, ex=SESSION_IDLE_S)


def _secure(settings: Settings) -> bool:
    return settings.public_url.lower().startswith("https://")


def _set_cookie(response: web.StreamResponse, settings: Settings, name: str, value: str,
                max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/console", httponly=True, samesite="Lax",
        secure=_secure(settings),
    )


def _clear_cookie(response: web.StreamResponse, settings: Settings, name: str) -> None:
    response.del_cookie(name, path="/console", secure=_secure(settings), httponly=True,
                        samesite="Lax")


async def current_viewer(request: web.Request) -> Viewer | None:
    """The logged-in, still active person behind this request, or None."""
    if VIEWER in request:
        return request[VIEWER]
    viewer = None
    sid = request.cookies.get(SESSION_COOKIE, "")
    if _SID.fullmatch(sid):
        sessions = Sessions(request.app[CONSOLE])
        session = await sessions.load(sid)
        if session is not None:
            staff = await find_staff(session.userid)
            if staff is None:  # deactivated since: the session ends here
                await sessions.delete(sid)
            else:
                viewer = viewer_for(staff)
    request[VIEWER] = viewer
    return viewer


async def _start_session(request: web.Request, staff: Staff, next_path: str) -> web.Response:
    """A new session for ``staff`` (always a fresh id: none a browser brought is adopted),
    ending the one this browser had — a shared phone's next login leaves no live cookie
    behind for whoever copied the last one."""
    console = request.app[CONSOLE]
    sessions = Sessions(console)
    previous = request.cookies.get(SESSION_COOKIE, "")
    if _SID.fullmatch(previous):
        await sessions.delete(previous)
    sid = await sessions.create(staff.userid)
    log.info("console login", extra={"userid": staff.userid, "role": str(staff.role)})
    response = web.HTTPFound(next_path)
    _set_cookie(response, console.settings, SESSION_COOKIE, sid, SESSION_MAX_S)
    _clear_cookie(response, console.settings, STATE_COOKIE)
    response.headers["Cache-Control"] = "no-store"
    raise response


def safe_next(path: str | None) -> str:
    """Where to go after logging in: a console path of this site, never elsewhere.

    The path must be plain console segments (letters, digits, ``_-``, a file extension):
    no ``//``, no backslash, no ``%``-escape and no dot segment (``..``, ``%2e%2e``), so no
    browser can read it as another host or climb out of ``/console/``. The query is kept,
    non-ASCII and unsafe characters %-encoded (a ``Location`` header holds ASCII)."""
    if not path or len(path) > MAX_NEXT or not path.isprintable():
        return HOME
    route, mark, query = path.partition("?")
    if not _NEXT_PATH.fullmatch(route):
        return HOME
    return route + mark + quote(query, safe=_QUERY_SAFE)


# --- one-time links ----------------------------------------------------------------------------


def enter_link(
    settings: Settings, now: float, userid: str, ttl_s: int = LINK_TTL_S,
    next_path: str = HOME,
) -> str:
    """A link that logs ``userid`` in once, within ``ttl_s`` seconds, then opens
    ``next_path`` (a console path). Deliver it to that person only."""
    if not 0 < ttl_s <= LINK_MAX_TTL_S:
        raise ValueError(f"a console link lives 1 to {LINK_MAX_TTL_S} seconds")
    value = f"{userid} {secrets.token_hex(8)} {safe_next(next_path)}"
    token = tokens.sign(settings.secret_key, LINK_PURPOSE, value, now + ttl_s)
    return f"{settings.public_url.rstrip('/')}/console/enter?{urlencode({'t': token})}"


async def enter(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    token = request.query.get("t", "")
    try:
        if len(token) > 1024:
            raise tokens.BadToken("malformed")
        value = tokens.verify(
            console.settings.secret_key, LINK_PURPOSE, token, console.clock.timestamp()
        )
        userid, _, next_path = value.split(" ", 2)
    except tokens.BadToken as exc:
        if str(exc) == "expired":
            return _refused("登录链接已过期", "这个链接已经过期了。请在企业微信工作台里发送「看板」获取新的链接。")
        return _refused("登录链接无效", "这个链接无效或不完整，无法登录。请在企业微信工作台里发送「看板」获取新的链接。")
    except ValueError:
        return _refused("登录链接无效", "这个链接无效，无法登录。")
    first = await console.redis.set(_key("used", token), "1", nx=True, ex=_USED_TTL_S)
    if not first:
        return _refused(
            "登录链接已使用", "这个链接只能使用一次，已经被用过了。请在企业微信工作台里发送「看板」获取新的链接。"
        )
    staff = await find_staff(userid)
    if staff is None:
        return _refused("无法登录", "这个账号没有开通影城看板，或已停用。")
    return await _start_session(request, staff, safe_next(next_path))


# --- WeCom web OAuth ---------------------------------------------------------------------------

REAL_WECOM_API = "qyapi.weixin.qq.com"
REAL_WECOM_OAUTH = "https://open.weixin.qq.com"


def oauth_base(settings: Settings) -> str:
    """Where WeCom's web login lives: ``open.weixin.qq.com`` for the real WeCom API, the
    stand-in itself otherwise (it plays both)."""
    base = settings.wecom_api_base.rstrip("/")
    return REAL_WECOM_OAUTH if urlsplit(base).hostname == REAL_WECOM_API else base


def _state_mac(secret: str, nonce: str, expires: int) -> str:
    message = f"console-login|{nonce}|{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def make_state(secret: str, now: float) -> tuple[str, str]:
    """(state for WeCom, the nonce the browser keeps in its cookie)."""
    nonce = secrets.token_hex(10)
    expires = int(now) + LOGIN_TTL_S
    return f"{nonce}{expires:010d}{_state_mac(secret, nonce, expires)}", nonce


def check_state(secret: str, state: str, nonce: str, now: float) -> bool:
    m = _STATE.fullmatch(state)
    if m is None or not hmac.compare_digest(m["nonce"], nonce):
        return False
    expires = int(m["expires"])
    return now < expires and hmac.compare_digest(m["mac"], _state_mac(secret, nonce, expires))


def authorize_url(settings: Settings, state: str) -> str:
    params = {
        "appid": settings.wecom_corp_id,
        "redirect_uri": f"{settings.public_url.rstrip('/')}/console/oauth",
        "response_type": "code",
        "scope": "snsapi_base",
        "state": state,
        "agentid": str(settings.wecom_agent_id),
    }
    return f"{oauth_base(settings)}/connect/oauth2/authorize?{urlencode(params)}#wechat_redirect"


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


async def login(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    next_path = safe_next(request.query.get("next"))
    if await current_viewer(request) is not None:
        raise web.HTTPFound(next_path)
    state, nonce = make_state(console.settings.secret_key, console.clock.timestamp())
    url = authorize_url(console.settings, state)
    if "wxwork" in request.headers.get("User-Agent", "").lower() and "out" not in request.query:
        # Inside the WeCom app snsapi_base asks nothing: go straight on, no button to tap.
        response: web.StreamResponse = web.HTTPFound(url)
    else:
        note = "你已退出登录。" if "out" in request.query else ""
        response = layout.login_page(url, note)
    _set_cookie(response, console.settings, STATE_COOKIE, f"{nonce}.{_b64(next_path)}",
                LOGIN_TTL_S)
    response.headers["Cache-Control"] = "no-store"
    if isinstance(response, web.HTTPFound):
        raise response
    return response  # type: ignore[return-value]


async def oauth_return(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    code, state = request.query.get("code", ""), request.query.get("state", "")
    nonce, _, packed = request.cookies.get(STATE_COOKIE, "").partition(".")
    try:
        next_path = safe_next(_unb64(packed)) if packed else HOME
    except (ValueError, binascii.Error, UnicodeDecodeError):
        next_path = HOME
    if not nonce or not check_state(console.settings.secret_key, state, nonce,
                                     console.clock.timestamp()):
        return _refused("登录请求无效", "这次登录不是从本页面发起的，或已超过10分钟。请重新登录。")
    if not _CODE.fullmatch(code):
        return _refused("登录失败", "企业微信没有给出有效的登录码，请重新登录。")
    try:
        userid = await console.wecom.user_id_from_code(code)
    except ApiError as exc:
        if exc.errcode == 40029:
            return _refused("登录失败", "登录码无效或已过期（每个登录码只能用一次），请重新登录。")
        log.warning("console login: getuserinfo failed", extra={"error": str(exc)})
        return layout.message_page(
            "暂时无法登录", "企业微信暂时无法确认你的身份，请稍后再试。", status=503,
            action=("重新登录", "/console/login"),
        )
    if userid is None:
        return _refused("无法登录", "只有本企业的成员可以登录影城看板。")
    staff = await find_staff(userid)
    if staff is None:
        log.info("console login refused: not active staff", extra={"userid": userid})
        return _refused(
            "无法登录",
            f"你的企业微信账号（{userid}）还没有开通影城看板权限，请联系店长开通。",
        )
    return await _start_session(request, staff, next_path)


async def logout(request: web.Request) -> web.Response:
    """POST ends the session. A GET only asks (a button that POSTs): a link on any other site
    could otherwise log people out, while a cross-site POST carries no SameSite=Lax cookie."""
    if request.method != hdrs.METH_POST:
        body = (
            '<main class="cn-main"><div class="cn-card"><h1>退出登录</h1><p>确定要退出影城看板吗？</p>'
            '<form method="post" action="/console/logout">'
            '<button class="cn-big" id="logout-confirm" type="submit">退出登录</button></form>'
            '<p><a href="/console/">返回看板</a></p></div></main>'
        )
        return layout.html_response(layout.document("退出登录", body), 200)
    console = request.app[CONSOLE]
    sid = request.cookies.get(SESSION_COOKIE, "")
    if _SID.fullmatch(sid):
        await Sessions(console).delete(sid)
    response = web.HTTPFound("/console/login?out=1")
    _clear_cookie(response, console.settings, SESSION_COOKIE)
    raise response


def _refused(title: str, text: str) -> web.Response:
    return layout.message_page(title, text, status=403, action=("重新登录", "/console/login"))
