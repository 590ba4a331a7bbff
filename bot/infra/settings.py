"""One typed settings object, read from ``CINEBOT_*`` environment variables.

A ``.env`` file in the working directory may set them too; real environment
variables win. Every bad value is reported at once, in one error, so an
operator fixes a deployment in one go rather than one restart per typo.

Redis is one of three things:

* nothing set: an embedded Redis the process starts itself (``EMBEDDED_REDIS_PATH``);
* ``CINEBOT_REDIS_URL=redis://[:PASSWORD@]HOST:PORT/DB`` (or ``rediss://``, ``unix://``):
  that one server;
* a Sentinel-managed primary, found by asking the Sentinels on every new connection, so
  every process follows a failover:

  - ``CINEBOT_REDIS_SENTINELS``: the Sentinels, ``host:port`` separated by commas
    (``[::1]:26379`` for IPv6); required for this mode. They are asked in that order.
  - ``CINEBOT_REDIS_SENTINEL_SERVICE``: the master name they monitor (the ``NAME`` of
    ``sentinel monitor NAME ...`` in sentinel.conf). Required, no default: Sentinels
    often watch several primaries, and a guessed ``mymaster`` could be another
    application's Redis.
  - ``CINEBOT_REDIS_SENTINEL_PASSWORD``: the Sentinels' own ``requirepass``, if any.
  - ``CINEBOT_REDIS_PASSWORD``, ``CINEBOT_REDIS_DB``: the primary's password and the
    database index (default 0).

  ``REDIS_URL`` and ``REDIS_SENTINELS`` together are an error, not a precedence
  rule: one of them is a leftover, and guessing which could point the bot at the
  wrong server. The other four variables without ``REDIS_SENTINELS`` are an error
  too (a misspelt ``REDIS_SENTINELS`` would otherwise fall back to the embedded
  Redis unnoticed).

  The Sentinel settings are carried in ``Settings.redis_url`` as one URL,
  ``redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[?db=N&sentinel_password=P]``
  (see :class:`RedisSentinel`); that form is also accepted in ``CINEBOT_REDIS_URL``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from dotenv import dotenv_values

from bot.infra import eventloop

PREFIX = "CINEBOT_"

# The Official Account console's message encryption modes (消息加解密方式): "safe" takes
# ciphertext only, "compatible" either form, "plain" plaintext only. WeCom has no choice.
MESSAGE_MODES = ("safe", "compatible", "plain")

# Demo credentials: the local stand-in and `cinebot chat` use the same ones, so a
# fresh checkout works offline. Production deployments must override all of them.
DEMO_WECHAT_APPID = "wx5c1ne6b0tdem0001"
DEMO_WECHAT_TOKEN = "cinebotdemotoken"
DEMO_WECHAT_AES_KEY = "Y2luZWJvdC1kZW1vLXdlY2hhdC1hZXMta2V5LTMyYnk"
DEMO_WECOM_CORP_ID = "ww5c1ne6b0tdem0001"
DEMO_WECOM_TOKEN = "cinebotdemowecom"
DEMO_WECOM_AES_KEY = "Y2luZWJvdC1kZW1vLXdlY29tLWFlcy1rZXktMzJieXQ"
DEMO_SECRET_KEY = "cinebot-demo-secret-key-change-me"
# The fields that name a real WeChat account or merchant: with any of them set, money is
# real, and the sandbox bank (tickets without payment) must be asked for by name.
_PAY_IDENTITY = (
    "wechat_appid", "wechat_secret", "miniprogram_appid", "miniprogram_secret", "wechatpay_mchid",
)


SENTINEL_SCHEME = "redis+sentinel"
# The variables that describe a Sentinel-managed Redis (besides REDIS_SENTINELS itself).
_SENTINEL_COMPANIONS = (
    "REDIS_SENTINEL_SERVICE", "REDIS_SENTINEL_PASSWORD", "REDIS_PASSWORD", "REDIS_DB",
)


@dataclass(frozen=True, slots=True)
class RedisSentinel:
    """A Sentinel-managed Redis: the Sentinels to ask, and which primary to ask them for."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    password: str | None = None  # the primary's (and replicas') requirepass
    sentinel_password: str | None = None  # the Sentinels' own requirepass
    db: int = 0

    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        hosts = ",".join(_host_port(host, port) for host, port in self.sentinels)
        query: dict[str, str] = {}
        if self.db:
            query["db"] = str(self.db)
        if self.sentinel_password:
            query["sentinel_password"] = self.sentinel_password
        tail = f"?{urlencode(query, quote_via=quote)}" if query else ""
        return f"{SENTINEL_SCHEME}://{auth}{hosts}/{quote(self.service, safe='')}{tail}"

    @classmethod
    def parse(cls, url: str) -> RedisSentinel:
        """Parse :meth:`url`'s form; a ValueError says what is wrong (never a password)."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() != SENTINEL_SCHEME:
            raise ValueError(f"expected a {SENTINEL_SCHEME}:// URL")
        rest, _, query = rest.partition("?")
        query = query.partition("#")[0]
        netloc, _, path = rest.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        password = None
        if at:
            username, _, password = userinfo.partition(":")
            if username and username != "default":
                raise ValueError("a Redis user name (ACL) is not supported with Sentinel")
            password = unquote(password) or None
        path = path.rstrip("/")
        if "/" in path:
            raise ValueError("the path is the master name alone; give a database as ?db=N")
        service = _sentinel_service(unquote(path))
        db, sentinel_password = 0, None
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key == "db":
                db = _db_index(value)
            elif key == "sentinel_password":
                sentinel_password = value or None
            else:
                raise ValueError(f"unknown parameter {key!r} (db, sentinel_password)")
        return cls(_sentinel_hosts(hosts), service, password, sentinel_password, db)

    def describe(self) -> str:
        """Where the Redis is, for people: no passwords."""
        hosts = ",".join(_host_port(host, port) for host, port in self.sentinels)
        return f"Sentinel-managed primary {self.service!r} (sentinels {hosts}, db {self.db})"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_sentinel_url(url: str | None) -> bool:
    return url is not None and url.lower().startswith(f"{SENTINEL_SCHEME}://")


class SettingsError(ValueError):
    """Raised with every problem found in the configuration, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid cinebot settings:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = "sqlite://cinebot.sqlite3"
    # None: the embedded Redis. A redis+sentinel:// URL: a Sentinel-managed primary (built
    # from the REDIS_SENTINEL* variables, see the module docstring and `redis_sentinel`).
    redis_url: str | None = None
    # Where the embedded Redis keeps its data when REDIS_URL is unset.
    embedded_redis_path: str = "cinebot-redis.rdb"
    wechat_appid: str = DEMO_WECHAT_APPID
    wechat_secret: str = "cinebot-demo-wechat-secret"
    wechat_token: str = DEMO_WECHAT_TOKEN
    wechat_aes_key: str = DEMO_WECHAT_AES_KEY
    wechat_api_base: str = "https://api.weixin.qq.com"
    # Which callback bodies the OA endpoint accepts: "safe" (encrypted only), "compatible"
    # (both) or "plain" (plaintext only), as set in the OA console. Safe is the default
    # because an AES key is always configured: a plaintext body is signed only over token,
    # timestamp and nonce, a signature every safe-mode URL also carries, so accepting
    # plaintext lets whoever saw one URL post as anyone for the timestamp's lifetime.
    wechat_message_mode: str = "safe"
    # The mini-program's own credentials: its logins (jscode2session) use these, not the OA's.
    miniprogram_appid: str = "wx5cinebotdemo0mp"
    miniprogram_secret: str = "cinebot-demo-miniprogram-secret"
    wecom_corp_id: str = DEMO_WECOM_CORP_ID
    wecom_agent_id: int = 1000002
    wecom_secret: str = "cinebot-demo-wecom-secret"
    wecom_token: str = DEMO_WECOM_TOKEN
    wecom_aes_key: str = DEMO_WECOM_AES_KEY
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    secret_key: str = DEMO_SECRET_KEY
    public_url: str = "http://127.0.0.1:8080"
    log_level: str = "INFO"
    log_format: str = "json"
    # The server's event loop: "uvloop" (libuv; falls back to asyncio's own loop, with a
    # warning, where uvloop is not installed) or "asyncio".
    event_loop: str = "uvloop"
    # Seconds a handler may take before the callback answers `success` and the
    # reply goes out asynchronously (WeChat gives up on us after 5 s).
    handler_budget: float = 4.0
    max_body_bytes: int = 1024 * 1024
    # Callbacks whose timestamp is further than this from now are replays.
    timestamp_tolerance: int = 300
    # How long a message id stays remembered for retry detection.
    dedup_ttl: int = 600
    timezone: str = "Asia/Shanghai"
    # Payments: "sandbox" (the demo's own bank, keys made at first start) or "wechatpay".
    # Read from the environment, the sandbox is the default only with the demo accounts.
    pay_mode: str = "sandbox"
    wechatpay_mchid: str = "1900000001"
    wechatpay_serial: str = ""  # the merchant certificate's serial number
    wechatpay_private_key: str = ""  # path to the merchant's apiclient_key.pem
    wechatpay_apiv3_key: str = ""
    wechatpay_public_key: str = ""  # path to WeChat Pay's public key (or platform certificate)
    wechatpay_public_key_id: str = ""  # PUB_KEY_ID_… (or the certificate's serial)
    wechatpay_api_base: str = "https://api.mch.weixin.qq.com"
    # Days the per-minute telemetry aggregates (telemetry_minute) are kept.
    telemetry_retention_days: int = 30

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def uses_demo_credentials(self) -> bool:
        return DEMO_SECRET_KEY in (self.secret_key,) or self.wechat_token == DEMO_WECHAT_TOKEN

    @property
    def uses_demo_pay_identity(self) -> bool:
        """True while every account a payment would be made under is the demo's."""
        defaults = Settings()
        return all(getattr(self, name) == getattr(defaults, name) for name in _PAY_IDENTITY)

    @property
    def redis_sentinel(self) -> RedisSentinel | None:
        """The Sentinel-managed Redis, if that is what the settings name."""
        if not is_sentinel_url(self.redis_url):
            return None
        return RedisSentinel.parse(self.redis_url)  # type: ignore[arg-type]

    @property
    def redis_target(self) -> str:
        """Which Redis, for people (logs, the console): no passwords."""
        sentinel = self.redis_sentinel
        if sentinel is not None:
            return sentinel.describe()
        if self.redis_url is None:
            return f"embedded Redis ({self.embedded_redis_path})"
        return _hide_password(self.redis_url)

    def redacted(self) -> dict[str, object]:
        """Settings safe to log: secrets and passwords replaced by ``***``."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                value = "***"
            elif f.name in ("database_url", "redis_url") and value:
                value = _hide_password(str(value))
            out[f.name] = value
        return out

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        source: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            source.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        source.update(os.environ if environ is None else environ)
        return cls.from_mapping(source)

    @classmethod
    def from_mapping(cls, source: Mapping[str, str]) -> Settings:
        problems: list[str] = []
        values: dict[str, object] = {}
        sentinel_url = _sentinel_url_from(source, problems)
        if sentinel_url is not None:
            values["redis_url"] = sentinel_url
        known = {f.name for f in fields(cls)}
        for key, raw in source.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX) :].lower()
            if name not in known:
                continue
            raw = raw.strip()
            if name == "redis_url" and "redis_url" in values:
                continue  # the Sentinels' (set together with REDIS_SENTINELS: reported)
            if raw == "" and name == "redis_url":
                values[name] = None
                continue
            try:
                values[name] = _CONVERTERS.get(name, _nonempty)(raw)
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
        # Values that failed conversion keep their (valid) defaults here, so the
        # cross-field checks still run and every problem is reported in one go.
        settings = cls(**values)  # type: ignore[arg-type]
        problems.extend(settings.validate())
        if f"{PREFIX}PAY_MODE" not in source and not settings.uses_demo_pay_identity:
            # A forgotten PAY_MODE must not turn a real cinema's pay page into free tickets.
            problems.append(
                f"{PREFIX}PAY_MODE: not set, but the WeChat account or merchant is not the demo "
                f"one; set {PREFIX}PAY_MODE=wechatpay to take real payments, or =sandbox to "
                "issue tickets without payment on purpose"
            )
        if problems:
            raise SettingsError(problems)
        return settings

    def validate(self) -> list[str]:
        problems: list[str] = []
        for name in ("wechat_aes_key", "wecom_aes_key"):
            try:
                _aes_key(getattr(self, name))
            except ValueError as exc:
                problems.append(f"{PREFIX}{name.upper()}: {exc}")
        scheme = urlsplit(self.database_url).scheme
        if scheme not in ("sqlite", "postgres", "postgresql", "asyncpg", "psycopg"):
            problems.append(
                f"{PREFIX}DATABASE_URL: unsupported scheme {scheme!r}; "
                "use sqlite://FILE or postgres://USER:PASSWORD@HOST:PORT/DB"
            )
        if is_sentinel_url(self.redis_url):
            try:
                RedisSentinel.parse(self.redis_url)  # type: ignore[arg-type]
            except ValueError as exc:
                problems.append(f"{PREFIX}REDIS_URL: {exc}")
        elif self.redis_url is not None and urlsplit(self.redis_url).scheme not in (
            "redis",
            "rediss",
            "unix",
        ):
            problems.append(
                f"{PREFIX}REDIS_URL: expected redis://, rediss:// or unix:// URL "
                f"(or {PREFIX}REDIS_SENTINELS for a Sentinel-managed Redis)"
            )
        for name in ("wechat_api_base", "wecom_api_base", "public_url"):
            if urlsplit(getattr(self, name)).scheme not in ("http", "https"):
                problems.append(f"{PREFIX}{name.upper()}: expected an http(s):// URL")
        if not 0.1 <= self.handler_budget <= 4.8:
            problems.append(
                f"{PREFIX}HANDLER_BUDGET: must be between 0.1 and 4.8 seconds "
                "(WeChat retries after 5 s)"
            )
        if self.pay_mode not in ("sandbox", "wechatpay"):
            problems.append(f"{PREFIX}PAY_MODE: expected sandbox or wechatpay")
        elif self.pay_mode == "wechatpay":
            for name in (
                "wechatpay_serial", "wechatpay_private_key", "wechatpay_apiv3_key",
                "wechatpay_public_key", "wechatpay_public_key_id",
            ):
                if not getattr(self, name):
                    problems.append(f"{PREFIX}{name.upper()}: required when PAY_MODE=wechatpay")
            for name in ("wechatpay_private_key", "wechatpay_public_key"):
                path = getattr(self, name)
                if path and not Path(path).is_file():
                    problems.append(f"{PREFIX}{name.upper()}: no such file {path!r}")
            if self.wechatpay_apiv3_key and len(self.wechatpay_apiv3_key.encode()) != 32:
                problems.append(f"{PREFIX}WECHATPAY_APIV3_KEY: must be 32 bytes")
        if self.wechat_message_mode not in MESSAGE_MODES:
            problems.append(f"{PREFIX}WECHAT_MESSAGE_MODE: expected safe, compatible or plain")
        if self.log_format not in ("json", "text"):
            problems.append(f"{PREFIX}LOG_FORMAT: expected json or text")
        if self.event_loop not in eventloop.CHOICES:
            problems.append(f"{PREFIX}EVENT_LOOP: expected uvloop or asyncio")
        return problems


_SECRET_FIELDS = {
    "wechat_secret",
    "miniprogram_secret",
    "wechat_token",
    "wechat_aes_key",
    "wecom_secret",
    "wecom_token",
    "wecom_aes_key",
    "secret_key",
    "wechatpay_apiv3_key",
}


def _nonempty(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"expected a positive number, got {value}")
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"expected a positive number, got {value}")
    return value


def _db_index(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"expected a database number (0, 1, ...), got {raw!r}")
    return int(raw)


# A host name (letters, digits, dots, hyphens, underscores as in container names) or an
# IPv4 address; IPv6 goes in brackets.
_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_IPV6 = re.compile(r"\[([0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?)\]")


def _sentinel_hosts(raw: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` → ``(("host", port), ...)``; every bad entry named at once."""
    found: list[tuple[str, int]] = []
    bad: list[str] = []
    twice: list[str] = []
    for entry in (item.strip() for item in raw.split(",")):
        if not entry:
            continue  # a trailing comma
        host, colon, port = entry.rpartition(":")
        ipv6 = _IPV6.fullmatch(host)
        if ipv6:
            host = ipv6.group(1)
        ok_host = bool(ipv6) or bool(_HOST.fullmatch(host))
        ok_port = port.isascii() and port.isdigit() and 0 < int(port) < 65536
        if not (colon and ok_host and ok_port):
            bad.append(repr(entry))
            continue
        if (host, int(port)) in found:
            twice.append(repr(entry))
            continue
        found.append((host, int(port)))
    problems = []
    if bad:
        problems.append(
            f"expected host:port entries separated by commas (port 1-65535, IPv6 as "
            f"[::1]:26379), got {', '.join(bad)}"
        )
    if twice:
        problems.append(f"listed twice: {', '.join(twice)}")
    if problems:
        raise ValueError("; ".join(problems))
    if not found:
        raise ValueError("expected at least one Sentinel as host:port, e.g. sentinel-1:26379")
    return tuple(found)


def _sentinel_service(raw: str) -> str:
    if not raw:
        raise ValueError(
            "the master name is missing (the NAME of `sentinel monitor NAME ...`, e.g. mymaster)"
        )
    if not raw.isprintable() or any(c.isspace() for c in raw):
        raise ValueError(f"a master name has no spaces or control characters, got {raw!r}")
    return raw


def _sentinel_url_from(source: Mapping[str, str], problems: list[str]) -> str | None:
    """The REDIS_SENTINEL* variables as one redis+sentinel:// URL (None: not that mode).

    Problems go to ``problems``, each under the variable that has it."""
    raw = {
        name: source[PREFIX + name].strip()
        for name in ("REDIS_SENTINELS", "REDIS_URL", *_SENTINEL_COMPANIONS)
        if source.get(PREFIX + name, "").strip()
    }
    if "REDIS_SENTINELS" not in raw:
        for name in _SENTINEL_COMPANIONS:
            if name in raw:
                problems.append(
                    f"{PREFIX}{name}: only used with {PREFIX}REDIS_SENTINELS, which is not set"
                    + (f" (with {PREFIX}REDIS_URL, put it in the URL)"
                       if name in ("REDIS_PASSWORD", "REDIS_DB") else "")
                )
        return None
    before = len(problems)
    if "REDIS_URL" in raw:
        problems.append(
            f"{PREFIX}REDIS_SENTINELS: set together with {PREFIX}REDIS_URL; unset one of them "
            "(the Sentinels name the primary, so a fixed URL would bypass a failover)"
        )
    checks = {
        "REDIS_SENTINELS": _sentinel_hosts,
        "REDIS_SENTINEL_SERVICE": _sentinel_service,
        "REDIS_DB": _db_index,
    }
    parsed: dict[str, object] = {}
    for name, check in checks.items():
        if name not in raw:
            continue
        try:
            parsed[name] = check(raw[name])
        except ValueError as exc:
            problems.append(f"{PREFIX}{name}: {exc}")
    if "REDIS_SENTINEL_SERVICE" not in raw:
        problems.append(
            f"{PREFIX}REDIS_SENTINEL_SERVICE: required with {PREFIX}REDIS_SENTINELS: the master "
            "name the Sentinels monitor (`sentinel monitor NAME ...`, e.g. mymaster)"
        )
    if len(problems) > before:
        return None
    return RedisSentinel(
        sentinels=parsed["REDIS_SENTINELS"],  # type: ignore[arg-type]
        service=parsed["REDIS_SENTINEL_SERVICE"],  # type: ignore[arg-type]
        password=raw.get("REDIS_PASSWORD"),
        sentinel_password=raw.get("REDIS_SENTINEL_PASSWORD"),
        db=parsed.get("REDIS_DB", 0),  # type: ignore[arg-type]
    ).url()


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return level


def _aes_key(raw: str) -> str:
    """An EncodingAESKey is 43 characters of base64 (32 bytes without the '=')."""
    if len(raw) != 43 or not re.fullmatch(r"[A-Za-z0-9+/]{43}", raw):
        raise ValueError("EncodingAESKey must be exactly 43 base64 characters")
    try:
        if len(base64.b64decode(raw + "=")) != 32:
            raise ValueError("EncodingAESKey must decode to 32 bytes")
    except binascii.Error:
        raise ValueError("EncodingAESKey is not valid base64") from None
    return raw


_CONVERTERS = {
    "wecom_agent_id": _positive_int,
    "max_body_bytes": _positive_int,
    "timestamp_tolerance": _positive_int,
    "dedup_ttl": _positive_int,
    "telemetry_retention_days": _positive_int,
    "handler_budget": _positive_float,
    "log_level": _log_level,
    "wechat_message_mode": str.lower,
    "wechat_aes_key": _aes_key,
    "wecom_aes_key": _aes_key,
}


def _hide_password(url: str) -> str:
    """``redis://:pw@host`` → ``redis://:***@host``; the password may itself contain ``@``.

    A ``?password=`` query parameter (redis-py reads one) is hidden too.
    """
    url = re.sub(r"(?i)([?&](?:sentinel_)?password=)[^&#]*", r"\1***", url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "***"
    if password is None:
        return url
    user = parts.netloc.rpartition("@")[0].split(":", 1)[0]
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
