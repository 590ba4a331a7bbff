"""Reactions: one module (one router) per conversation or domain event.

``build_router()`` composes them in order: access control first, then events,
then conversations, and the catch-all help last.
"""

from bot.router import Router


def build_router() -> Router:
    from handlers import (
        checkin, events, menu, roster, showtimes, staff, tasks, tickets, workorders,
    )
    from handlers import feedback

    root = Router("handlers")
    # Order matters: the first matching route handles a message.
    root.include(
        tasks.clicks,  # work-order card buttons, before staff's answer to stale cards
        staff.router, checkin.router,
        roster.router,  # exact phrases ("值班表", "排班 …") the intent model reads as task commands
        # 「回复 W3K7Q: …」 and 「今天的满意度」 (WeCom); survey taps, QR scenes tp:… and
        # 「解决了/没有解决」 (audiences): before the task commands, work orders and events.
        feedback.managers, feedback.router,
        tasks.router, workorders.router,
        feedback.requests,  # 「我要评价」「打5分」 (intent feedback), once staff commands are refused
        tickets.router, events.router, showtimes.router, menu.router
    )
    return root
