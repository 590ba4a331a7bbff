"""The feedback API and the H5 survey page.

* ``GET /s/{code}``: the survey of a touchpoint (what a printed code opens), one
  self-contained page posting to ``POST /api/feedback``;
* ``POST /api/feedback``: record (or edit) the visitor's answers at a touchpoint;
  an alarming one opens the complaint and cards the duty manager at once;
* ``POST /api/feedback/consent``: the mini-program reports an accepted one-time
  subscription (the post-show survey may then be pushed outside the 48-hour window);
* ``GET /api/feedback/summary``: NPS, CSAT, intervals, complaint shares and
  response times for the dashboard (a manager's staff token);
* ``GET /api/feedback/touchpoints``: the places, their scenes and survey URLs.

Who answers: a session token (chat link or mini-program), else an e-ticket's
secret (the e-ticket page's link), else an anonymous visitor cookie.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from typing import Any

from aiohttp import web

from bot.wechat.qrsheet import survey_url
from domain import feedback as fb
from domain import touchpoints as tps
from domain.feedback import ASPECTS, FeedbackError, FeedbackResponse
from domain.orders import Ticket
from domain.people import Staff, StaffRole
from domain.touchpoints import Touchpoint
from handlers.api.auth import bearer, session_from_token, staff_member
from handlers.api.context import API
from handlers.api.http import (
    ISO_DATE,
    Problem,
    int_field,
    invalid,
    json_view,
    ok,
    read_json,
    str_field,
)
from handlers.feedback_loop import FeedbackMessages, alert_if_needed, read_comment, show_text
from handlers.style import STYLE

VISITOR_COOKIE = "cb_visitor"
VISITOR = re.compile(r"[A-Za-z0-9_-]{16,40}")
PHONE = re.compile(r"1[3-9][0-9]{9}")  # [0-9]: \d would take "１３８…" and "١٣٨…" too
MAX_RANGE_DAYS = 366


@dataclass
class FeedbackContext:
    """What the feedback views need besides ``API``: the service desk's notify (None: no desk
    wired, orders still open) and the loop's messages."""

    desk: Any
    messages: FeedbackMessages


FEEDBACK = web.AppKey("feedback", FeedbackContext)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/feedback", submit)
    r.add_post("/api/feedback/consent", consent)
    r.add_get("/api/feedback/summary", summary)
    r.add_get("/api/feedback/touchpoints", touchpoints)
    r.add_get(r"/s/{code:[a-z0-9][a-z0-9-]{0,39}}", survey_page)


# --- who is answering ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Respondent:
    visitor: str  # openid, or "h5:<cookie>"
    openid: str | None
    showtime_id: int | None = None  # the show their ticket is for
    new_cookie: str | None = None


async def _respondent(request: web.Request, body: dict[str, Any]) -> Respondent:
    token = request.headers.get("Authorization", "")
    if token:
        session = await session_from_token(request, bearer(request))
        return Respondent(session.buyer.openid, session.buyer.openid)
    secret = body.get("ticket") if isinstance(body.get("ticket"), str) else None
    if secret:
        ticket = await Ticket.get_or_none(secret=secret.strip().lower()).prefetch_related("order")
        if ticket is None:
            raise Problem(404, "no_ticket", "没有找到这张票。")
        return Respondent(ticket.order.openid, ticket.order.openid, ticket.showtime_id)  # type: ignore[attr-defined]
    cookie = request.cookies.get(VISITOR_COOKIE, "")
    if VISITOR.fullmatch(cookie):
        return Respondent(f"h5:{cookie}", None)
    fresh = secrets.token_urlsafe(18)
    return Respondent(f"h5:{fresh}", None, new_cookie=fresh)


def _remember(response: web.Response, who: Respondent) -> web.Response:
    if who.new_cookie:
        response.set_cookie(
            VISITOR_COOKIE, who.new_cookie, max_age=400 * 86400, httponly=True, samesite="Lax",
        )
    return response


# --- answering ------------------------------------------------------------------------------------


def _aspects(body: dict[str, Any]) -> list[str] | None:
    value = body.get("aspects")
    if value is None:
        return None
    if not isinstance(value, list) or any(not isinstance(a, str) for a in value):
        raise invalid("aspects", "应为字符串列表")
    unknown = [a for a in value if a not in ASPECTS]
    if unknown:
        raise invalid("aspects", f"只能是 {'、'.join(ASPECTS)}")
    return value


def serialise(response: FeedbackResponse, touchpoint: Touchpoint) -> dict[str, Any]:
    show = None
    if response.showtime_id:
        show = {
            "id": response.showtime_id, "film": response.film_title, "hall": response.hall,
            "starts_at": response.show_starts_at.isoformat() if response.show_starts_at else None,
            "label": show_text(response),
        }
    return {
        "id": response.id, "touchpoint": {"code": touchpoint.code, "name": touchpoint.name},
        "visit_day": response.visit_day.isoformat() if isinstance(response.visit_day, date) else str(response.visit_day),
        "stars": response.stars, "nps": response.nps, "aspects": list(response.aspects or []),
        "comment": response.comment, "category": response.category, "sentiment": response.sentiment,
        "priority": response.priority, "showtime": show, "edits": response.edits,
    }


@json_view
async def submit(request: web.Request) -> web.Response:
    ctx, loop = request.app[API], request.app[FEEDBACK]
    body = await read_json(request)
    code = str_field(body, "touchpoint", max_len=40)
    stars = int_field(body, "stars", required=False, low=1, high=5)
    nps = int_field(body, "nps", required=False, low=0, high=10)
    if stars is None and nps is None:
        raise invalid("stars", "和 nps 至少要给一个")
    aspects = _aspects(body)
    comment = str_field(body, "comment", required=False, max_len=fb.MAX_COMMENT)
    phone = str_field(body, "phone", required=False, max_len=20)
    if phone is not None and not PHONE.fullmatch(phone.strip()):
        raise invalid("phone", "应为 11 位手机号")
    show_id = int_field(body, "show", required=False)
    touchpoint = await tps.by_code(code or "")
    if touchpoint is None:
        raise Problem(404, "no_touchpoint", "这个评价码不存在或已停用。")
    who = await _respondent(request, body)
    now = ctx.clock.now()
    visit = None
    if who.openid is not None:
        held = who.showtime_id or show_id
        if held is not None:
            candidate = await fb.visit_of_show(held)
            holds = candidate is not None and await Ticket.filter(
                showtime_id=held, order__openid=who.openid, active=True
            ).exists()
            visit = candidate if holds else None
        if visit is None:
            visit = await fb.visit_today(who.openid, touchpoint.cinema_id, now, hall=touchpoint.hall)
    response, created = await fb.start_response(
        touchpoint=touchpoint, visitor=who.visitor, now=now, channel="h5", visit=visit,
    )
    changes: dict[str, Any] = {}
    if stars is not None:
        changes["stars"] = stars
    if nps is not None:
        changes["nps"] = nps
    if aspects is not None:
        changes["aspects"] = aspects
    if comment is not None or "comment" in body:
        text = (comment or "").strip()
        changes["comment"] = text
        changes["reading"] = await read_comment(text)
    if phone:
        changes["phone"] = phone.strip()
    try:
        await fb.answer(response, now, **changes)
    except FeedbackError as exc:
        raise Problem(422, exc.code, exc.message) from None
    order, _ = await alert_if_needed(response, touchpoint, now, loop.desk)
    result = ok(
        {"response": serialise(response, touchpoint), "alerted": order is not None,
         "reference": order.ref if order is not None else None},
        status=201 if created else 200,
    )
    return _remember(result, who)


@json_view
async def consent(request: web.Request) -> web.Response:
    ctx = request.app[API]
    session = await session_from_token(request, bearer(request))
    body = await read_json(request)
    template_id = str_field(body, "template_id", max_len=64)
    assert template_id is not None
    row = await fb.grant_consent(session.buyer.openid, template_id, ctx.clock.now())
    return ok({"template_id": row.template_id, "remaining": row.remaining})


# --- for the dashboard -----------------------------------------------------------------------------


async def _manager(request: web.Request) -> Staff:
    staff = await staff_member(request)
    if staff.role != StaffRole.MANAGER:
        raise Problem(403, "not_manager", "只有影城经理可以查看满意度数据。")
    return staff


def _day(request: web.Request, name: str, default: date) -> date:
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        if not ISO_DATE.fullmatch(raw):
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise invalid(name, "应为日期 YYYY-MM-DD") from None


@json_view
async def summary(request: web.Request) -> web.Response:
    staff = await _manager(request)
    today = fb.business_day(request.app[API].clock.now())
    end = _day(request, "to", today)
    start = _day(request, "from", end - timedelta(days=6))
    if start > end:
        raise invalid("from", "不能晚于 to")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise invalid("from", f"时间范围不能超过 {MAX_RANGE_DAYS} 天")
    by = request.query.get("by", "day")
    if by not in fb.BY:
        raise invalid("by", f"应为 {'|'.join(fb.BY)}")
    return ok(await fb.summary(staff.cinema_id, start, end, by))  # type: ignore[attr-defined]


@json_view
async def touchpoints(request: web.Request) -> web.Response:
    staff = await staff_member(request)
    public_url = request.app[API].public_url
    rows = await tps.of_cinema(staff.cinema_id)  # type: ignore[attr-defined]
    return ok({"touchpoints": [
        {"code": t.code, "name": t.name, "kind": str(t.kind), "hall": t.hall, "scene": t.scene,
         "survey_url": survey_url(public_url, t.code), "printed": t.printed}
        for t in rows
    ]})


# --- the H5 survey ------------------------------------------------------------------------------------

SURVEY_STYLE = """
.q{margin:14px 0 6px;font-weight:600}.opts{display:flex;flex-wrap:wrap;gap:6px}
.opts button{border:1px solid #ccd;background:#fff;border-radius:8px;padding:8px 10px;font-size:15px;min-width:38px}
.opts button.on{background:#07c160;border-color:#07c160;color:#fff}
textarea,input{width:100%;box-sizing:border-box;border:1px solid #ccd;border-radius:8px;padding:8px;font-size:15px}
.err{color:#e54545;min-height:1em}.done{font-size:18px;text-align:center;padding:24px 0}
"""

# Plain ES2015, no libraries (WeChat's in-app browser).
SURVEY_SCRIPT = r"""
(function(){
var app=document.getElementById('app'),Q=new URLSearchParams(location.search),
 state=JSON.parse(app.getAttribute('data-state'));
function $(id){return document.getElementById(id);}
function pick(group,value,multi){
 var box=$(group);Array.prototype.forEach.call(box.children,function(b){
  if(multi){if(b.getAttribute('data-v')===String(value))b.classList.toggle('on');}
  else b.classList.toggle('on',b.getAttribute('data-v')===String(value));});
}
function chosen(group){var out=[];Array.prototype.forEach.call($(group).children,function(b){
 if(b.classList.contains('on'))out.push(b.getAttribute('data-v'));});return out;}
['stars','nps','aspects'].forEach(function(g){
 $(g).addEventListener('click',function(e){var v=e.target.getAttribute('data-v');if(v===null)return;
  pick(g,v,g==='aspects');});});
if(state.stars)pick('stars',state.stars);if(state.nps!==null&&state.nps!==undefined)pick('nps',state.nps);
(state.aspects||[]).forEach(function(a){pick('aspects',a,true);});
$('comment').value=state.comment||'';
$('send').addEventListener('click',function(){
 var s=chosen('stars'),n=chosen('nps');
 if(!s.length&&!n.length){$('err').textContent='请至少选择星级或推荐度';return;}
 var body={touchpoint:app.getAttribute('data-code'),aspects:chosen('aspects'),comment:$('comment').value};
 if(s.length)body.stars=+s[0];if(n.length)body.nps=+n[0];
 if($('phone').value)body.phone=$('phone').value.trim();
 if(Q.get('ticket'))body.ticket=Q.get('ticket');if(Q.get('show'))body.show=+Q.get('show');
 var h={'Content-Type':'application/json'};if(Q.get('token'))h.Authorization='Bearer '+Q.get('token');
 $('send').disabled=true;
 fetch('/api/feedback',{method:'POST',headers:h,body:JSON.stringify(body),credentials:'same-origin'})
 .then(function(r){return r.json().then(function(j){return{ok:r.ok,body:j};});})
 .then(function(r){if(!r.ok){$('err').textContent=r.body.message||'提交失败';$('send').disabled=false;return;}
  $('form').innerHTML='<div class="done">'+(r.body.alerted?'非常抱歉给您带来不好的体验，值班经理已收到，会尽快处理（编号 '+r.body.reference+'）。':'谢谢您的评价 🎬')+'</div>';})
 .catch(function(){$('err').textContent='网络不太好，请稍后再试';$('send').disabled=false;});
});
})();
"""


async def survey_page(request: web.Request) -> web.Response:
    touchpoint = await tps.by_code(request.match_info["code"])
    if touchpoint is None:
        body = '<div class="card"><h1>评价码已停用</h1><p class="muted">欢迎到服务台告诉我们您的感受。</p></div>'
        return _html("扫码评价", body, 404)
    state: dict[str, Any] = {}
    cookie = request.cookies.get(VISITOR_COOKIE, "")
    if VISITOR.fullmatch(cookie):
        # A second scan the same day edits the first: show what was given.
        found = await FeedbackResponse.get_or_none(
            visitor=f"h5:{cookie}", touchpoint_id=touchpoint.id,
            visit_day=fb.business_day(request.app[API].clock.now()),
        )
        if found is not None:
            state = {"stars": found.stars, "nps": found.nps, "aspects": found.aspects, "comment": found.comment}
    stars = "".join(f'<button type="button" data-v="{n}">{"★" * n}</button>' for n in range(5, 0, -1))
    nps = "".join(f'<button type="button" data-v="{n}">{n}</button>' for n in range(0, 11))
    aspects = "".join(f'<button type="button" data-v="{a}">{a}</button>' for a in ASPECTS)
    body = (
        f'<div class="card" id="app" data-code="{escape(touchpoint.code)}" '
        f"data-state='{escape(json.dumps(state, ensure_ascii=False))}'>"
        f"<h1>📍{escape(touchpoint.name)}</h1><div class=\"muted\">约 30 秒，谢谢您的反馈</div>"
        '<div id="form">'
        f'<div class="q">1. 这次体验打几星？</div><div class="opts" id="stars">{stars}</div>'
        f'<div class="q">2. 您有多大可能把我们推荐给朋友？（0–10）</div><div class="opts" id="nps">{nps}</div>'
        f'<div class="q">3. 哪些方面值得一提？（可多选）</div><div class="opts" id="aspects">{aspects}</div>'
        '<div class="q">4. 还想说点什么？（可选）</div><textarea id="comment" rows="3" maxlength="500"></textarea>'
        '<div class="q">联系电话（可选，方便经理回访）</div><input id="phone" inputmode="tel" maxlength="11">'
        '<div class="err" id="err"></div><button class="btn" id="send">提交</button></div></div>'
        f"<script>{SURVEY_SCRIPT}</script>"
    )
    return _html("扫码评价", body)


def _html(title: str, body: str, status: int = 200) -> web.Response:
    html = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}{SURVEY_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return web.Response(text=html, content_type="text/html", status=status)
