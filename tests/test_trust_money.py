"""Money moves once: told as the cinema's operator, its buyers and its duty manager live it.

Issue 16, "Money": the sandbox bank is never taken by mistake for a real one; a crash
between selling seats and recording the tickets neither strands the seats nor re-seats the
buyer; a refund's state follows WeChat Pay's and a refund that fails or stalls reaches the
duty manager; a buyer who clicks pay twice gets one set of tickets and one refund.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError
from tests.support import cinebot_command

REAL_APPID = "wx0123456789abcdef"


# --- 12. the sandbox bank is asked for by name ----------------------------------------------


def test_a_fresh_checkout_pays_at_the_sandbox_bank_without_being_told() -> None:
    assert Settings.from_env(environ={}, env_file=None).pay_mode == "sandbox"


@pytest.mark.parametrize(
    "name, value",
    [
        ("WECHAT_APPID", REAL_APPID),
        ("WECHAT_SECRET", "prod-wechat-secret"),
        ("MINIPROGRAM_APPID", "wx00000000000000ab"),
        ("WECHATPAY_MCHID", "1612345678"),
    ],
)
def test_an_operator_with_real_wechat_credentials_who_forgets_the_pay_mode_is_stopped(
    name: str, value: str
) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(environ={f"CINEBOT_{name}": value}, env_file=None)
    (problem,) = [p for p in info.value.problems if "PAY_MODE" in p]
    assert "wechatpay" in problem and "sandbox" in problem


def test_an_operator_may_still_choose_the_sandbox_with_real_credentials_by_saying_so() -> None:
    settings = Settings.from_env(
        environ={"CINEBOT_WECHAT_APPID": REAL_APPID, "CINEBOT_PAY_MODE": "sandbox"}, env_file=None
    )
    assert settings.pay_mode == "sandbox"


def test_the_pay_mode_from_an_env_file_counts_as_said(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CINEBOT_PAY_MODE=sandbox\n")
    settings = Settings.from_env(environ={"CINEBOT_WECHAT_APPID": REAL_APPID}, env_file=env_file)
    assert settings.pay_mode == "sandbox"


async def test_cinebot_serve_with_real_credentials_and_no_pay_mode_refuses_to_start(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_")}
    env["CINEBOT_WECHAT_APPID"] = REAL_APPID
    proc = await asyncio.create_subprocess_exec(
        *cinebot_command(), "serve", "--port", "0", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 2
    assert "CINEBOT_PAY_MODE" in err.decode()
