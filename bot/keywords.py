"""Keyword fallback for intents, until the trained classifier (jieba + scikit-learn) lands.

It goes through the same :class:`~bot.router.Understanding` contract and the
same router, so swapping it for the classifier changes no handler.
"""

from __future__ import annotations

import re
import unicodedata

from bot.router import STAFF_ROLES, Understanding

# (intent, patterns, roles or None for anyone). First match wins, so the
# specific come before the general ("退票" before "票").
_RULES: list[tuple[str, tuple[str, ...], frozenset[str] | None]] = [
    ("human", ("转人工", "人工客服", "找人工", "要人工", "真人客服", "客服"), None),
    ("cancel", ("取消", "算了", "不要了", "不买了"), None),
    ("task_done", ("已处理", "处理好了", "搞定", "已完成", "完成了", "修好了"), STAFF_ROLES),
    ("task_ack", ("收到", "接单", "马上去", "我来处理"), STAFF_ROLES),
    ("my_tasks", ("我的任务", "我的工单", "待办"), STAFF_ROLES),
    ("refund", ("退票", "退款", "退钱"), None),
    ("change_ticket", ("改签", "换场", "换个场次"), None),
    ("my_tickets", ("我的票", "我的订单", "取票码", "电子票"), None),
    ("report_fault", ("坏了", "故障", "不亮", "没声音", "扶手断", "漏水", "黑屏"), None),
    ("complaint", ("投诉", "太冷", "太热", "太吵", "态度差", "不满意"), None),
    ("lost_found", ("丢了", "失物", "落在", "忘拿", "捡到"), None),
    ("group_booking", ("包场", "团购", "团体票", "公司活动"), None),
    ("membership", ("会员", "积分", "储值", "会员卡"), None),
    ("directions", ("怎么走", "地址", "在哪", "停车", "地铁", "导航"), None),
    ("feedback", ("评价", "打分", "建议", "满意度"), None),
    ("recommend", ("推荐", "好看吗", "值得看", "看什么"), None),
    ("buy_ticket", ("买票", "订票", "购票", "抢票", "买两张", "买一张", "张票"), None),
    ("query_showtimes", ("排片", "场次", "几点", "时间表", "上映", "放映", "有什么电影", "今晚", "明天"), None),
    ("film_info", ("讲什么", "简介", "多长", "时长", "评分", "主演", "导演"), None),
    ("help", ("帮助", "菜单", "help", "功能", "怎么用", "你能做什么"), None),
    ("greeting", ("你好", "您好", "hi", "hello", "嗨", "在吗", "早上好", "晚上好", "哈喽"), None),
    ("confirm", ("好的", "确认", "确定", "可以", "是的", "ok", "嗯"), None),
    ("deny", ("不是", "不对", "换一个", "不用"), None),
]


def normalise(text: str) -> str:
    """Full-width → half-width, lower case, no surrounding space."""
    return unicodedata.normalize("NFKC", text).lower().strip()


_PUNCT = re.compile(r"[\s!！?？。，,.~～…]+")


async def understand(text: str, role: str) -> Understanding:
    t = _PUNCT.sub("", normalise(text))
    for intent, patterns, roles in _RULES:
        if roles is not None and role not in roles:
            continue
        if any(p in t for p in patterns):
            return Understanding(intent=intent, confidence=0.6)
    return Understanding(intent="unknown", confidence=0.0)
