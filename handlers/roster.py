"""WeCom: the duty roster. Staff ask who is on duty; managers add shifts by one message.

"今天谁值班" / "值班表" / "明天谁值班" / "现在谁值班" → the roster (any staff member);
"排班 staff02 明天 14:00-22:00 场务" → a new shift (managers only; others are refused
politely and the attempt is logged).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, time, timedelta

from bot.chat.channels import Channel, Inbound
from bot.infra.clock import SHANGHAI, Clock
from bot.chat.replies import Reply
from bot.chat.router import Actor, Router, Update
from domain.people import Staff, StaffRole
from domain.workorders import TEAM_LABELS, Shift, WorkOrderError, add_shift, roster

log = logging.getLogger(__name__)
router = Router(__name__)

TEAMS = ("floor", "engineering", "management")
WEEKDAYS = "一二三四五六日"
TEAM_WORDS = {
    "场务": "floor", "场务组": "floor", "楼面": "floor", "前厅": "floor",
    "工程": "engineering", "工程组": "engineering", "放映": "engineering",
    "经理": "management", "值班经理": "management", "管理": "management",
}
ROLE_TEAMS = {
    StaffRole.STAFF: "floor", StaffRole.ENGINEER: "engineering", StaffRole.MANAGER: "management",
}
USAGE = "排班格式：排班 staff02 明天 14:00-22:00 场务\n（日期可写今天/明天/后天/11月25日；组可写场务、工程、经理，不写按岗位）"

VIEW = re.compile(
    r"^\s*(?P<day>今天|今日|明天|后天|现在|当前)?\s*的?\s*"
    r"(?:谁(?:在)?值班|值班表|值班安排|排班表|谁在班|谁上班)\s*(?:是谁|有谁)?\s*[?？。!！]*\s*$"
)
ADD = re.compile(
    r"^\s*排班\s*[:：]?\s*(?P<who>[^\s\d:：][^\s]*?)\s+"
    r"(?:(?P<day>今天|明天|后天|\d{1,2}月\d{1,2}[日号]?|\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[-/.]\d{1,2})\s*)?"
    r"(?P<start>\d{1,2}[:：]\d{2})\s*(?:-|~|～|—|–|到|至)\s*(?P<end>\d{1,2}[:：]\d{2})"
    r"\s*(?P<team>\S+)?\s*$"
)


def _text(u: Update) -> str:
    return u.inbound.text or ""


def _is_view(u: Update) -> bool:
    return bool(VIEW.match(_text(u)))


def _is_add(u: Update) -> bool:
    return _text(u).lstrip().startswith("排班") and not _is_view(u)


# Formatting ----------------------------------------------------------------------------------
def _at(moment: datetime, ref: datetime) -> str:
    local = moment.astimezone(SHANGHAI)
    later = "次日" if local.date() > ref.astimezone(SHANGHAI).date() else ""
    return f"{later}{local:%H:%M}"


def _span(start: datetime, end: datetime) -> str:
    return f"{_at(start, start)}–{_at(end, start)}"


def _day(d: date) -> str:
    return f"{d.month}月{d.day}日（周{WEEKDAYS[d.weekday()]}）"


def _who(staff: Staff, manager: bool) -> str:
    # Managers see userids: those are what 排班 takes.
    return f"{staff.name}({staff.userid})" if manager else staff.name


async def _on_duty_line(cinema_id: int, now: datetime, manager: bool) -> str:
    shifts = sorted(
        (s for s in await roster(cinema_id, now, now + timedelta(seconds=1)) if s.staff.active),
        key=lambda s: (s.starts_at, s.staff.userid),
    )
    parts = []
    for team in TEAMS:
        names: list[str] = []
        for s in shifts:
            if s.team == team and _who(s.staff, manager) not in names:
                names.append(_who(s.staff, manager))
        parts.append(f"{TEAM_LABELS[team]} {'、'.join(names) if names else '无人'}")
    return "现在在岗：" + "；".join(parts)


async def _day_roster(cinema_id: int, day: date, now: datetime, manager: bool) -> str:
    start = datetime.combine(day, time(0), SHANGHAI)
    # A day's roster is the shifts that start that day (a late shift ends after midnight).
    shifts = sorted(
        (s for s in await roster(cinema_id, start, start + timedelta(days=1))
         if s.starts_at >= start and s.staff.active),
        key=lambda s: (s.starts_at, s.ends_at, s.staff.userid),
    )
    lines = [f"📋 {_day(day)}值班表"]
    if not shifts:
        lines.append("这一天还没有排班。")
    for team in TEAMS:
        rows = [
            f"{_who(s.staff, manager)} {_span(s.starts_at, s.ends_at)}"
            for s in shifts if s.team == team
        ]
        if shifts:
            lines.append(f"{TEAM_LABELS[team]}：{'、'.join(rows) if rows else '无人排班'}")
    if day == now.astimezone(SHANGHAI).date():
        lines.append(await _on_duty_line(cinema_id, now, manager))
    if manager:
        lines.append("调整排班：排班 staff02 明天 14:00-22:00 场务")
    return "\n".join(lines)


# Parsing -------------------------------------------------------------------------------------
def _parse_day(word: str | None, today: date) -> date:
    if not word or word in ("今天", "今日"):
        return today
    if word in ("明天", "后天"):
        return today + timedelta(days=1 if word == "明天" else 2)
    if m := re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", word):
        return date(int(m[1]), int(m[2]), int(m[3]))
    m = re.fullmatch(r"(\d{1,2})(?:月|[-/.])(\d{1,2})[日号]?", word)
    if m is None:
        raise ValueError(word)
    day = date(today.year, int(m[1]), int(m[2]))
    # "1月3日" said in late December means next January.
    return day if day >= today - timedelta(days=31) else date(today.year + 1, day.month, day.day)


def _parse_time(text: str) -> time:
    hour, minute = text.replace("：", ":").split(":")
    return time(int(hour), int(minute))


async def _find_staff(who: str, cinema_id: int) -> Staff | None:
    found = await Staff.get_or_none(userid=who, cinema_id=cinema_id, active=True)
    if found is None:
        found = await Staff.filter(name=who, cinema_id=cinema_id, active=True).first()
    return found


# Handlers ------------------------------------------------------------------------------------
@router.on(channel=Channel.WECOM, role="employee", kind="text", when=_is_view)
async def show_roster(actor: Actor, msg: Inbound, clock: Clock) -> Reply:
    if actor.cinema_id is None:
        return Reply.say("你的账号没有关联影城，查不到值班表。")
    now = clock.now()
    manager = actor.role == StaffRole.MANAGER
    word = VIEW.match(msg.text)["day"]  # type: ignore[index]
    if word in ("现在", "当前"):
        return Reply.say(await _on_duty_line(actor.cinema_id, now, manager))
    day = _parse_day(word, now.astimezone(SHANGHAI).date())
    return Reply.say(await _day_roster(actor.cinema_id, day, now, manager))


@router.on(channel=Channel.WECOM, role="employee", kind="text", when=_is_add)
async def add_to_roster(actor: Actor, msg: Inbound, clock: Clock) -> Reply:
    if actor.role != StaffRole.MANAGER:
        log.warning(
            "roster change refused: not a manager",
            extra={"by": actor.user_id, "role": actor.role, "cinema_id": actor.cinema_id},
        )
        return Reply.say("抱歉，排班需要店长（值班经理）来安排。\n你可以发「值班表」查看安排；需要调班请联系店长。")
    if actor.cinema_id is None:
        return Reply.say("你的账号没有关联影城，不能排班。")
    found = ADD.match(msg.text)
    if found is None:
        return Reply.say(USAGE)
    now = clock.now()
    try:
        day = _parse_day(found["day"], now.astimezone(SHANGHAI).date())
        opens, closes = _parse_time(found["start"]), _parse_time(found["end"])
    except ValueError:
        return Reply.say("日期或时间看不懂。\n" + USAGE)
    staff = await _find_staff(found["who"], actor.cinema_id)
    if staff is None:
        return Reply.say(f"本影城没有在职员工「{found['who']}」。请用企业微信账号（如 staff02）或姓名。")
    team = TEAM_WORDS.get(found["team"]) if found["team"] else ROLE_TEAMS.get(staff.role)
    if team is None:
        return Reply.say(f"不认识的组「{found['team']}」，可选：场务、工程、经理。")
    # Stored and compared in UTC: SQLite compares timestamps as text.
    starts = datetime.combine(day, opens, SHANGHAI).astimezone(UTC)
    ends = datetime.combine(day + timedelta(days=closes < opens), closes, SHANGHAI).astimezone(UTC)
    label = f"{_who(staff, True)} · {TEAM_LABELS[team]} · {_day(day)}{_span(starts, ends)}"
    overlapping = await Shift.filter(staff_id=staff.id, starts_at__lt=ends, ends_at__gt=starts)
    if any(s.team == team and s.starts_at == starts and s.ends_at == ends for s in overlapping):
        return Reply.say(f"这个班已经排过了：{label}")
    try:
        await add_shift(
            cinema_id=actor.cinema_id, staff=staff, team=team, starts_at=starts, ends_at=ends,
            by=actor.user_id, now=now,
        )
    except WorkOrderError as exc:
        return Reply.say(exc.message)
    log.info(
        "shift added by chat", extra={"by": actor.user_id, "staff": staff.userid, "team": team}
    )
    lines = [f"✅ 已排班：{label}"]
    lines += [
        f"注意：与已有班次重叠（{TEAM_LABELS.get(s.team, s.team)} {_span(s.starts_at, s.ends_at)}）"
        for s in overlapping
    ]
    return Reply.say("\n".join(lines))
