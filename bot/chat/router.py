"""Routers, filters and signature-based injection, in the manner of aiogram 3.

A feature module creates ``router = Router(__name__)`` and registers async
handlers with ``@router.on(intent=..., role=..., event=..., button=...)``. The
root :class:`Dispatcher` includes the feature routers; the first route whose
filters all match handles the update. A filter may contribute data (``slots``,
``button_args``, ``scene``), and a handler receives exactly the arguments its
signature names — an unknown name is an error at start-up, not at 3 a.m.

Multi-turn conversations (``bot.chat.dialog``): ``@router.form(form)`` registers what
runs once a form has all its slots; ``pending=`` and ``form=`` filters match
while the user's dialog state has that pending action or collects that form.
With ``Dispatcher(dialogs=DialogStore(...))`` a message is routed in this order:

1. a form is collecting: ``human`` leaves it (a person is always reachable);
   routes filtered with ``form=`` that name it come first (``intent="cancel"``
   there replaces the default cancel); ``cancel`` leaves with :data:`CANCELLED`;
   otherwise the message fills slots, or — if it fills none and confidently
   means something else — leaves the form and is routed normally;
2. an action is pending: routes filtered with a matching ``pending=`` come first
   (the action is then answered: forgotten unless the handler used ``dialog``);
   ``cancel`` forgets it; anything else is routed normally, the action kept;

   in 1 and 2 a ``form=``/``pending=`` handler that returns ``None`` without
   using ``dialog`` declines: the message goes on as if it had not matched;
3. no state: normal routing.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.chat.channels.inbound import Channel, Inbound
from bot.chat.dialog import CANCELLED, Dialog, DialogState, DialogStore, Form
from bot.chat.replies import Reply

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
    dialog_state: DialogState | None = None  # loaded once per message when dialogs are kept


FilterResult = bool | dict[str, Any] | None
Filter = Callable[[Update], FilterResult]
HandlerFunc = Callable[..., Awaitable[Reply | None]]

# Names every handler may ask for, whatever the dispatcher's extra dependencies.
BUILTIN_ARGS = frozenset(
    {"msg", "actor", "update", "intent", "slots", "text", "understanding", "dialog"}
)
# What filters contribute, on top of the builtins.
FILTER_ARGS = frozenset({"button_args", "scene_args"})
# What prompts and validators of a form may ask for besides the builtins and dependencies.
PROMPT_ARGS = frozenset({"slot"})
VALIDATOR_ARGS = frozenset({"slot", "value"})


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


@dataclass(frozen=True, slots=True)
class Signature:
    params: tuple[str, ...]
    takes_all: bool

    def arguments(self, available: Mapping[str, Any]) -> dict[str, Any]:
        if self.takes_all:
            return dict(available)
        return {k: available[k] for k in self.params if k in available}


def signature(func: Callable[..., Any]) -> Signature:
    """The argument names ``func`` asks for (and whether it takes ``**kwargs``)."""
    try:
        return _cached_signature(func)
    except TypeError:  # an unhashable callable object
        return _read_signature(func)


def _read_signature(func: Callable[..., Any]) -> Signature:
    sig = inspect.signature(func)
    takes_all = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    params = tuple(
        n for n, p in sig.parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    )
    return Signature(params, takes_all)


_cached_signature = functools.lru_cache(maxsize=1024)(_read_signature)


def _qualname(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{getattr(func, '__qualname__', type(func).__qualname__)}"


@dataclass(frozen=True, slots=True)
class FormRoute:
    """A form and the handler that runs once all its slots are filled."""

    form: Form
    callback: HandlerFunc
    name: str


@dataclass(slots=True)
class Route:
    callback: HandlerFunc
    filters: tuple[Filter, ...]
    name: str
    params: tuple[str, ...]
    takes_all: bool
    pending: str | None = None  # the pending action this route answers
    form: str | None = None  # the form during which this route is tried first
    # A ``when=`` filter may contribute arguments nobody can know before it runs.
    open_data: bool = False
    # What the route's own filters require (None: anything), so the dispatcher can skip
    # routes that cannot match without running their filters.
    intents: frozenset[str] | None = None
    channels: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    roles: frozenset[str] | None = None
    # The filters left to run once the dispatcher's index has proved the four above
    # (None: all of them).
    rest: tuple[Filter, ...] | None = None

    def match(self, update: Update, proved: bool = False) -> dict[str, Any] | None:
        data: dict[str, Any] = {}
        for check in self.rest if proved and self.rest is not None else self.filters:
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
        self._forms: dict[str, FormRoute] = {}
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
        pending: str | None = None,
        form: str | Form | None = None,
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register a handler. Every given filter must match.

        ``button`` matches a click key (menu CLICK or card button) by prefix
        ``"wo:ack"`` and passes the rest, split on ``:``, as ``button_args``.
        ``scene`` matches a QR scene by prefix and passes ``scene_args`` likewise.
        ``pending`` matches while the user's pending action is that name (or starts
        with it followed by ``:``) and passes the action's data as ``pending_data``.
        ``form`` matches while that form is collecting slots.
        """
        filters: list[Filter] = []
        form_name = form.name if isinstance(form, Form) else form
        if pending is not None and form_name is not None:
            raise ValueError("a route waits for a pending action or a form, not both")
        # Dialog filters go first: without that state nothing else needs looking at.
        if pending is not None:
            if not pending:
                raise ValueError("pending= needs an action name")
            filters.append(_pending_filter(pending))
        if form_name is not None:
            if not form_name:
                raise ValueError("form= needs a form name")
            filters.append(lambda u, f=form_name: u.dialog_state is not None and u.dialog_state.form == f)
        # What the dispatcher's index (intent, channel, kind, role) answers by itself; its
        # filters give no data but what every handler is offered anyway (intent, slots).
        indexed: list[Filter] = []
        if channel is not None:
            indexed.append(lambda u, c=channel: u.inbound.channel == c)
        roles = _roles(role)
        if roles is not None:
            indexed.append(lambda u, r=roles: u.actor.role in r)
        kinds = _as_set(kind)
        if kinds is not None:
            indexed.append(lambda u, k=kinds: u.inbound.kind in k)
        filters.extend(indexed)
        events = _as_set(event)
        if events is not None:
            filters.append(lambda u, e=events: u.inbound.kind == "event" and u.inbound.event in e)
        intents = _as_set(intent)
        if intents is not None:
            check = _intent_filter(intents)
            indexed.append(check)
            filters.append(check)
        if button is not None:
            filters.append(_prefix_filter("event_key", button, "button_args"))
        if scene is not None:
            filters.append(_prefix_filter("scene", scene, "scene_args"))
        if when is not None:
            filters.append(when)

        def register(callback: HandlerFunc) -> HandlerFunc:
            if not inspect.iscoroutinefunction(callback):
                raise TypeError(f"handler {callback.__qualname__} must be async")
            sig = signature(callback)
            self._routes.append(
                Route(
                    callback, tuple(filters), _qualname(callback), sig.params, sig.takes_all,
                    pending=pending, form=form_name, open_data=when is not None,
                    intents=intents,
                    channels=frozenset({str(channel)}) if channel is not None else None,
                    kinds=frozenset({"event"}) & kinds if events is not None and kinds is not None
                    else frozenset({"event"}) if events is not None else kinds,
                    roles=roles,
                    rest=tuple(f for f in filters if all(f is not i for i in indexed)),
                )
            )
            Router.generation += 1
            return callback

        return register

    def form(self, form: Form) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register what runs once ``form`` has every slot; it receives them as ``slots``."""

        def register(callback: HandlerFunc) -> HandlerFunc:
            if not inspect.iscoroutinefunction(callback):
                raise TypeError(f"form handler {callback.__qualname__} must be async")
            if form.name in self._forms:
                raise ValueError(
                    f"form {form.name!r} already completes with {self._forms[form.name].name}"
                )
            self._forms[form.name] = FormRoute(form, callback, _qualname(callback))
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

    def forms(self) -> Iterator[FormRoute]:
        yield from self._forms.values()
        for child in self._children:
            yield from child.forms()


def _intent_filter(intents: frozenset[str]) -> Filter:
    def check(update: Update) -> FilterResult:
        u = update.understanding
        if u is None or u.intent not in intents:
            return None
        return {"intent": u.intent, "slots": dict(u.slots)}

    return check


def _pending_filter(action: str) -> Filter:
    def check(update: Update) -> FilterResult:
        state = update.dialog_state
        if state is None or state.pending is None:
            return None
        if not (state.pending == action or state.pending.startswith(action + ":")):
            return None
        return {"pending_data": dict(state.data)}

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

NO_DIALOGS = Dialog.disabled("dialog state is off: build the Dispatcher with dialogs=DialogStore(...)")
RELEASED_DIALOG = Dialog.disabled("this message has been handled; use the dialog while handling it")
NO_DIALOG_FOR_UNKNOWN = Dialog.disabled("no dialog state is kept for unknown WeCom users")


class _NoMatch:
    """No route matched (a handler may itself answer ``None``)."""


NO_MATCH = _NoMatch()
Routed = Reply | None | _NoMatch


class Turn:
    """One message being handled: its update, the user's dialog and what handlers may ask for."""

    __slots__ = ("dispatcher", "update", "dialog", "failed", "_available")

    def __init__(self, dispatcher: Dispatcher, update: Update) -> None:
        self.dispatcher = dispatcher
        self.update = update
        self.failed = False  # a handler raised while handling this message
        self._available: dict[str, Any] | None = None
        self.dialog = dispatcher._bind_dialog(update, self.call)

    def available(self) -> dict[str, Any]:
        if self._available is None:
            update, u = self.update, self.update.understanding
            self._available = {
                **self.dispatcher.deps,
                "msg": update.inbound,
                "actor": update.actor,
                "update": update,
                "text": update.inbound.text,
                "intent": u.intent if u else None,
                "slots": dict(u.slots) if u else {},
                "understanding": u,
                "dialog": self.dialog,
            }
        return self._available

    async def call(self, func: Callable[..., Awaitable[Any]], extra: Mapping[str, Any]) -> Any:
        """Run a form's prompt, validator or completion handler with injection."""
        return await func(**signature(func).arguments({**self.available(), **extra}))

    def release(self) -> None:
        """Let go of what the turn holds once its message is handled. The dialog calls
        back into the turn (``call``), so the two form a cycle: left alone, every message's
        turn, dialog, update and injection dict would wait for the cyclic garbage
        collector, which then runs every few dozen messages to free them."""
        self._available = None
        self.dialog = RELEASED_DIALOG


class Dispatcher(Router):
    """The root router: resolves the actor, understands text, runs the first matching route."""

    def __init__(
        self,
        resolve_actor: ActorResolver,
        understand: Understander,
        on_error: Callable[[str], None] | None = None,
        dialogs: DialogStore | None = None,
        **deps: Any,
    ) -> None:
        super().__init__("root")
        if "dialog" in deps:
            raise ValueError("'dialog' is supplied by the dispatcher; pick another dependency name")
        self.resolve_actor = resolve_actor
        self.understand = understand
        self.dialogs = dialogs
        self.deps: dict[str, Any] = deps
        self._on_error = on_error
        self._flat: list[Route] | None = None
        self._pending_routes: list[Route] = []
        self._form_routes: list[Route] = []
        self._plain_routes: list[Route] = []
        self._plain_by_intent: dict[tuple[str | None, str, str, str], list[Route]] = {}
        self._form_table: dict[str, FormRoute] = {}
        self._flat_generation = -1

    def check(self) -> None:
        """Fail fast: every handler argument must be something the dispatcher can supply."""
        injected = BUILTIN_ARGS | set(self.deps)
        known = injected | FILTER_ARGS
        for route in self.routes():
            if route.open_data:
                continue  # its `when=` filter may supply any name
            can = known | {"pending_data"} if route.pending is not None else known
            _refuse_unknown(f"handler {route.name}", route.params, can)
        forms: dict[str, FormRoute] = {}
        for entry in self.forms():
            if entry.form.name in forms:
                raise ValueError(
                    f"form {entry.form.name!r} completes with both {forms[entry.form.name].name} "
                    f"and {entry.name}; one completion handler per form"
                )
            forms[entry.form.name] = entry
            _refuse_unknown(f"form handler {entry.name}", signature(entry.callback).params, injected)
            for ask in entry.form.asks:
                where = f"form {entry.form.name!r}, slot {ask.slot!r}"
                prompt = signature(ask.prompt)
                _refuse_unknown(f"prompt {_qualname(ask.prompt)} ({where})", prompt.params,
                                injected | PROMPT_ARGS)
                if ask.validate is not None:
                    valid = signature(ask.validate)
                    name = f"validator {_qualname(ask.validate)} ({where})"
                    _refuse_unknown(name, valid.params, injected | VALIDATOR_ARGS)
                    if "value" not in valid.params and not valid.takes_all:
                        raise TypeError(f"{name} must take the value as an argument named 'value'")
        for route in self.routes():
            if route.form is not None and route.form not in forms:
                raise ValueError(
                    f"handler {route.name} waits for form {route.form!r}, which has no "
                    f"@router.form handler; known forms: {sorted(forms)}"
                )

    def prefetch(self, inbound: Inbound) -> asyncio.Future[bytes | None] | None:
        """Start reading the sender's dialog state now (it joins the Redis batch being
        gathered); pass the result to ``feed``."""
        if self.dialogs is None:
            return None
        return self.dialogs.fetch(inbound.channel, inbound.user_id)

    @staticmethod
    def unused(prefetched: asyncio.Future[Any] | None) -> None:
        """A prefetch nobody will await (a retry, an unknown sender, a failure before
        ``feed`` read it): its error, if any, is not worth a "never retrieved" warning."""
        if prefetched is not None:
            prefetched.add_done_callback(_unused_is_fine)

    async def feed(
        self, inbound: Inbound, prefetched: asyncio.Future[bytes | None] | None = None
    ) -> Reply | None:
        try:
            actor = await self.resolve_actor(inbound)
            update = Update(inbound=inbound, actor=actor)
            if inbound.text and actor.role != UNKNOWN:
                update.understanding = await self.understand(inbound.text, actor.role)
        except BaseException:
            self.unused(prefetched)
            raise
        if actor.role == UNKNOWN:
            self.unused(prefetched)
        elif self.dialogs is not None:
            if prefetched is None:
                prefetched = self.dialogs.fetch(inbound.channel, inbound.user_id)
            # A re-run of the message that wrote the state starts from what it saw then.
            update.dialog_state = self.dialogs.decode(await prefetched, inbound.dedup_key)
        return await self.dispatch(update)

    def _flat_routes(self) -> list[Route]:
        # Flattened once per change of any router tree (registrations bump a shared
        # generation), so the hot path walks a plain list.
        if self._flat is None or self._flat_generation != Router.generation:
            self._flat = list(self.routes())
            self._pending_routes = [r for r in self._flat if r.pending is not None]
            self._form_routes = [r for r in self._flat if r.form is not None]
            # Routed normally: dialog routes have had their turn already (or cannot match).
            self._plain_routes = [r for r in self._flat if r.pending is None and r.form is None]
            self._plain_by_intent = {}
            table: dict[str, FormRoute] = {}
            for entry in self.forms():
                table.setdefault(entry.form.name, entry)
            self._form_table = table
            self._flat_generation = Router.generation
        return self._flat

    def _plain_for(self, update: Update) -> list[Route]:
        """The plain routes that can match this update, in registration order: a route
        whose ``intent=``, ``channel=``, ``kind=``/``event=`` or ``role=`` excludes the
        update is skipped (the same answer as trying its filters, without walking every
        route per message). Lists are kept per (intent, channel, kind, role)."""
        u = update.understanding
        intent = u.intent if u is not None else None
        inbound = update.inbound
        key = (intent, str(inbound.channel), inbound.kind, update.actor.role)
        routes = self._plain_by_intent.get(key)
        if routes is None:
            routes = [
                r for r in self._plain_routes
                if (r.intents is None or (intent is not None and intent in r.intents))
                and (r.channels is None or key[1] in r.channels)
                and (r.kinds is None or key[2] in r.kinds)
                and (r.roles is None or key[3] in r.roles)
            ]
            if len(self._plain_by_intent) > 4096:  # unknown intents or kinds: stay bounded
                self._plain_by_intent.clear()
            self._plain_by_intent[key] = routes
        return routes

    def _form_entry(self, name: str) -> FormRoute | None:
        self._flat_routes()
        return self._form_table.get(name)

    def _bind_dialog(self, update: Update, call: Callable[..., Awaitable[Any]]) -> Dialog:
        if self.dialogs is None:
            return NO_DIALOGS
        if update.actor.role == UNKNOWN:
            return NO_DIALOG_FOR_UNKNOWN
        inbound = update.inbound
        return Dialog(
            self.dialogs, str(inbound.channel), inbound.user_id, update.dialog_state,
            forms=self._form_entry, call=call, writer=inbound.dedup_key,
        )

    async def dispatch(self, update: Update) -> Reply | None:
        turn = Turn(self, update)
        self._flat_routes()
        state = update.dialog_state
        result: Routed = NO_MATCH
        try:
            if state is not None and state.form is not None:
                result = await self._during_form(turn, state.form)
            elif state is not None and state.pending is not None:
                result = await self._while_pending(turn)
            if isinstance(result, _NoMatch):
                result = await self._run(self._plain_for(update), turn, proved=True)
        finally:
            turn.release()
        return None if isinstance(result, _NoMatch) else result

    async def _during_form(self, turn: Turn, name: str) -> Routed:
        update, dialog = turn.update, turn.dialog
        entry = self._form_entry(name)
        u = update.understanding
        intent = u.intent if u is not None else None
        if entry is None or intent == "human":
            if entry is None:
                log.warning("dialog state names an unregistered form", extra={"form": name})
            await dialog.end()
            update.dialog_state = None
            return NO_MATCH
        routed = await self._run(self._form_routes, turn, scoped=True)
        if routed is not NO_MATCH:
            if intent == "cancel" and not dialog.touched:
                await dialog.end()
            return routed
        if intent == "cancel":
            await dialog.end()
            return Reply.say(CANCELLED)
        if u is None:
            return NO_MATCH  # not text (a click, a photo ...): routed normally, the form kept
        try:
            collected = await dialog.collect(entry, intent, u.confidence, u.slots, update.inbound.text)
        except Exception:
            return self._failed(turn, entry.name)
        if collected is False:
            update.dialog_state = None
            return NO_MATCH
        return collected if isinstance(collected, Reply) else None

    async def _while_pending(self, turn: Turn) -> Routed:
        dialog = turn.dialog
        routed = await self._run(self._pending_routes, turn, scoped=True)
        if routed is not NO_MATCH:
            # An answered action is not answered twice, unless the handler said otherwise.
            if not dialog.touched and not turn.failed:
                await dialog.end()
            return routed
        u = turn.update.understanding
        if u is not None and u.intent == "cancel":
            await dialog.end()
            return Reply.say(CANCELLED)
        return NO_MATCH

    async def _run(
        self, routes: Iterable[Route], turn: Turn, scoped: bool = False, proved: bool = False
    ) -> Routed:
        """The reply of the first matching route.

        ``scoped`` (routes waiting for a pending action or a form): a handler that answers
        ``None`` without using ``dialog`` passes the message on, as if it had not matched.
        ``proved``: the routes come from ``_plain_for``, so only their other filters run.
        """
        update = turn.update
        for route in routes:
            data = route.match(update, proved)
            if data is None:
                continue
            available = turn.available()
            if data:
                available = {**available, **data}
            try:
                reply = await route.callback(**route.arguments(available))
            except Exception:
                return self._failed(turn, route.name)
            if reply is None and scoped and not turn.dialog.touched:
                continue
            return reply
        return NO_MATCH

    def _failed(self, turn: Turn, name: str) -> Reply:
        log.exception("handler failed", extra={"handler": name})
        turn.failed = True
        if self._on_error is not None:
            self._on_error(name)
        return Reply.say(SORRY)


def _unused_is_fine(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _refuse_unknown(what: str, params: Iterable[str], known: frozenset[str] | set[str]) -> None:
    unknown = [p for p in params if p not in known]
    if unknown:
        raise TypeError(
            f"{what} asks for {unknown}, which nothing provides; available: {sorted(known)}"
        )
