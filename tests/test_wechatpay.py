"""WeChat Pay v3: notify verification, request signing, the client and the sandbox.

Signatures are checked here with cryptography directly, and built notifies are
cross-checked with the independent ``wechatpayv3`` SDK, so a mistake shared by
our signer and our verifier cannot pass unnoticed.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from bot.wechat.pay import (
    NotifyRejected,
    PayApiError,
    PayConfig,
    PaymentNotice,
    RefundNotice,
    SandboxGateway,
    SandboxKeys,
    WeChatPayClient,
    authorization,
    build_notify,
    jsapi_params,
    notice_from,
    verify_notify,
)

NOW = 1_795_000_000.0  # 2026-11-18 19:06:40 in Beijing; any fixed instant works
APPID = "wx0123456789abcdef"
MCHID = "1900000001"
NOTIFY_URL = "https://cinema.example/pay/notify"

ServerFactory = Callable[..., Any]


@pytest.fixture(scope="module")
def keys() -> SandboxKeys:
    return SandboxKeys.generate()


@pytest.fixture(scope="module")
def cfg(keys: SandboxKeys) -> PayConfig:
    return keys.pay_config(appid=APPID, mchid=MCHID, notify_url=NOTIFY_URL)


def _transaction(out_trade_no: str = "T20261118001", total: int = 4500) -> dict[str, Any]:
    return {
        "mchid": MCHID,
        "appid": APPID,
        "out_trade_no": out_trade_no,
        "transaction_id": "4200000000202611180000000001",
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "success_time": "2026-11-18T10:00:00+08:00",
        "payer": {"openid": "oUser123"},
        "amount": {"total": total, "payer_total": total, "currency": "CNY"},
    }


def _notify(keys: SandboxKeys, **kwargs: Any) -> tuple[dict[str, str], bytes]:
    resource = kwargs.pop("resource", None) or _transaction()
    now = kwargs.pop("now", NOW)
    return build_notify(keys.private_key_pem, keys.serial, keys.apiv3_key, resource, now, **kwargs)


def _rejected(cfg: PayConfig, headers: dict[str, str], body: bytes, now: float = NOW) -> str:
    with pytest.raises(NotifyRejected) as info:
        verify_notify(cfg, headers, body, now)
    return info.value.reason


def _rsa_pem_pair() -> tuple[rsa.RSAPrivateKey, str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return key, private_pem, public_pem


def _self_signed_cert(key: rsa.RSAPrivateKey, serial: int) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA")])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=1825))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _verifies(public_pem: str, signature_b64: str, message: str) -> bool:
    key = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(
            base64.b64decode(signature_b64), message.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


# ---------------------------------------------------------------------------
# verify_notify


def test_valid_notify_is_decrypted(cfg: PayConfig, keys: SandboxKeys) -> None:
    headers, body = _notify(keys)
    result = verify_notify(cfg, headers, body, NOW)
    assert result["event_type"] == "TRANSACTION.SUCCESS"
    assert re.fullmatch(r"[0-9a-f-]{36}", result["id"])
    assert result["resource"] == _transaction()
    assert notice_from(result) == PaymentNotice(
        out_trade_no="T20261118001",
        transaction_id="4200000000202611180000000001",
        trade_state="SUCCESS",
        amount_fen=4500,
        payer_openid="oUser123",
        success_time="2026-11-18T10:00:00+08:00",
    )


def test_headers_are_case_insensitive(cfg: PayConfig, keys: SandboxKeys) -> None:
    headers, body = _notify(keys)
    lowered = {k.lower(): v for k, v in headers.items()}
    assert verify_notify(cfg, lowered, body, NOW)["resource"]["out_trade_no"] == "T20261118001"


def test_envelope_has_wechat_shape(keys: SandboxKeys) -> None:
    headers, body = _notify(keys, nonce="FIXEDNONCE")
    envelope = json.loads(body)
    assert envelope["resource_type"] == "encrypt-resource"
    assert envelope["create_time"] == "2026-11-18T19:06:40+08:00"
    assert envelope["summary"] == "支付成功"
    resource = envelope["resource"]
    assert resource["algorithm"] == "AEAD_AES_256_GCM"
    assert resource["original_type"] == resource["associated_data"] == "transaction"
    assert len(resource["nonce"]) == 12
    assert headers["Wechatpay-Nonce"] == "FIXEDNONCE"
    assert headers["Wechatpay-Timestamp"] == str(int(NOW))
    assert headers["Wechatpay-Serial"] == keys.serial


def test_missing_header(cfg: PayConfig, keys: SandboxKeys) -> None:
    headers, body = _notify(keys)
    del headers["Wechatpay-Nonce"]
    assert _rejected(cfg, headers, body) == "missing_header"


def test_tampered_body(cfg: PayConfig, keys: SandboxKeys) -> None:
    headers, body = _notify(keys)
    tampered = body.replace(b'"summary":"', b'"summary":"x')
    assert tampered != body
    assert _rejected(cfg, headers, tampered) == "bad_signature"


def test_tampered_signature(cfg: PayConfig, keys: SandboxKeys) -> None:
    headers, body = _notify(keys)
    raw = bytearray(base64.b64decode(headers["Wechatpay-Signature"]))
    raw[10] ^= 0x01
    headers["Wechatpay-Signature"] = base64.b64encode(bytes(raw)).decode()
    assert _rejected(cfg, headers, body) == "bad_signature"


def test_tampered_nonce_header(cfg: PayConfig, keys: SandboxKeys) -> None:
    headers, body = _notify(keys)
    headers["Wechatpay-Nonce"] += "X"
    assert _rejected(cfg, headers, body) == "bad_signature"


def test_signtest_probe(cfg: PayConfig, keys: SandboxKeys) -> None:
    headers, body = _notify(keys)
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
    assert _rejected(cfg, headers, body) == "signtest_probe"


def test_unknown_serial(cfg: PayConfig, keys: SandboxKeys) -> None:
    headers, body = _notify(keys)
    headers["Wechatpay-Serial"] = "PUB_KEY_ID_0000000000000000000000000000000000"
    assert _rejected(cfg, headers, body) == "unknown_serial"


@pytest.mark.parametrize("offset", [-301, 301, -3600, 86400 * 365])
def test_stale_timestamp(cfg: PayConfig, keys: SandboxKeys, offset: int) -> None:
    headers, body = _notify(keys, now=NOW + offset)
    assert _rejected(cfg, headers, body, now=NOW) == "stale_timestamp"


@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamp_at_the_edge_is_accepted(cfg: PayConfig, keys: SandboxKeys, offset: int) -> None:
    headers, body = _notify(keys, now=NOW + offset)
    assert verify_notify(cfg, headers, body, NOW)["event_type"] == "TRANSACTION.SUCCESS"


def test_garbage_json(cfg: PayConfig, keys: SandboxKeys) -> None:
    # A correctly signed body that is not JSON: only the parser can catch it.
    body = b"{not json"
    headers = _sign_raw(keys, body, NOW)
    assert _rejected(cfg, headers, body) == "bad_body"


def test_signed_json_without_resource(cfg: PayConfig, keys: SandboxKeys) -> None:
    body = b'{"id":"x","event_type":"TRANSACTION.SUCCESS","resource_type":"encrypt-resource"}'
    headers = _sign_raw(keys, body, NOW)
    assert _rejected(cfg, headers, body) == "bad_body"


def _sign_raw(keys: SandboxKeys, body: bytes, now: float) -> dict[str, str]:
    ts, nonce = str(int(now)), "RAWNONCE"
    key = serialization.load_pem_private_key(keys.private_key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    sig = key.sign(f"{ts}\n{nonce}\n".encode() + body + b"\n", padding.PKCS1v15(), hashes.SHA256())
    return {
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": base64.b64encode(sig).decode(),
        "Wechatpay-Serial": keys.serial,
    }


def test_wrong_apiv3_key(keys: SandboxKeys) -> None:
    headers, body = _notify(keys)
    other = keys.pay_config(appid=APPID, mchid=MCHID, notify_url="https://x/")
    other = PayConfig(**{**other.__dict__, "apiv3_key": b"B" * 32})
    assert _rejected(other, headers, body) == "decrypt_failed"


def test_empty_associated_data_is_allowed(cfg: PayConfig, keys: SandboxKeys) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    plain = json.dumps(_transaction()).encode()
    ciphertext = AESGCM(keys.apiv3_key).encrypt(b"abcdefghijkl", plain, b"")
    body = json.dumps(
        {
            "id": "n1",
            "event_type": "TRANSACTION.SUCCESS",
            "resource_type": "encrypt-resource",
            "resource": {
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(ciphertext).decode(),
                "associated_data": "",
                "nonce": "abcdefghijkl",
            },
        }
    ).encode()
    result = verify_notify(cfg, _sign_raw(keys, body, NOW), body, NOW)
    assert result["resource"]["out_trade_no"] == "T20261118001"


def test_certificate_and_public_key_forms_together() -> None:
    cert_key, cert_private, _ = _rsa_pem_pair()
    cert_serial = 0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1
    cert_serial_hex = f"{cert_serial:X}"
    cert_pem = _self_signed_cert(cert_key, cert_serial)
    _, pub_private, pub_public = _rsa_pem_pair()
    pub_id = "PUB_KEY_ID_0114232134912410000000000000000000"
    merchant = SandboxKeys.generate()
    cfg = PayConfig(
        mchid=MCHID,
        appid=APPID,
        serial_no="MERCHANTSERIAL",
        private_key_pem=merchant.private_key_pem,
        apiv3_key=merchant.apiv3_key,
        platform_keys={cert_serial_hex: cert_pem, pub_id: pub_public},
        notify_url="https://x/",
    )
    for private, serial in [(cert_private, cert_serial_hex), (pub_private, pub_id)]:
        headers, body = build_notify(private, serial, merchant.apiv3_key, _transaction(), NOW)
        assert verify_notify(cfg, headers, body, NOW)["resource"]["amount"]["total"] == 4500
    # Serials are hex; WeChat's case must not matter.
    headers, body = build_notify(
        cert_private, cert_serial_hex.lower(), merchant.apiv3_key, _transaction(), NOW
    )
    assert verify_notify(cfg, headers, body, NOW)["event_type"] == "TRANSACTION.SUCCESS"
    # The key is picked by serial: the right signature under the other serial fails.
    headers, body = build_notify(cert_private, pub_id, merchant.apiv3_key, _transaction(), NOW)
    assert _rejected(cfg, headers, body) == "bad_signature"


def test_bad_platform_key_fails_at_config_time(keys: SandboxKeys) -> None:
    with pytest.raises(ValueError):
        PayConfig(
            mchid=MCHID,
            appid=APPID,
            serial_no=keys.serial,
            private_key_pem=keys.private_key_pem,
            apiv3_key=keys.apiv3_key,
            platform_keys={"X": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"},
            notify_url="https://x/",
        )
    good = keys.pay_config(appid=APPID, mchid=MCHID, notify_url="https://x/")
    with pytest.raises(ValueError):
        PayConfig(**{**good.__dict__, "apiv3_key": b"short"})


def test_refund_notice(cfg: PayConfig, keys: SandboxKeys) -> None:
    resource = {
        "mchid": MCHID,
        "out_trade_no": "T1",
        "transaction_id": "4200000000202611180000000001",
        "out_refund_no": "R1",
        "refund_id": "50300000000000000000000000001",
        "refund_status": "SUCCESS",
        "success_time": "2026-11-18T10:05:00+08:00",
        "amount": {"total": 4500, "refund": 1500, "payer_total": 4500, "payer_refund": 1500},
    }
    headers, body = _notify(keys, resource=resource, event_type="REFUND.SUCCESS")
    assert json.loads(body)["resource"]["associated_data"] == "refund"
    result = verify_notify(cfg, headers, body, NOW)
    assert notice_from(result) == RefundNotice("T1", "R1", "SUCCESS", 1500)


def test_notice_with_missing_amount_is_bad_body() -> None:
    resource = _transaction()
    del resource["amount"]
    with pytest.raises(NotifyRejected) as info:
        notice_from({"event_type": "TRANSACTION.SUCCESS", "id": "x", "resource": resource})
    assert info.value.reason == "bad_body"


# ---------------------------------------------------------------------------
# Independent cross-check


def test_wechatpayv3_accepts_our_notify(cfg: PayConfig, keys: SandboxKeys) -> None:
    from wechatpayv3 import WeChatPay, WeChatPayType

    sdk = WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG,
        mchid=MCHID,
        private_key=keys.private_key_pem,
        cert_serial_no=keys.serial,
        appid=APPID,
        apiv3_key=keys.apiv3_key.decode(),
        public_key=keys.public_key_pem,
        public_key_id=keys.serial,
    )
    headers, body = _notify(keys)
    result = sdk.callback(headers, body)
    assert result is not None
    assert result["event_type"] == "TRANSACTION.SUCCESS"
    assert result["resource"] == _transaction()
    # And the SDK is no pushover: a tampered body is refused there too.
    assert sdk.callback(headers, body.replace(b"TRANSACTION", b"TRANSACTIOM")) is None


# ---------------------------------------------------------------------------
# Outbound signatures


def test_authorization_header_verifies(cfg: PayConfig, keys: SandboxKeys) -> None:
    body = '{"a":1}'
    header = authorization(cfg, "post", "/v3/pay/transactions/jsapi", body, 1_795_000_000, "N0NCE")
    scheme, _, params = header.partition(" ")
    assert scheme == "WECHATPAY2-SHA256-RSA2048"
    fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
    assert fields["mchid"] == MCHID
    assert fields["serial_no"] == keys.serial
    assert fields["timestamp"] == "1795000000" and fields["nonce_str"] == "N0NCE"
    message = f"POST\n/v3/pay/transactions/jsapi\n1795000000\nN0NCE\n{body}\n"
    assert _verifies(keys.public_key_pem, fields["signature"], message)
    assert not _verifies(keys.public_key_pem, fields["signature"], message.replace("1795", "1796"))


def test_jsapi_pay_sign_verifies(cfg: PayConfig, keys: SandboxKeys) -> None:
    params = jsapi_params(cfg, "wx201410272009395522657a690389285100", 1_795_000_000, "abc")
    assert params["appId"] == APPID
    assert params["timeStamp"] == "1795000000"
    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert params["signType"] == "RSA"
    message = f"{APPID}\n1795000000\nabc\nprepay_id=wx201410272009395522657a690389285100\n"
    assert _verifies(keys.public_key_pem, params["paySign"], message)


def test_sandbox_keys_round_trip(keys: SandboxKeys) -> None:
    again = SandboxKeys.from_json(keys.to_json())
    assert again == keys
    assert again.serial.startswith("PUB_KEY_ID_SANDBOX_")
    assert len(again.apiv3_key) == 32
    assert SandboxKeys.generate().serial != keys.serial


# ---------------------------------------------------------------------------
# The client against a local stand-in for api.mch.weixin.qq.com


class FakePayApi:
    """Checks every Authorization header and answers like WeChat Pay, signed with ``platform``."""

    def __init__(self, merchant_public_pem: str, platform: SandboxKeys) -> None:
        self.merchant_public_pem = merchant_public_pem
        self.platform = platform
        self.requests: list[dict[str, Any]] = []
        self.sign_responses = True
        self.probe = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/pay/transactions/jsapi", self.jsapi)
        app.router.add_post("/v3/refund/domestic/refunds", self.refund)
        app.router.add_get("/v3/pay/transactions/out-trade-no/{no}", self.query)
        app.router.add_get("/v3/refund/domestic/refunds/{no}", self.query_refund)
        return app

    async def _checked(self, request: web.Request) -> dict[str, Any]:
        body = await request.text()
        header = request.headers.get("Authorization", "")
        scheme, _, params = header.partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        message = (
            f"{request.method}\n{request.path_qs}\n{fields.get('timestamp')}\n"
            f"{fields.get('nonce_str')}\n{body}\n"
        )
        ok = scheme == "WECHATPAY2-SHA256-RSA2048" and _verifies(
            self.merchant_public_pem, fields.get("signature", ""), message
        )
        if not ok:
            raise web.HTTPUnauthorized(
                text='{"code":"SIGN_ERROR","message":"签名错误"}', content_type="application/json"
            )
        record = {
            "path_qs": request.path_qs,
            "fields": fields,
            "json": json.loads(body) if body else None,
        }
        self.requests.append(record)
        return record

    def _answer(self, payload: dict[str, Any]) -> web.Response:
        body = json.dumps(payload).encode()
        headers: dict[str, str] = {}
        if self.sign_responses:
            # Responses are signed exactly like notifies: ts, nonce, body.
            headers = _sign_raw(self.platform, body, time.time())
            if self.probe:
                headers["Wechatpay-Signature"] = (
                    "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
                )
        return web.Response(body=body, headers=headers, content_type="application/json")

    async def jsapi(self, request: web.Request) -> web.Response:
        record = await self._checked(request)
        if record["json"]["amount"]["total"] <= 0:
            return web.json_response({"code": "PARAM_ERROR", "message": "金额错误"}, status=400)
        return self._answer({"prepay_id": "wx2026111810000012345"})

    async def refund(self, request: web.Request) -> web.Response:
        record = await self._checked(request)
        return self._answer({"refund_id": "503", "status": "PROCESSING", **record["json"]})

    async def query(self, request: web.Request) -> web.Response:
        await self._checked(request)
        return self._answer({"out_trade_no": request.match_info["no"], "trade_state": "NOTPAY"})

    async def query_refund(self, request: web.Request) -> web.Response:
        await self._checked(request)
        return self._answer({"out_refund_no": request.match_info["no"], "status": "SUCCESS"})


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def pay_api(
    aiohttp_server: ServerFactory, keys: SandboxKeys
) -> tuple[FakePayApi, PayConfig]:
    # Distinct merchant and platform keys, as in production.
    platform = SandboxKeys.generate()
    api = FakePayApi(keys.public_key_pem, platform)
    server = await aiohttp_server(api.app())
    cfg = PayConfig(
        mchid=MCHID,
        appid=APPID,
        serial_no="MERCHANT01",
        private_key_pem=keys.private_key_pem,
        apiv3_key=keys.apiv3_key,
        platform_keys={platform.serial: platform.public_key_pem},
        notify_url=NOTIFY_URL,
        api_base=str(server.make_url("")),
    )
    return api, cfg


async def test_client_create_jsapi(pay_api: tuple[FakePayApi, PayConfig], http: Any) -> None:
    api, cfg = pay_api
    prepay_id = await WeChatPayClient(http, cfg).create_jsapi("T1", "《星际穿越》 2张", 9000, "oUser")
    assert prepay_id == "wx2026111810000012345"
    (req,) = api.requests
    assert req["fields"]["mchid"] == MCHID and req["fields"]["serial_no"] == "MERCHANT01"
    assert req["json"] == {
        "appid": APPID,
        "mchid": MCHID,
        "description": "《星际穿越》 2张",
        "out_trade_no": "T1",
        "notify_url": NOTIFY_URL,
        "amount": {"total": 9000, "currency": "CNY"},
        "payer": {"openid": "oUser"},
    }


async def test_client_error_status(pay_api: tuple[FakePayApi, PayConfig], http: Any) -> None:
    _, cfg = pay_api
    with pytest.raises(PayApiError) as info:
        await WeChatPayClient(http, cfg).create_jsapi("T1", "x", 0, "oUser")
    assert (info.value.status, info.value.code) == (400, "PARAM_ERROR")


async def test_client_wrong_merchant_key_is_refused(
    pay_api: tuple[FakePayApi, PayConfig], http: Any
) -> None:
    _, cfg = pay_api
    stranger = SandboxKeys.generate()
    bad = PayConfig(**{**cfg.__dict__, "private_key_pem": stranger.private_key_pem})
    with pytest.raises(PayApiError) as info:
        await WeChatPayClient(http, bad).create_jsapi("T1", "x", 100, "oUser")
    assert (info.value.status, info.value.code) == (401, "SIGN_ERROR")


async def test_client_rejects_forged_and_probe_responses(
    pay_api: tuple[FakePayApi, PayConfig], http: Any
) -> None:
    api, cfg = pay_api
    api.probe = True
    with pytest.raises(PayApiError) as info:
        await WeChatPayClient(http, cfg).create_jsapi("T1", "x", 100, "oUser")
    assert info.value.code == "INVALID_RESPONSE_SIGNATURE"
    assert info.value.message == "signtest_probe"
    # A response signed by a key we do not trust is no better.
    api.probe = False
    api.platform = SandboxKeys.generate()
    with pytest.raises(PayApiError) as info:
        await WeChatPayClient(http, cfg).create_jsapi("T1", "x", 100, "oUser")
    assert info.value.message == "unknown_serial"


async def test_client_refund_and_query(pay_api: tuple[FakePayApi, PayConfig], http: Any) -> None:
    api, cfg = pay_api
    client = WeChatPayClient(http, cfg)
    refund = await client.refund("T1", "R1", 1500, 4500, "影片取消")
    assert refund["status"] == "PROCESSING"
    assert api.requests[-1]["json"]["amount"] == {"refund": 1500, "total": 4500, "currency": "CNY"}
    assert api.requests[-1]["json"]["reason"] == "影片取消"
    order = await client.query("T 1/2")
    assert order == {"out_trade_no": "T 1/2", "trade_state": "NOTPAY"}
    # The query string is part of what is signed.
    expected = f"/v3/pay/transactions/out-trade-no/T%201%2F2?mchid={MCHID}"
    assert api.requests[-1]["path_qs"] == expected
    assert (await client.query_refund("R 1"))["status"] == "SUCCESS"
    assert api.requests[-1]["path_qs"] == "/v3/refund/domestic/refunds/R%201"


async def test_client_accepts_unsigned_response(
    pay_api: tuple[FakePayApi, PayConfig], http: Any
) -> None:
    api, cfg = pay_api
    api.sign_responses = False
    assert (await WeChatPayClient(http, cfg).query("T9"))["trade_state"] == "NOTPAY"


# ---------------------------------------------------------------------------
# The sandbox


async def test_sandbox_pay_posts_a_verifiable_notify(
    aiohttp_server: ServerFactory, keys: SandboxKeys, http: Any
) -> None:
    received: list[dict[str, Any]] = []
    holder: dict[str, PayConfig] = {}

    async def notify(request: web.Request) -> web.Response:
        try:
            result = verify_notify(holder["cfg"], request.headers, await request.read(), NOW)
        except NotifyRejected as exc:
            return web.json_response({"code": "FAIL", "message": exc.reason}, status=400)
        received.append(result)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/pay/notify", notify)
    server = await aiohttp_server(app)
    gateway = SandboxGateway(
        http, keys, appid=APPID, mchid=MCHID, notify_url=str(server.make_url("/pay/notify"))
    )
    holder["cfg"] = gateway.cfg

    assert await gateway.create_jsapi("T7", "x", 4500, "oUser") == "sandbox_T7"
    txn = "4200000000000000000000000077"
    assert await gateway.pay("T7", 4500, "oUser", NOW, transaction_id=txn) == 204
    (result,) = received
    assert notice_from(result) == PaymentNotice(
        out_trade_no="T7",
        transaction_id=txn,
        trade_state="SUCCESS",
        amount_fen=4500,
        payer_openid="oUser",
        success_time="2026-11-18T19:06:40+08:00",
    )
    # A sandbox "payment" an hour late is refused by the same verifier.
    assert await gateway.pay("T8", 100, "oUser", NOW + 3600) == 400
    assert len(received) == 1


async def test_sandbox_refund_is_processing_then_notifies_and_answers_queries(
    keys: SandboxKeys, http: Any, aiohttp_server: Any
) -> None:
    received: list[Any] = []
    verifier = keys.pay_config(appid=APPID, mchid=MCHID, notify_url="http://unused/")

    async def notify(request: web.Request) -> web.Response:
        body = await request.read()
        received.append(notice_from(verify_notify(verifier, request.headers, body, NOW)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/pay/notify", notify)
    server = await aiohttp_server(app)
    url = str(server.make_url("/api/pay/notify"))
    gateway = SandboxGateway(
        http, keys, appid=APPID, mchid=MCHID, notify_url=url, clock=lambda: NOW
    )

    result = await gateway.refund("T7", "R7", 1500, 4500, "影片取消")
    assert result["status"] == "PROCESSING"
    assert result["refund_id"]
    assert (result["out_trade_no"], result["out_refund_no"]) == ("T7", "R7")
    assert result["amount"]["refund"] == 1500 and result["amount"]["total"] == 4500
    again = await gateway.refund("T7", "R7", 1500, 4500, "影片取消")  # the same refund
    assert again["refund_id"] == result["refund_id"]
    await gateway.drain()
    assert received == [RefundNotice("T7", "R7", "SUCCESS", 1500)]
    assert (await gateway.query_refund("R7"))["status"] == "SUCCESS"
    with pytest.raises(PayApiError) as unknown:
        await gateway.query_refund("R8")
    assert unknown.value.code == "RESOURCE_NOT_EXISTS"
