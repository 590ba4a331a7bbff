"""Multi-turn conversations: forms that collect slots, and actions awaiting a yes or no.

A form (like a Rasa form or a python-telegram-bot ConversationHandler) names the
slots it needs, with a prompt and an optional validator per slot. A handler
starts it with what the NLU already understood; the dispatcher keeps asking for
what is missing on the following messages and, once every slot is filled, runs
the completion handler registered with ``@router.form(form)``.

``dialog.confirm(action, data, reply)`` remembers an action that waits for the
user's answer; routes filtered with ``pending=action`` see the next message first.

State lives in Redis (one small JSON value per user and channel), never in
memory, so any web process can take the next message. Whether it is still alive
is judged by the app clock (``expires_at``); Redis' own TTL only sweeps up.

A message is handled at least once (``bot.chat.dedup``): a process that dies mid-handler has
the same message, with the same dedup key, run again elsewhere. The dialog writes its
next state before the handler's effect commits or its reply goes out, so each write
names its writer (the message's dedup key) and keeps the state that message started
from; the writer's re-run starts from that earlier state and takes the same route with
the same slots (a finished form leaves a small record for this instead of nothing). A
later message of the user replaces the record: the old message's re-run is then routed
as things are now, which is harmless because handlers key their effects by dedup key.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from bot.chat.replies import Reply
from bot.infra.redisbatch import CommandBatcher

log = logging.getLogger(__name__)
# json.dumps() with options builds an encoder per call; states are written every turn.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

CANCELLED = "好的，已取消。有需要随时找我～"
# Seconds Redis keeps a state past its timeout; expiry itself is judged by the app clock.
TTL_SLACK = 60
# Seconds a finished dialog's record (who finished it, from which state) is kept for the
# re-run of the message that finished it: as long as that message's dedup claim lives
# (``Settings.dedup_ttl``), past which nothing recognises it as a re-run anyway.
RERUN_TTL = 600
# Fields of a stored value besides the state's own: the dedup key of the message that
# wrote it, and the state that message started from (absent: none).
WRITER, BEFORE = "writer", "before"
# A message that fills no slot and is at least this sure of another intent leaves the form.
LEAVE_CONFIDENCE = 0.5
# Intents that never pull a user out of a form: they are answers, not requests.
ANSWER_INTENTS = frozenset({"unknown", "confirm", "deny"})
_MISSING = object()


class Invalid(Exception):
    """Raised by a validator; ``str(exc)`` is the hint shown to the user (in Chinese)."""


def _is_async(func: Callable[..., Any]) -> bool:
    # A plain async function, or an object whose class has an async ``__call__``.
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(type(func), "__call__", None)
    )


@dataclass(frozen=True)
class Ask:
    """One required slot of a form.

    ``prompt`` is an async function that builds the question; ``validate`` an async
    ``(value, slots, ...) -> normalised value`` that raises :class:`Invalid`. Both
    receive arguments by name like handlers (``slots`` = filled so far, ``slot``,
    ``actor``, ``text``, ``clock``, any dispatcher dependency ...). For the slot
    asked last, when the NLU found no value, the validator is called with
    ``value=None`` so it can parse ``text`` itself; returning ``None`` means
    "nothing here".
    """

    slot: str
    prompt: Callable[..., Awaitable[Reply]]
    validate: Callable[..., Awaitable[Any]] | None = None

    def __post_init__(self) -> None:
        if not self.slot:
            raise ValueError("an Ask needs a slot name")
        for what, func in (("prompt", self.prompt), ("validator", self.validate)):
            if func is not None and not _is_async(func):
                raise TypeError(f"the {what} of slot {self.slot!r} must be async")


@dataclass(frozen=True)
class Form:
    """Required slots, asked for in order; ``keep`` names optional slots that are
    remembered (unvalidated) when a message gives them but never asked for."""

    name: str
    asks: tuple[Ask, ...]
    timeout: int = 600  # seconds of silence before the state is gone
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "asks", tuple(self.asks))
        object.__setattr__(self, "keep", tuple(self.keep))
        if not self.name:
            raise ValueError("a form needs a name")
        if not self.asks:
            raise ValueError(f"form {self.name!r} asks for nothing")
        slots = [a.slot for a in self.asks] + list(self.keep)
        if len(set(slots)) != len(slots):
            raise ValueError(f"form {self.name!r} names a slot twice: {slots}")
        if self.timeout <= 0:
            raise ValueError(f"form {self.name!r} needs a positive timeout")

    @property
    def slots(self) -> tuple[str, ...]:
        """The slots it asks for."""
        return tuple(a.slot for a in self.asks)

    @property
    def names(self) -> frozenset[str]:
        """Every slot it takes from a message: those it asks for and those it keeps."""
        return frozenset(self.slots) | frozenset(self.keep)

    def ask(self, slot: str) -> Ask:
        for a in self.asks:
            if a.slot == slot:
                return a
        raise KeyError(slot)


@dataclass
class DialogState:
    """What is remembered between two messages of one user on one channel."""

    form: str | None = None  # the form collecting slots
    slots: dict[str, Any] = field(default_factory=dict)  # validated values so far
    asked: str | None = None  # the slot asked last
    pending: str | None = None  # an action awaiting the user's answer
    data: dict[str, Any] = field(default_factory=dict)  # what the pending action needs
    expires_at: float = 0.0  # epoch seconds, app clock

    def to_json(self) -> str:
        return _COMPACT.encode(self.to_value())

    def to_value(self) -> dict[str, Any]:
        return {
            "form": self.form, "slots": self.slots, "asked": self.asked,
            "pending": self.pending, "data": self.data, "expires_at": self.expires_at,
        }

    @classmethod
    def from_json(cls, raw: str | bytes) -> DialogState:
        return cls.from_value(json.loads(raw))

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> DialogState:
        return cls(
            form=value.get("form"),
            slots=dict(value.get("slots") or {}),
            asked=value.get("asked"),
            pending=value.get("pending"),
            data=dict(value.get("data") or {}),
            expires_at=float(value.get("expires_at") or 0.0),
        )


class _Clock(Protocol):
    def timestamp(self) -> float: ...


class DialogStore:
    """One JSON value per user: ``cb:dlg:{channel}:{user_id}``."""

    def __init__(
        self, redis: Any, clock: _Clock, batcher: CommandBatcher | None = None,
        rerun_ttl: int = RERUN_TTL,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.rerun_ttl = rerun_ttl
        # Every message reads its sender's state: batched with the other callbacks' reads.
        self._batch = batcher or CommandBatcher(redis)

    @staticmethod
    def key(channel: str, user_id: str) -> str:
        return f"cb:dlg:{channel}:{user_id}"

    async def load(self, channel: str, user_id: str) -> DialogState | None:
        return self.decode(await self.fetch(channel, user_id))

    def fetch(self, channel: str, user_id: str) -> asyncio.Future[bytes | None]:
        """The stored value, read in the current batch; ``decode`` makes it a state."""
        return self._batch.execute("GET", self.key(channel, user_id))

    def decode(self, raw: bytes | None, rerun_of: str | None = None) -> DialogState | None:
        """The live state in ``raw``. ``rerun_of``: the dedup key of the message about to be
        handled; if that message wrote ``raw`` (it is being run again after a crash), the
        state it started from instead."""
        if raw is None:
            return None
        try:
            value = json.loads(raw)
            if rerun_of is not None and value.get(WRITER) == rerun_of:
                # Not judged by the clock: it was alive when this message first came, and a
                # re-run late by a crash must not lose what the first run was answering.
                before = value.get(BEFORE)
                return DialogState.from_value(before) if before else None
            state = DialogState.from_value(value)
        except (ValueError, TypeError, AttributeError):
            log.warning("unreadable dialog state dropped")
            return None
        if state.expires_at <= self.clock.timestamp():
            return None  # also a finished dialog's record: it has no state of its own
        return state

    # Writes are queued, not awaited: the reply need not wait a Redis round trip for them.
    # The batcher sends one batch at a time, in order, so the user's next message
    # (whose read is issued later) sees the write. A failed write is logged; the next
    # message then starts afresh, as it would after the state expired.
    # ``writer`` and ``before`` (see ``decode``) ride in the same value, so one SET keeps
    # the state and its re-run record consistent. ``before`` is kept without its own
    # record: one earlier state at most, never a chain.
    # A live state's record lives as long as the state (a re-run after that is routed as
    # a fresh message); a finished dialog's record lives ``rerun_ttl``.
    async def save(
        self, channel: str, user_id: str, state: DialogState, timeout: int,
        writer: str | None = None, before: DialogState | None = None,
    ) -> None:
        state.expires_at = self.clock.timestamp() + timeout
        value = state.to_value()
        if writer is not None:
            value[WRITER] = writer
            if before is not None:
                value[BEFORE] = before.to_value()
        self._batch.execute(
            "SET", self.key(channel, user_id), _COMPACT.encode(value), "EX",
            int(timeout) + TTL_SLACK,
        ).add_done_callback(_log_lost_write)

    async def clear(
        self, channel: str, user_id: str, writer: str | None = None,
        before: DialogState | None = None,
    ) -> None:
        if writer is None or before is None:
            # Nothing to go back to: no value is what the writer's re-run must find.
            command: tuple[Any, ...] = ("DEL", self.key(channel, user_id))
        else:
            record = _COMPACT.encode({WRITER: writer, BEFORE: before.to_value()})
            command = ("SET", self.key(channel, user_id), record, "EX", self.rerun_ttl)
        self._batch.execute(*command).add_done_callback(_log_lost_write)


def _log_lost_write(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("dialog state not written", exc_info=future.exception())


class FormEntry(Protocol):
    """A form with its completion handler, as the router registered it."""

    form: Form
    callback: Callable[..., Awaitable[Reply | None]]


# Runs an async function with the dispatcher's injection: (func, extra arguments) -> result.
Caller = Callable[[Callable[..., Awaitable[Any]], Mapping[str, Any]], Awaitable[Any]]
FormLookup = Callable[[str], "FormEntry | None"]


class DialogUnavailable(RuntimeError):
    """A handler used ``dialog`` where no dialog state is kept."""


class Dialog:
    """The dialog of the user behind one message; handlers receive it as ``dialog``."""

    def __init__(
        self,
        store: DialogStore | None,
        channel: str,
        user_id: str,
        state: DialogState | None,
        *,
        forms: FormLookup | None = None,
        call: Caller | None = None,
        unavailable: str | None = None,
        writer: str | None = None,
    ) -> None:
        self._store = store
        self.channel = channel
        self.user_id = user_id
        self.state = state
        # The message's dedup key and the state it started from, stored with every write
        # (see the module docstring). States are replaced during a message, never edited
        # in place, so ``_before`` stays what was loaded.
        self._writer = writer
        self._before = state
        self._forms = forms
        self._call = call
        self._unavailable = unavailable
        # Whether a value may sit in Redis: spares a DEL when there is nothing to clear.
        self._stored = state is not None
        # Whether start/confirm/end ran while handling this message.
        self.touched = False

    @classmethod
    def disabled(cls, reason: str) -> Dialog:
        return cls(None, "", "", None, unavailable=reason)

    @property
    def pending(self) -> str | None:
        return self.state.pending if self.state else None

    @property
    def data(self) -> dict[str, Any]:
        return self.state.data if self.state and self.state.pending else {}

    @property
    def form(self) -> str | None:
        return self.state.form if self.state else None

    # --- what handlers call ---------------------------------------------------------------

    async def start(self, form: Form, slots: Mapping[str, Any]) -> Reply | None:
        """Begin ``form`` with the slots already known; ask for the first missing one.

        If every slot is known (and valid) the completion handler runs at once and its
        reply is returned.
        """
        store = self._require()
        entry = self._entry(form.name)
        self.touched = True
        given = {k: v for k, v in slots.items() if k in form.names and v is not None}
        filled, problem = await self._validate(form, {}, given)
        state = DialogState(form=form.name, slots=filled)
        return await self._advance(store, entry, state, problem)

    async def confirm(self, action: str, data: dict[str, Any], reply: Reply, timeout: int = 600) -> Reply:
        """Remember ``action`` (with ``data``) until the user answers; returns ``reply``."""
        store = self._require()
        if not action:
            raise ValueError("a pending action needs a name")
        self.touched = True
        state = DialogState(pending=action, data=_json_copy(dict(data)))
        await self._save(store, state, timeout)
        return reply

    async def end(self) -> None:
        """Forget the form or pending action, if any."""
        store = self._require()
        self.touched = True
        self.state = None
        if self._stored:
            await store.clear(self.channel, self.user_id, self._writer, self._before)
            self._stored = False

    # --- what the dispatcher calls --------------------------------------------------------

    async def collect(
        self, entry: FormEntry, intent: str | None, confidence: float,
        understood: Mapping[str, Any], text: str,
    ) -> Reply | None | bool:
        """Take the slots a message gave to the form being collected.

        Returns ``False`` when the message is about something else (the form is left
        and the message should be routed normally), else the reply.
        """
        store = self._require()
        assert self.state is not None and self.state.form == entry.form.name
        form, state = entry.form, self.state
        given = {k: v for k, v in understood.items() if k in form.names and v is not None}
        from_nlu = set(given)
        asked = state.asked if state.asked in form.slots else None
        if asked and asked not in given and text and form.ask(asked).validate is not None:
            given[asked] = None  # the validator reads ``text`` itself
        filled, problem = await self._validate(form, state.slots, given)
        # Only what the form asks for counts: "今天有什么电影" restating a film it already
        # has, or giving a date it merely keeps, is a new request, not an answer.
        changed = any(
            state.slots.get(k, _MISSING) != v for k, v in filled.items() if k in form.slots
        )
        refused = problem is not None and problem[0] in from_nlu
        if (
            not changed
            and not refused
            and intent is not None
            and intent not in ANSWER_INTENTS
            and confidence >= LEAVE_CONFIDENCE
        ):
            await self.end()
            return False
        slots = {**state.slots, **filled}
        if problem is not None:
            slots.pop(problem[0], None)  # asked again: a correction that failed drops the old value
        return await self._advance(store, entry, replace(state, slots=slots), problem)

    # --- inside ---------------------------------------------------------------------------

    def _require(self) -> DialogStore:
        if self._store is None:
            raise DialogUnavailable(self._unavailable or "no dialog store")
        return self._store

    def _entry(self, name: str) -> FormEntry:
        entry = self._forms(name) if self._forms is not None else None
        if entry is None:
            raise LookupError(f"form {name!r} has no completion handler; register one with @router.form")
        return entry

    async def _invoke(self, func: Callable[..., Awaitable[Any]], **extra: Any) -> Any:
        assert self._call is not None
        return await self._call(func, {"dialog": self, **extra})

    async def _validate(
        self, form: Form, known: Mapping[str, Any], given: Mapping[str, Any]
    ) -> tuple[dict[str, Any], tuple[str, str] | None]:
        """Validated values (in the form's order) and the first problem: (slot, hint)."""
        filled: dict[str, Any] = {}
        problem: tuple[str, str] | None = None
        for ask in form.asks:
            if ask.slot not in given:
                continue
            value = given[ask.slot]
            if ask.validate is not None:
                try:
                    value = await self._invoke(
                        ask.validate, value=value, slot=ask.slot, slots={**known, **filled}
                    )
                except Invalid as exc:
                    if problem is None:
                        problem = (ask.slot, str(exc))
                    continue
            if value is not None:
                filled[ask.slot] = value
        for slot in form.keep:
            if given.get(slot) is not None:
                filled[slot] = given[slot]
        return filled, problem

    async def _advance(
        self, store: DialogStore, entry: FormEntry, state: DialogState,
        problem: tuple[str, str] | None,
    ) -> Reply | None:
        form = entry.form
        missing = [a.slot for a in form.asks if a.slot not in state.slots]
        if problem is None and not missing:
            slots = _json_copy(state.slots)  # the same values as after a round trip via Redis
            await self.end()
            self.touched = False  # the completion handler decides what comes next
            result: Reply | None = await self._invoke(entry.callback, slots=slots)
            self.touched = True
            return result
        slot = problem[0] if problem else missing[0]
        reply: Reply = await self._invoke(form.ask(slot).prompt, slot=slot, slots=dict(state.slots))
        state.asked = slot
        state.pending, state.data = None, {}
        await self._save(store, state, form.timeout)
        if problem and problem[1]:
            reply = replace(reply, text=f"{problem[1]}\n{reply.text}" if reply.text else problem[1])
        return reply

    async def _save(self, store: DialogStore, state: DialogState, timeout: int) -> None:
        await store.save(self.channel, self.user_id, state, timeout, self._writer, self._before)
        self.state = state
        self._stored = True


def _json_copy(value: dict[str, Any]) -> dict[str, Any]:
    """What the value will be after Redis; fails now, in the handler, if it cannot be stored."""
    result: dict[str, Any] = json.loads(_COMPACT.encode(value))
    return result
