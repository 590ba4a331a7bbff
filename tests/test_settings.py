"""Settings: one typed object from CINEBOT_* variables, every mistake reported at once."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bot.infra.settings import Settings, SettingsError

# A valid EncodingAESKey that is not one of the demo keys: 32 bytes, base64, no "=".
OTHER_AES_KEY = base64.b64encode(bytes(range(100, 132))).decode().rstrip("=")
assert len(OTHER_AES_KEY) == 43

# Each documented variable, a valid non-default value for it, and what the field then holds.
DOCUMENTED = {
    "DATABASE_URL": ("postgres://cinebot:pw@db.internal:5432/cinebot",) * 2,
    "REDIS_URL": ("redis://cache.internal:6379/1",) * 2,
    "WECHAT_APPID": ("wx0123456789abcdef",) * 2,
    "WECHAT_SECRET": ("prod-wechat-secret",) * 2,
    "WECHAT_TOKEN": ("prodwechattoken",) * 2,
    "WECHAT_AES_KEY": (OTHER_AES_KEY,) * 2,
    "WECHAT_API_BASE": ("http://127.0.0.1:9001",) * 2,
    "WECOM_CORP_ID": ("ww0123456789abcdef",) * 2,
    "WECOM_AGENT_ID": ("1000042", 1000042),
    "WECOM_SECRET": ("prod-wecom-secret",) * 2,
    "WECOM_TOKEN": ("prodwecomtoken",) * 2,
    "WECOM_AES_KEY": (OTHER_AES_KEY,) * 2,
    "WECOM_API_BASE": ("http://127.0.0.1:9002",) * 2,
    "SECRET_KEY": ("a-long-production-secret-key",) * 2,
    "PUBLIC_URL": ("https://bot.cinema.example.com",) * 2,
}


def test_a_fresh_checkout_runs_on_the_defaults_alone() -> None:
    settings = Settings.from_env(environ={}, env_file=None)
    assert settings == Settings()
    assert settings.validate() == []
    assert settings.is_sqlite
    assert settings.redis_url is None  # the embedded Redis takes over
    assert settings.uses_demo_credentials


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_every_documented_variable_sets_its_field(name: str) -> None:
    raw, expected = DOCUMENTED[name]
    # With a real WeChat account the pay mode must be said (here: the sandbox, on purpose).
    environ = {f"CINEBOT_{name}": raw, "CINEBOT_PAY_MODE": "sandbox"}
    settings = Settings.from_env(environ=environ, env_file=None)
    assert getattr(settings, name.lower()) == expected
    assert getattr(Settings(), name.lower()) != expected  # it really changed something


def test_a_full_production_environment_is_read_in_one_go() -> None:
    environ = {f"CINEBOT_{name}": raw for name, (raw, _) in DOCUMENTED.items()}
    environ["PATH"] = "/usr/bin"  # other variables are none of our business
    environ["CINEBOT_PAY_MODE"] = "sandbox"  # with a real WeChat account it must be said
    settings = Settings.from_env(environ=environ, env_file=None)
    for name, (_, expected) in DOCUMENTED.items():
        assert getattr(settings, name.lower()) == expected
    assert not settings.uses_demo_credentials


def test_an_env_file_is_read_and_real_environment_variables_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "# written by the operator\n"
        "CINEBOT_WECHAT_APPID=wx_from_dotenv\n"
        "CINEBOT_PUBLIC_URL=https://from-dotenv.example.com\n"
        "CINEBOT_WECOM_AGENT_ID=1000007\n"
        "CINEBOT_PAY_MODE=sandbox\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CINEBOT_WECHAT_APPID", "wx_from_environment")

    settings = Settings.from_env()

    assert settings.wechat_appid == "wx_from_environment"
    assert settings.public_url == "https://from-dotenv.example.com"
    assert settings.wecom_agent_id == 1000007


def test_every_bad_value_is_reported_together_in_one_error() -> None:
    environ = {
        "CINEBOT_WECOM_AGENT_ID": "abc",
        "CINEBOT_WECHAT_AES_KEY": "too-short",
        "CINEBOT_WECOM_AES_KEY": "!" * 43,  # right length, not base64
        "CINEBOT_DATABASE_URL": "mysql://root:pw@db/cinebot",
        "CINEBOT_REDIS_URL": "http://cache.internal:6379",
        "CINEBOT_HANDLER_BUDGET": "6",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ=environ, env_file=None)

    error = caught.value
    assert len(error.problems) == len(environ)
    message = str(error)
    for variable in environ:
        assert variable in message, f"{variable} not named in:\n{message}"
    problem_for = {p.split(":", 1)[0]: p for p in error.problems}
    assert set(problem_for) == set(environ)
    assert "abc" in problem_for["CINEBOT_WECOM_AGENT_ID"]
    assert "mysql" in problem_for["CINEBOT_DATABASE_URL"]
    assert "4.8" in problem_for["CINEBOT_HANDLER_BUDGET"]
    # The error never echoes a secret back, not even a bad one.
    assert "too-short" not in message


def test_a_good_value_next_to_bad_ones_does_not_hide_them() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            environ={
                "CINEBOT_WECHAT_APPID": "wx_ok", "CINEBOT_PAY_MODE": "sandbox",
                "CINEBOT_PUBLIC_URL": "ftp://x",
            },
            env_file=None,
        )
    assert caught.value.problems == ["CINEBOT_PUBLIC_URL: expected an http(s):// URL"]


def test_redacted_settings_hide_secrets_and_passwords() -> None:
    environ = {f"CINEBOT_{name}": raw for name, (raw, _) in DOCUMENTED.items()}
    environ["CINEBOT_DATABASE_URL"] = "postgres://cinebot:db-pa55word@db.internal:5432/cinebot"
    environ["CINEBOT_REDIS_URL"] = "redis://:redis-pa55@word@cache.internal:6379/0"
    environ["CINEBOT_PAY_MODE"] = "sandbox"
    settings = Settings.from_env(environ=environ, env_file=None)

    shown = settings.redacted()

    for field in (
        "wechat_secret", "wechat_token", "wechat_aes_key",
        "wecom_secret", "wecom_token", "wecom_aes_key", "secret_key",
    ):
        assert shown[field] == "***"
    assert shown["database_url"] == "postgres://cinebot:***@db.internal:5432/cinebot"
    assert shown["redis_url"] == "redis://:***@cache.internal:6379/0"
    text = repr(shown)
    for secret in (
        "prod-wechat-secret", "prodwechattoken", OTHER_AES_KEY, "prod-wecom-secret",
        "prodwecomtoken", "a-long-production-secret-key", "db-pa55word", "redis-pa55", "word@",
    ):
        assert secret not in text
    # What an operator needs to see stays visible.
    assert shown["wechat_appid"] == "wx0123456789abcdef"
    assert shown["wecom_agent_id"] == 1000042
    assert shown["public_url"] == "https://bot.cinema.example.com"


def test_redacted_keeps_urls_without_passwords_as_they_are() -> None:
    settings = Settings.from_env(
        environ={
            "CINEBOT_DATABASE_URL": "sqlite://var/cinebot.sqlite3",
            "CINEBOT_REDIS_URL": "unix:///run/redis.sock?db=2&password=sock-secret",
        },
        env_file=None,
    )
    shown = settings.redacted()
    assert shown["database_url"] == "sqlite://var/cinebot.sqlite3"
    assert shown["redis_url"] == "unix:///run/redis.sock?db=2&password=***"


def test_an_empty_redis_url_means_the_embedded_redis() -> None:
    settings = Settings.from_env(environ={"CINEBOT_REDIS_URL": "  "}, env_file=None)
    assert settings.redis_url is None
