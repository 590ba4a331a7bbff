"""The OpenAPI 3.1 description of ``/api/``, served at ``GET /api/openapi.json``.

Written by hand, next to the views, and kept complete by a test that compares
it with the routes the app registers.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from handlers.api.http import ok

J = dict[str, Any]


def _ref(name: str) -> J:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: J, description: str) -> J:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> J:
    words = {
        400: "请求体不是 JSON 对象（bad_json）",
        401: "未登录、登录凭证无效或过期（unauthorized / bad_token / token_expired / bad_code）",
        403: "无权操作（not_staff / risky_user）",
        404: "不存在，或不是你的订单（not_found / no_order / no_showtime / no_cinema）",
        409: "业务规则拒绝（taken / showtime_cap / order_cap / cutoff / quota / expired / state ...）",
        413: "请求体超过 16 KB（too_large）",
        422: "参数缺失或格式不对（invalid，field 指明参数）",
        429: "太频繁（too_frequent）",
        502: "微信或微信支付拒绝了请求（login_failed / pay_unavailable）",
        503: "微信暂时不可用（wechat_unavailable）",
    }
    return {str(s): _json(_ref("Error"), words[s]) for s in statuses}


def _body(schema: J, required: bool = True) -> J:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _obj(props: J, required: list[str] | None = None) -> J:
    out: J = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


INT = {"type": "integer"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time", "description": "ISO 8601, +08:00"}
NULL_TIME = {"type": ["string", "null"], "format": "date-time"}
SEATS = {"type": "array", "items": {"type": "string", "pattern": r"^\d{1,3}-\d{1,3}$"},
         "minItems": 1, "maxItems": 20, "uniqueItems": True, "examples": [["7-8", "7-9"]]}
SESSION = [{"session": []}]
ORDER_NO = {"name": "no", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9]{1,32}$"}}
SHOWTIME_ID = {"name": "id", "in": "path", "required": True,
               "schema": {"type": "integer", "minimum": 1}}

SCHEMAS: J = {
    "Error": _obj(
        {"code": STR, "message": {"type": "string", "description": "给用户看的中文说明"},
         "field": {"type": "string", "description": "422：出错的参数"}},
        ["code", "message"],
    ),
    "Film": _obj({
        "id": INT, "title": STR, "aliases": {"type": "array", "items": STR},
        "duration_min": INT, "genres": {"type": "array", "items": STR},
        "rating": {"type": ["number", "null"]}, "formats": {"type": "array", "items": STR},
        "synopsis": STR, "release_date": {"type": ["string", "null"], "format": "date"},
    }),
    "Showtime": _obj({
        "id": INT, "cinema_id": INT,
        "film": _obj({"id": INT, "title": STR}),
        "hall": _obj({"id": INT, "name": STR, "screen": STR}),
        "starts_at": TIME, "ends_at": TIME, "format": STR, "base_price_fen": INT,
        "cancelled": BOOL, "on_sale": BOOL,
    }),
    "Seat": _obj({
        "label": {"type": "string", "examples": ["7-8"]}, "col": INT,
        "x": {"type": "integer", "description": "在该排中的位置（过道也占位），用于画过道"},
        "kind": {"enum": ["standard", "vip", "couple", "wheelchair", "blocked"]},
        "state": {"enum": ["free", "held", "sold", "mine", "blocked"],
                  "description": "mine：本人锁定（未支付）的座位"},
        "partner": {"type": "string", "description": "情侣座的另一半，两座一起选"},
    }, ["label", "kind", "state"]),
    "SeatMap": _obj({
        "width": INT,
        "rows": {"type": "array",
                 "items": _obj({"row": INT, "seats": {"type": "array", "items": _ref("Seat")}})},
    }),
    "Ticket": _obj({
        "id": INT, "seat": STR, "seat_name": STR, "kind": STR, "price_fen": INT,
        "state": {"enum": ["issued", "checked_in", "refunded", "changed"]}, "state_label": STR,
        "checked_in_at": NULL_TIME, "page_url": {"type": "string", "format": "uri"},
        "secret": {"type": "string", "description": "二维码内容（仅可入场的票）"},
        "qr_url": {"type": "string", "format": "uri", "description": "二维码 PNG（仅可入场的票）"},
    }),
    "Order": _obj({
        "no": STR,
        "state": {"enum": ["held", "pending_payment", "paid", "issued", "checked_in",
                           "cancelled", "expired", "refunded", "changed"]},
        "state_label": STR, "channel": {"enum": ["miniprogram", "chat", "boxoffice"]},
        "showtime_id": INT, "showtime": _ref("Showtime"), "seats": SEATS,
        "seat_names": {"type": "array", "items": STR},
        "quote": _obj({"lines": {"type": "array",
                                 "items": _obj({"seat": STR, "kind": STR, "fen": INT})},
                       "total_fen": INT, "tier": STR, "discount": {"type": ["string", "null"]}}),
        "amount_fen": INT, "paid_fen": INT, "refunded_fen": INT,
        "created_at": TIME, "paid_at": NULL_TIME, "expires_at": TIME,
        "seconds_left": {"type": "integer", "description": "锁座剩余秒数（未支付的订单）"},
        "pay_url": {"type": "string", "format": "uri", "description": "H5 支付页（未支付的订单）"},
        "changed_from": {"type": "string", "description": "改签前的订单号"},
        "tickets": {"type": "array", "items": _ref("Ticket")},
    }, ["no", "state", "seats", "amount_fen"]),
    "PayParams": _obj({
        "appId": STR, "timeStamp": STR, "nonceStr": STR, "package": STR,
        "signType": {"const": "RSA"}, "paySign": STR,
    }, ["appId", "timeStamp", "nonceStr", "package", "signType", "paySign"]),
    "Payment": _obj({
        "pay": _ref("PayParams"),
        "sandbox": {"type": "boolean", "description": "演示沙箱：打开 pay_url 付款，不调用 wx.requestPayment"},
        "pay_url": {"type": "string", "format": "uri"},
    }),
}


def _op(summary: str, responses: J, *, security: list[J] | None = SESSION, **more: Any) -> J:
    op: J = {"summary": summary, "responses": responses, **more}
    if security is not None:
        op["security"] = security
    return op


PATHS: J = {
    "/api/login": {"post": _op(
        "小程序登录：wx.login 的 code 换取会话令牌（7 天）",
        {"200": _json(_obj({"token": STR, "openid_hint": STR, "expires_in": INT}), "登录成功"),
         **_errors(400, 401, 403, 413, 422, 429, 502, 503)},
        security=None,
        requestBody=_body(_obj({"code": STR}, ["code"])),
    )},
    "/api/films": {"get": _op(
        "在映影片", {"200": _json(_obj({"films": {"type": "array", "items": _ref("Film")}}), "影片列表")},
        security=None,
    )},
    "/api/showtimes": {"get": _op(
        "某天的场次（影城营业日，含次日 03:00 前的场次）",
        {"200": _json(_obj({"cinema": _obj({"id": INT, "name": STR}), "date": STR,
                            "showtimes": {"type": "array", "items": _ref("Showtime")}}), "场次列表"),
         **_errors(404, 422)},
        security=None,
        parameters=[
            {"name": "date", "in": "query", "schema": {"type": "string", "format": "date"},
             # Empty is the same as absent (a form's blank field), as the views read it.
             "allowEmptyValue": True,
             "description": "YYYY-MM-DD（2000–2099 年），默认今天（上海时间）"},
            {"name": "film_id", "in": "query", "schema": INT, "allowEmptyValue": True},
            {"name": "cinema_id", "in": "query", "schema": INT, "allowEmptyValue": True,
             "description": "默认第一家影城"},
        ],
    )},
    "/api/showtimes/{id}/seats": {"get": _op(
        "座位图：每个座位的状态、本人的票价与锁座倒计时",
        {"200": _json(_obj({
            "showtime": _ref("Showtime"), "map": _ref("SeatMap"),
            "prices": _obj({"per_kind": {"type": "object", "additionalProperties": INT},
                            "list_per_kind": {"type": "object", "additionalProperties": INT},
                            "kind_names": {"type": "object", "additionalProperties": STR},
                            "tier": STR, "discount": {"type": ["string", "null"]}}),
            "hold": {"oneOf": [_ref("Order"), {"type": "null"}], "description": "本人在这一场未支付的订单"},
            "limits": _obj({"max_per_order": INT, "max_per_showtime": INT, "hold_minutes": INT}),
        }), "座位图"), **_errors(401, 404)},
        parameters=[SHOWTIME_ID],
    )},
    "/api/holds": {"post": _op(
        "锁座：指定座位，或给张数由系统选最佳座位。本人在同一场未确认的锁座会被整体替换。",
        {"201": _json(_obj({"order": _ref("Order")}), "已锁座的订单（含报价与倒计时）"),
         **_errors(400, 401, 404, 409, 413, 422)},
        requestBody=_body(_obj({"showtime_id": INT, "seats": SEATS,
                                "count": {"type": "integer", "minimum": 1, "maximum": 20},
                                "row": {"type": "integer", "minimum": 1}}, ["showtime_id"])),
    )},
    "/api/orders/{no}": {
        "get": _op("订单详情（仅本人）", {"200": _json(_obj({"order": _ref("Order")}), "订单"),
                                   **_errors(401, 404)}, parameters=[ORDER_NO]),
        "delete": _op("取消未支付的订单，释放座位",
                      {"200": _json(_obj({"order": _ref("Order")}), "已取消"),
                       **_errors(401, 404, 409)},
                      parameters=[ORDER_NO]),
    },
    "/api/orders/{no}/pay": {"post": _op(
        "确认订单并取得 wx.requestPayment 参数（沙箱模式另给 pay_url）",
        {"200": _json({"allOf": [_obj({"order": _ref("Order")}), _ref("Payment")]}, "待支付"),
         **_errors(401, 404, 409, 502)},
        parameters=[ORDER_NO],
    )},
    "/api/orders/{no}/refund": {"post": _op(
        "退票（开场前截止时间之前；每月次数有限）",
        {"200": _json(_obj({"order": _ref("Order"), "refund": _obj({"no": STR, "amount_fen": INT,
                                                                     "state": STR})}), "已退票"),
         **_errors(401, 404, 409)},
        parameters=[ORDER_NO],
    )},
    "/api/orders/{no}/change": {"post": _op(
        "改签到同一影片的另一场（每单一次）；需补差价时返回支付参数",
        {"200": _json({"allOf": [_obj({"order": _ref("Order"), "from": STR, "due_fen": INT,
                                       "done": BOOL}), _ref("Payment")]},
                      "新订单；due_fen>0 时待支付差价，<0 时差价原路退回"),
         **_errors(400, 401, 404, 409, 413, 422)},
        parameters=[ORDER_NO],
        requestBody=_body(_obj({"showtime_id": INT, "seats": SEATS}, ["showtime_id"])),
    )},
    "/api/tickets": {"get": _op(
        "我的电子票（未结束的场次）",
        {"200": _json(_obj({"orders": {"type": "array", "items": _ref("Order")}}), "订单与票"),
         **_errors(401)},
    )},
    "/api/checkin": {"post": _op(
        "检票（员工令牌）：一票一次；同一 nonce 重传得到同样的结果",
        {"200": _json(_ref("CheckIn"), "检票成功"),
         "409": _json(_ref("CheckIn"), "拒绝：unknown 伪造或无效、foreign 非本影城、wrong_day、"
                                       "used、refunded、too_early、ended"),
         **_errors(400, 401, 403, 413, 422)},
        security=[{"staff": []}],
        requestBody=_body(_obj({"secret": {"type": "string", "description": "二维码内容或电子票链接"},
                                "nonce": {"type": "string", "maxLength": 64}}, ["secret"])),
    )},
    "/api/openapi.json": {"get": _op(
        "本文档", {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
        security=None,
    )},
    "/api/pay/notify": {"post": _op(
        "微信支付（或沙箱）回调：验签、解密后出票；204 已处理，4xx 拒绝，5xx 请重试",
        {"204": {"description": "已处理"},
         "400": {"description": "订单不存在或金额不符"}, "401": {"description": "验签失败"},
         "413": {"description": "请求体过大"}, "503": {"description": "处理中，请稍后重试"}},
        security=None,
    )},
}

SCHEMAS["CheckIn"] = _obj({
    "ok": BOOL, "code": {"enum": ["ok", "unknown", "foreign", "refunded", "used", "wrong_day",
                                  "too_early", "ended"]},
    "message": {"type": "string", "description": "给检票员看的中文结果"},
    "ticket": _obj({"seat": STR, "seat_name": STR, "kind": STR, "state": STR, "order_no": STR,
                    "film": STR, "hall": STR, "starts_at": TIME, "checked_in_at": NULL_TIME}),
}, ["ok", "code", "message"])

# --- feedback (handlers.api.feedback) ---------------------------------------------------------
_INTERVAL = {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
             "description": "95% 区间 [下限, 上限]"}
SCHEMAS["FeedbackResponse"] = _obj({
    "id": INT, "touchpoint": _obj({"code": STR, "name": STR}), "visit_day": {"type": "string", "format": "date"},
    "stars": {"type": ["integer", "null"], "minimum": 1, "maximum": 5},
    "nps": {"type": ["integer", "null"], "minimum": 0, "maximum": 10},
    "aspects": {"type": "array", "items": {"enum": ["画面", "声音", "座椅", "卫生", "服务", "餐饮", "温度"]}},
    "comment": STR, "category": {"type": ["string", "null"], "description": "留言分类（工单类别）"},
    "sentiment": {"enum": ["neg", "neu", "pos", None]}, "priority": {"enum": ["P1", "P2", "P3"]},
    "showtime": {"oneOf": [_obj({"id": INT, "film": STR, "hall": STR, "starts_at": TIME, "label": STR}),
                           {"type": "null"}], "description": "评价人当天持票的场次"},
    "edits": {"type": "integer", "description": "同一天同一触点再次评价时的修改次数"},
})
SCHEMAS["FeedbackMeasures"] = _obj({
    "responses": INT,
    "csat": _obj({"n": INT, "satisfied": INT, "pct": {"type": ["number", "null"]}, "ci95": _INTERVAL},
                 None),
    "nps": _obj({"n": INT, "promoters": INT, "passives": INT, "detractors": INT,
                 "score": {"type": ["number", "null"], "description": "−100 … 100"}, "ci95": _INTERVAL}),
})
SCHEMAS["FeedbackSummary"] = _obj({
    "from": STR, "to": STR, "by": {"enum": ["film", "hall", "touchpoint", "day"]},
    "total": _ref("FeedbackMeasures"),
    "groups": {"type": "array", "items": {"allOf": [_obj({"key": STR, "label": STR}), _ref("FeedbackMeasures")]}},
    "complaints": _obj({
        "n": INT,
        "categories": {"type": "array", "items": _obj({"category": STR, "label": STR, "count": INT,
                                                         "share": {"type": "number"}})},
        "median_ack_minutes": {"type": ["number", "null"]}, "acknowledged": INT,
        "median_resolve_minutes": {"type": ["number", "null"]}, "resolved": INT,
    }),
})
PATHS["/api/feedback"] = {"post": _op(
    "提交（或修改）某触点的评价：星级、NPS、方面、留言；差评（1–2星或 NPS≤6）立即生成投诉工单并通知值班经理。"
    "身份：会话令牌、电子票 secret（ticket），否则匿名访客 Cookie。同一访客同一天同一触点只有一份评价。",
    {"201": _json(_obj({"response": _ref("FeedbackResponse"), "alerted": BOOL,
                        "reference": {"type": ["string", "null"], "description": "投诉工单编号"}}), "新评价"),
     "200": _json(_obj({"response": _ref("FeedbackResponse"), "alerted": BOOL,
                        "reference": {"type": ["string", "null"]}}), "已修改当天的评价"),
     **_errors(400, 401, 404, 413, 422)},
    security=None,
    requestBody=_body(_obj({
        "touchpoint": STR, "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        "nps": {"type": "integer", "minimum": 0, "maximum": 10},
        "aspects": {"type": "array", "items": STR}, "comment": {"type": "string", "maxLength": 500},
        "phone": {"type": "string", "pattern": "^1[3-9]\\d{9}$"}, "ticket": STR, "show": INT,
    }, ["touchpoint"])),
)}
PATHS["/api/feedback/consent"] = {"post": _op(
    "记录一次订阅消息授权（wx.requestSubscribeMessage 接受后调用）：散场问卷可在 48 小时窗口外推送一次",
    {"200": _json(_obj({"template_id": STR, "remaining": INT}), "已记录"), **_errors(400, 401, 413, 422)},
    requestBody=_body(_obj({"template_id": STR}, ["template_id"])),
)}
PATHS["/api/feedback/summary"] = {"get": _op(
    "满意度汇总（经理的员工令牌）：NPS、CSAT 及 95% 区间、样本量，按影片/影厅/触点/日期分组；"
    "差评类别占比；差评工单响应与处理时间中位数",
    {"200": _json(_ref("FeedbackSummary"), "汇总"), **_errors(401, 403, 422)},
    security=[{"staff": []}],
    parameters=[
        {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"},
         "allowEmptyValue": True, "description": "默认 to 之前 6 天（2000–2099 年）"},
        {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"},
         "allowEmptyValue": True, "description": "默认今天（营业日，03:00 换日）"},
        {"name": "by", "in": "query", "schema": {"enum": ["film", "hall", "touchpoint", "day"]}},
    ],
)}
PATHS["/api/feedback/touchpoints"] = {"get": _op(
    "本影城的评价触点：二维码场景值（tp:<code>）与 H5 问卷链接",
    {"200": _json(_obj({"touchpoints": {"type": "array", "items": _obj({
        "code": STR, "name": STR, "kind": STR, "hall": {"type": ["string", "null"]}, "scene": STR,
        "survey_url": {"type": "string", "format": "uri"}, "printed": BOOL})}}), "触点列表"),
     **_errors(401, 403)},
    security=[{"staff": []}],
)}

# --- projector health (handlers.api.projectors) ----------------------------------------------
_NUM = {"type": ["number", "null"]}
SCHEMAS["ProjectorHealth"] = _obj({
    "device_id": STR, "hall": STR, "model": STR,
    "score": {"type": ["integer", "null"], "minimum": 0, "maximum": 100,
              "description": "健康分；null 表示无数据（从未上报或监测数据过期），不会默认为良好"},
    "grade": {"enum": ["良好", "注意", "危险", "无数据"]},
    "reasons": {"type": "array", "items": STR, "description": "扣分原因或无数据的原因"},
    "fresh": {"type": "boolean", "description": "快照是否在 15 分钟内更新过"},
    "updated_at": NULL_TIME, "last_seen": NULL_TIME,
    "red_line_pct": {**_NUM, "description": "生效的亮度红线（额定亮度的 %）"},
    "red_line_from": {"enum": ["device", "cinema", "default"]},
    "health": {"oneOf": [_obj({
        "safety": INT, "quality": INT, "power": {"type": ["integer", "null"]},
        "temperature_c": _NUM, "ambient_c": _NUM, "brightness_pct": _NUM, "fan_rpm": _NUM,
        "usual_fan_rpm": _NUM, "light_hours": _NUM, "rated_light_hours": _NUM,
        "critical_line_pct": _NUM, "days_to_red_line": _NUM,
        "alerts": {"type": "array", "items": _obj({
            "rule": STR, "title": STR, "severity": {"enum": ["warning", "critical"]}, "message": STR,
            "since": TIME, "predicted_at": NULL_TIME})},
    }), {"type": "null"}], "description": "最新快照（无数据时为 null）"},
}, ["device_id", "hall", "score", "grade"])
PATHS["/api/projectors"] = {"get": _op(
    "本影城各放映机的健康状况（员工令牌）：健康分、安全与画质分项、最新读数、告警、生效的亮度红线",
    {"200": _json(_obj({"projectors": {"type": "array", "items": _ref("ProjectorHealth")}}), "放映机列表"),
     **_errors(401, 403)},
    security=[{"staff": []}],
)}
PATHS["/api/projectors/{device_id}"] = {"get": _op(
    "一台放映机的健康状况（员工令牌；仅本影城）",
    {"200": _json(_obj({"projector": _ref("ProjectorHealth")}), "放映机"), **_errors(401, 403, 404)},
    security=[{"staff": []}],
    parameters=[{"name": "device_id", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:\\-]{1,64}$"}}],
)}

DOCUMENT: J = {
    "openapi": "3.1.0",
    "info": {
        "title": "cinebot 小程序 API",
        "version": "1.0.0",
        "description": (
            "小程序与 H5 页面使用的 JSON 接口。金额单位为分（*_fen），时间为上海时间 ISO 8601。"
            "除登录、影片、场次外都需要 Authorization: Bearer <令牌>。"
            "错误统一为 {\"code\": \"...\", \"message\": \"中文说明\"}。"
        ),
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "session": {"type": "http", "scheme": "bearer",
                        "description": "POST /api/login 得到的会话令牌（或聊天里选座链接的令牌）"},
            "staff": {"type": "http", "scheme": "bearer",
                      "description": "员工检票令牌（handlers.api.auth.staff_token）"},
        },
    },
}


async def openapi_json(request: web.Request) -> web.Response:
    return ok(DOCUMENT)
