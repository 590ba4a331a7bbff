"""`cinebot` on the command line: a manager adds and removes staff, and the bot follows."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.app import ACTORS
from bot.infra.settings import Settings
from bot.chat.channels.inbound import Channel
from bot.wechat.chatclient import next_msg_id, text_xml
from bot.cli import main
from domain.audit import AuditLog
from domain.people import Staff
from tests.support import cinebot, cinebot_command

REFUSED = "还没有开通"


async def say(callbacks: Any, userid: str, text: str) -> str:
    xml = text_xml("ww_corp", userid, text, next_msg_id(), 1000002)
    status, reply = await callbacks.wecom_post(xml)
    assert status == 200
    return reply["Content"]


async def test_a_manager_adds_a_new_engineer_who_can_then_use_the_bot_until_removed(
    client: TestClient, callbacks: Any, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    def run(*args: str):
        return cinebot(*args, database_url=database_url, redis_url=redis_url, cwd=tmp_path)

    # Staff roles are cached briefly; shorten that so the test need not wait 30 s.
    client.app[ACTORS].staff_ttl = 0.2
    assert REFUSED in await say(callbacks, "newguy", "你好")

    code, out, err = await run("staff", "add", "newguy", "--role", "engineer", "--name", "新人")
    assert (code, err) == (0, "")
    assert "已添加员工 newguy（新人，engineer）" in out

    code, out, _ = await run("staff", "list")
    assert code == 0
    listed = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert listed["newguy"][1:] == ["新人", "engineer", "cinebot", "示例影城", "在职"]
    assert "manager01" in listed and "eng01" in listed

    await asyncio.sleep(0.25)  # the cached "unknown" lapses
    answer = await say(callbacks, "newguy", "你好")
    assert REFUSED not in answer
    assert "新人，你好" in answer

    code, out, _ = await run("staff", "remove", "newguy")
    assert code == 0 and "已停用员工 newguy" in out

    await asyncio.sleep(0.25)  # the cached engineer lapses
    assert REFUSED in await say(callbacks, "newguy", "你好")

    newguy = await Staff.get(userid="newguy")
    assert not newguy.active  # deactivated, not deleted: the audit trail keeps its name
    trail = await AuditLog.filter(entity="staff", entity_id="newguy").order_by("id")
    assert [a.action for a in trail] == ["add", "deactivate"]


async def test_forgetting_the_cached_actor_makes_a_removal_take_effect_at_once(
    client: TestClient, callbacks: Any, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    assert "李小青" in await say(callbacks, "staff01", "你好")

    code, out, _ = await cinebot(
        "staff", "remove", "staff01", database_url=database_url, redis_url=redis_url, cwd=tmp_path
    )
    assert code == 0
    client.app[ACTORS].forget(Channel.WECOM, "staff01")

    assert REFUSED in await say(callbacks, "staff01", "你好")


# --- in-process: exit codes and messages ------------------------------------------------------


@pytest.fixture
def cli_env(
    database_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    monkeypatch.setenv("CINEBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("CINEBOT_REDIS_URL", redis_url)


def test_demo_can_run_twice_and_an_unknown_cinema_is_a_chinese_error(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    first = capsys.readouterr().out
    assert "演示数据已就绪：cinebot 示例影城，6 个影厅" in first and "新增 240 个场次" in first

    assert main(["demo"]) == 0
    assert "新增 0 个场次" in capsys.readouterr().out

    add = ["staff", "add", "newguy", "--role", "staff", "--name", "新人", "--cinema", "nowhere"]
    assert main(add) == 1
    captured = capsys.readouterr()
    assert "找不到影城：nowhere" in captured.err
    assert captured.out == ""

    assert main(["staff", "remove", "nobody"]) == 1
    assert "没有找到在职员工 nobody" in capsys.readouterr().err

    assert main(["staff", "list"]) == 0
    assert "newguy" not in capsys.readouterr().out


def test_staff_add_before_any_cinema_exists_says_to_run_demo_first(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["staff", "list"]) == 0
    assert "还没有员工" in capsys.readouterr().out
    assert main(["staff", "add", "newguy", "--role", "staff"]) == 1
    assert "cinebot demo" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [["demo"], ["migrate"], ["staff", "list"], ["chat", "--say", "你好"]]
)
def test_a_bad_setting_stops_every_command_with_exit_code_2(
    command: list[str], cli_env: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CINEBOT_WECOM_AGENT_ID", "abc")
    with pytest.raises(SystemExit) as caught:
        main(command)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "配置错误" in err
    assert "CINEBOT_WECOM_AGENT_ID" in err and "'abc'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]])
def test_a_bad_setting_stops_the_long_running_commands_before_they_start(
    command: list[str], database_url: str, tmp_path: Path
) -> None:
    # In their own process: were the check ever lost, these would run forever, not return.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_")}
    env.update(CINEBOT_DATABASE_URL=database_url, CINEBOT_WECOM_AGENT_ID="abc")
    result = subprocess.run(
        [*cinebot_command(), *command], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "CINEBOT_WECOM_AGENT_ID" in result.stderr and "Traceback" not in result.stderr


def test_a_gate_scanner_token_is_minted_only_for_active_staff(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.infra import tokens

    assert main(["demo"]) == 0
    capsys.readouterr()
    assert main(["staff", "token", "staff01"]) == 0
    token = capsys.readouterr().out.strip()
    assert tokens.verify(Settings().secret_key, "staff", token, now=time.time()) == "staff01"
    assert main(["staff", "token", "nobody"]) == 1
    assert "没有找到在职员工 nobody" in capsys.readouterr().err


def test_a_manager_lists_the_shows_of_a_day_and_cancels_one(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    capsys.readouterr()
    assert main(["showtime", "list"]) == 0
    listing = capsys.readouterr().out
    first_id = int(listing.split()[0])
    assert "《" in listing and "笔订单" in listing
    assert main(["showtime", "cancel", str(first_id)]) == 0
    assert f"已取消场次 {first_id}" in capsys.readouterr().out
    assert main(["showtime", "cancel", str(first_id)]) == 0
    assert "已经取消过了" in capsys.readouterr().out
    assert main(["showtime", "list"]) == 0
    assert "已取消" in capsys.readouterr().out
