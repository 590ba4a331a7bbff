"""The local stand-in for the WeChat and WeCom HTTP APIs.

A real aiohttp server that answers the ``/cgi-bin/...`` calls cinebot makes,
records every message it accepts, and shows them on a Chinese page at
``/standin/`` — so a fresh checkout sends "real" messages offline, and tests
can see exactly what went out (including double sends: recording duplicates
is the point; idempotency is the sender's job).

Run it alone with ``python -m bot.wechat.standin --port 8081`` and point
``CINEBOT_WECHAT_API_BASE`` / ``CINEBOT_WECOM_API_BASE`` at it.

Behaviour worth knowing (close to the real platforms, simplified):

- Tokens: ``POST /cgi-bin/stable_token`` returns the same token while it is
  valid (``force_refresh`` revokes it and issues a new one); ``GET
  /cgi-bin/token`` issues a new token each call and lets the previous one live
  300 s more; ``GET /cgi-bin/gettoken`` (WeCom) returns the same token per
  corp+secret while valid. Any appid/secret is accepted. Presenting a token:
  missing → 41001, expired → 42001, unknown or revoked → 40001 (WeChat) /
  40014 (WeCom).
- Mini-program login: ``GET /sns/jscode2session`` accepts only the demo
  mini-program's appid and secret (``Settings`` defaults; wrong appid → 40013,
  wrong secret → 40125). A ``js_code`` ``test-<rest>`` logs in as openid
  ``mp-<rest>``; any other code → 40029; a code used before → 40163 ("code
  been used"), as on the real platform, where each code works once.
- Recipients with special prefixes fail on purpose: WeChat ``o_out_of_window…``
  → 45015 (customer-service 48 h window), ``o_unsubscribed…`` → 43004
  (43101 for subscribe messages), ``o_no_subscription…`` → 43101,
  ``o_invalid…`` → 40003; WeCom userids starting ``invalid`` are reported in
  ``invaliduser`` (errcode 81013 if all recipients are invalid).
- Content rules: a customer-service ``news`` message may carry one article
  (45008), text must not be empty (44004), image messages need a media_id this
  stand-in issued (40007), WeCom bodies must be UTF-8 JSON without ``\\uNNNN``
  escapes (40033), WeCom text ≤ 2048 bytes (45002).
- Template cards: interactive cards need a valid task_id unique per app
  (42014); sending one returns a ``response_code`` (valid 72 h).
  ``update_template_card`` accepts each response_code once: an unknown or
  expired code → 40078, a code used before → 42022 ("code已经被使用过"), a
  code of another app → 42015. These codes were chosen from WeCom's global
  error list; the platform does not document the exact codes for this case.
- Faults: with probability ``fail_rate`` any ``/cgi-bin`` call answers HTTP 502
  or ``{"errcode": -1}`` and records nothing; with probability
  ``expire_rate`` the presented token is declared expired (42001) and dropped.
  ``POST /standin/faults {"mode": "http502"|"busy"|"expire"|"revoke"|"lost",
  "count": n}`` queues deterministic faults for the next n calls that present a
  token: ``revoke`` makes the presented token unknown (40001 / 40014), ``lost``
  handles and records the call but answers HTTP 504 (the answer got lost).

- WeCom web login: ``GET /connect/oauth2/authorize`` (WeCom's address for it is
  ``open.weixin.qq.com``) plays the WeCom client: it redirects to ``redirect_uri``
  with a ``code`` (and the ``state`` given) for the member named by a ``userid``
  query parameter, else the one set with ``POST /standin/oauth {"userid": ...}``,
  else a page asks who. ``GET /cgi-bin/auth/getuserinfo?access_token&code`` turns
  a code into ``{"userid"}`` once, within 5 minutes, for the same corp; otherwise
  40029. A userid starting ``outsider`` plays a non-member (answer: an openid).

Control and inspection: ``GET /standin/messages?to=USER&since=ID``,
``GET /standin/tokens`` (token fetch log), ``GET /standin/errors``,
``GET /standin/assets`` (QR codes, uploads), ``POST /standin/reset``,
``POST /standin/config`` (fail_rate, expire_rate, latency),
``POST /standin/click`` (simulate a card button click: returns the event
fields, including a fresh ResponseCode).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import html
import json
import logging
import random
import re
import string
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from yarl import URL

from bot.infra.settings import Settings

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]

WECHAT = "wechat"
WECOM = "wecom"
TOKEN_TTL = 7200
CLASSIC_OVERLAP = 300  # seconds an old /cgi-bin/token token survives a new one
RESPONSE_CODE_TTL = 72 * 3600
FAULT_MODES = ("http502", "busy", "expire", "revoke", "lost")
INTERACTIVE_CARDS = frozenset({"button_interaction", "vote_interaction", "multiple_interaction"})
CARD_TYPES = INTERACTIVE_CARDS | {"text_notice", "news_notice"}
WECHAT_CUSTOM_TYPES = frozenset(
    {
        "text",
        "image",
        "voice",
        "video",
        "music",
        "news",
        "mpnews",
        "mpnewsarticle",
        "msgmenu",
        "wxcard",
        "miniprogrampage",
    }
)
WECOM_TYPES = frozenset(
    {
        "text",
        "image",
        "voice",
        "video",
        "file",
        "textcard",
        "news",
        "mpnews",
        "markdown",
        "miniprogram_notice",
        "template_card",
    }
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif")
MAX_IMAGE_BYTES = 10 * 1024 * 1024
TASK_ID = re.compile(r"[0-9A-Za-z_\-@]{1,128}")
# A \uNNNN escape not itself escaped: what json.dumps(ensure_ascii=True) produces.
UNICODE_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[0-9a-fA-F]{4}")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _err(errcode: int, errmsg: str) -> JsonDict:
    return {"errcode": errcode, "errmsg": errmsg}


OK: JsonDict = {"errcode": 0, "errmsg": "ok"}


@dataclass
class IssuedToken:
    value: str
    platform: str
    owner: str  # appid or corpid
    expires_at: float


@dataclass
class IssuedCode:
    """A template card's response_code: what it may update, and whether it was spent."""

    task_key: tuple[str, int, str]  # (corpid, agentid, task_id)
    expires_at: float
    used: bool = False


@dataclass
class OAuthCode:
    """A WeCom web-login code: whose it is, for which corp, until when, and whether spent."""

    userid: str
    corpid: str
    expires_at: float
    used: bool = False


@dataclass
class Call:
    platform: str
    endpoint: str
    token: IssuedToken | None
    body: Any
    request: web.Request


@dataclass
class StandinState:
    fail_rate: float = 0.0
    expire_rate: float = 0.0
    latency: float = 0.0
    token_ttl: int = TOKEN_TTL
    seed: int | None = None
    rng: random.Random = field(init=False)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    current: dict[tuple[str, str], str] = field(default_factory=dict)
    messages: list[JsonDict] = field(default_factory=list)
    errors: list[JsonDict] = field(default_factory=list)
    assets: list[JsonDict] = field(default_factory=list)
    token_fetches: list[JsonDict] = field(default_factory=list)
    media: dict[str, JsonDict] = field(default_factory=dict)
    cards: dict[tuple[str, int, str], JsonDict] = field(default_factory=dict)
    codes: dict[str, IssuedCode] = field(default_factory=dict)
    faults: deque[str] = field(default_factory=deque)
    miniprogram_appid: str = Settings().miniprogram_appid
    miniprogram_secret: str = Settings().miniprogram_secret
    used_codes: set[str] = field(default_factory=set)  # mini-program login codes spent
    oauth_codes: dict[str, OAuthCode] = field(default_factory=dict)  # WeCom web login codes
    oauth_userid: str = ""  # who holds the phone when WeCom's web login asks (``/standin/oauth``)
    oauth_log: list[JsonDict] = field(default_factory=list)
    _seq: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def reset(self) -> None:
        """Forget everything but the configuration (clients then see 40001 and refetch)."""
        for bucket in (self.tokens, self.current, self.media, self.cards, self.codes):
            bucket.clear()
        for items in (self.messages, self.errors, self.assets, self.token_fetches):
            items.clear()
        self.expired.clear()
        self.faults.clear()
        self.used_codes.clear()
        self.oauth_codes.clear()
        self.oauth_log.clear()
        self._seq = 0

    def random_id(self, length: int = 32) -> str:
        return "".join(self.rng.choices(string.ascii_letters + string.digits, k=length))

    def next_id(self) -> int:
        self._seq += 1
        return self._seq

    # --- tokens --------------------------------------------------------------------------------

    def issue_token(self, platform: str, owner: str) -> IssuedToken:
        token = IssuedToken(self.random_id(64), platform, owner, time.time() + self.token_ttl)
        self.tokens[token.value] = token
        return token

    def valid(self, value: str | None) -> IssuedToken | None:
        token = self.tokens.get(value or "")
        if token is None or token.expires_at <= time.time():
            return None
        return token

    def expire(self, value: str) -> None:
        self.tokens.pop(value, None)
        self.expired.add(value)

    def revoke(self, value: str) -> None:
        # A revoked token is simply unknown from now on ("not latest" → 40001).
        self.tokens.pop(value, None)

    def log_fetch(self, platform: str, endpoint: str, owner: str, force: bool) -> None:
        self.token_fetches.append(
            {
                "platform": platform,
                "endpoint": endpoint,
                "owner": owner,
                "force_refresh": force,
                "at": _now_iso(),
            }
        )

    # --- records -------------------------------------------------------------------------------

    def record(
        self,
        call: Call,
        recipients: list[str],
        payload: JsonDict,
        response: JsonDict,
    ) -> JsonDict:
        entry = {
            "id": self.next_id(),
            "platform": call.platform,
            "endpoint": call.endpoint,
            "to": recipients,
            "msgtype": payload.get("msgtype"),
            "payload": payload,
            "response": {k: v for k, v in response.items() if k not in ("errcode", "errmsg")},
            "at": _now_iso(),
        }
        self.messages.append(entry)
        return entry

    def draw_fault(self, presents_token: bool) -> str | None:
        if presents_token and self.faults:
            return self.faults.popleft()
        if self.fail_rate and self.rng.random() < self.fail_rate:
            return "http502" if self.rng.random() < 0.5 else "busy"
        return None


STATE = web.AppKey("standin_state", StandinState)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False)
    )


# --- the request pipeline shared by every /cgi-bin endpoint ------------------------------------

Endpoint = Callable[[StandinState, Call], Awaitable[JsonDict]]


def api(
    endpoint: str,
    platforms: Iterable[str],
    *,
    needs_token: bool = True,
    json_body: bool = True,
) -> Callable[[Endpoint], Callable[[web.Request], Awaitable[web.Response]]]:
    allowed = frozenset(platforms)

    def wrap(fn: Endpoint) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def view(request: web.Request) -> web.Response:
            state = request.app[STATE]
            if state.latency:
                await asyncio.sleep(state.latency)
            fault = state.draw_fault(needs_token)
            if fault == "http502":
                return web.Response(status=502, text="502 Bad Gateway")
            if fault == "busy":
                return _json(_err(-1, "system error"))
            platform = next(iter(allowed)) if len(allowed) == 1 else WECHAT
            token: IssuedToken | None = None
            if needs_token:
                token_or_error = _check_token(state, request, allowed, fault)
                if isinstance(token_or_error, dict):
                    return _json(_note_error(state, endpoint, platform, token_or_error))
                token = token_or_error
                platform = token.platform
            body: Any = None
            if json_body and request.method == "POST":
                body_or_error = await _read_json(request, platform)
                if isinstance(body_or_error, _BadBody):
                    return _json(_note_error(state, endpoint, platform, body_or_error.error))
                body = body_or_error
            answer = await fn(state, Call(platform, endpoint, token, body, request))
            if answer.get("errcode"):
                _note_error(state, endpoint, platform, answer, body)
            if fault == "lost":
                # Done and recorded, but the answer never reaches the caller (a gateway
                # timeout after the platform accepted): the case at-least-once is about.
                return web.Response(status=504, text="504 Gateway Timeout")
            return _json(answer)

        return view

    return wrap


def _check_token(
    state: StandinState, request: web.Request, allowed: frozenset[str], fault: str | None
) -> IssuedToken | JsonDict:
    value = request.query.get("access_token", "")
    if not value:
        return _err(41001, "access_token missing")
    if fault == "revoke":
        state.revoke(value)  # e.g. another app server refreshed it: "not latest"
    if value in state.expired:
        return _err(42001, "access_token expired")
    token = state.tokens.get(value)
    if token is not None and token.expires_at <= time.time():
        state.expire(value)
        return _err(42001, "access_token expired")
    if token is None or token.platform not in allowed:
        if allowed == {WECOM}:
            return _err(40014, "invalid access_token")
        return _err(40001, "invalid credential, access_token is invalid or not latest")
    if fault == "expire" or (state.expire_rate and state.rng.random() < state.expire_rate):
        state.expire(value)
        return _err(42001, "access_token expired")
    return token


@dataclass
class _BadBody:
    error: JsonDict


async def _read_json(request: web.Request, platform: str) -> Any:
    raw = await request.read()
    if platform == WECOM and UNICODE_ESCAPE.search(raw):
        return _BadBody(_err(40033, "invalid charset. please check your request, \\uxxxx"))
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _BadBody(_err(47001, "data format error"))


def _note_error(
    state: StandinState, endpoint: str, platform: str, answer: JsonDict, body: Any = None
) -> JsonDict:
    to = body.get("touser") or body.get("userids") if isinstance(body, dict) else None
    state.errors.append(
        {
            "platform": platform,
            "endpoint": endpoint,
            "to": to,
            "errcode": answer["errcode"],
            "errmsg": answer["errmsg"],
            "at": _now_iso(),
        }
    )
    return answer


# --- token endpoints ---------------------------------------------------------------------------


@api("stable_token", [WECHAT], needs_token=False)
async def stable_token(state: StandinState, call: Call) -> JsonDict:
    body = call.body if isinstance(call.body, dict) else {}
    problem = _credential_problem(body.get("grant_type"), body.get("appid"), body.get("secret"))
    if problem:
        return problem
    appid, force = str(body["appid"]), bool(body.get("force_refresh"))
    state.log_fetch(WECHAT, call.endpoint, appid, force)
    key = ("stable", appid)
    token = state.valid(state.current.get(key))
    if token is not None and force:
        state.revoke(token.value)
        token = None
    if token is None:
        token = state.issue_token(WECHAT, appid)
        state.current[key] = token.value
    return {"access_token": token.value, "expires_in": int(token.expires_at - time.time())}


@api("token", [WECHAT], needs_token=False, json_body=False)
async def classic_token(state: StandinState, call: Call) -> JsonDict:
    q = call.request.query
    problem = _credential_problem(q.get("grant_type"), q.get("appid"), q.get("secret"))
    if problem:
        return problem
    appid = q["appid"]
    state.log_fetch(WECHAT, call.endpoint, appid, False)
    key = ("classic", appid)
    previous = state.valid(state.current.get(key))
    if previous is not None:
        previous.expires_at = min(previous.expires_at, time.time() + CLASSIC_OVERLAP)
    token = state.issue_token(WECHAT, appid)
    state.current[key] = token.value
    return {"access_token": token.value, "expires_in": state.token_ttl}


def _credential_problem(grant_type: Any, appid: Any, secret: Any) -> JsonDict | None:
    if grant_type != "client_credential":
        return _err(40002, "invalid grant_type")
    if not appid:
        return _err(41002, "appid missing")
    if not secret:
        return _err(41004, "appsecret missing")
    return None


@api("gettoken", [WECOM], needs_token=False, json_body=False)
async def gettoken(state: StandinState, call: Call) -> JsonDict:
    corpid, secret = call.request.query.get("corpid"), call.request.query.get("corpsecret")
    if not corpid:
        return _err(41002, "corpid missing")
    if not secret:
        return _err(41004, "corpsecret missing")
    state.log_fetch(WECOM, call.endpoint, corpid, False)
    # Tokens are per app, i.e. per secret; keep only a digest of the secret.
    key = ("wecom", f"{corpid}:{hashlib.sha256(secret.encode()).hexdigest()[:16]}")
    token = state.valid(state.current.get(key))
    if token is None:
        token = state.issue_token(WECOM, corpid)
        state.current[key] = token.value
    remaining = int(token.expires_at - time.time())
    return {**OK, "access_token": token.value, "expires_in": remaining}


# --- mini-program login -----------------------------------------------------------------------


@api("sns/jscode2session", [WECHAT], needs_token=False, json_body=False)
async def jscode2session(state: StandinState, call: Call) -> JsonDict:
    q = call.request.query
    if q.get("grant_type") != "authorization_code":
        return _err(40002, "invalid grant_type")
    if not q.get("appid"):
        return _err(41002, "appid missing")
    if q["appid"] != state.miniprogram_appid:
        return _err(40013, "invalid appid")
    if not q.get("secret"):
        return _err(41004, "appsecret missing")
    if q["secret"] != state.miniprogram_secret:
        return _err(40125, "invalid appsecret")
    code = q.get("js_code", "")
    if not code:
        return _err(41008, "missing code")
    if code in state.used_codes:
        return _err(40163, "code been used")
    rest = code[len("test-") :] if code.startswith("test-") else ""
    if not rest:
        return _err(40029, "invalid code")
    state.used_codes.add(code)
    return {"openid": f"mp-{rest}", "session_key": state.random_id(24)}


# --- WeCom web login (OAuth) -----------------------------------------------------------------

OAUTH_CODE_TTL = 300  # seconds: WeCom's web-login codes live five minutes and work once
OAUTH_SCOPES = ("snsapi_base", "snsapi_privateinfo")
OAUTH_STATE = re.compile(r"[A-Za-z0-9]{0,128}")  # WeCom's rule for state (optional)
# A userid with this prefix plays someone outside the corp: WeCom answers an openid, no userid.
OUTSIDER_PREFIX = "outsider"
USERID = re.compile(r"[0-9A-Za-z_\-@.]{1,64}")


async def oauth_authorize(request: web.Request) -> web.Response:
    """``open.weixin.qq.com/connect/oauth2/authorize``: the stand-in plays the WeCom client,
    which knows who holds the phone. That member is the ``userid`` query parameter (the
    stand-in's own addition), else the one set with ``POST /standin/oauth``, else a small
    page asks; then it redirects to ``redirect_uri`` with ``code`` and ``state``."""
    state, q = request.app[STATE], request.query
    redirect_uri = q.get("redirect_uri", "")
    target = _http_url(redirect_uri)
    problem = (
        "缺少 appid（企业的 CorpID）" if not q.get("appid")
        else "redirect_uri 必须是 http(s) 地址" if target is None
        else "response_type 必须是 code" if q.get("response_type") != "code"
        else f"scope 必须是 {' 或 '.join(OAUTH_SCOPES)}" if q.get("scope") not in OAUTH_SCOPES
        else "state 只能由 a-zA-Z0-9 组成，最长 128 字节" if not OAUTH_STATE.fullmatch(q.get("state", ""))
        else None
    )
    if problem:
        return _oauth_page("参数错误", f"<p class='err'>{_e(problem)}</p>", status=400)
    userid = q.get("userid") or state.oauth_userid
    if not userid:
        return _oauth_page("选择登录成员", _oauth_form(q))
    if not USERID.fullmatch(userid):
        return _oauth_page("参数错误", "<p class='err'>userid 只能由字母、数字和 _-@. 组成</p>", 400)
    code = state.random_id(32)
    state.oauth_codes[code] = OAuthCode(userid, q["appid"], time.time() + OAUTH_CODE_TTL)
    state.oauth_log.append(
        {"userid": userid, "appid": q["appid"], "agentid": q.get("agentid"),
         "scope": q["scope"], "redirect_uri": redirect_uri, "at": _now_iso()}
    )
    back = {"code": code, **({"state": q["state"]} if "state" in q else {})}
    raise web.HTTPFound(str(target.update_query(back)))  # type: ignore[union-attr]


def _http_url(text: str) -> URL | None:
    try:
        url = URL(text)
    except ValueError:
        return None
    return url if url.scheme in ("http", "https") and url.host else None


def _oauth_form(query: Mapping[str, str]) -> str:
    hidden = "".join(
        f"<input type='hidden' name='{_e(k)}' value='{_e(v)}'>"
        for k, v in query.items() if k != "userid"
    )
    return (
        "<p>这是企业微信网页授权的替身：真实的企业微信客户端知道是谁在用手机，"
        "这里请填写要以哪位成员登录。</p>"
        f"<form method='get' action='/connect/oauth2/authorize'>{hidden}"
        "<p><label>成员账号（userid）<input name='userid' required "
        "pattern='[0-9A-Za-z_\\-@.]{1,64}' placeholder='例如 manager01'></label></p>"
        "<p><button type='submit'>以此成员身份登录</button></p></form>"
    )


def _oauth_page(title: str, body: str, status: int = 200) -> web.Response:
    text = (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>企业微信登录（替身） · {_e(title)}</title><style>{PAGE_STYLE}</style></head>"
        f"<body><h1>企业微信登录（替身） · {_e(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


@api("auth/getuserinfo", [WECOM], json_body=False)
async def oauth_getuserinfo(state: StandinState, call: Call) -> JsonDict:
    """A web-login code → the member's userid: once, within five minutes, for the corp whose
    app token asks (anything else is 40029, "invalid code")."""
    code = call.request.query.get("code", "")
    if not code:
        return _err(41008, "missing code")
    issued = state.oauth_codes.get(code)
    corp = call.token.owner if call.token else ""
    if issued is None or issued.used or issued.expires_at <= time.time() or issued.corpid != corp:
        return _err(40029, "invalid code")
    issued.used = True
    if issued.userid.startswith(OUTSIDER_PREFIX):
        return {**OK, "openid": f"oOutsider{hashlib.sha256(issued.userid.encode()).hexdigest()[:20]}"}
    return {**OK, "userid": issued.userid}


async def oauth_config_view(request: web.Request) -> web.Response:
    """``POST {"userid": "manager01"}``: who holds the phone from now on ("" for nobody: the
    authorize page then asks). ``GET``: that member and the logins so far."""
    state = request.app[STATE]
    if request.method == "POST":
        userid = (await _control_body(request)).get("userid", "")
        if not isinstance(userid, str) or (userid and not USERID.fullmatch(userid)):
            raise web.HTTPBadRequest(text="userid must be letters, digits and _-@.")
        state.oauth_userid = userid
    return _json({"userid": state.oauth_userid, "logins": state.oauth_log})


# --- WeChat messages ---------------------------------------------------------------------------


def _wechat_recipient_error(openid: str, endpoint: str) -> JsonDict | None:
    if not openid:
        return _err(40003, "invalid openid")
    if openid.startswith("o_invalid"):
        return _err(40003, "invalid openid")
    if endpoint == "message/subscribe/send":
        if openid.startswith(("o_unsubscribed", "o_no_subscription")):
            return _err(43101, "user refuse to accept the msg")
        return None
    if openid.startswith("o_unsubscribed"):
        return _err(43004, "require subscribe")
    if endpoint == "message/custom/send" and openid.startswith("o_out_of_window"):
        return _err(45015, "response out of time limit or subscription is canceled")
    return None


def _body(call: Call) -> JsonDict:
    return call.body if isinstance(call.body, dict) else {}


def _without(body: JsonDict, *keys: str) -> JsonDict:
    return {k: v for k, v in body.items() if k not in keys}


@api("message/custom/send", [WECHAT])
async def custom_send(state: StandinState, call: Call) -> JsonDict:
    body = _body(call)
    openid = str(body.get("touser") or "")
    problem = _wechat_recipient_error(openid, call.endpoint) or _custom_content_error(state, body)
    if problem:
        return problem
    state.record(call, [openid], _without(body, "touser"), OK)
    return dict(OK)


def _custom_content_error(state: StandinState, body: JsonDict) -> JsonDict | None:
    msgtype = body.get("msgtype")
    if msgtype not in WECHAT_CUSTOM_TYPES:
        return _err(40008, "invalid message type")
    content = body.get(msgtype)
    if not isinstance(content, dict):
        return _err(47001, "data format error")
    if msgtype == "text" and not str(content.get("content") or "").strip():
        return _err(44004, "empty content")
    if msgtype in ("news", "mpnews"):
        articles = content.get("articles")
        if msgtype == "news" and (not isinstance(articles, list) or not articles):
            return _err(44003, "empty news data")
        if isinstance(articles, list) and len(articles) > 1:
            return _err(45008, "article size out of limit")
    if msgtype == "image" and content.get("media_id") not in state.media:
        return _err(40007, "invalid media_id")
    if msgtype == "miniprogrampage" and not content.get("pagepath"):
        return _err(47001, "data format error")
    return None


def _template_data_error(data: Any) -> JsonDict | None:
    if not isinstance(data, dict) or not data:
        return _err(47003, "argument invalid! data empty")
    for key, item in data.items():
        if not isinstance(item, dict) or not str(item.get("value") or "").strip():
            return _err(47003, f"argument invalid! data.{key}.value empty")
    return None


def _template_id_error(template_id: Any) -> JsonDict | None:
    if not template_id or str(template_id).startswith("invalid"):
        return _err(40037, "invalid template_id")
    return None


@api("message/template/send", [WECHAT])
async def template_send(state: StandinState, call: Call) -> JsonDict:
    body = _body(call)
    openid = str(body.get("touser") or "")
    problem = (
        _wechat_recipient_error(openid, call.endpoint)
        or _template_id_error(body.get("template_id"))
        or _template_data_error(body.get("data"))
    )
    if problem:
        return problem
    answer = {**OK, "msgid": state.rng.randrange(10**9, 10**10)}
    state.record(call, [openid], {"msgtype": "template", **_without(body, "touser")}, answer)
    return answer


@api("message/subscribe/send", [WECHAT])
async def subscribe_send(state: StandinState, call: Call) -> JsonDict:
    body = _body(call)
    openid = str(body.get("touser") or "")
    problem = (
        _wechat_recipient_error(openid, call.endpoint)
        or _template_id_error(body.get("template_id"))
        or _template_data_error(body.get("data"))
    )
    if problem:
        return problem
    state_ = body.get("miniprogram_state")
    if state_ is not None and state_ not in ("developer", "trial", "formal"):
        return _err(47001, "data format error: miniprogram_state")
    page = body.get("page")
    if page is not None and (not isinstance(page, str) or "://" in page):
        return _err(41030, "invalid page")
    answer = {**OK, "msgid": state.rng.randrange(10**9, 10**10)}
    state.record(call, [openid], {"msgtype": "subscribe", **_without(body, "touser")}, answer)
    return answer


@api("qrcode/create", [WECHAT])
async def qrcode_create(state: StandinState, call: Call) -> JsonDict:
    body = _body(call)
    action = body.get("action_name")
    scene = (body.get("action_info") or {}).get("scene") or {}
    if action not in ("QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"):
        return _err(40097, "invalid args: action_name")
    scene_value = scene.get("scene_str") if "STR" in action else scene.get("scene_id")
    if scene_value in (None, "") or ("STR" in action and len(str(scene_value)) > 64):
        return _err(40097, "invalid args: scene")
    ticket = "gQ" + state.random_id(94)
    answer: JsonDict = {"ticket": ticket, "url": f"http://weixin.qq.com/q/{state.random_id(22)}"}
    permanent = action.startswith("QR_LIMIT")
    if not permanent:
        expire = int(body.get("expire_seconds") or 60)
        answer["expire_seconds"] = min(max(expire, 1), 2_592_000)
    state.assets.append(
        {
            "kind": "qrcode",
            "scene": scene_value,
            "permanent": permanent,
            "ticket": ticket,
            "at": _now_iso(),
        }
    )
    return answer


@api("media/upload", [WECHAT, WECOM], json_body=False)
async def media_upload(state: StandinState, call: Call) -> JsonDict:
    kind = call.request.query.get("type", "")
    if kind not in ("image", "voice", "video", "thumb", "file"):
        return _err(40004, "invalid media type")
    if not call.request.content_type.startswith("multipart/"):
        return _err(41005, "media data missing")
    part_name, filename, size = await _read_media(call.request)
    if part_name is None:
        return _err(41005, "media data missing")
    if kind == "image":
        if not filename.lower().endswith(IMAGE_EXTENSIONS):
            return _err(40005, "invalid file type")
        if size == 0 or size > MAX_IMAGE_BYTES:
            return _err(40009, "invalid image size")
    media_id = state.random_id(64)
    state.media[media_id] = {"type": kind, "filename": filename, "size": size}
    state.assets.append(
        {
            "kind": "media",
            "platform": call.platform,
            "type": kind,
            "media_id": media_id,
            "filename": filename,
            "size": size,
            "at": _now_iso(),
        }
    )
    created = int(time.time())
    return {
        **OK,
        "type": kind,
        "media_id": media_id,
        "created_at": str(created) if call.platform == WECOM else created,
    }


async def _read_media(request: web.Request) -> tuple[str | None, str, int]:
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            return None, "", 0
        if getattr(part, "name", None) == "media":
            data = await part.read()  # type: ignore[union-attr]
            return "media", getattr(part, "filename", None) or "", len(data)


# --- WeCom messages ----------------------------------------------------------------------------


@api("message/send", [WECOM])
async def wecom_send(state: StandinState, call: Call) -> JsonDict:
    body = _body(call)
    users = [u for u in str(body.get("touser") or "").split("|") if u]
    problem = _wecom_header_error(body, users) or _wecom_content_error(state, body)
    if problem:
        return problem
    valid = [u for u in users if not u.startswith("invalid")]
    invalid = [u for u in users if u.startswith("invalid")]
    if not valid:
        return _err(81013, "user & party & tag all invalid")
    answer: JsonDict = {**OK, "invaliduser": "|".join(invalid), "msgid": state.random_id(40)}
    if body.get("msgtype") == "template_card":
        code = _register_card(state, call, body, valid)
        if isinstance(code, dict):
            return code
        if code:
            answer["response_code"] = code
    state.record(call, valid, _without(body, "touser"), answer)
    return answer


def _wecom_header_error(body: JsonDict, users: list[str]) -> JsonDict | None:
    if "agentid" not in body:
        return _err(41011, "agentid missing")
    if not isinstance(body["agentid"], int):
        return _err(40056, "invalid agentid")
    if not users:
        return _err(82001, "All touser & toparty & totag invalid")
    if len(users) > 1000:
        return _err(40032, "invalid userid list size")
    return None


def _wecom_content_error(state: StandinState, body: JsonDict) -> JsonDict | None:
    msgtype = body.get("msgtype")
    if msgtype not in WECOM_TYPES:
        return _err(40008, "invalid message type")
    content = body.get(msgtype)
    if not isinstance(content, dict):
        return _err(40058, f"invalid parameter: {msgtype}")
    if msgtype == "text":
        text = str(content.get("content") or "")
        if not text.strip():
            return _err(44004, "empty content")
        if len(text.encode("utf-8")) > 2048:
            return _err(45002, "content size out of limit")
    if msgtype == "textcard" and not content.get("description"):
        return _err(41033, "description missing")
    if msgtype == "textcard" and not content.get("title"):
        return _err(41016, "title missing")
    if msgtype == "image" and content.get("media_id") not in state.media:
        return _err(40007, "invalid media_id")
    if msgtype == "template_card":
        return _card_error(content)
    return None


def _card_error(card: JsonDict) -> JsonDict | None:
    card_type = card.get("card_type")
    if card_type not in CARD_TYPES:
        return _err(40058, "invalid parameter: card_type")
    needs_task = card_type in INTERACTIVE_CARDS or bool(card.get("action_menu"))
    if needs_task and not TASK_ID.fullmatch(str(card.get("task_id") or "")):
        return _err(42014, "invalid task_id")
    if card_type == "button_interaction":
        buttons = card.get("button_list")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 6:
            return _err(40058, "invalid parameter: button_list")
        for button in buttons:
            if not isinstance(button, dict) or not button.get("key"):
                return _err(42019, "button key missing")
            if not button.get("text"):
                return _err(42020, "button name missing")
    return None


def _register_card(
    state: StandinState, call: Call, body: JsonDict, users: list[str]
) -> str | JsonDict | None:
    """Remember an interactive card by task_id; the answer's response_code updates it."""
    card = body["template_card"]
    if card.get("card_type") not in INTERACTIVE_CARDS and not card.get("action_menu"):
        return None
    corp = call.token.owner if call.token else ""
    task_key = (corp, int(body["agentid"]), str(card.get("task_id") or ""))
    if task_key in state.cards:
        return _err(42014, "invalid task_id: task_id already exists")
    state.cards[task_key] = {"card": card, "userids": users}
    return _issue_code(state, task_key)


def _issue_code(state: StandinState, task_key: tuple[str, int, str]) -> str:
    code = state.random_id(48)
    state.codes[code] = IssuedCode(task_key, time.time() + RESPONSE_CODE_TTL)
    return code


@api("message/update_template_card", [WECOM])
async def update_template_card(state: StandinState, call: Call) -> JsonDict:
    body = _body(call)
    code = state.codes.get(str(body.get("response_code") or ""))
    if code is None or code.expires_at <= time.time():
        return _err(40078, "invalid response_code")
    if code.used:
        return _err(42022, "response_code has been used")
    if not isinstance(body.get("agentid"), int):
        return _err(41011, "agentid missing")
    corp = call.token.owner if call.token else ""
    if code.task_key[:2] != (corp, body["agentid"]):
        return _err(42015, "update message agentid not match")
    replace = (body.get("button") or {}).get("replace_name")
    card = body.get("template_card")
    if not replace and not isinstance(card, dict):
        return _err(40058, "invalid parameter: button.replace_name or template_card")
    if isinstance(card, dict) and (problem := _card_error(card)):
        return problem
    code.used = True
    userids = [str(u) for u in body.get("userids") or []] or state.cards[code.task_key]["userids"]
    payload = {
        "msgtype": "update_template_card",
        "task_id": code.task_key[2],
        **_without(body, "userids", "response_code"),
    }
    state.record(call, userids, payload, OK)
    return {**OK, "invaliduser": []}


# --- control and inspection --------------------------------------------------------------------


async def messages_view(request: web.Request) -> web.Response:
    state = request.app[STATE]
    to, platform = request.query.get("to"), request.query.get("platform")
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="since must be a message id") from None
    picked = [
        m
        for m in state.messages
        if m["id"] > since
        and (not to or to in m["to"])
        and (not platform or m["platform"] == platform)
    ]
    last = state.messages[-1]["id"] if state.messages else 0
    return _json({"messages": picked, "last_id": last})


async def tokens_view(request: web.Request) -> web.Response:
    return _json({"fetches": request.app[STATE].token_fetches})


async def errors_view(request: web.Request) -> web.Response:
    return _json({"errors": request.app[STATE].errors})


async def assets_view(request: web.Request) -> web.Response:
    return _json({"assets": request.app[STATE].assets})


async def reset_view(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return _json({"ok": True})


async def faults_view(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _control_body(request)
    mode, count = body.get("mode"), body.get("count", 1)
    if mode not in FAULT_MODES or not isinstance(count, int) or count < 0:
        raise web.HTTPBadRequest(text=f"mode must be one of {FAULT_MODES}, count a number")
    state.faults.extend([mode] * count)
    return _json({"queued": list(state.faults)})


async def config_view(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _control_body(request)
    for name in ("fail_rate", "expire_rate", "latency"):
        if name in body:
            value = body[name]
            if (
                not isinstance(value, int | float)
                or value < 0
                or (name != "latency" and value > 1)
            ):
                raise web.HTTPBadRequest(text=f"{name} out of range")
            setattr(state, name, float(value))
    return _json(
        {"fail_rate": state.fail_rate, "expire_rate": state.expire_rate, "latency": state.latency}
    )


async def click_view(request: web.Request) -> web.Response:
    """Pretend a member clicked a card button: the fields WeCom would push to our callback."""
    state = request.app[STATE]
    body = await _control_body(request)
    task_id, key, userid = body.get("task_id"), body.get("key"), body.get("userid")
    matches = [k for k in state.cards if k[2] == task_id]
    if not matches or not userid:
        raise web.HTTPNotFound(text="no interactive card with that task_id (or no userid)")
    task_key = matches[-1]
    card = state.cards[task_key]["card"]
    keys = [b.get("key") for b in card.get("button_list") or []]
    if keys and key not in keys:
        raise web.HTTPBadRequest(text=f"button key must be one of {keys}")
    return _json(
        {
            "ToUserName": task_key[0],
            "FromUserName": userid,
            "CreateTime": int(time.time()),
            "MsgType": "event",
            "Event": "template_card_event",
            "EventKey": key,
            "TaskId": task_id,
            "CardType": card.get("card_type"),
            "ResponseCode": _issue_code(state, task_key),
            "AgentID": task_key[1],
        }
    )


async def _control_body(request: web.Request) -> JsonDict:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise web.HTTPBadRequest(text="expected a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return body


# --- the human page ----------------------------------------------------------------------------

PLATFORM_LABEL = {WECHAT: "微信", WECOM: "企业微信"}
ENDPOINT_LABEL = {
    "message/custom/send": "客服消息",
    "message/template/send": "模板消息",
    "message/subscribe/send": "订阅消息",
    "message/send": "应用消息",
    "message/update_template_card": "更新模板卡片",
}
MSGTYPE_LABEL = {
    "text": "文本",
    "news": "图文",
    "mpnews": "图文",
    "image": "图片",
    "voice": "语音",
    "video": "视频",
    "file": "文件",
    "music": "音乐",
    "miniprogrampage": "小程序卡片",
    "textcard": "文本卡片",
    "markdown": "Markdown",
    "template_card": "模板卡片",
    "template": "模板消息",
    "subscribe": "订阅消息",
    "msgmenu": "菜单消息",
    "update_template_card": "卡片更新",
}
_OWN_KIND = frozenset({"template", "subscribe", "update_template_card"})
BUTTON_STYLE = {1: "蓝", 2: "灰", 3: "红", 4: "白"}

PAGE_STYLE = """
body{font-family:-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;background:#ededed;
margin:0;padding:1em 2em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:2em}
.msg{background:#fff;border-radius:8px;padding:.8em 1em;margin:.8em 0;max-width:46em;
box-shadow:0 1px 2px #0002}
.msg.wecom{border-left:4px solid #2b7bd6}.msg.wechat{border-left:4px solid #07c160}
.meta{font-size:.8em;color:#888;margin-bottom:.4em}
.title{font-weight:bold}.desc{color:#666}.rows{margin:.4em 0}.rows td{padding:0 1em 0 0}
.btn{display:inline-block;border-radius:4px;padding:.2em .8em;margin:.3em .4em 0 0;
border:1px solid #2b7bd6;color:#2b7bd6}
.btn.s1{background:#2b7bd6;color:#fff}.btn.s3{border-color:#e54545;color:#e54545}
.btn.s2{border-color:#999;color:#666}
.err{color:#c00}.muted{color:#999}pre{white-space:pre-wrap;margin:0}
"""


def _e(value: Any) -> str:
    return html.escape(str(value if value is not None else ""))


def _local_time(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(SHANGHAI).strftime("%m-%d %H:%M:%S")


def _multiline(text: Any) -> str:
    return _e(text).replace("\n", "<br>")


def render_page(state: StandinState, limit: int = 200) -> str:
    messages = state.messages[-limit:][::-1]
    parts = [
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>",
        "<meta http-equiv='refresh' content='3'>",
        "<title>消息替身 · 已发送的消息</title>",
        f"<style>{PAGE_STYLE}</style></head><body>",
        "<h1>微信 / 企业微信 接口替身 · 已发送的消息</h1>",
        f"<p class='muted'>共 {len(state.messages)} 条消息，"
        f"{len(state.errors)} 次被拒绝的调用 · 每 3 秒自动刷新</p>",
    ]
    if not messages:
        parts.append("<p>还没有发出任何消息。</p>")
    parts.extend(_render_message(m) for m in messages)
    parts.append(_render_errors(state.errors[-20:][::-1]))
    parts.append(_render_assets(state.assets[-20:][::-1]))
    parts.append("</body></html>")
    return "".join(parts)


def _render_message(m: JsonDict) -> str:
    payload = m["payload"]
    msgtype = payload.get("msgtype") or ""
    kind = ENDPOINT_LABEL.get(m["endpoint"], m["endpoint"])
    type_label = MSGTYPE_LABEL.get(msgtype, msgtype)
    # Template, subscribe and update records have no msgtype of their own: the kind says it all.
    detail = "" if msgtype in _OWN_KIND else f"（{_e(type_label)}）"
    meta = (
        f"#{m['id']} · {_local_time(m['at'])} · {PLATFORM_LABEL.get(m['platform'], m['platform'])}"
        f" · {_e(kind)}{detail} · 发给 {_e('、'.join(m['to']))}"
    )
    return (
        f"<div class='msg {_e(m['platform'])}' data-id='{m['id']}'>"
        f"<div class='meta'>{meta}</div>{_render_body(msgtype, payload)}</div>"
    )


def _render_body(msgtype: str, payload: JsonDict) -> str:
    renderer = _RENDERERS.get(msgtype)
    if renderer is not None:
        return renderer(payload)
    content = payload.get(msgtype, payload)
    return f"<pre>{_e(json.dumps(content, ensure_ascii=False, indent=1))}</pre>"


def _render_text(payload: JsonDict) -> str:
    return f"<div>{_multiline(payload['text'].get('content'))}</div>"


def _render_news(payload: JsonDict) -> str:
    articles = payload.get(payload.get("msgtype", "news"), {}).get("articles") or []
    out = []
    for a in articles:
        title = _e(a.get("title"))
        link = f"<a href='{_e(a['url'])}'>{title}</a>" if a.get("url") else title
        desc = _multiline(a.get("description"))
        out.append(f"<div class='title'>📰 {link}</div><div class='desc'>{desc}</div>")
    return "".join(out)


def _render_image(payload: JsonDict) -> str:
    media_id = _e(payload["image"].get("media_id"))[:16]
    return f"<div>🖼 图片 <span class='muted'>media_id {media_id}…</span></div>"


def _render_miniprogram(payload: JsonDict) -> str:
    page = payload["miniprogrampage"]
    return (
        f"<div class='title'>小程序卡片：{_e(page.get('title'))}</div>"
        f"<div class='desc'>页面 {_e(page.get('pagepath'))}</div>"
    )


def _field_value(value: Any) -> Any:
    return value.get("value") if isinstance(value, dict) else value


def _render_data_rows(data: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td class='muted'>{_e(k)}</td><td>{_e(_field_value(v))}</td></tr>"
        for k, v in data.items()
    )
    return f"<table class='rows'>{rows}</table>"


def _render_template(payload: JsonDict) -> str:
    link = payload.get("url") or (payload.get("miniprogram") or {}).get("pagepath")
    extra = f"<div class='desc'>点击打开 {_e(link)}</div>" if link else ""
    return (
        f"<div class='title'>模板 {_e(payload.get('template_id'))}</div>"
        f"{_render_data_rows(payload.get('data') or {})}{extra}"
    )


def _render_subscribe(payload: JsonDict) -> str:
    page = (
        f"<div class='desc'>点击打开小程序页面 {_e(payload['page'])}</div>"
        if payload.get("page")
        else ""
    )
    return (
        f"<div class='title'>订阅消息模板 {_e(payload.get('template_id'))}</div>"
        f"{_render_data_rows(payload.get('data') or {})}{page}"
    )


def _render_textcard(payload: JsonDict) -> str:
    card = payload["textcard"]
    return (
        f"<div class='title'>{_e(card.get('title'))}</div>"
        f"<div class='desc'>{_multiline(card.get('description'))}</div>"
        f"<span class='btn'>{_e(card.get('btntxt') or '详情')}</span>"
    )


def _render_markdown(payload: JsonDict) -> str:
    return f"<pre>{_e(payload['markdown'].get('content'))}</pre>"


def _render_card(card: JsonDict) -> str:
    parts = []
    if (source := card.get("source") or {}).get("desc"):
        parts.append(f"<div class='muted'>{_e(source['desc'])}</div>")
    title = card.get("main_title") or {}
    parts.append(f"<div class='title'>{_e(title.get('title'))}</div>")
    if title.get("desc"):
        parts.append(f"<div class='desc'>{_multiline(title['desc'])}</div>")
    if card.get("sub_title_text"):
        parts.append(f"<div>{_multiline(card['sub_title_text'])}</div>")
    rows = card.get("horizontal_content_list") or []
    if rows:
        cells = "".join(
            f"<tr><td class='muted'>{_e(r.get('keyname'))}</td><td>{_e(r.get('value'))}</td></tr>"
            for r in rows
        )
        parts.append(f"<table class='rows'>{cells}</table>")
    for b in card.get("button_list") or []:
        style = b.get("style", 1)
        parts.append(
            f"<span class='btn s{_e(style)}' title='key={_e(b.get('key'))}，"
            f"{BUTTON_STYLE.get(style, '')}色'>{_e(b.get('text'))}</span>"
        )
    if card.get("task_id"):
        parts.append(f"<div class='muted'>task_id {_e(card['task_id'])}</div>")
    return "".join(parts)


def _render_template_card(payload: JsonDict) -> str:
    return _render_card(payload["template_card"])


def _render_update(payload: JsonDict) -> str:
    replace = (payload.get("button") or {}).get("replace_name")
    head = f"<div>卡片 {_e(payload.get('task_id'))} 已更新</div>"
    if replace:
        return f"{head}<div>按钮变为 <span class='btn s2'>{_e(replace)}</span></div>"
    return head + _render_card(payload.get("template_card") or {})


_RENDERERS: dict[str, Callable[[JsonDict], str]] = {
    "text": _render_text,
    "news": _render_news,
    "mpnews": _render_news,
    "image": _render_image,
    "miniprogrampage": _render_miniprogram,
    "template": _render_template,
    "subscribe": _render_subscribe,
    "textcard": _render_textcard,
    "markdown": _render_markdown,
    "template_card": _render_template_card,
    "update_template_card": _render_update,
}


def _render_errors(errors: list[JsonDict]) -> str:
    if not errors:
        return ""
    items = "".join(
        f"<li>{_local_time(e['at'])} · {_e(ENDPOINT_LABEL.get(e['endpoint'], e['endpoint']))}"
        f" · {_e(e['to'] or '')}"
        f" · <span class='err'>errcode {_e(e['errcode'])} {_e(e['errmsg'])}</span></li>"
        for e in errors
    )
    return f"<h2>被拒绝的调用（最近 20 次）</h2><ul>{items}</ul>"


def _render_assets(assets: list[JsonDict]) -> str:
    if not assets:
        return ""
    items = []
    for a in assets:
        if a["kind"] == "qrcode":
            kind = "永久" if a["permanent"] else "临时"
            items.append(f"<li>{_local_time(a['at'])} · {kind}二维码，场景 {_e(a['scene'])}</li>")
        else:
            items.append(
                f"<li>{_local_time(a['at'])} · 上传{_e(MSGTYPE_LABEL.get(a['type'], a['type']))}"
                f" {_e(a['filename'])}（{a['size']} 字节）</li>"
            )
    return f"<h2>二维码与素材（最近 20 个）</h2><ul>{''.join(items)}</ul>"


async def page_view(request: web.Request) -> web.Response:
    return web.Response(
        text=render_page(request.app[STATE]), content_type="text/html", charset="utf-8"
    )


async def root_view(request: web.Request) -> web.Response:
    raise web.HTTPFound("/standin/")


# --- assembly ----------------------------------------------------------------------------------


def build_standin_app(
    fail_rate: float = 0.0,
    expire_rate: float = 0.0,
    seed: int | None = None,
    *,
    latency: float = 0.0,
    token_ttl: int = TOKEN_TTL,
) -> web.Application:
    # Uploads may be up to 10 MB (plus multipart overhead).
    app = web.Application(client_max_size=MAX_IMAGE_BYTES + 1024 * 1024)
    app[STATE] = StandinState(
        fail_rate=fail_rate,
        expire_rate=expire_rate,
        latency=latency,
        token_ttl=token_ttl,
        seed=seed,
    )
    r = app.router
    r.add_post("/cgi-bin/stable_token", stable_token)
    r.add_get("/cgi-bin/token", classic_token)
    r.add_get("/cgi-bin/gettoken", gettoken)
    r.add_get("/sns/jscode2session", jscode2session)
    r.add_post("/cgi-bin/message/custom/send", custom_send)
    r.add_post("/cgi-bin/message/template/send", template_send)
    r.add_post("/cgi-bin/message/subscribe/send", subscribe_send)
    r.add_post("/cgi-bin/qrcode/create", qrcode_create)
    r.add_post("/cgi-bin/media/upload", media_upload)
    r.add_post("/cgi-bin/message/send", wecom_send)
    r.add_post("/cgi-bin/message/update_template_card", update_template_card)
    r.add_get("/cgi-bin/auth/getuserinfo", oauth_getuserinfo)
    r.add_get("/connect/oauth2/authorize", oauth_authorize)
    r.add_get("/", root_view)
    r.add_get("/standin/", page_view)
    r.add_get("/standin/messages", messages_view)
    r.add_get("/standin/tokens", tokens_view)
    r.add_get("/standin/errors", errors_view)
    r.add_get("/standin/assets", assets_view)
    r.add_post("/standin/reset", reset_view)
    r.add_post("/standin/faults", faults_view)
    r.add_post("/standin/config", config_view)
    r.add_post("/standin/click", click_view)
    r.add_get("/standin/oauth", oauth_config_view)
    r.add_post("/standin/oauth", oauth_config_view)
    return app


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without query strings: they carry access tokens and secrets."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %.1fms", request.method, request.path, response.status, time * 1000
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bot.wechat.standin", description="Local stand-in for the WeChat and WeCom APIs"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--expire-rate", type=float, default=0.0)
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to each API call"
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = build_standin_app(args.fail_rate, args.expire_rate, args.seed, latency=args.latency)
    print(f"stand-in: http://{args.host}:{args.port}/standin/", flush=True)
    web.run_app(
        app, host=args.host, port=args.port, access_log_class=PathOnlyAccessLogger, print=None
    )


if __name__ == "__main__":
    main()
