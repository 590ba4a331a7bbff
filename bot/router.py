"""Routers, filters and signature-based injection, in the manner of aiogram 3.

A feature module creates ``router = Router(__name__)`` and registers async
handlers with ``@router.on(intent=..., role=..., event=..., button=...)``. The
root :class:`Dispatcher` includes the feature routers; the first route whose
filters all match handles the update. A filter may contribute data (``slots``,
``button_args``, ``scene``), and a handler receives exactly the arguments its
signature names — an unknown name is an error at start-up, not at 3 a.m.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.channels.inbound import Channel, Inbound
from bot.replies import Reply

log = logging.getLogger(__name__)

AUDIENCE = "audience"
STAFF_ROLES = frozenset({"staff", "engineer", "manager"})
# An unknown WeCom user: not in the staff table (or deactivated).
UNKNOWN = "unknown"

ROLE_GROUPS: dict[str, frozenset[str]] = {
    "employee": STAFF_ROLES,
    AUDIENCE: frozenset({AUDIENCE}),
    "staff": frozenset({"staff"}),
    "engineer": frozenset({"engineer"}),
    "manager": frozenset({"manager"}),
    UNKNOWN: frozenset({UNKNOWN}),
}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is talking: an audience member (by openid) or a staff member (by WeCom userid)."""

    role: str  # audience | staff | engineer | manager | unknown
    user_id: str  # openid or WeCom userid
    id: int | None = None  # Member.id or Staff.id
    cinema_id: int | None = None
    name: str = ""

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES


@dataclass(frozen=True, slots=True)
class Understanding:
    intent: str
    confidence: float = 1.0
    slots: Mapping[str, Any] = field(default_factory=dict)
    # For "unknown": the likeliest intents, to offer as choices in a clarifying question.
    alternatives: tuple[str, ...] = ()


@dataclass(slots=True)
class Update:
    """One inbound message on its way through the router."""

    inbound: Inbound
    actor: Actor
    understanding: Understanding | None = None


FilterResult = bool | dict[str, Any] | None
Filter = Callable[[Update], FilterResult]
HandlerFunc = Callable[..., Awaitable[Reply | None]]

# Names every handler may ask for, whatever the dispatcher's extra dependencies.
BUILTIN_ARGS = frozenset(
    {"msg", "actor", "update", "intent", "slots", "text", "understanding"}
)


def _as_set(value: str | Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(value)


def _roles(value: str | Iterable[str] | None) -> frozenset[str] | None:
    names = _as_set(value)
    if names is None:
        return None
    roles: set[str] = set()
    for name in names:
        if name not in ROLE_GROUPS:
            raise ValueError(f"unknown role {name!r}; use one of {sorted(ROLE_GROUPS)}")
        roles |= ROLE_GROUPS[name]
    return frozenset(roles)


@dataclass(slots=True)
class Route:
    callback: HandlerFunc
    filters: tuple[Filter, ...]
    name: str
    params: tuple[str, ...]
    takes_all: bool

    def match(self, update: Update) -> dict[str, Any] | None:
        data: dict[str, Any] = {}
        for check in self.filters:
            result = check(update)
            if not result:
                return None
            if isinstance(result, dict):
                data.update(result)
        return data

    def arguments(self, available: Mapping[str, Any]) -> dict[str, Any]:
        if self.takes_all:
            return dict(available)
        return {k: available[k] for k in self.params if k in available}


class Router:
    # Bumped by every registration or inclusion anywhere, so flattened route lists know
    # when they are stale.
    generation = 0

    def __init__(self, name: str) -> None:
        self.name = name
        self._routes: list[Route] = []
        self._children: list[Router] = []

    def on(
        self,
        *,
        intent: str | Iterable[str] | None = None,
        role: str | Iterable[str] | None = None,
        channel: Channel | None = None,
        kind: str | Iterable[str] | None = None,
        event: str | Iterable[str] | None = None,
        button: str | None = None,
        scene: str | None = None,
        when: Filter | None = None,
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register a handler. Every given filter must match.

        ``button`` matches a click key (menu CLICK or card button) by prefix
        ``"wo:ack"`` and passes the rest, split on ``:``, as ``button_args``.
        ``scene`` matches a QR scene by prefix and passes ``scene_args`` likewise.
        """
        filters: list[Filter] = []
        if channel is not None:
            filters.append(lambda u, c=channel: u.inbound.channel == c)
        roles = _roles(role)
        if roles is not None:
            filters.append(lambda u, r=roles: u.actor.role in r)
        kinds = _as_set(kind)
        if kinds is not None:
            filters.append(lambda u, k=kinds: u.inbound.kind in k)
        events = _as_set(event)
        if events is not None:
            filters.append(lambda u, e=events: u.inbound.kind == "event" and u.inbound.event in e)
        intents = _as_set(intent)
        if intents is not None:
            filters.append(_intent_filter(intents))
        if button is not None:
            filters.append(_prefix_filter("event_key", button, "button_args"))
        if scene is not None:
            filters.append(_prefix_filter("scene", scene, "scene_args"))
        if when is not None:
            filters.append(when)

        def register(callback: HandlerFunc) -> HandlerFunc:
            if not inspect.iscoroutinefunction(callback):
                raise TypeError(f"handler {callback.__qualname__} must be async")
            sig = inspect.signature(callback)
            takes_all = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
            params = tuple(
                n for n, p in sig.parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            )
            name = f"{callback.__module__}.{callback.__qualname__}"
            self._routes.append(Route(callback, tuple(filters), name, params, takes_all))
            Router.generation += 1
            return callback

        return register

    def include(self, *routers: Router) -> None:
        for router in routers:
            if router is self:
                raise ValueError("a router cannot include itself")
            self._children.append(router)
        Router.generation += 1

    def routes(self) -> Iterator[Route]:
        yield from self._routes
        for child in self._children:
            yield from child.routes()


def _intent_filter(intents: frozenset[str]) -> Filter:
    def check(update: Update) -> FilterResult:
        u = update.understanding
        if u is None or u.intent not in intents:
            return None
        return {"intent": u.intent, "slots": dict(u.slots)}

    return check


def _prefix_filter(attr: str, prefix: str, out: str) -> Filter:
    def check(update: Update) -> FilterResult:
        value = getattr(update.inbound, attr)
        if not value or not (value == prefix or value.startswith(prefix + ":")):
            return None
        rest = value[len(prefix) + 1 :]
        return {out: rest.split(":") if rest else []}

    return check


ActorResolver = Callable[[Inbound], Awaitable[Actor]]
Understander = Callable[[str, str], Awaitable[Understanding]]

SORRY = "抱歉，系统开了个小差，请稍后再试；急事可回复「转人工」。"


class Dispatcher(Router):
    """The root router: resolves the actor, understands text, runs the first matching route."""

    def __init__(
        self,
        resolve_actor: ActorResolver,
        understand: Understander,
        on_error: Callable[[str], None] | None = None,
        **deps: Any,
    ) -> None:
        super().__init__("root")
        self.resolve_actor = resolve_actor
        self.understand = understand
        self.deps: dict[str, Any] = deps
        self._on_error = on_error
        self._flat: list[Route] | None = None
        self._flat_generation = -1

    def check(self) -> None:
        """Fail fast: every handler argument must be something the dispatcher can supply."""
        known = BUILTIN_ARGS | set(self.deps) | {"button_args", "scene_args"}
        for route in self.routes():
            unknown = [p for p in route.params if p not in known]
            if unknown:
                raise TypeError(
                    f"handler {route.name} asks for {unknown}, which nothing provides; "
                    f"available: {sorted(known)}"
                )

    async def feed(self, inbound: Inbound) -> Reply | None:
        actor = await self.resolve_actor(inbound)
        update = Update(inbound=inbound, actor=actor)
        if inbound.text and actor.role != UNKNOWN:
            update.understanding = await self.understand(inbound.text, actor.role)
        return await self.dispatch(update)

    def _flat_routes(self) -> list[Route]:
        # Flattened once per change of any router tree (registrations bump a shared
        # generation), so the hot path walks a plain list.
        if self._flat is None or self._flat_generation != Router.generation:
            self._flat = list(self.routes())
            self._flat_generation = Router.generation
        return self._flat

    async def dispatch(self, update: Update) -> Reply | None:
        for route in self._flat_routes():
            data = route.match(update)
            if data is None:
                continue
            available: dict[str, Any] = {
                **self.deps,
                "msg": update.inbound,
                "actor": update.actor,
                "update": update,
                "text": update.inbound.text,
                "intent": update.understanding.intent if update.understanding else None,
                "slots": dict(update.understanding.slots) if update.understanding else {},
                "understanding": update.understanding,
                **data,
            }
            try:
                return await route.callback(**route.arguments(available))
            except Exception:
                log.exception("handler failed", extra={"handler": route.name})
                if self._on_error is not None:
                    self._on_error(route.name)
                return Reply.say(SORRY)
        return None
