"""Reactions: one module (one router) per conversation or domain event.

``build_router()`` composes them in order: access control first, then events,
then conversations, and the catch-all help last.
"""

from bot.router import Router


def build_router() -> Router:
    from handlers import events, menu, showtimes, staff

    root = Router("handlers")
    # Order matters: the first matching route handles a message.
    root.include(staff.router, events.router, showtimes.router, menu.router)
    return root
