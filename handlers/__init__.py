"""Reactions: one module (one router) per conversation or domain event.

``build_router()`` composes them in order: access control first, then events,
then conversations, and the catch-all help last.
"""

from bot.router import Router


def build_router() -> Router:
    from handlers import checkin, events, menu, showtimes, staff, tickets

    root = Router("handlers")
    # Order matters: the first matching route handles a message.
    root.include(
        staff.router, checkin.router, tickets.router, events.router, showtimes.router, menu.router
    )
    return root
