"""Settings: one typed object from CINEBOT_* variables, every mistake reported at once."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bot.infra.settings import RedisSentinel, Settings, SettingsError

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


# A Sentinel-managed Redis -------------------------------------------------------------
SENTINELS = {
    "CINEBOT_REDIS_SENTINELS": "sentinel-1:26379, sentinel-2:26379,10.0.0.3:26380,[fd00::4]:26379",
    "CINEBOT_REDIS_SENTINEL_SERVICE": "cinebot",
}


def test_sentinels_and_a_service_name_make_a_sentinel_managed_redis() -> None:
    settings = Settings.from_env(environ=SENTINELS, env_file=None)

    target = settings.redis_sentinel
    assert target == RedisSentinel(
        sentinels=(
            ("sentinel-1", 26379), ("sentinel-2", 26379), ("10.0.0.3", 26380), ("fd00::4", 26379),
        ),
        service="cinebot",
    )
    # Carried in redis_url, which every process hands to the Redis factory: no embedded Redis.
    assert settings.redis_url == (
        "redis+sentinel://sentinel-1:26379,sentinel-2:26379,10.0.0.3:26380,[fd00::4]:26379/cinebot"
    )
    assert settings.redis_target == (
        "Sentinel-managed primary 'cinebot' (sentinels sentinel-1:26379,sentinel-2:26379,"
        "10.0.0.3:26380,[fd00::4]:26379, db 0)"
    )
    assert settings.validate() == []


def test_sentinel_and_redis_passwords_and_the_database_are_kept_and_never_shown() -> None:
    environ = {
        **SENTINELS,
        "CINEBOT_REDIS_PASSWORD": "redis-pa55:w@rd/&?",
        "CINEBOT_REDIS_SENTINEL_PASSWORD": "sentinel-pa55&x=1",
        "CINEBOT_REDIS_DB": "2",
    }
    settings = Settings.from_env(environ=environ, env_file=None)

    target = settings.redis_sentinel
    assert target is not None
    assert (target.password, target.sentinel_password, target.db) == (
        "redis-pa55:w@rd/&?", "sentinel-pa55&x=1", 2,
    )
    assert RedisSentinel.parse(target.url()) == target
    shown = repr(settings.redacted()) + settings.redis_target
    assert "pa55" not in shown
    assert settings.redacted()["redis_url"] == (
        "redis+sentinel://:***@sentinel-1:26379,sentinel-2:26379,10.0.0.3:26380,"
        "[fd00::4]:26379/cinebot?db=2&sentinel_password=***"
    )


def test_bad_sentinel_addresses_are_named_in_one_clear_error() -> None:
    environ = {
        **SENTINELS,
        "CINEBOT_REDIS_SENTINELS": "sentinel-1, sentinel-2:0,s3:26379x, s4:70000,:26379,"
        "s5:26379,s5:26379,fd00::4:26379",
        "CINEBOT_REDIS_DB": "one",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ=environ, env_file=None)

    problems = caught.value.problems
    assert [p.split(":", 1)[0] for p in problems] == [
        "CINEBOT_REDIS_SENTINELS", "CINEBOT_REDIS_DB",
    ]
    for entry in ("'sentinel-1'", "'sentinel-2:0'", "'s3:26379x'", "'s4:70000'", "':26379'",
                  "'fd00::4:26379'"):
        assert entry in problems[0]
    assert "host:port" in problems[0] and "[::1]:26379" in problems[0]
    assert "listed twice: 's5:26379'" in problems[0]
    assert "'one'" in problems[1]


def test_the_master_name_is_required_with_sentinels() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            environ={"CINEBOT_REDIS_SENTINELS": "sentinel-1:26379"}, env_file=None
        )
    [problem] = caught.value.problems
    assert problem.startswith("CINEBOT_REDIS_SENTINEL_SERVICE: required with")
    assert "sentinel monitor" in problem


def test_a_redis_url_and_sentinels_together_are_an_error_not_a_guess() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            environ={**SENTINELS, "CINEBOT_REDIS_URL": "redis://cache.internal:6379/0"},
            env_file=None,
        )
    [problem] = caught.value.problems
    assert problem.startswith("CINEBOT_REDIS_SENTINELS: set together with CINEBOT_REDIS_URL")


@pytest.mark.parametrize(
    "name", ["REDIS_SENTINEL_SERVICE", "REDIS_SENTINEL_PASSWORD", "REDIS_PASSWORD", "REDIS_DB"]
)
def test_sentinel_settings_without_sentinels_are_an_error(name: str) -> None:
    """A misspelt REDIS_SENTINELS must not quietly leave production on the embedded Redis."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            environ={f"CINEBOT_{name}": "1", "CINEBOT_REDIS_SENTINALS": "s:26379"}, env_file=None
        )
    [problem] = caught.value.problems
    assert problem.startswith(f"CINEBOT_{name}: only used with CINEBOT_REDIS_SENTINELS")


def test_empty_sentinel_variables_mean_unset() -> None:
    settings = Settings.from_env(
        environ={"CINEBOT_REDIS_SENTINELS": " ", "CINEBOT_REDIS_SENTINEL_SERVICE": ""},
        env_file=None,
    )
    assert settings.redis_url is None
    assert settings.redis_sentinel is None
    assert settings.redis_target == "embedded Redis (cinebot-redis.rdb)"


def test_the_sentinel_url_form_is_accepted_as_the_redis_url_and_checked() -> None:
    url = "redis+sentinel://:pw@s1:26379,s2:26379/cinebot?db=1"
    settings = Settings.from_env(environ={"CINEBOT_REDIS_URL": url}, env_file=None)
    assert settings.redis_sentinel == RedisSentinel(
        (("s1", 26379), ("s2", 26379)), "cinebot", password="pw", db=1
    )
    for bad, why in [
        ("redis+sentinel://s1:26379/", "master name is missing"),
        ("redis+sentinel://s1/cinebot", "host:port"),
        ("redis+sentinel://s1:26379/cinebot?ssl=true", "unknown parameter 'ssl'"),
        ("redis+sentinel://s1:26379/cinebot/1", "?db=N"),
        ("redis+sentinel://app:pw@s1:26379/cinebot", "user name"),
    ]:
        with pytest.raises(SettingsError) as caught:
            Settings.from_env(environ={"CINEBOT_REDIS_URL": bad}, env_file=None)
        [problem] = caught.value.problems
        assert problem.startswith("CINEBOT_REDIS_URL: ") and why in problem, problem
        assert "pw" not in problem
