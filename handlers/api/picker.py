"""The H5 seat picker, ``GET /pick/{showtime_id}?token=...``: tap seats, see the price, hold, pay.

One self-contained page (no external scripts or styles) that is a client of the
same JSON API as the mini-program: it draws ``GET /api/showtimes/{id}/seats``,
holds with ``POST /api/holds`` and then goes to the order's pay page. Chat links
here with :func:`picker_url`, whose token is minted for the buyer's WeChat
openid (purpose ``h5``: the order is a chat order, so the e-ticket arrives in
chat); a mini-program session token works too.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from aiohttp import web

from bot.infra.clock import local_date_time_text
from bot.infra.strict import parse_ascii_int
from domain.catalog import Showtime
from handlers.api.auth import page_token, session_from_token
from handlers.api.context import ApiContext
from handlers.api.http import Problem
from handlers.style import STYLE

PICKER_STYLE = """
.screen{margin:4px auto 10px;width:70%;text-align:center;font-size:12px;color:#888;
border-top:4px solid #ccd;border-radius:50%/8px;padding-top:4px}
.hall{overflow-x:auto;padding-bottom:6px}
.row{display:grid;gap:3px;margin-bottom:3px;align-items:center}
.rn{font-size:11px;color:#999;text-align:right;padding-right:4px}
.seat{width:22px;height:22px;border-radius:5px 5px 3px 3px;border:1px solid #9ab;background:#fff;
padding:0;font-size:10px;line-height:20px;color:#789}
.seat.vip{border-color:#d4a017}.seat.couple{border-color:#e57;background:#fff5f8}
.seat.wheelchair{border-color:#3a8}.seat.sold,.seat.held{background:#ccc;border-color:#bbb;color:#999}
.seat.blocked{background:transparent;border:1px dashed #ddd;color:#ccc}
.seat.picked,.seat.mine{background:#07c160;border-color:#07c160;color:#fff}
.legend{display:flex;flex-wrap:wrap;gap:10px;font-size:12px;color:#666;margin-top:8px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:3px;border:1px solid #9ab;
vertical-align:-2px;margin-right:3px}
.sum{font-size:15px;margin:6px 0}.err{color:#e54545;min-height:1em;font-size:14px}
"""

# Plain ES2015, no libraries: WeChat's in-app browser and old Android WebViews run it.
PICKER_SCRIPT = r"""
(function(){
var app=document.getElementById('app'),T=app.getAttribute('data-token'),
 SID=+app.getAttribute('data-showtime'),picked=[],data=null,left=0,timer=null,busy=false;
function $(id){return document.getElementById(id);}
function api(method,path,body){
 var o={method:method,headers:{'Authorization':'Bearer '+T}};
 if(body){o.headers['Content-Type']='application/json';o.body=JSON.stringify(body);}
 return fetch(path,o).then(function(r){return r.json().then(function(j){return{status:r.status,body:j};});})
  .catch(function(){return{status:0,body:{message:'网络不太好，请稍后再试。'}};});
}
function yuan(f){return '¥'+(f%100?(f/100).toFixed(2):f/100);}
function name(l){var p=l.split('-');return p[0]+'排'+p[1]+'座';}
function say(t){$('err').textContent=t||'';}
function seatOf(l){for(var i=0;i<data.map.rows.length;i++){var s=data.map.rows[i].seats;
 for(var j=0;j<s.length;j++)if(s[j].label===l)return s[j];}return null;}
function load(){
 return api('GET','/api/showtimes/'+SID+'/seats').then(function(r){
  if(r.status!==200){say(r.body.message);return;}
  data=r.body;
  if(!picked.length&&data.hold&&data.hold.state==='held')picked=data.hold.seats.slice();
  picked=picked.filter(function(l){var s=seatOf(l);return s&&(s.state==='free'||s.state==='mine');});
  draw();countdown();
 });
}
function draw(){
 var hall=$('hall');hall.innerHTML='';var w=data.map.width;
 data.map.rows.forEach(function(row){
  var line=document.createElement('div');line.className='row';
  line.style.gridTemplateColumns='18px repeat('+w+',22px)';
  var rn=document.createElement('span');rn.className='rn';rn.textContent=row.row;line.appendChild(rn);
  row.seats.forEach(function(s){
   var b=document.createElement('button');b.type='button';
   var on=picked.indexOf(s.label)>=0;
   b.className='seat '+s.kind+' '+(on?'picked':s.state);
   b.style.gridColumn=(s.x+2);b.title=name(s.label);
   b.textContent=s.kind==='couple'?'♡':(s.kind==='wheelchair'?'♿':(s.kind==='blocked'?'✕':''));
   b.setAttribute('aria-label',name(s.label));
   b.onclick=function(){tap(s);};line.appendChild(b);
  });
  hall.appendChild(line);
 });
 sum();
}
function tap(s){
 if(s.state!=='free'&&s.state!=='mine')return;
 var group=s.partner?[s.label,s.partner]:[s.label],on=picked.indexOf(s.label)>=0;
 if(on){picked=picked.filter(function(l){return group.indexOf(l)<0;});}
 else{
  if(picked.length+group.length>data.limits.max_per_order){say('一笔订单最多'+data.limits.max_per_order+'张。');return;}
  picked=picked.concat(group);
 }
 say('');draw();
}
function sum(){
 var total=0,prices=(data.prices||{}).per_kind||{};
 picked.forEach(function(l){var s=seatOf(l);if(s)total+=prices[s.kind]||0;});
 $('picked').textContent=picked.length?picked.map(name).join('、'):'点击座位进行选择';
 $('total').textContent=picked.length?(picked.length+'张 · 合计 '+yuan(total)):'';
 var b=$('go');b.disabled=!picked.length||busy;
 b.textContent=data.hold&&data.hold.state==='held'?'更换为所选座位并支付':'锁定座位并支付';
}
function countdown(){
 clearInterval(timer);var h=data.hold,box=$('hold');
 if(!h||!h.seconds_left){box.style.display='none';return;}
 left=h.seconds_left;box.style.display='block';
 $('holdseats').textContent=h.seat_names.join('、');
 $('paylink').href=h.pay_url||'#';
 var tick=function(){
  $('left').textContent=Math.floor(left/60)+':'+('0'+left%60).slice(-2);
  if(left<=0){clearInterval(timer);say('座位保留已超时，请重新选座。');data.hold=null;picked=[];load();}
  left--;
 };
 tick();timer=setInterval(tick,1000);
}
$('go').onclick=function(){
 if(!picked.length||busy)return;busy=true;sum();say('');
 api('POST','/api/holds',{showtime_id:SID,seats:picked}).then(function(r){
  busy=false;
  if(r.status===201&&r.body.order.pay_url){location.href=r.body.order.pay_url;return;}
  say(r.body.message||'没能锁定座位，请再试一次。');load();
 });
};
load();
})();
"""


def picker_url(ctx: ApiContext, openid: str, showtime_id: int) -> str:
    """The seat picker for ``showtime_id``, opened from chat by the buyer ``openid``."""
    token = page_token(ctx.secret_key, openid, ctx.clock.now())
    return f"{ctx.public_url.rstrip('/')}/pick/{showtime_id}?token={quote(token, safe='.')}"


def _html(title: str, body: str, status: int = 200) -> web.Response:
    html = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style>{STYLE}{PICKER_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    # The URL carries the buyer's token: keep it out of caches and Referer headers.
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return web.Response(text=html, content_type="text/html", status=status, headers=headers)


def _sorry(title: str, text: str, status: int) -> web.Response:
    card = f'<div class="card"><h1>{escape(title)}</h1><p class="muted">{escape(text)}</p></div>'
    return _html(title, card, status)


async def picker_page(request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    try:
        await session_from_token(request, token)
    except Problem:
        return _sorry("链接已失效", "选座链接无效或已过期，请回到聊天重新打开。", 401)
    showtime_id = parse_ascii_int(request.match_info["id"], max_digits=9)
    show = None
    if showtime_id is not None:
        show = await Showtime.get_or_none(id=showtime_id).prefetch_related("film", "hall")
    if show is None:
        return _sorry("没有这一场", "这一场不存在，请回到聊天重新选择场次。", 404)
    body = (
        f'<div id="app" data-token="{escape(token)}" data-showtime="{show.id}">'
        f'<div class="card"><h1>《{escape(show.film.title)}》</h1>'
        f"<div>{local_date_time_text(show.starts_at)} · {escape(show.hall.name)} · "
        f"{escape(show.format)}</div></div>"
        '<div class="card" id="hold" style="display:none">您已锁定 <b id="holdseats"></b>，'
        '保留剩余 <b id="left"></b>，超时自动释放。<a id="paylink" href="#">去支付 ›</a></div>'
        '<div class="card"><div class="screen">银幕</div><div class="hall" id="hall">'
        '<p class="muted">座位图加载中…</p></div>'
        '<div class="legend"><span><i></i>可选</span>'
        '<span><i style="background:#07c160;border-color:#07c160"></i>已选</span>'
        '<span><i style="background:#ccc;border-color:#bbb"></i>已售/已锁</span>'
        '<span><i style="border-color:#d4a017"></i>贵宾座</span>'
        '<span><i style="border-color:#e57;background:#fff5f8"></i>情侣座（两座一起选）</span>'
        "</div></div>"
        '<div class="card"><div class="sum" id="picked"></div><div class="amount" id="total"></div>'
        '<div class="err" id="err"></div>'
        '<button class="btn" id="go" type="button" disabled>锁定座位并支付</button></div>'
        "</div>"
        f"<script>{PICKER_SCRIPT}</script>"
    )
    return _html("在线选座", body)
