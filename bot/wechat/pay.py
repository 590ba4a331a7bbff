"""WeChat Pay v3 for a direct merchant: the protocol (sans-I/O), a small aiohttp client, a sandbox.

The protocol half is pure functions over bytes and dicts:

- ``authorization`` signs outbound API requests, ``jsapi_params`` signs the
  parameters the mini-program hands to ``wx.requestPayment``;
- ``verify_notify`` checks a payment/refund notification (headers, replay
  window, RSA signature, then AES-256-GCM decryption) and ``notice_from``
  turns the result into a ``PaymentNotice`` or ``RefundNotice``;
- ``build_notify`` produces the exact notification WeChat would send, so the
  sandbox and the tests exercise the same verification path as production.

WeChat signs with either a platform certificate (serial = certificate serial
in hex) or, since the 2024-25 migration, a "WeChat Pay public key" (serial =
``PUB_KEY_ID_…``). During the migration either may arrive, so
``PayConfig.platform_keys`` maps every serial to a PEM public key or a PEM
certificate, and the key is picked by the ``Wechatpay-Serial`` header.

``WeChatPayClient`` talks to the real API; ``SandboxGateway`` is the demo's
bank: it hands out fake prepay ids and, when the demo "pays", POSTs a
correctly signed and encrypted notification to the app's own notify URL. Its
refunds behave like WeChat Pay's too: accepted as ``PROCESSING``, then a
REFUND.* notify, and answered by a refund query.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import asyncio
import logging

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bot.infra.strict import parse_ascii_int

JsonDict = dict[str, Any]
log = logging.getLogger(__name__)

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
AEAD_ALGORITHM = "AEAD_AES_256_GCM"
DEFAULT_API_BASE = "https://api.mch.weixin.qq.com"
# WeChat writes every time in RFC 3339 with the Beijing offset.
BEIJING = timezone(timedelta(hours=8))

_HEADER_TIMESTAMP = "wechatpay-timestamp"
_HEADER_NONCE = "wechatpay-nonce"
_HEADER_SIGNATURE = "wechatpay-signature"
_HEADER_SERIAL = "wechatpay-serial"
_HEADER_SIGNATURE_TYPE = "wechatpay-signature-type"


# ---------------------------------------------------------------------------
# Keys and configuration


@lru_cache(maxsize=64)
def _private_key(pem: str) -> rsa.RSAPrivateKey:
    # Parsing a PEM costs more than the signature itself; configs are few and long-lived.
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the merchant key must be an RSA private key")
    return key


@lru_cache(maxsize=64)
def _public_key(pem: str) -> rsa.RSAPublicKey:
    """A platform key given either as a PEM public key or as a PEM X.509 certificate."""
    data = pem.encode()
    if b"-----BEGIN CERTIFICATE-----" in data:
        key = x509.load_pem_x509_certificate(data).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("a WeChat Pay platform key must be RSA")
    return key


@dataclass(frozen=True)
class PayConfig:
    mchid: str
    appid: str
    serial_no: str  # serial of the merchant API certificate that matches private_key_pem
    private_key_pem: str = field(repr=False)
    apiv3_key: bytes = field(repr=False)
    # Wechatpay-Serial -> PEM public key or PEM certificate; both forms may be mixed.
    platform_keys: Mapping[str, str] = field(repr=False)
    notify_url: str
    api_base: str = DEFAULT_API_BASE

    def __post_init__(self) -> None:
        # Fail at startup on a bad key, not on the first customer's payment.
        if len(self.apiv3_key) != 32:
            raise ValueError("the APIv3 key must be exactly 32 bytes")
        _private_key(self.private_key_pem)
        for pem in self.platform_keys.values():
            _public_key(pem)

    def platform_key(self, serial: str) -> rsa.RSAPublicKey | None:
        pem = self.platform_keys.get(serial)
        if pem is None:
            # Certificate serials are hex; do not let letter case decide.
            wanted = serial.upper()
            pem = next((v for k, v in self.platform_keys.items() if k.upper() == wanted), None)
        return None if pem is None else _public_key(pem)


def _sign(private_key_pem: str, message: str) -> str:
    signature = _private_key(private_key_pem).sign(
        message.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return base64.b64encode(signature).decode()


def _nonce(length: int = 32) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, BEIJING).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------
# Outbound signatures


def authorization(
    cfg: PayConfig, method: str, path_with_query: str, body: str, timestamp: int, nonce: str
) -> str:
    """The ``Authorization`` header of an API request; ``body`` is exactly the bytes sent."""
    message = f"{method.upper()}\n{path_with_query}\n{timestamp}\n{nonce}\n{body}\n"
    signature = _sign(cfg.private_key_pem, message)
    return (
        f'{SIGNATURE_TYPE} mchid="{cfg.mchid}",nonce_str="{nonce}",'
        f'signature="{signature}",timestamp="{timestamp}",serial_no="{cfg.serial_no}"'
    )


def jsapi_params(cfg: PayConfig, prepay_id: str, timestamp: int, nonce: str) -> dict[str, str]:
    """The object the mini-program passes to ``wx.requestPayment``."""
    package = f"prepay_id={prepay_id}"
    # wx.requestPayment wants every value as a string, timeStamp included.
    ts = str(timestamp)
    pay_sign = _sign(cfg.private_key_pem, f"{cfg.appid}\n{ts}\n{nonce}\n{package}\n")
    return {
        "appId": cfg.appid,
        "timeStamp": ts,
        "nonceStr": nonce,
        "package": package,
        "signType": "RSA",
        "paySign": pay_sign,
    }


# ---------------------------------------------------------------------------
# Inbound verification


class NotifyRejected(ValueError):
    """A notification (or signed API response) that must not be trusted.

    ``reason`` is one of ``missing_header`` (a Wechatpay-* header is absent or
    malformed), ``signtest_probe``, ``unknown_serial``, ``bad_signature``,
    ``stale_timestamp``, ``bad_body``, ``decrypt_failed``. The notify handler
    answers any of them with a 4xx so WeChat retries or, for probes, is satisfied.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    # Works for plain dicts as well as aiohttp's CIMultiDict.
    return {k.lower(): v for k, v in headers.items()}


def verify_signed(
    cfg: PayConfig, headers: Mapping[str, str], body: bytes, now: float, tolerance: int = 300
) -> None:
    """Check the Wechatpay-* signature headers over a raw body; raise ``NotifyRejected``.

    Shared by notifications and API responses. The signature covers the raw
    bytes, so the body is verified before it is decoded or parsed.
    """
    h = _lower_headers(headers)
    try:
        ts_text = h[_HEADER_TIMESTAMP]
        nonce = h[_HEADER_NONCE]
        signature = h[_HEADER_SIGNATURE]
        serial = h[_HEADER_SERIAL]
    except KeyError as exc:
        raise NotifyRejected("missing_header", str(exc)) from None
    # WeChat injects probes that a correct verifier must refuse.
    if signature.startswith(SIGNTEST_PREFIX):
        raise NotifyRejected("signtest_probe")
    signature_type = h.get(_HEADER_SIGNATURE_TYPE, SIGNATURE_TYPE)
    if signature_type != SIGNATURE_TYPE:
        raise NotifyRejected("bad_signature", f"unsupported type {signature_type!r}")
    # ASCII digits only: isdigit() passes "²", which int() refuses (a 500, not a 401).
    sent = parse_ascii_int(ts_text)
    if sent is None:
        raise NotifyRejected("missing_header", "Wechatpay-Timestamp is not an integer")
    # Cheap replay check before the RSA work.
    if abs(now - sent) > tolerance:
        raise NotifyRejected("stale_timestamp", f"{ts_text} vs now {int(now)}")
    key = cfg.platform_key(serial)
    if key is None:
        raise NotifyRejected("unknown_serial", serial)
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise NotifyRejected("bad_signature", "not base64") from None
    message = f"{ts_text}\n{nonce}\n".encode() + body + b"\n"
    try:
        key.verify(raw_signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise NotifyRejected("bad_signature") from None


def _decrypt_resource(apiv3_key: bytes, resource: Any) -> JsonDict:
    if not isinstance(resource, dict):
        raise NotifyRejected("bad_body", "no resource object")
    if resource.get("algorithm") != AEAD_ALGORITHM:
        raise NotifyRejected("bad_body", f"algorithm {resource.get('algorithm')!r}")
    ciphertext, nonce = resource.get("ciphertext"), resource.get("nonce")
    if not isinstance(ciphertext, str) or not isinstance(nonce, str) or not nonce:
        raise NotifyRejected("bad_body", "resource lacks ciphertext or nonce")
    associated = resource.get("associated_data") or ""
    try:
        plain = AESGCM(apiv3_key).decrypt(
            nonce.encode(), base64.b64decode(ciphertext, validate=True), associated.encode()
        )
    except (InvalidTag, binascii.Error, ValueError):
        raise NotifyRejected("decrypt_failed") from None
    try:
        decoded = json.loads(plain)
    except ValueError:
        raise NotifyRejected("bad_body", "decrypted resource is not JSON") from None
    if not isinstance(decoded, dict):
        raise NotifyRejected("bad_body", "decrypted resource is not an object")
    return decoded


def verify_notify(
    cfg: PayConfig,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: int = 300,
) -> JsonDict:
    """Verify and decrypt a notification.

    Returns ``{"event_type": ..., "id": ..., "resource": <decrypted dict>}``.
    """
    verify_signed(cfg, headers, body, now, tolerance)
    try:
        envelope = json.loads(body)
    except ValueError:
        raise NotifyRejected("bad_body", "body is not JSON") from None
    if not isinstance(envelope, dict):
        raise NotifyRejected("bad_body", "body is not an object")
    if envelope.get("resource_type", "encrypt-resource") != "encrypt-resource":
        raise NotifyRejected("bad_body", f"resource_type {envelope.get('resource_type')!r}")
    return {
        "event_type": str(envelope.get("event_type", "")),
        "id": str(envelope.get("id", "")),
        "resource": _decrypt_resource(cfg.apiv3_key, envelope.get("resource")),
    }


# ---------------------------------------------------------------------------
# What a notification means


@dataclass(frozen=True)
class PaymentNotice:
    out_trade_no: str
    transaction_id: str
    trade_state: str
    amount_fen: int
    payer_openid: str
    success_time: str


@dataclass(frozen=True)
class RefundNotice:
    out_trade_no: str
    out_refund_no: str
    refund_status: str
    refund_fen: int


def _fen(resource: JsonDict, key: str) -> int:
    amount = resource.get("amount")
    value = amount.get(key) if isinstance(amount, dict) else None
    # bool is an int subclass; a JSON true is no amount.
    if not isinstance(value, int) or isinstance(value, bool):
        raise NotifyRejected("bad_body", f"amount.{key} missing or not an integer")
    return value


def _text(resource: JsonDict, key: str, required: bool = True) -> str:
    value = resource.get(key)
    if isinstance(value, str) and value:
        return value
    if required:
        raise NotifyRejected("bad_body", f"{key} missing")
    return ""


def payment_notice(resource: JsonDict) -> PaymentNotice:
    """A decrypted TRANSACTION.* resource."""
    payer = resource.get("payer")
    openid = payer.get("openid", "") if isinstance(payer, dict) else ""
    return PaymentNotice(
        out_trade_no=_text(resource, "out_trade_no"),
        transaction_id=_text(resource, "transaction_id"),
        trade_state=_text(resource, "trade_state"),
        amount_fen=_fen(resource, "total"),
        payer_openid=openid if isinstance(openid, str) else "",
        success_time=_text(resource, "success_time", required=False),
    )


def refund_notice(resource: JsonDict) -> RefundNotice:
    """A decrypted REFUND.* resource."""
    return RefundNotice(
        out_trade_no=_text(resource, "out_trade_no"),
        out_refund_no=_text(resource, "out_refund_no"),
        refund_status=_text(resource, "refund_status"),
        refund_fen=_fen(resource, "refund"),
    )


def notice_from(decrypted: JsonDict) -> PaymentNotice | RefundNotice:
    """Interpret what ``verify_notify`` returned; the event type picks the shape."""
    resource = decrypted.get("resource")
    if not isinstance(resource, dict):
        raise NotifyRejected("bad_body", "no decrypted resource")
    if str(decrypted.get("event_type", "")).startswith("REFUND."):
        return refund_notice(resource)
    return payment_notice(resource)


# ---------------------------------------------------------------------------
# Producing notifications (sandbox, tests)

_SUMMARIES = {
    "TRANSACTION.SUCCESS": "支付成功",
    "REFUND.SUCCESS": "退款成功",
    "REFUND.ABNORMAL": "退款异常",
    "REFUND.CLOSED": "退款关闭",
}


def build_notify(
    private_key_pem: str,
    serial: str,
    apiv3_key: bytes,
    resource: JsonDict,
    now: float,
    event_type: str = "TRANSACTION.SUCCESS",
    nonce: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of the notification WeChat would POST for ``resource``."""
    original_type = "refund" if event_type.startswith("REFUND.") else "transaction"
    # WeChat uses a 12-character printable nonce for GCM, not 12 random bytes.
    gcm_nonce = _nonce(12)
    plaintext = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode()
    ciphertext = AESGCM(apiv3_key).encrypt(gcm_nonce.encode(), plaintext, original_type.encode())
    envelope = {
        "id": str(uuid.uuid4()),
        "create_time": _rfc3339(now),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": _SUMMARIES.get(event_type, event_type),
        "resource": {
            "original_type": original_type,
            "algorithm": AEAD_ALGORITHM,
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "associated_data": original_type,
            "nonce": gcm_nonce,
        },
    }
    body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
    ts = str(int(now))
    header_nonce = nonce if nonce is not None else _nonce()
    message = f"{ts}\n{header_nonce}\n".encode() + body + b"\n"
    signature = _private_key(private_key_pem).sign(message, padding.PKCS1v15(), hashes.SHA256())
    headers = {
        "Content-Type": "application/json",
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": header_nonce,
        "Wechatpay-Signature": base64.b64encode(signature).decode(),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": SIGNATURE_TYPE,
    }
    return headers, body


@dataclass
class SandboxKeys:
    """One RSA pair playing both merchant and platform, plus an APIv3 key; storable as JSON."""

    private_key_pem: str = field(repr=False)
    public_key_pem: str
    serial: str
    apiv3_key: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> SandboxKeys:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        return cls(
            private_key_pem=private_pem,
            public_key_pem=public_pem,
            serial=f"PUB_KEY_ID_SANDBOX_{secrets.token_hex(8).upper()}",
            # Real APIv3 keys are 32 printable characters; keeping that shape lets
            # string-keyed libraries (wechatpayv3) read sandbox notifies too.
            apiv3_key=_nonce(32).encode(),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "private_key_pem": self.private_key_pem,
                "public_key_pem": self.public_key_pem,
                "serial": self.serial,
                # base64 so any 32 bytes survive, printable or not.
                "apiv3_key": base64.b64encode(self.apiv3_key).decode(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SandboxKeys:
        data = json.loads(text)
        return cls(
            private_key_pem=data["private_key_pem"],
            public_key_pem=data["public_key_pem"],
            serial=data["serial"],
            apiv3_key=base64.b64decode(data["apiv3_key"]),
        )

    def pay_config(self, *, appid: str, mchid: str, notify_url: str) -> PayConfig:
        return PayConfig(
            mchid=mchid,
            appid=appid,
            serial_no=self.serial,
            private_key_pem=self.private_key_pem,
            apiv3_key=self.apiv3_key,
            platform_keys={self.serial: self.public_key_pem},
            notify_url=notify_url,
        )


# ---------------------------------------------------------------------------
# The real API


class PayApiError(Exception):
    """A WeChat Pay API call that did not succeed.

    ``code`` is WeChat's (e.g. ``ORDER_NOT_EXIST``), or ours for answers we
    cannot use: ``BAD_RESPONSE``, ``INVALID_RESPONSE_SIGNATURE``.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"HTTP {status} {code}: {message}")


def _dumps(payload: JsonDict) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class WeChatPayClient:
    """Direct-merchant JSAPI payments, refunds and order queries over a shared aiohttp session."""

    def __init__(
        self, session: aiohttp.ClientSession, cfg: PayConfig, *, timeout: float = 10.0
    ) -> None:
        self.session = session
        self.cfg = cfg
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def create_jsapi(
        self, out_trade_no: str, description: str, amount_fen: int, payer_openid: str
    ) -> str:
        payload = {
            "appid": self.cfg.appid,
            "mchid": self.cfg.mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "notify_url": self.cfg.notify_url,
            "amount": {"total": amount_fen, "currency": "CNY"},
            "payer": {"openid": payer_openid},
        }
        data = await self._call("POST", "/v3/pay/transactions/jsapi", payload)
        prepay_id = data.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise PayApiError(200, "BAD_RESPONSE", "no prepay_id in the answer")
        return prepay_id

    async def refund(
        self, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int, reason: str
    ) -> JsonDict:
        payload: JsonDict = {
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            # Refund results arrive on the same endpoint as payments (REFUND.* events).
            "notify_url": self.cfg.notify_url,
            "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"},
        }
        if reason:
            payload["reason"] = reason
        return await self._call("POST", "/v3/refund/domestic/refunds", payload)

    async def query_refund(self, out_refund_no: str) -> JsonDict:
        """A refund's state: ``status`` PROCESSING, SUCCESS, ABNORMAL or CLOSED."""
        return await self._call(
            "GET", f"/v3/refund/domestic/refunds/{quote(out_refund_no, safe='')}", None
        )

    async def query(self, out_trade_no: str) -> JsonDict:
        path = (
            f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}"
            f"?mchid={quote(self.cfg.mchid, safe='')}"
        )
        return await self._call("GET", path, None)

    async def _call(self, method: str, path: str, payload: JsonDict | None) -> JsonDict:
        body = _dumps(payload) if payload is not None else ""
        headers = {
            "Authorization": authorization(
                self.cfg, method, path, body, int(time.time()), _nonce()
            ),
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "cinebot-wechatpay/1",
        }
        async with self.session.request(
            method,
            self.cfg.api_base.rstrip("/") + path,
            data=body.encode() if body else None,
            headers=headers,
            timeout=self.timeout,
        ) as resp:
            raw = await resp.read()
            status, resp_headers = resp.status, resp.headers
        if not 200 <= status < 300:
            raise _api_error(status, raw)
        if _HEADER_SIGNATURE in _lower_headers(resp_headers):
            try:
                verify_signed(self.cfg, resp_headers, raw, time.time())
            except NotifyRejected as exc:
                # An unverifiable answer (a probe included) is no answer at all.
                raise PayApiError(status, "INVALID_RESPONSE_SIGNATURE", exc.reason) from exc
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise PayApiError(status, "BAD_RESPONSE", "answer is not JSON") from None
        if not isinstance(data, dict):
            raise PayApiError(status, "BAD_RESPONSE", "answer is not an object")
        return data


def _api_error(status: int, raw: bytes) -> PayApiError:
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return PayApiError(status, str(data.get("code", "")), str(data.get("message", "")))
    return PayApiError(status, "", raw[:200].decode(errors="replace"))


# ---------------------------------------------------------------------------
# The sandbox


class SandboxGateway:
    """The demo's bank: same calls as ``WeChatPayClient``, and payments that really notify."""

    # Refund notifies go out this long after the request, as WeChat Pay's do: later.
    REFUND_DELAY = 0.05
    _REMEMBERED = 10_000  # pay notify addresses kept for the refunds of those payments

    def __init__(
        self,
        session: aiohttp.ClientSession,
        keys: SandboxKeys,
        *,
        appid: str,
        mchid: str,
        notify_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.keys = keys
        # The time the sandbox's own notifies carry: the app's clock, which tests move.
        self.clock = clock
        # The app verifies sandbox notifies with this, exactly as with real ones.
        self.cfg = keys.pay_config(appid=appid, mchid=mchid, notify_url=notify_url)
        # How the sandbox ends a refund: SUCCESS, or ABNORMAL / CLOSED to try the bad paths.
        self.refund_outcome = "SUCCESS"
        self._refunds: dict[str, JsonDict] = {}  # out_refund_no -> the refund as queried
        self._notify_urls: dict[str, str] = {}  # out_trade_no -> where its pay notify went
        self._tasks: set[asyncio.Task[None]] = set()

    async def create_jsapi(
        self, out_trade_no: str, description: str, amount_fen: int, payer_openid: str
    ) -> str:
        return f"sandbox_{out_trade_no}"

    async def pay(
        self,
        out_trade_no: str,
        amount_fen: int,
        payer_openid: str,
        now: float,
        transaction_id: str | None = None,
        notify_url: str | None = None,
    ) -> int:
        """POST a TRANSACTION.SUCCESS notify to the app; return the app's HTTP status.

        ``notify_url`` overrides the configured one, e.g. with the address the pay page
        was served from (a test server's random port); the refunds of this payment are
        notified there too."""
        resource = {
            "mchid": self.cfg.mchid,
            "appid": self.cfg.appid,
            "out_trade_no": out_trade_no,
            # Real ids are 28 digits starting 4200; mimic them so nothing special-cases
            # the sandbox.
            "transaction_id": transaction_id or f"4200{secrets.randbelow(10**24):024d}",
            "trade_type": "JSAPI",
            "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功",
            "bank_type": "OTHERS",
            "attach": "",
            "success_time": _rfc3339(now),
            "payer": {"openid": payer_openid},
            "amount": {
                "total": amount_fen,
                "payer_total": amount_fen,
                "currency": "CNY",
                "payer_currency": "CNY",
            },
        }
        if notify_url:
            if len(self._notify_urls) >= self._REMEMBERED:
                self._notify_urls.pop(next(iter(self._notify_urls)))
            self._notify_urls[out_trade_no] = notify_url
        return await self._post(resource, now, "TRANSACTION.SUCCESS", notify_url)

    async def _post(
        self, resource: JsonDict, now: float, event_type: str, notify_url: str | None
    ) -> int:
        headers, body = build_notify(
            self.keys.private_key_pem, self.keys.serial, self.keys.apiv3_key, resource, now,
            event_type=event_type,
        )
        url = notify_url or self.cfg.notify_url
        async with self.session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def refund(
        self, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int, reason: str
    ) -> JsonDict:
        """Accepted at once (PROCESSING, the real API's answer shape); the REFUND.* notify
        follows, and a query answers the refund's state. The same out_refund_no again is
        the same refund, as at WeChat Pay."""
        known = self._refunds.get(out_refund_no)
        if known is not None:
            return dict(known)
        stamp = _rfc3339(self.clock())
        refund = {
            "refund_id": f"5030{secrets.randbelow(10**25):025d}",
            "out_refund_no": out_refund_no,
            "transaction_id": "",
            "out_trade_no": out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": stamp,
            "status": "PROCESSING",
            "funds_account": "AVAILABLE",
            "amount": {
                "total": total_fen,
                "refund": refund_fen,
                "payer_total": total_fen,
                "payer_refund": refund_fen,
                "settlement_total": total_fen,
                "settlement_refund": refund_fen,
                "discount_refund": 0,
                "currency": "CNY",
            },
        }
        self._refunds[out_refund_no] = refund
        task = asyncio.ensure_future(self._finish_refund(refund))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return dict(refund)

    async def _finish_refund(self, refund: JsonDict) -> None:
        await asyncio.sleep(self.REFUND_DELAY)
        now = self.clock()
        refund["status"] = self.refund_outcome
        if self.refund_outcome == "SUCCESS":
            refund["success_time"] = _rfc3339(now)
        resource = {
            "mchid": self.cfg.mchid,
            "out_trade_no": refund["out_trade_no"],
            "transaction_id": refund["transaction_id"],
            "out_refund_no": refund["out_refund_no"],
            "refund_id": refund["refund_id"],
            "refund_status": refund["status"],
            "user_received_account": refund["user_received_account"],
            "amount": {
                k: refund["amount"][k] for k in ("total", "refund", "payer_total", "payer_refund")
            },
        }
        if "success_time" in refund:
            resource["success_time"] = refund["success_time"]
        url = self._notify_urls.get(refund["out_trade_no"])
        try:
            status = await self._post(resource, now, f"REFUND.{refund['status']}", url)
        except (aiohttp.ClientError, OSError) as exc:
            # Like a notify WeChat Pay could not deliver: the app's refund query finds it.
            log.warning("sandbox refund notify not delivered", extra={"error": type(exc).__name__})
            return
        if status >= 300:
            log.warning("sandbox refund notify refused", extra={"status": status})

    async def query_refund(self, out_refund_no: str) -> JsonDict:
        known = self._refunds.get(out_refund_no)
        if known is None:
            raise PayApiError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return dict(known)

    async def drain(self) -> None:
        """Wait for the refund notifies on their way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
