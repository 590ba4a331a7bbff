"""Small asyncio clients for the WeChat (Official Account / mini-program) and WeCom HTTP APIs.

wechatpy's client is synchronous (``requests``), so outbound calls go through
these instead. Three things every call shares:

- the access token lives in Redis, shared by every process, and is refreshed
  by one process at a time under a Redis lock (``TokenCache``);
- a token error (40001, 40014, 42001) invalidates the cached token, fetches a
  fresh one and retries the call once (a second token error is the caller's);
- every HTTP exchange has its own timeout (``call_timeout``), so a call's
  worst-case duration, token refresh included, is known
  (``worst_case_seconds``): the outbox keeps it under its claim lease;
- every failure is an ``ApiError`` classified as ``retryable``,
  ``token_expired`` or ``permanent``, so the outbox worker decides in one place
  whether to try again later or give up.

Tokens and secrets travel only in query strings and request bodies; they are
never logged nor put into an error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import redis.asyncio as aioredis

from bot.infra.settings import Settings

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]

# errcodes a later attempt may cure: system busy, daily quota, per-minute quota.
RETRYABLE_CODES = frozenset({-1, 45009, 45011})
# errcodes that mean "this access token is no good": fetch another one.
TOKEN_CODES = frozenset({40001, 40014, 42001})


class ApiError(Exception):
    """A failed API call.

    ``errcode`` is the platform's code, or ``None`` when no API answer arrived
    (network error, timeout, HTTP error status, a body that is not JSON).
    The three classifications are disjoint; a ``token_expired`` error that
    escapes a client has already survived one refresh-and-retry, so callers
    should treat it like a retryable one (it may also mean a wrong secret).
    """

    def __init__(
        self,
        errcode: int | None,
        errmsg: str,
        *,
        endpoint: str = "",
        http_status: int | None = None,
    ) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.endpoint = endpoint
        self.http_status = http_status
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        if self.errcode is None:
            status = f"HTTP {self.http_status} " if self.http_status else ""
            return f"{where}{status}{self.errmsg}".strip()
        return f"{where}errcode={self.errcode} {self.errmsg}"

    @property
    def retryable(self) -> bool:
        if self.errcode is None:
            # No answer from the API; only a plain client error (4xx other than 429)
            # says the request itself is wrong.
            status = self.http_status
            return status is None or status >= 500 or status == 429
        return self.errcode in RETRYABLE_CODES

    @property
    def token_expired(self) -> bool:
        return self.errcode in TOKEN_CODES

    @property
    def permanent(self) -> bool:
        return not self.retryable and not self.token_expired


# --- HTTP plumbing -----------------------------------------------------------------------------

# Both platforms want UTF-8 JSON: WeCom rejects \uNNNN escapes (errcode 40033) and
# WeChat has shown them verbatim to users, so never send json.dumps' ASCII default.
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def encode_json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def request_json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    endpoint: str,
    params: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
    form: aiohttp.FormData | None = None,
    timeout: float | None = None,
) -> JsonDict:
    """One HTTP exchange, turned into the decoded JSON answer or an ``ApiError``.

    ``timeout``: seconds for the whole exchange (default: the session's). Messages
    never include the URL or the exception text: both can carry the access token.
    """
    data: Any = encode_json(body) if body is not None else form
    headers = _JSON_HEADERS if body is not None else None
    limit = aiohttp.ClientTimeout(total=timeout) if timeout is not None else None
    try:
        async with http.request(
            method, url, params=params, data=data, headers=headers, timeout=limit
        ) as resp:
            raw = await resp.read()
            status = resp.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ApiError(None, f"network error ({type(exc).__name__})", endpoint=endpoint) from None
    if status != 200:
        raise ApiError(None, "unexpected HTTP status", endpoint=endpoint, http_status=status)
    try:
        answer = json.loads(raw)
    except ValueError:
        raise ApiError(None, "answer is not JSON", endpoint=endpoint, http_status=status) from None
    if not isinstance(answer, dict):
        raise ApiError(None, "answer is not a JSON object", endpoint=endpoint, http_status=status)
    errcode = answer.get("errcode", 0)
    if errcode:
        raise ApiError(int(errcode), str(answer.get("errmsg", "")), endpoint=endpoint)
    return answer


# --- access tokens -----------------------------------------------------------------------------

TokenFetcher = Callable[[bool], Awaitable[tuple[str, int]]]

# Delete a key only if it still holds what we expect: a lock we own, or the very token
# that was rejected (not a newer one another process already put there).
_DELETE_IF_EQUAL = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

# Forget a rejected token and leave a note that the next fetch must force a new one.
_INVALIDATE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('del', KEYS[1])
    redis.call('set', KEYS[2], ARGV[1], 'EX', ARGV[2])
    return 1
end
return 0
"""


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8") if isinstance(value, bytes) else value


class TokenCache:
    """An access token shared by every process through Redis.

    The cached copy expires ``margin`` seconds before the platform's expiry, so a
    token read from the cache stays usable for at least that long. On a miss,
    one process takes a short Redis lock and fetches; the others poll the cache
    until the new token appears (or take over the lock if its holder died).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        platform: str,
        owner: str,
        fetch: TokenFetcher,
        *,
        margin: int = 300,
        lock_ttl: float = 15.0,
        wait: float = 20.0,
        poll: float = 0.05,
    ) -> None:
        self.redis = redis
        self.key = f"cinebot:token:{platform}:{owner}"
        self._lock_key = f"{self.key}:lock"
        self._stale_key = f"{self.key}:stale"
        self._fetch = fetch
        self.margin = margin
        self.lock_ttl = lock_ttl
        self.wait = wait
        self.poll = poll
        self._delete_if_equal = redis.register_script(_DELETE_IF_EQUAL)
        self._invalidate = redis.register_script(_INVALIDATE)

    async def get(self) -> str:
        cached = _text(await self.redis.get(self.key))
        if cached:
            return cached
        return await self._refresh()

    def worst_case_seconds(self, fetch_timeout: float) -> float:
        """The longest ``get`` can take when a fetch takes at most ``fetch_timeout``: waiting
        for another process up to ``wait``, then (lock taken just before giving up) one
        fetch of our own. Redis round trips are not counted: callers keep a margin."""
        return self.wait + self.poll + fetch_timeout

    async def invalidate(self, token: str) -> bool:
        """Drop ``token`` after the API rejected it. True if this call dropped it.

        Many calls may fail with the same stale token at once; only the first
        one drops it, so the platform sees one refresh, not a storm of them.
        """
        dropped = await self._invalidate(
            keys=[self.key, self._stale_key], args=[token, int(self.lock_ttl * 4)]
        )
        return bool(dropped)

    async def _refresh(self) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while True:
            token = await self._refresh_if_leader()
            if token:
                return token
            await asyncio.sleep(self.poll)
            cached = _text(await self.redis.get(self.key))
            if cached:
                return cached
            if loop.time() >= deadline:
                raise ApiError(None, "timed out waiting for another process to refresh the token")

    async def _refresh_if_leader(self) -> str | None:
        owner = secrets.token_hex(8)
        locked = await self.redis.set(self._lock_key, owner, nx=True, px=int(self.lock_ttl * 1000))
        if not locked:
            return None
        try:
            # Another process may have stored a token between our miss and our lock.
            cached = _text(await self.redis.get(self.key))
            if cached:
                return cached
            stale = _text(await self.redis.get(self._stale_key))
            token, expires_in = await self._fetch(stale is not None)
            ttl = max(expires_in - self.margin, min(expires_in, 60), 1)
            await self.redis.set(self.key, token, ex=ttl)
            if stale is not None:
                await self._delete_if_equal(keys=[self._stale_key], args=[stale])
            log.info(
                "access token refreshed",
                extra={
                    "token_key": self.key,
                    "expires_in": expires_in,
                    "forced": stale is not None,
                },
            )
            return token
        finally:
            await self._delete_if_equal(keys=[self._lock_key], args=[owner])


def _token_from(answer: JsonDict, endpoint: str) -> tuple[str, int]:
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise ApiError(None, "token answer without access_token", endpoint=endpoint)
    return token, int(answer.get("expires_in", 7200))


# Seconds one HTTP exchange with the platform may take. The platforms answer in well under
# a second; ten covers a slow network without letting one call hold a send for long.
CALL_TIMEOUT = 10.0


class _Client:
    """What both platforms share: a base URL, a token cache, and call-with-one-token-retry."""

    platform = ""

    def __init__(
        self, http: aiohttp.ClientSession, base_url: str, call_timeout: float = CALL_TIMEOUT
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.call_timeout = call_timeout
        self.tokens: TokenCache  # set by the subclass, which knows how to fetch

    def _token_cache(self, redis: aioredis.Redis, owner: str) -> TokenCache:
        # Waiting for another process's fetch longer than a fetch may take is pointless,
        # and it would stretch the worst case of every call.
        return TokenCache(
            redis, self.platform, owner, self._fetch_token, wait=self.call_timeout
        )

    async def _fetch_token(self, force: bool) -> tuple[str, int]:
        raise NotImplementedError

    def worst_case_seconds(self) -> float:
        """The longest one ``_call`` can take: get a token (perhaps refreshing it), post,
        and on a token error get a fresh token and post once more."""
        token = self.tokens.worst_case_seconds(self.call_timeout)
        return 2 * (token + self.call_timeout)

    def _url(self, path: str) -> str:
        return f"{self.base_url}/cgi-bin/{path}"

    async def access_token(self) -> str:
        return await self.tokens.get()

    async def _call(
        self,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        params: Mapping[str, str] | None = None,
        method: str = "POST",
    ) -> JsonDict:
        """POST (or GET) to ``cgi-bin/{path}`` with the current token; on a token error
        refresh once."""
        token = await self.tokens.get()
        try:
            return await self._post(path, token, body, form, params, method)
        except ApiError as exc:
            if not exc.token_expired:
                raise
            log.warning(
                "access token rejected, refreshing once",
                extra={"platform": self.platform, "endpoint": path, "errcode": exc.errcode},
            )
            await self.tokens.invalidate(token)
        token = await self.tokens.get()
        return await self._post(path, token, body, form, params, method)

    async def _post(
        self,
        path: str,
        token: str,
        body: Mapping[str, Any] | None,
        form: Callable[[], aiohttp.FormData] | None,
        params: Mapping[str, str] | None,
        method: str = "POST",
    ) -> JsonDict:
        query = {**(params or {}), "access_token": token}
        # A FormData can be sent only once, so a retry needs a fresh one.
        return await request_json(
            self.http,
            method,
            self._url(path),
            endpoint=path,
            params=query,
            body=body,
            form=form() if form is not None else None,
            timeout=self.call_timeout,
        )


# --- WeChat Official Account / mini-program ----------------------------------------------------

QR_MAX_EXPIRE = 2_592_000  # 30 days, the platform's ceiling for temporary codes
_SHOWQRCODE = "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="


@dataclass(frozen=True, slots=True)
class QrCode:
    ticket: str
    url: str  # what the code encodes; render it yourself, or fetch image_url
    expire_seconds: int | None  # None for a permanent code

    @property
    def image_url(self) -> str:
        return _SHOWQRCODE + quote(self.ticket, safe="")


class WeChatApi(_Client):
    platform = "wechat"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        redis: aioredis.Redis,
        base_url: str,
        appid: str,
        secret: str,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        super().__init__(http, base_url, call_timeout)
        self.appid = appid
        self._secret = secret
        self.tokens = self._token_cache(redis, appid)

    @classmethod
    def from_settings(
        cls, http: aiohttp.ClientSession, redis: aioredis.Redis, settings: Settings
    ) -> WeChatApi:
        return cls(
            http, redis, settings.wechat_api_base, settings.wechat_appid, settings.wechat_secret
        )

    def __repr__(self) -> str:
        return f"WeChatApi(appid={self.appid!r}, base_url={self.base_url!r})"

    async def _fetch_token(self, force: bool) -> tuple[str, int]:
        # The stable token stays the same while valid, so N processes never
        # invalidate each other's token the way /cgi-bin/token does.
        endpoint = "stable_token"
        body = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self._secret,
            "force_refresh": force,
        }
        answer = await request_json(
            self.http, "POST", self._url(endpoint), endpoint=endpoint, body=body,
            timeout=self.call_timeout,
        )
        return _token_from(answer, endpoint)

    async def send_custom(self, openid: str, payload: Mapping[str, Any]) -> JsonDict:
        """A customer-service message, e.g. ``{"msgtype": "text", "text": {"content": "..."}}``.

        Only within 48 h of the user's last message (otherwise errcode 45015).
        """
        return await self._call("message/custom/send", body={"touser": openid, **payload})

    async def send_template(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, Any],
        *,
        url: str | None = None,
        miniprogram: Mapping[str, str] | None = None,
        client_msg_id: str | None = None,
    ) -> JsonDict:
        """An Official Account template message. ``client_msg_id`` lets WeChat drop a resend."""
        body: JsonDict = {"touser": openid, "template_id": template_id, "data": _data_fields(data)}
        if url:
            body["url"] = url
        if miniprogram:
            body["miniprogram"] = dict(miniprogram)
        if client_msg_id:
            body["client_msg_id"] = client_msg_id
        return await self._call("message/template/send", body=body)

    async def send_subscribe(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, Any],
        page: str | None = None,
        miniprogram_state: str | None = None,
        lang: str | None = None,
    ) -> JsonDict:
        """A mini-program subscribe message; ``data`` values may be plain strings.

        One send per accepted one-time subscription (otherwise errcode 43101).
        """
        body: JsonDict = {"touser": openid, "template_id": template_id, "data": _data_fields(data)}
        if page:
            body["page"] = page
        if miniprogram_state:
            if miniprogram_state not in ("developer", "trial", "formal"):
                raise ValueError("miniprogram_state must be developer, trial or formal")
            body["miniprogram_state"] = miniprogram_state
        if lang:
            body["lang"] = lang
        return await self._call("message/subscribe/send", body=body)

    async def create_qrcode(
        self, scene_str: str, permanent: bool = False, expire_seconds: int = QR_MAX_EXPIRE
    ) -> QrCode:
        """A parametric QR code; scanning it sends a subscribe/SCAN event with ``scene_str``."""
        if not 1 <= len(scene_str) <= 64:
            raise ValueError("scene_str must be 1 to 64 characters")
        body: JsonDict = {
            "action_name": "QR_LIMIT_STR_SCENE" if permanent else "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene_str}},
        }
        if not permanent:
            if not 1 <= expire_seconds <= QR_MAX_EXPIRE:
                raise ValueError(f"expire_seconds must be 1 to {QR_MAX_EXPIRE}")
            body["expire_seconds"] = expire_seconds
        answer = await self._call("qrcode/create", body=body)
        expires = answer.get("expire_seconds")
        return QrCode(
            ticket=str(answer["ticket"]),
            url=str(answer.get("url", "")),
            expire_seconds=int(expires) if expires is not None and not permanent else None,
        )

    async def upload_image(self, data: bytes, filename: str) -> str:
        """Upload a temporary image (kept 3 days); returns its media_id for image messages."""
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"

        def form() -> aiohttp.FormData:
            fd = aiohttp.FormData()
            fd.add_field("media", data, filename=filename, content_type=content_type)
            return fd

        answer = await self._call("media/upload", form=form, params={"type": "image"})
        return str(answer["media_id"])

    async def jscode2session(self, appid: str, secret: str, js_code: str) -> JsonDict:
        """A mini-program login: the ``code`` from ``wx.login`` → ``openid`` and ``session_key``.

        Takes the mini-program's own appid and secret (not this client's), needs no
        access token, and is answered once per code: a reused code is errcode 40163,
        a wrong or expired one 40029. The answer holds ``session_key``, which must
        stay on the server and out of the logs.
        """
        endpoint = "sns/jscode2session"
        params = {
            "appid": appid,
            "secret": secret,
            "js_code": js_code,
            "grant_type": "authorization_code",
        }
        answer = await request_json(
            self.http, "GET", f"{self.base_url}/{endpoint}", endpoint=endpoint, params=params,
            timeout=self.call_timeout,
        )
        if not isinstance(answer.get("openid"), str) or not answer["openid"]:
            raise ApiError(None, "login answer without openid", endpoint=endpoint)
        return answer


def _data_fields(data: Mapping[str, Any]) -> JsonDict:
    """``{"thing1": "3号厅"}`` → ``{"thing1": {"value": "3号厅"}}``; dicts pass unchanged."""
    return {k: v if isinstance(v, Mapping) else {"value": str(v)} for k, v in data.items()}


# --- WeCom (enterprise WeChat) -----------------------------------------------------------------

TASK_ID = re.compile(r"[0-9A-Za-z_\-@]{1,128}")
CARD_MAX_BUTTONS = 6
CARD_MAX_ROWS = 6


class WeComApi(_Client):
    platform = "wecom"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        redis: aioredis.Redis,
        base_url: str,
        corp_id: str,
        agent_id: int,
        secret: str,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        super().__init__(http, base_url, call_timeout)
        self.corp_id = corp_id
        self.agent_id = agent_id
        self._secret = secret
        # Tokens are per app (per secret): two apps of one corp must not share a key.
        self.tokens = self._token_cache(redis, f"{corp_id}:{agent_id}")

    @classmethod
    def from_settings(
        cls, http: aiohttp.ClientSession, redis: aioredis.Redis, settings: Settings
    ) -> WeComApi:
        return cls(
            http,
            redis,
            settings.wecom_api_base,
            settings.wecom_corp_id,
            settings.wecom_agent_id,
            settings.wecom_secret,
        )

    def __repr__(self) -> str:
        return (
            f"WeComApi(corp_id={self.corp_id!r}, agent_id={self.agent_id}, "
            f"base_url={self.base_url!r})"
        )

    async def _fetch_token(self, force: bool) -> tuple[str, int]:
        # gettoken has no force flag: it returns the current token until it is revoked.
        endpoint = "gettoken"
        params = {"corpid": self.corp_id, "corpsecret": self._secret}
        answer = await request_json(
            self.http, "GET", self._url(endpoint), endpoint=endpoint, params=params,
            timeout=self.call_timeout,
        )
        return _token_from(answer, endpoint)

    async def send(self, userids: Sequence[str], payload: Mapping[str, Any]) -> JsonDict:
        """An app message (text, textcard, markdown, template_card, ...) to up to 1000 members.

        The answer may name ``invaliduser`` (errcode still 0) and, for
        interactive cards, carries the ``response_code`` used to update them.
        """
        if not userids or len(userids) > 1000:
            raise ValueError("send to 1 to 1000 userids")
        body = {"touser": "|".join(userids), "agentid": self.agent_id, **payload}
        return await self._call("message/send", body=body)

    async def update_template_card(
        self,
        userids: Sequence[str],
        response_code: str,
        button_replace_name: str | None = None,
        template_card: Mapping[str, Any] | None = None,
    ) -> JsonDict:
        """Grey out a card's buttons with a label, or replace the card.

        Each response_code (from ``send`` or from a click callback) works once.
        """
        if (button_replace_name is None) == (template_card is None):
            raise ValueError("give exactly one of button_replace_name and template_card")
        body: JsonDict = {
            "userids": list(userids),
            "agentid": self.agent_id,
            "response_code": response_code,
        }
        if button_replace_name is not None:
            body["button"] = {"replace_name": button_replace_name}
        else:
            body["template_card"] = dict(template_card or {})
        return await self._call("message/update_template_card", body=body)

    async def user_id_from_code(self, code: str) -> str | None:
        """Web OAuth's last step (``auth/getuserinfo``): the ``code`` WeCom put on the
        redirect back to us → the member's ``userid``, or None for a visitor who is not a
        member of the corp (WeCom answers an ``openid`` then). A code works once and for
        five minutes; a bad, used or expired one is ``ApiError`` 40029."""
        answer = await self._call("auth/getuserinfo", params={"code": code}, method="GET")
        userid = answer.get("userid") or answer.get("UserId")
        return str(userid) if isinstance(userid, str) and userid else None


def button_card(
    task_id: str,
    title: str,
    desc: str,
    rows: Sequence[tuple[str, str]],
    buttons: Sequence[tuple[str, str, int]],
    *,
    source: str | None = None,
) -> JsonDict:
    """A ``button_interaction`` template card; send it as
    ``{"msgtype": "template_card", "template_card": card}``.

    ``rows`` are (label, value) lines; ``buttons`` are (key, text, style) with
    style 1–4. The click callback carries ``task_id`` and the button key.
    """
    if not TASK_ID.fullmatch(task_id):
        raise ValueError("task_id must be 1 to 128 characters of [0-9a-zA-Z_-@]")
    if not 1 <= len(buttons) <= CARD_MAX_BUTTONS:
        raise ValueError(f"a button card has 1 to {CARD_MAX_BUTTONS} buttons")
    if len(rows) > CARD_MAX_ROWS:
        raise ValueError(f"a button card has at most {CARD_MAX_ROWS} rows")
    keys = [key for key, _, _ in buttons]
    if len(set(keys)) != len(keys) or any(not k or len(k.encode()) > 1024 for k in keys):
        raise ValueError("button keys must be unique, non-empty and at most 1024 bytes")
    if any(style not in (1, 2, 3, 4) for _, _, style in buttons):
        raise ValueError("button style must be 1, 2, 3 or 4")
    card: JsonDict = {
        "card_type": "button_interaction",
        "main_title": {"title": title, "desc": desc},
        "task_id": task_id,
        "button_list": [{"key": k, "text": t, "style": s} for k, t, s in buttons],
    }
    if source:
        card["source"] = {"desc": source}
    if rows:
        card["horizontal_content_list"] = [{"keyname": k, "value": v} for k, v in rows]
    return card
