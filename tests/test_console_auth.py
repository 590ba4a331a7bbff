"""The console's door: staff get in from WeCom (web OAuth through the stand-in, or a one-time
link from 「看板」 or the CLI), see only what their role allows, and are let out again —
by logout, by time, or when they leave the company. Plus the console's plumbing: the period
and cinema filters, exports as CSV and XLSX, drill-down pages, static files.

Sections here are placeholders (``PLACEHOLDERS``): the real ones are tested on their own.
``console`` and ``login_as`` are the fixtures a section's tests can reuse.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import openpyxl
import pytest
from aiohttp.test_utils import TestClient

from bot.cli import main
from bot.infra import tokens
from bot.infra.settings import Settings
from bot.wechat.chatclient import event_xml, next_msg_id, text_xml
from bot.wechat.standin import STATE
from domain.people import Staff, StaffRole, deactivate_staff
from handlers.console import auth, shell
from handlers.console.base import (
    Column,
    PageContext,
    Range,
    Section,
    Table,
    Viewer,
)
from handlers.console.context import CONSOLE
from tests.support import FakeClock, Standin

ALL = frozenset(StaffRole)


# --- placeholder sections ----------------------------------------------------------------------


async def _money_table(ctx: PageContext) -> Table:
    return Table(
        name="money",
        title="收入明细",
        columns=[
            Column("film", "影片"), Column("tickets", "票数", "int"),
            Column("revenue", "收入", "money"), Column("share", "上座率", "percent"),
            Column("wait", "响应时长", "seconds"), Column("at", "时间", "datetime"),
            Column("day", "营业日", "date"), Column("comment", "评论"),
        ],
        rows=[
            {"film": "流浪地球3", "tickets": 1234, "revenue": 4567890, "share": 0.125,
             "wait": 3725, "at": datetime(2026, 11, 20, 12, 5, tzinfo=UTC),
             "day": date(2026, 11, 20), "comment": "=HYPERLINK(\"http://x\")"},
            {"film": "哪吒", "tickets": 0, "revenue": 5, "share": None, "wait": None,
             "at": None, "day": None, "comment": "好看\x07"},
        ],
    )


async def _sales_page(ctx: PageContext) -> str:
    s = ctx.scope
    return (
        f'<p id="scope">{s.range.value} {s.start} {s.end} {",".join(map(str, s.cinema_ids))}</p>'
        f'<a id="drill" href="{ctx.link("/rows/detail", film=7)}">明细</a>'
    )


async def _service_page(ctx: PageContext) -> str:
    return '<p id="service">工单</p>'


PLACEHOLDERS = (
    Section("sales", "销售", frozenset({StaffRole.MANAGER}), _sales_page,
            {"money": _money_table}, {"detail": _money_table}),
    Section("service", "服务", ALL, _service_page, {"money": _money_table}),
)


@pytest.fixture
def sections(monkeypatch: pytest.MonkeyPatch) -> tuple[Section, ...]:
    """The sections the app loads at start-up (override to test real ones)."""
    monkeypatch.setattr(shell, "load_sections", lambda: PLACEHOLDERS)
    return PLACEHOLDERS


@pytest.fixture
async def console(
    make_client: Callable[..., Any], standin: Standin, sections: tuple[Section, ...]
) -> TestClient:
    """The real app (demo data: manager01, staff01, eng01, …) with the stand-in as WeCom."""
    return await make_client(standin=standin)


LoginAs = Callable[[TestClient, str], Awaitable[None]]


@pytest.fixture
def login_as(clock: FakeClock) -> LoginAs:
    """Give ``client`` a console session for ``userid`` (through a one-time link)."""

    async def login(client: TestClient, userid: str) -> None:
        link = auth.enter_link(client.app[CONSOLE].settings, clock.timestamp(), userid)
        resp = await client.get(_path(link), allow_redirects=False)
        assert resp.status == 302, await resp.text()
        assert auth.SESSION_COOKIE in resp.cookies

    return login


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.sections: list[str] = []
        self.exports: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("id"):
            self.by_id[str(a["id"])] = str(a.get("href"))
        if tag == "a" and a.get("data-section"):
            self.sections.append(str(a["data-section"]))
        if tag == "a" and a.get("data-export"):
            self.exports.append(str(a.get("href")))


def links(page: str) -> _Links:
    parser = _Links()
    parser.feed(page)
    return parser


async def oauth_login(
    client: TestClient, standin: Standin, userid: str, next_path: str = ""
) -> aiohttp.ClientResponse:
    """Open the login page, tap 「企业微信登录」, let the stand-in play WeCom for ``userid``,
    and follow it back to the console: the console's answer to WeCom's redirect."""
    query = f"?next={next_path}" if next_path else ""
    page = await client.get(f"/console/login{query}", allow_redirects=False)
    assert page.status == 200
    authorize = links(await page.text()).by_id["wecom-login"]
    assert authorize.startswith(standin.url + "/connect/oauth2/authorize?")
    async with standin.http.get(
        authorize.split("#")[0], params={"userid": userid}, allow_redirects=False
    ) as wecom:
        assert wecom.status == 302, await wecom.text()
        back = wecom.headers["Location"]
    settings: Settings = client.app[CONSOLE].settings
    assert back.startswith(settings.public_url + "/console/oauth?code=")
    return await client.get(_path(back), allow_redirects=False)


# --- WeCom web OAuth ---------------------------------------------------------------------------


async def test_a_manager_logs_in_through_wecom_and_sees_every_section(
    console: TestClient, standin: Standin
) -> None:
    resp = await oauth_login(console, standin, "manager01")
    assert resp.status == 302 and resp.headers["Location"] == "/console/"
    cookie = resp.cookies[auth.SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
    assert cookie["path"] == "/console"

    home = await console.get("/console/", allow_redirects=False)
    assert home.headers["Location"] == "/console/sales"
    page = await console.get("/console/sales")
    assert page.status == 200
    text = await page.text()
    assert links(text).sections == ["sales", "service"]
    assert "张经理" in text and "店长" in text

    [login] = (await standin.get("/standin/oauth"))["logins"]
    settings = console.app[CONSOLE].settings
    assert login["userid"] == "manager01" and login["scope"] == "snsapi_base"
    assert login["appid"] == settings.wecom_corp_id
    assert login["agentid"] == str(settings.wecom_agent_id)
    assert login["redirect_uri"] == settings.public_url + "/console/oauth"


async def test_a_staff_member_sees_service_only_never_revenue(
    console: TestClient, standin: Standin
) -> None:
    resp = await oauth_login(console, standin, "staff01")
    assert resp.status == 302
    home = await console.get("/console/", allow_redirects=False)
    assert home.headers["Location"] == "/console/service"
    page = await console.get("/console/service")
    assert page.status == 200 and links(await page.text()).sections == ["service"]

    sales = await console.get("/console/sales")
    assert sales.status == 403 and "你的岗位不能查看「销售」" in await sales.text()
    for path in ("/console/sales/export/money.csv", "/console/sales/export/money.xlsx",
                 "/console/sales/rows/detail", "/console/sales/rows/detail.csv"):
        assert (await console.get(path)).status == 403, path
    assert (await console.get("/console/service/export/money.csv")).status == 200


async def test_an_engineer_is_held_to_the_same_sections_as_staff(
    console: TestClient, login_as: LoginAs
) -> None:
    await login_as(console, "eng01")
    assert (await console.get("/console/sales")).status == 403
    assert links(await (await console.get("/console/service")).text()).sections == ["service"]


async def test_a_wecom_member_who_is_not_staff_is_refused(
    console: TestClient, standin: Standin
) -> None:
    resp = await oauth_login(console, standin, "stranger7")
    assert resp.status == 403
    assert "stranger7" in await resp.text() and "还没有开通影城看板权限" in await resp.text()
    assert auth.SESSION_COOKIE not in resp.cookies
    page = await console.get("/console/service", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"].startswith("/console/login")

    outsider = await oauth_login(console, standin, "outsider1")  # not in the corp at all
    assert outsider.status == 403 and "本企业的成员" in await outsider.text()


async def test_a_bad_or_replayed_code_and_a_forged_state_are_refused(
    console: TestClient, standin: Standin
) -> None:
    page = await console.get("/console/login", allow_redirects=False)
    state = parse_qs(urlsplit(links(await page.text()).by_id["wecom-login"]).query)["state"][0]

    bad = await console.get("/console/oauth", params={"code": "nonsense", "state": state})
    assert bad.status == 403 and "登录码无效或已过期" in await bad.text()
    assert [e["errcode"] for e in await standin.errors()] == [40029]

    ok = await oauth_login(console, standin, "manager01")
    assert ok.status == 302
    replay = await console.get(ok.url.path_qs, allow_redirects=False)
    assert replay.status == 403  # a code works once (and the state cookie is gone)

    # A return this browser never started: no state cookie, or a state not its own.
    fresh = await console.get("/console/login")
    forged = state[:-1] + ("0" if state[-1] != "0" else "1")
    for params in ({"code": "x", "state": forged}, {"code": "x", "state": "abc"}):
        resp = await console.get("/console/oauth", params=params)
        assert resp.status == 403 and "登录请求无效" in await resp.text()
    assert fresh.status == 200


async def test_after_login_the_page_asked_for_opens(
    console: TestClient, standin: Standin
) -> None:
    first = await console.get("/console/sales?range=30d", allow_redirects=False)
    assert first.status == 302
    login = urlsplit(first.headers["Location"])
    assert login.path == "/console/login"
    assert parse_qs(login.query) == {"next": ["/console/sales?range=30d"]}
    resp = await oauth_login(console, standin, "manager01", next_path="%2Fconsole%2Fsales%3Frange%3D30d")
    assert resp.headers["Location"] == "/console/sales?range=30d"

    # Never elsewhere: an outside address falls back to the console's home.
    for target in ("https://evil.example/", "//evil.example/console/", "/console/\\evil"):
        assert auth.safe_next(target) == "/console/"


async def test_the_login_page_in_the_wecom_app_goes_straight_to_wecom(
    console: TestClient,
) -> None:
    resp = await console.get(
        "/console/login", allow_redirects=False,
        headers={"User-Agent": "Mozilla/5.0 (iPhone) wxwork/4.1.0 MicroMessenger/7.0.1"},
    )
    assert resp.status == 302 and "/connect/oauth2/authorize?" in resp.headers["Location"]
    assert auth.STATE_COOKIE in resp.cookies


async def test_the_standin_plays_wecom_codes_once_and_for_five_minutes(
    standin: Standin, http: aiohttp.ClientSession
) -> None:
    await standin.post("/standin/oauth", {"userid": "manager01"})
    url = standin.make_url("/connect/oauth2/authorize").with_query(
        appid="ww1", redirect_uri="http://app.example/console/oauth", response_type="code",
        scope="snsapi_base", state="s1", agentid="1000002",
    )
    async with http.get(url, allow_redirects=False) as resp:
        back = urlsplit(resp.headers["Location"])
    query = parse_qs(back.query)
    assert back.netloc == "app.example" and query["state"] == ["s1"]
    code = query["code"][0]
    token = (await standin.get("/cgi-bin/gettoken", corpid="ww1", corpsecret="s"))["access_token"]
    other = (await standin.get("/cgi-bin/gettoken", corpid="ww2", corpsecret="s"))["access_token"]
    ask = "/cgi-bin/auth/getuserinfo"
    assert (await standin.get(ask, access_token=other, code=code))["errcode"] == 40029
    assert (await standin.get(ask, access_token=token, code=code))["userid"] == "manager01"
    assert (await standin.get(ask, access_token=token, code=code))["errcode"] == 40029

    async with http.get(url, allow_redirects=False) as resp:
        late = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    standin.app[STATE].oauth_codes[late].expires_at = time.time() - 1
    assert (await standin.get(ask, access_token=token, code=late))["errcode"] == 40029

    await standin.post("/standin/oauth", {"userid": ""})  # nobody holds the phone: it asks
    async with http.get(url, allow_redirects=False) as resp:
        assert resp.status == 200 and "userid" in await resp.text()
    async with http.get(url.update_query(scope="bogus"), allow_redirects=False) as resp:
        assert resp.status == 400


# --- one-time links ----------------------------------------------------------------------------


async def test_a_one_time_link_works_once(console: TestClient, clock: FakeClock) -> None:
    link = auth.enter_link(console.app[CONSOLE].settings, clock.timestamp(), "manager01")
    assert link.startswith("http://127.0.0.1:8080/console/enter?t=console.")
    first = await console.get(_path(link), allow_redirects=False)
    assert first.status == 302 and first.headers["Location"] == "/console/"
    assert (await console.get("/console/sales")).status == 200

    console.session.cookie_jar.clear()
    again = await console.get(_path(link), allow_redirects=False)
    assert again.status == 403 and "已经被用过了" in await again.text()
    assert auth.SESSION_COOKIE not in again.cookies
    assert (await console.get("/console/sales", allow_redirects=False)).status == 302


async def test_an_expired_or_forged_link_is_refused(console: TestClient, clock: FakeClock) -> None:
    settings = console.app[CONSOLE].settings
    link = auth.enter_link(settings, clock.timestamp(), "manager01", ttl_s=600)
    clock.advance(minutes=10, seconds=1)
    expired = await console.get(_path(link), allow_redirects=False)
    assert expired.status == 403 and "过期" in await expired.text()

    fresh = auth.enter_link(settings, clock.timestamp(), "manager01")
    token = parse_qs(urlsplit(fresh).query)["t"][0]
    purpose, value, expires, mac = token.split(".")
    forged = [
        ".".join([purpose, value, expires, mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB")]),
        tokens.sign("not-our-secret", "console", "manager01 00 /console/", clock.timestamp() + 60),
        tokens.sign(settings.secret_key, "staff", "manager01", clock.timestamp() + 60),
        "garbage", "", "x" * 2000,
    ]
    for t in forged:
        resp = await console.get("/console/enter", params={"t": t}, allow_redirects=False)
        assert resp.status == 403 and "无效" in await resp.text(), t
    assert (await console.get("/console/sales", allow_redirects=False)).status == 302


# --- sessions ----------------------------------------------------------------------------------


async def test_logout_ends_the_session_for_good(console: TestClient, login_as: LoginAs) -> None:
    await login_as(console, "manager01")
    sid = console.session.cookie_jar.filter_cookies(console.make_url("/console/"))[
        auth.SESSION_COOKIE].value
    out = await console.post("/console/logout", allow_redirects=False)
    assert out.status == 302 and out.headers["Location"] == "/console/login?out=1"
    assert (await console.get("/console/sales", allow_redirects=False)).status == 302
    assert "你已退出登录" in await (await console.get("/console/login?out=1")).text()

    # The old cookie, kept by someone, opens nothing: the session is gone from Redis.
    console.session.cookie_jar.update_cookies({auth.SESSION_COOKIE: sid})
    assert (await console.get("/console/sales", allow_redirects=False)).status == 302
    assert (await console.get("/console/sales/export/money.csv")).status == 401


async def test_a_deactivated_member_is_logged_out_at_the_next_click(
    console: TestClient, login_as: LoginAs, clock: FakeClock
) -> None:
    await login_as(console, "staff01")
    assert (await console.get("/console/service")).status == 200
    await deactivate_staff("staff01", clock.now())
    assert (await console.get("/console/service", allow_redirects=False)).status == 302
    assert (await console.get("/console/service/export/money.csv")).status == 401
    await Staff.filter(userid="staff01").update(active=True)  # back, but must log in again
    assert (await console.get("/console/service", allow_redirects=False)).status == 302


async def test_a_session_ends_after_12_idle_hours_and_after_7_days(
    console: TestClient, login_as: LoginAs, clock: FakeClock
) -> None:
    await login_as(console, "manager01")
    clock.advance(hours=11)
    assert (await console.get("/console/sales")).status == 200  # sliding: 12 h from here
    clock.advance(hours=11)
    assert (await console.get("/console/sales")).status == 200
    clock.advance(hours=12, minutes=1)
    assert (await console.get("/console/sales", allow_redirects=False)).status == 302

    await login_as(console, "manager01")
    for _ in range(15):  # busy all week: still ends 7 days after the login
        clock.advance(hours=11, minutes=50)
        resp = await console.get("/console/sales", allow_redirects=False)
    assert resp.status == 302


async def test_without_a_session_pages_go_to_login_and_files_are_401(console: TestClient) -> None:
    page = await console.get("/console/sales", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"].startswith("/console/login?next=")
    for path in ("/console/sales/export/money.csv", "/console/sales/rows/detail.xlsx"):
        resp = await console.get(path)
        assert resp.status == 401 and "请先登录" in await resp.text()
    assert (await console.get("/console/", allow_redirects=False)).status == 302
    # Unknown userids never reach a session, whatever the cookie says.
    console.session.cookie_jar.update_cookies({auth.SESSION_COOKIE: "x" * 43})
    assert (await console.get("/console/sales", allow_redirects=False)).status == 302


async def test_the_cookie_is_secure_when_the_console_is_served_over_https(
    make_client: Callable[..., Any], standin: Standin, sections: Any, clock: FakeClock
) -> None:
    client = await make_client(standin=standin, settings={"public_url": "https://cinema.example"})
    link = auth.enter_link(client.app[CONSOLE].settings, clock.timestamp(), "manager01")
    resp = await client.get(_path(link), allow_redirects=False)
    assert resp.cookies[auth.SESSION_COOKIE]["secure"]


# --- the 「看板」 command and the CLI ----------------------------------------------------------


async def test_staff_ask_for_the_console_in_wecom_and_get_a_link_of_their_own(
    make_client: Callable[..., Any], standin: Standin, sections: Any, callbacks_for: Any,
) -> None:
    client = await make_client(standin=standin)
    post = callbacks_for(client)
    status, reply = await post(text_xml("ww_corp", "staff01", "看板", next_msg_id(), 1000002))
    assert status == 200 and reply["MsgType"] == "news"
    url = reply["Articles"]["item"]["Url"]
    assert "仅限本人使用一次" in reply["Articles"]["item"]["Description"]
    assert "/console/enter?t=" in url
    resp = await client.get(_path(url), allow_redirects=False)
    assert resp.status == 302
    assert links(await (await client.get("/console/service")).text()).sections == ["service"]

    status, reply = await post(event_xml("ww_corp", "manager01", "click", "console", 1000002))
    assert status == 200 and reply["MsgType"] == "news"


@pytest.fixture
def callbacks_for(wecom: Any, clock: FakeClock) -> Callable[[TestClient], Any]:
    async def post_to(client: TestClient, xml: str) -> tuple[int, Any]:
        req = wecom.sign(xml, timestamp=int(clock.timestamp()))
        resp = await client.post("/wecom/callback", params=req.params, data=req.body)
        text = await resp.text()
        return resp.status, (wecom.open_reply(text, req.params) if resp.status == 200 else text)

    return lambda client: (lambda xml: post_to(client, xml))


@pytest.fixture
def cli_env(
    database_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CINEBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("CINEBOT_REDIS_URL", redis_url)
    monkeypatch.setenv("CINEBOT_PUBLIC_URL", "https://cinema.example")


def test_the_cli_prints_a_link_for_active_staff_only(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    capsys.readouterr()
    assert main(["console", "link", "manager01", "--ttl", "30"]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("https://cinema.example/console/enter?t=")
    token = parse_qs(urlsplit(link).query)["t"][0]
    value = tokens.verify(Settings().secret_key, "console", token, now=time.time() + 29 * 60)
    assert value.split(" ")[0] == "manager01"
    with pytest.raises(tokens.BadToken):
        tokens.verify(Settings().secret_key, "console", token, now=time.time() + 31 * 60)

    assert main(["console", "link", "nobody"]) == 2
    assert "没有找到在职员工 nobody" in capsys.readouterr().err
    assert main(["staff", "remove", "staff02"]) == 0
    capsys.readouterr()
    assert main(["console", "link", "staff02"]) == 2
    assert main(["console", "link", "manager01", "--ttl", "0"]) == 2


# --- the period and the cinema -----------------------------------------------------------------

VIEWER = Viewer("manager01", "张经理", StaffRole.MANAGER, (1,))
NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai: business day 21st
EARLY = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)  # 02:30 on the 21st: still the 20th


@pytest.mark.parametrize(
    ("query", "now", "expected"),
    [
        ({}, NOW, (Range.WEEK, date(2026, 11, 15), date(2026, 11, 21))),
        ({"range": "today"}, NOW, (Range.TODAY, date(2026, 11, 21), date(2026, 11, 21))),
        ({"range": "today"}, EARLY, (Range.TODAY, date(2026, 11, 20), date(2026, 11, 20))),
        ({"range": "30d"}, NOW, (Range.MONTH, date(2026, 10, 23), date(2026, 11, 21))),
        ({"range": "custom", "start": "2026-01-01", "end": "2026-01-31"}, NOW,
         (Range.CUSTOM, date(2026, 1, 1), date(2026, 1, 31))),
        ({"start": "2025-11-21", "end": "2026-11-21"}, NOW,  # 366 days: the longest
         (Range.CUSTOM, date(2025, 11, 21), date(2026, 11, 21))),
        ({"range": "custom", "start": "2026-02-01"}, NOW,
         (Range.CUSTOM, date(2026, 2, 1), date(2026, 2, 1))),
    ],
)
def test_the_period_is_read_from_the_query(
    query: dict[str, str], now: datetime, expected: tuple[Range, date, date]
) -> None:
    scope, chosen = shell.parse_scope(query, VIEWER, now)
    assert (scope.range, scope.start, scope.end) == expected
    assert scope.cinema_ids == (1,) and chosen is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"range": "custom", "start": "2026-11-10", "end": "2026-11-01"}, "结束日期不能早于开始日期"),
        ({"range": "custom", "start": "2025-11-20", "end": "2026-11-21"}, "最长 366 天"),
        ({"range": "custom", "start": "２０２６-11-01", "end": "2026-11-02"}, "半角数字"),
        ({"range": "custom", "start": "٢٠٢٦-١١-٠١"}, "半角数字"),
        ({"range": "custom", "start": "2026-1-1"}, "半角数字"),
        ({"range": "custom", "start": "2026-02-30"}, "不是有效的日期"),
        ({"range": "custom"}, "需要开始日期"),
        ({"range": "week"}, "时间范围只能是"),
        ({"range": "7d", "cinema": "１"}, "影城参数有误"),
        ({"range": "7d", "cinema": "-1"}, "影城参数有误"),
        ({"range": "7d", "cinema": "99999999999"}, "影城参数有误"),
    ],
)
def test_a_bad_period_says_why(query: dict[str, str], message: str) -> None:
    with pytest.raises(shell.ScopeError) as caught:
        shell.parse_scope(query, VIEWER, NOW)
    assert message in str(caught.value) and caught.value.status == 400


def test_a_cinema_is_only_ever_one_of_the_viewers() -> None:
    chain = Viewer("boss", "老板", StaffRole.MANAGER, (1, 2))
    scope, chosen = shell.parse_scope({"cinema": "2"}, chain, NOW)
    assert scope.cinema_ids == (2,) and chosen == 2
    assert shell.parse_scope({}, chain, NOW)[0].cinema_ids == (1, 2)
    with pytest.raises(shell.ScopeError) as caught:
        shell.parse_scope({"cinema": "3"}, chain, NOW)
    assert caught.value.status == 403


def test_links_keep_the_period_and_the_cinema() -> None:
    scope, chosen = shell.parse_scope(
        {"range": "custom", "start": "2026-11-01", "end": "2026-11-07", "cinema": "1"}, VIEWER, NOW
    )
    link = shell.make_link("/console/sales", scope, chosen)
    assert link() == "/console/sales?range=custom&start=2026-11-01&end=2026-11-07&cinema=1"
    assert link("/rows/detail", film=7, cinema=None) == (
        "/console/sales/rows/detail?range=custom&start=2026-11-01&end=2026-11-07&film=7"
    )
    week = shell.make_link("/console/sales", shell.parse_scope({}, VIEWER, NOW)[0], None)
    assert week() == "/console/sales?range=7d"


async def test_the_page_shows_the_period_and_refuses_a_bad_one_in_words(
    console: TestClient, login_as: LoginAs
) -> None:
    await login_as(console, "manager01")
    cinema_id = (await Staff.get(userid="manager01")).cinema_id  # type: ignore[attr-defined]
    page = await console.get("/console/sales?range=today")
    assert f"today 2026-11-21 2026-11-21 {cinema_id}" in await page.text()

    bad = await console.get("/console/sales?range=custom&start=2026-11-10&end=2026-11-01")
    text = await bad.text()
    assert bad.status == 400 and "结束日期不能早于开始日期" in text and 'id="scope"' not in text
    export = await console.get("/console/sales/export/money.csv?range=custom&start=２０２６-01-01")
    assert export.status == 400 and "半角数字" in await export.text()
    other = await console.get(f"/console/sales?cinema={cinema_id + 1}")
    assert other.status == 403 and "没有查看这家影城的权限" in await other.text()

    page = await console.get(f"/console/sales?range=30d&cinema={cinema_id}")
    tabs = links(await page.text())
    assert tabs.by_id["drill"] == f"/console/sales/rows/detail?range=30d&cinema={cinema_id}&film=7"


# --- exports, drill-downs, static files --------------------------------------------------------


async def test_a_table_exports_as_csv_and_xlsx(console: TestClient, login_as: LoginAs) -> None:
    await login_as(console, "manager01")
    resp = await console.get("/console/sales/export/money.csv?range=today")
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    assert "money_2026-11-21.csv" in resp.headers["Content-Disposition"]
    raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["影片", "票数", "收入", "上座率", "响应时长", "时间", "营业日", "评论"]
    assert rows[1] == [
        "流浪地球3", "1234", "45678.90", "12.5%", "1:02:05", "2026-11-20 20:05", "2026-11-20",
        "'=HYPERLINK(\"http://x\")",
    ]
    assert rows[2] == ["哪吒", "0", "0.05", "", "", "", "", "好看\x07"]

    resp = await console.get("/console/sales/export/money.xlsx?range=7d")
    assert resp.status == 200 and "money_2026-11-15_2026-11-21.xlsx" in resp.headers[
        "Content-Disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(await resp.read())).active
    assert [c.value for c in sheet[1]] == rows[0]
    _, tickets, revenue, share, wait, at, _, comment = sheet[2]
    assert tickets.value == 1234 and revenue.value == 45678.9
    assert revenue.number_format == "#,##0.00"
    assert share.value == 0.125 and share.number_format == "0.0%"
    assert wait.value == timedelta(seconds=3725) and wait.number_format == "[h]:mm:ss"
    assert at.value == datetime(2026, 11, 20, 20, 5)
    assert comment.value == '=HYPERLINK("http://x")' and comment.data_type == "s"
    assert sheet["H3"].value == "好看" and sheet["D3"].value is None

    assert (await console.get("/console/sales/export/nothing.csv")).status == 404
    assert (await console.get("/console/sales/export/money.pdf")).status == 404


async def test_the_rows_behind_a_figure_are_a_page_with_their_own_exports(
    console: TestClient, login_as: LoginAs
) -> None:
    await login_as(console, "manager01")
    page = await console.get("/console/sales/rows/detail?range=30d&film=7")
    assert page.status == 200
    text = await page.text()
    assert "收入明细" in text and "流浪地球3" in text
    exports = links(text).exports
    assert exports == [
        "/console/sales/rows/detail.csv?range=30d&film=7",
        "/console/sales/rows/detail.xlsx?range=30d&film=7",
    ]
    resp = await console.get(exports[0])
    assert resp.status == 200 and (await resp.read()).startswith(b"\xef\xbb\xbf")
    assert (await console.get("/console/sales/rows/nothing")).status == 404


async def test_unknown_console_paths_are_a_chinese_404(console: TestClient, login_as: LoginAs) -> None:
    await login_as(console, "manager01")
    for path in ("/console/nothing", "/console/sales/else", "/console/%0A", "/console/SALES"):
        resp = await console.get(path)
        assert resp.status == 404 and "没有这个" in await resp.text(), path


async def test_static_files_are_served_versioned_and_compressed(console: TestClient) -> None:
    page = await console.get("/console/login")
    text = await page.text()
    css = text.split('rel="stylesheet" href="')[1].split('"')[0]
    assert css.startswith("/console/static/console.css?v=")
    resp = await console.get(css.replace("&amp;", "&"))
    assert resp.status == 200 and "immutable" in resp.headers["Cache-Control"]
    echarts = await console.get("/console/static/echarts.min.js",
                                headers={"Accept-Encoding": "gzip"})
    assert echarts.status == 200 and echarts.headers["Content-Encoding"] == "gzip"
    assert "echarts" in (await echarts.text())[:2000]
    for path in ("/console/static/README.md", "/console/static/..%2Fauth.py",
                 "/console/static/.hidden.js"):
        assert (await console.get(path)).status == 404, path


def test_sections_that_are_not_written_yet_are_left_out() -> None:
    assert shell.load_sections(("no_such_section",)) == ()
    found = shell.load_sections()
    assert all(isinstance(s, Section) for s in found)
    assert [s.key for s in found] == [
        k for k in ("experience", "service", "sales", "projectors") if k in {s.key for s in found}
    ]
