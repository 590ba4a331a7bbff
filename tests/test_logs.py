"""Logs keep people private (phones masked, openids shortened) and never carry our secrets."""

from __future__ import annotations

import base64
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.infra.logs import JsonFormatter, RedactingTextFormatter, mask_phone, short_openid

OPENID = "oCineBotLogAudience000000042"
PHONE = "13812341234"
assert len(OPENID) == 28


def _record(msg: str, *args: object, extra: dict[str, Any] | None = None, exc: bool = False):
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"lookup failed for {OPENID} / {PHONE}")
        except RuntimeError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("cinebot.test", logging.INFO, __file__, 1, msg, args, exc_info)
    for key, value in (extra or {}).items():
        setattr(record, key, value)
    return record


def test_a_phone_number_is_masked_in_the_message() -> None:
    line = JsonFormatter().format(_record("会员 %s 绑定了手机", PHONE))
    entry = json.loads(line)
    assert entry["msg"] == "会员 138****1234 绑定了手机"
    assert PHONE not in line


def test_an_openid_never_appears_whole_in_the_message() -> None:
    for msg in (
        f"member {OPENID} subscribed",
        f"用户{OPENID}发来消息",  # Chinese right next to the id, no spaces
        f"wechat:e:{OPENID}:1763692200:subscribe:",
        f"openid={OPENID}",
    ):
        line = JsonFormatter().format(_record(msg))
        assert OPENID not in line, line
        assert "oCineB…0042" in json.loads(line)["msg"]


def test_extra_fields_are_redacted_too_even_nested_ones() -> None:
    record = _record(
        "member updated",
        extra={
            "user": OPENID,
            "phone": PHONE,
            "detail": {"openid": OPENID, "contacts": [f"tel:{PHONE}"]},
            "showtimes": 30,
        },
    )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert OPENID not in line and PHONE not in line
    assert entry["phone"] == "138****1234"
    assert entry["user"] == "oCineB…0042"
    assert entry["detail"] == {"openid": "oCineB…0042", "contacts": ["tel:138****1234"]}
    assert entry["showtimes"] == 30  # numbers stay numbers: the line is still JSON


def test_a_traceback_is_redacted() -> None:
    line = JsonFormatter().format(_record("handler failed", exc=True))
    entry = json.loads(line)
    assert "RuntimeError" in entry["exc"]
    assert OPENID not in line and PHONE not in line


def test_the_text_format_redacts_as_well() -> None:
    formatter = RedactingTextFormatter("%(levelname)s %(message)s")
    line = formatter.format(_record("%s called from %s", OPENID, PHONE))
    assert line == "INFO oCineB…0042 called from 138****1234"


def test_masking_leaves_other_numbers_alone() -> None:
    assert mask_phone("MsgId 23812341234567 at 1763692200") == "MsgId 23812341234567 at 1763692200"
    assert mask_phone("座机 021-5555-0199，手机 15900001111。") == "座机 021-5555-0199，手机 159****1111。"
    assert short_openid(OPENID) == "oCineB…0042"
    assert short_openid("staff01") == "staff01"  # WeCom userids are not secret


# --- secrets at start-up ---------------------------------------------------------------

SECRETS = {
    "wechat_secret": "S3cretWechatAppSecretValue",
    "wechat_token": "TokWechatCallbackToken77",
    "wechat_aes_key": base64.b64encode(b"W" * 16 + bytes(range(16))).decode().rstrip("="),
    "wecom_secret": "S3cretWecomCorpSecretValue",
    "wecom_token": "TokWecomCallbackToken88",
    "wecom_aes_key": base64.b64encode(b"Q" * 16 + bytes(range(16, 32))).decode().rstrip("="),
    "secret_key": "S3cretSigningKeyForCinebot",
}


class _Everything(logging.Handler):
    """Keeps every record, as the root logger's real handler would see it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def dump(self) -> str:
        plain = logging.Formatter()
        out = []
        for r in self.records:
            out.append(r.getMessage())
            out.append(repr(vars(r)))
            if r.exc_info:
                out.append(plain.formatException(r.exc_info))
        return "\n".join(out)


@pytest.fixture
def every_log_record() -> Iterator[_Everything]:
    root = logging.getLogger()
    handler = _Everything()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_starting_and_stopping_the_app_never_logs_a_secret(
    make_client: Callable[..., Any], every_log_record: _Everything
) -> None:
    client = await make_client(settings=SECRETS)
    resp = await client.get("/healthz")
    assert resp.status == 200
    # A forged callback is refused and logged: still nothing secret in the log.
    resp = await client.post(
        "/wechat/callback",
        params={"timestamp": "1", "nonce": "n", "signature": "0" * 40},
        data=b"<xml/>",
    )
    assert resp.status in (400, 403)
    await client.close()

    logged = every_log_record.dump()
    assert every_log_record.records, "expected start-up to log something"
    assert "demo data ready" in logged  # we did capture the app's own lines
    for name, secret in SECRETS.items():
        assert secret not in logged, f"{name} leaked into the logs"
