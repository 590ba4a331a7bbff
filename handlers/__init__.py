"""Reactions: one module (one router) per conversation or domain event.

``build_router()`` composes them in order: access control first, then events,
then conversations, and the catch-all help last.
"""

from bot.chat.router import Router


def build_router() -> Router:
    from handlers import (
        checkin, events, menu, projectors, roster, showtimes, staff, tasks, tickets, workorders,
    )
    from handlers import alert_cards, console_link, feedback, manager_questions

    root = Router("handlers")
    # Order matters: the first matching route handles a message.
    root.include(
        tasks.clicks,  # work-order card buttons, before staff's answer to stale cards
        alert_cards.clicks,  # alert card buttons (al:…), likewise
        alert_cards.router,  # 「3号厅维护中2小时」 (engineers, managers): before the intent model's reading
        staff.router, checkin.router,
        console_link.router,  # 「看板」: a login link to the web console, before task commands
        roster.router,  # exact phrases ("值班表", "排班 …") the intent model reads as task commands
        projectors.router,  # 「3号厅放映机状态」「把3号厅亮度红线设为70%」: before faults and tasks
        # 「回复 W3K7Q: …」 and 「今天的满意度」 (WeCom); survey taps, QR scenes tp:… and
        # 「解决了/没有解决」 (audiences): before the task commands, work orders and events.
        feedback.managers,
        # 「本周满意度」「昨天卖了多少票」「日报」: figures, before any free text is read as work.
        manager_questions.router,
        feedback.router,
        tasks.router, workorders.router,
        feedback.requests,  # 「我要评价」「打5分」 (intent feedback), once staff commands are refused
        tickets.router, events.router, showtimes.router, menu.router
    )
    return root
