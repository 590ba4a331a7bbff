"""``POST /telemetry/readings``: edge boxes' signed reading batches into the evaluator.

A box signs each request with its own key (``domain.devices.EdgeBox``)::

    X-Cinebot-Box: <box id>
    X-Cinebot-Timestamp: <unix seconds>          (within ±tolerance of our clock)
    X-Cinebot-Signature: hex(HMAC-SHA256(key, timestamp + "\\n" + body))

The body is a JSON list of readings (DESIGN.md) or ``{"readings": [...]}``. Every item
is validated on its own; the good ones are accepted and the answer is
``202 {"accepted": n, "errors": [{"index": i, "errors": [{"field", "message"}]}]}``.
401: unknown box, bad or missing signature, stale timestamp; 413: body over the limit;
400: not JSON or not a batch.

Accepted readings go through the process's one :class:`telemetry.evaluator.Evaluator`
(the same code as ``cinebot telemetry replay``) and into a short recent window per
device in Redis (the last ``WINDOW`` readings, one script call per batch). The alert events it emits become ``domain.alerts`` records and
ALERT work orders (firing → opened or joined, a card for the on-duty engineer;
resolved → resolved by the system), one at a time so one incident gets one card.

This module is a composition root for telemetry (an import-linter exception: only it
and ``bot.app`` reach into ``telemetry``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from bot.infra.clock import Clock
from bot.infra.strict import parse_ascii_int
from domain import devices, projectors
from domain import alerts as alert_records
from domain.alerts import SPARK_METRIC, Fired, sparkline
from domain.devices import DevicePlace
from telemetry.alerts import RANK, AlertEvent, title
from telemetry.evaluator import Evaluator
from telemetry.health import assess
from telemetry.health import fingerprint as health_fingerprint
from telemetry.rules import DeviceRules, RulesError, stored_ruleset
from telemetry.readings import Reading, ReadingError

log = logging.getLogger(__name__)

BOX_HEADER = "X-Cinebot-Box"
TIMESTAMP_HEADER = "X-Cinebot-Timestamp"
SIGNATURE_HEADER = "X-Cinebot-Signature"
MAX_BODY = 1024 * 1024
MAX_ITEMS = 10_000
BOX_CACHE_S = 60.0  # a deactivated box or a new key takes effect within a minute
PLACES_RELOAD_S = 10.0  # an unknown device re-reads the cinema's projectors at most this often
WINDOW = 360  # readings kept per device in Redis (an hour at one every 10 s)
WINDOW_TTL_S = 24 * 3600
RULES_CHECK_S = 30.0  # how often a process looks for stored limits changed elsewhere
HEALTH_REFRESH_S = 300.0  # a health snapshot is rewritten at least this often (else when it changes)
# A firing record the evaluator does not hold (it fired before this process started, or its
# resolve was lost) is resolved once the device has reported this long without the rule
# pending or firing again. Only rules judged from the current readings qualify: baseline,
# rate and forecast rules need hours of history a fresh evaluator does not have yet.
RECONCILE_AFTER_S = 900.0
RECONCILABLE = frozenset({"temperature_high", "fan", "brightness_low", "no_data", "unreachable"})

Notify = Callable[..., Awaitable[None]]
# KEYS: one list per device; ARGV: window, ttl, each key's row count, then the rows in order.
_PUSH_WINDOW = """
local window, ttl, k = tonumber(ARGV[1]), tonumber(ARGV[2]), #KEYS
local pos = 3 + k
for i = 1, k do
  local n = tonumber(ARGV[2 + i])
  local last = pos + n - 1
  while pos <= last do  -- unpack in slices: Lua's stack is not unlimited
    local e = math.min(pos + 999, last)
    redis.call('RPUSH', KEYS[i], unpack(ARGV, pos, e))
    pos = e + 1
  end
  redis.call('LTRIM', KEYS[i], -window, -1)
  redis.call('EXPIRE', KEYS[i], ttl)
end
return k
"""
_COMPACT = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per call


def sign(key: str, timestamp: str, body: bytes) -> str:
    """The signature an edge box sends (used by the simulator, the bench and the tests)."""
    return hmac.new(key.encode(), timestamp.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def signed_headers(box_id: str, key: str, body: bytes, now: float | None = None) -> dict[str, str]:
    ts = str(int(time.time() if now is None else now))
    return {
        BOX_HEADER: box_id,
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: sign(key, ts, body),
        "Content-Type": "application/json",
    }


def _refuse(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


class Refused(Exception):
    """Why a signed batch is not taken: the HTTP answer, and the dead-letter reason of
    the Redis stream (``telemetry.stream``), which checks entries the same way."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


def _signed(key: str, stamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(key, stamp, body).encode(), signature.lower().encode())


def parse_batch(body: bytes) -> list[Any]:
    """A JSON list of readings or ``{"readings": [...]}``; :class:`Refused` otherwise."""
    try:
        batch = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "bad_json", "body is not JSON") from None
    if isinstance(batch, dict) and isinstance(batch.get("readings"), list):
        batch = batch["readings"]
    if not isinstance(batch, list):
        raise Refused(400, "not_a_batch", 'expected a JSON list or {"readings": [...]}')
    if len(batch) > MAX_ITEMS:
        raise Refused(413, "too_many", f"at most {MAX_ITEMS} readings a batch")
    return batch


class TelemetryIngest:
    def __init__(
        self,
        clock: Clock,
        notify: Notify,
        redis: aioredis.Redis | None = None,
        *,
        evaluator: Evaluator | None = None,
        tolerance_s: int = 300,
        max_body: int = MAX_BODY,
        window: int = WINDOW,
        on_card: Callable[[], None] | None = None,
    ) -> None:
        self.clock = clock
        self.notify = notify
        self.redis = redis
        self.evaluator = evaluator or Evaluator()
        self.tolerance_s = tolerance_s
        self.max_body = max_body
        self.window = window
        self.on_card = on_card
        # Sees every accepted batch (cinema, readings), e.g. the per-minute aggregates;
        # it must be quick and must not raise: it runs on the ingest path.
        self.on_readings: Callable[[int, list[Reading]], None] | None = None
        self.accepted = 0
        self.rejected = 0
        self.events = 0
        self._boxes: dict[str, tuple[float, str, int]] = {}  # box -> (loaded, key or '', cinema)
        self._places: dict[int, tuple[float, dict[str, DevicePlace]]] = {}
        self._device_place: dict[str, DevicePlace] = {}
        self._push: Any = None  # the registered window script
        self._alerts = asyncio.Lock()  # alert events one at a time: one incident, one card
        # Stored limits (domain.devices.TelemetryRule) over the evaluator's own defaults.
        self._defaults = self.evaluator.rules.defaults
        self._rules_version: tuple[Any, ...] | None = None
        self._rules_due = 0.0  # monotonic time of the next look for changed stored limits
        self.rules_problems: list[str] = []  # stored rows left out (they would not load)
        self._models: dict[str, str] = {}  # device -> projector model (rated light-source life)
        self._health: dict[str, tuple[tuple[Any, ...], float]] = {}  # device -> (fingerprint, written)
        self._watching: dict[str, float] = {}  # device -> its first reading this process saw

    # --- authentication --------------------------------------------------------------------

    async def _box(self, box_id: str) -> tuple[str, int] | None:
        now = time.monotonic()
        cached = self._boxes.get(box_id)
        if cached is None or now - cached[0] >= BOX_CACHE_S:
            box = await devices.edge_box(box_id)
            if len(self._boxes) > 10_000:  # a flood of made-up ids stays bounded
                self._boxes.clear()
            cached = (now, box.key, box.cinema_id) if box is not None else (now, "", 0)
            self._boxes[box_id] = cached
        return (cached[1], cached[2]) if cached[1] else None

    async def _places_of(self, cinema_id: int, device_id: str) -> DevicePlace | None:
        now = time.monotonic()
        loaded = self._places.get(cinema_id)
        if loaded is None or (device_id not in loaded[1] and now - loaded[0] > PLACES_RELOAD_S):
            loaded = (now, await devices.places(cinema_id))
            self._places[cinema_id] = loaded
        return loaded[1].get(device_id)

    async def sender(self, box_id: str, stamp: str, signature: str, now: float) -> tuple[str, int]:
        """(key, cinema) of an active box whose signing fields are complete and whose
        timestamp is within the tolerance of ``now``; :class:`Refused` (401) otherwise."""
        if not (box_id and stamp and signature):
            raise Refused(401, "unsigned", f"needs {BOX_HEADER}, {TIMESTAMP_HEADER}, {SIGNATURE_HEADER}")
        sent = parse_ascii_int(stamp)
        if sent is None:
            raise Refused(401, "bad_timestamp", "timestamp must be unix seconds")
        if abs(now - sent) > self.tolerance_s:
            raise Refused(401, "stale", f"timestamp outside ±{self.tolerance_s} s")
        box = await self._box(box_id[:64])
        if box is None:
            raise Refused(401, "bad_signature", "unknown box or wrong signature")
        return box

    async def verify(self, box_id: str, stamp: str, signature: str, body: bytes, now: float) -> int:
        """The cinema of a batch signed by a known box, checked exactly as ``post`` checks
        a request (``now``: when it arrived); :class:`Refused` otherwise."""
        key, cinema_id = await self.sender(box_id, stamp, signature, now)
        if not _signed(key, stamp, body, signature):
            raise Refused(401, "bad_signature", "unknown box or wrong signature")
        return cinema_id

    # --- the endpoint ----------------------------------------------------------------------

    async def post(self, request: web.Request) -> web.Response:
        stamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        try:
            box = await self.sender(
                request.headers.get(BOX_HEADER, ""), stamp, signature, self.clock.timestamp()
            )
        except Refused as exc:
            self.rejected += 1
            return _refuse(exc.status, exc.code, exc.message)
        # Only a known box with a fresh timestamp gets its body read.
        length = request.content_length
        if length is not None and length > self.max_body:
            return _refuse(413, "too_large", f"body over {self.max_body} bytes")
        body = await self._read(request)
        if body is None:
            return _refuse(413, "too_large", f"body over {self.max_body} bytes")
        if not _signed(box[0], stamp, body, signature):
            self.rejected += 1
            return _refuse(401, "bad_signature", "unknown box or wrong signature")
        try:
            batch = parse_batch(body)
        except Refused as exc:
            return _refuse(exc.status, exc.code, exc.message)
        accepted, errors = await self.ingest(box[1], batch)
        return web.json_response({"accepted": accepted, "errors": errors}, status=202)

    async def _read(self, request: web.Request) -> bytes | None:
        """The whole body, or None past the limit (read in chunks: a chunked upload
        without a Content-Length is stopped at the limit, not buffered whole)."""
        parts: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > self.max_body:
                return None
            parts.append(chunk)
        return b"".join(parts)

    async def ingest(self, cinema_id: int, batch: list[Any]) -> tuple[int, list[dict[str, Any]]]:
        """Validate, evaluate and store a batch from a box of ``cinema_id``."""
        good: list[Reading] = []
        errors: list[dict[str, Any]] = []
        place_of = self._device_place
        for i, item in enumerate(batch):
            try:
                r = Reading.parse(item)
            except ReadingError as exc:
                errors.append({"index": i, "errors": [
                    {"field": k, "message": v} for k, v in exc.errors.items()
                ]})
                continue
            place = place_of.get(r.device_id)
            if place is None or place.cinema_id != cinema_id:
                place = await self._places_of(cinema_id, r.device_id)
                if place is None:
                    errors.append({"index": i, "errors": [{
                        "field": "device_id",
                        "message": "本影城没有这台设备 / not a projector of this box's cinema",
                    }]})
                    continue
                place_of[r.device_id] = place
            good.append(r)
        if time.monotonic() >= self._rules_due:
            await self.refresh_rules()
        observe = self.evaluator.observe
        events: list[AlertEvent] = []
        watching = self._watching
        for r in good:
            if r.device_id not in watching:
                watching[r.device_id] = r.t
            out = observe(r)
            if out:
                events.extend(out)
        self.accepted += len(good)
        if self.on_readings is not None and good:
            self.on_readings(cinema_id, good)
        if self.redis is not None and good and self.window:
            await self._remember(good)
        if events:
            await self.handle(events)
        return len(good), errors

    async def _remember(self, readings: list[Reading]) -> None:
        """The recent window per device: a capped Redis list of compact JSON readings,
        written for the whole batch by one script call (one round trip, one command to
        encode instead of three per device)."""
        per_device: dict[str, list[str]] = {}
        dumps = _COMPACT
        for r in readings:
            row = dumps({"t": r.t, "m": r.metrics, "e": r.errors})
            rows = per_device.get(r.device_id)
            if rows is None:
                per_device[r.device_id] = [row]
            else:
                rows.append(row)
        keys = [f"telemetry:recent:{d}" for d in per_device]
        args: list[Any] = [self.window, WINDOW_TTL_S, *(len(rows) for rows in per_device.values())]
        for rows in per_device.values():
            args.extend(rows)
        try:
            if self._push is None:
                self._push = self.redis.register_script(_PUSH_WINDOW)  # type: ignore[union-attr]
            await self._push(keys=keys, args=args)
        except Exception:  # the window is a convenience: evaluation already happened
            log.exception("telemetry window write failed")

    async def recent(self, device_id: str, n: int = 60) -> list[dict[str, Any]]:
        if self.redis is None:
            return []
        rows = await self.redis.lrange(f"telemetry:recent:{device_id}", -n, -1)
        return [json.loads(row) for row in rows]

    async def tick(self) -> None:
        """The wall clock moves on: devices that went silent become 'no data'."""
        events = self.evaluator.tick(self.clock.timestamp())
        if events:
            await self.handle(events)
        await self.refresh_rules()
        await self.write_health()
        await self.reconcile()

    async def reconcile(self) -> int:
        """Resolve firing records this process's evaluator does not hold although it has
        watched their device for ``RECONCILE_AFTER_S`` since they fired: after a restart the
        evaluator starts empty, and without this an incident that cleared meanwhile would
        stay open (and its work order with it) for ever. How many were resolved."""
        resolved = 0
        try:
            records = await alert_records.firing_records()
        except Exception:
            log.exception("firing alerts not read")
            return 0
        for rec in records:
            if rec.rule not in RECONCILABLE and not rec.rule.startswith("error:"):
                continue
            st = self.evaluator.devices.get(rec.device_id)
            since = self._watching.get(rec.device_id)
            if st is None or since is None or rec.rule in st.alerts:
                continue  # not reported here, or still pending / firing
            if st.last_t - max(since, rec.fired_at.timestamp()) < RECONCILE_AFTER_S:
                continue
            try:
                await alert_records.alert_resolved(
                    rec.device_id, rec.rule, datetime.fromtimestamp(st.last_t, UTC),
                    self.clock.now(), self.notify,
                )
            except Exception:
                log.exception("stale alert not resolved", extra={"device": rec.device_id, "rule": rec.rule})
                continue
            resolved += 1
            log.info("alert the evaluator no longer holds resolved",
                     extra={"device": rec.device_id, "rule": rec.rule})
        if resolved:
            self._woke()
        return resolved

    # --- stored limits and health snapshots --------------------------------------------------

    async def refresh_rules(self, force: bool = False) -> bool:
        """Load the stored limits into the evaluator if they (or the projectors) changed,
        or with ``force``: whether they were loaded. Devices keep what they have learned.
        A failure keeps the limits in force; the next look tries again."""
        self._rules_due = time.monotonic() + RULES_CHECK_S
        try:
            version = await projectors.rules_version()
            if not force and version == self._rules_version:
                return False
            stored = await projectors.stored_rules()
            rules, problems = stored_ruleset(stored.cinemas, stored.devices, stored.device_cinema, self._defaults)
            changed = self.evaluator.set_rules(rules)
        except Exception:
            log.exception("stored telemetry rules not loaded")
            return False
        self._rules_version = version
        self._models = stored.models
        for problem in problems:
            if problem not in self.rules_problems:
                log.warning("stored telemetry rule left out", extra={"problem": problem})
        self.rules_problems = problems
        for device_id in changed:
            self._health.pop(device_id, None)  # its snapshot shows the new limits at the next tick
        if changed:
            log.info("telemetry limits changed", extra={"devices": len(changed)})
        return True

    async def write_health(self, now: float | None = None) -> int:
        """Health snapshots (``Projector.health``) of the devices whose health changed, and
        of every device at least every ``HEALTH_REFRESH_S``: how many were written."""
        t = self.clock.timestamp() if now is None else now
        at = datetime.fromtimestamp(t, UTC)
        if any(d not in self._models for d in self._device_place):
            await self.refresh_rules()  # a projector added since the last look (its model)
        due: list[tuple[str, int | None, dict[str, Any]]] = []
        keys: dict[str, tuple[Any, ...]] = {}
        for device_id, st in list(self.evaluator.devices.items()):
            if device_id not in self._device_place:
                continue  # not (yet) a projector this process has placed
            health = assess(st, t, self._models.get(device_id, ""))
            key = health_fingerprint(health)
            last = self._health.get(device_id)
            if last is not None and last[0] == key and t - last[1] < HEALTH_REFRESH_S:
                continue
            due.append((device_id, health.score, health.to_json()))
            keys[device_id] = key
        for start in range(0, len(due), 500):  # one transaction per few hundred rows
            part = due[start:start + 500]
            try:
                await projectors.save_health(part, at)
            except Exception:
                log.exception("health snapshots not written", extra={"devices": len(part)})
                return start
            for device_id, _, _ in part:
                self._health[device_id] = (keys[device_id], t)
        return len(due)

    # --- alert events -> records, work orders, cards -----------------------------------------

    async def handle(self, events: list[AlertEvent]) -> None:
        async with self._alerts:
            for ev in events:
                self.events += 1
                if RANK.get(ev.severity) is None:
                    continue
                try:
                    await self._one(ev)
                except Exception:  # one bad event must not lose the others
                    log.exception("alert event failed", extra={"device": ev.device_id, "rule": ev.rule})

    async def _one(self, ev: AlertEvent) -> None:
        now = self.clock.now()
        at = datetime.fromtimestamp(ev.t, UTC)
        if ev.state == "resolved":
            await alert_records.alert_resolved(ev.device_id, ev.rule, at, now, self.notify)
            self._woke()
            return
        place = self._device_place.get(ev.device_id)
        if place is None:
            return
        predicted = datetime.fromtimestamp(ev.predicted_t, UTC) if ev.predicted_t is not None else None
        fired = Fired(
            device_id=ev.device_id, rule=ev.rule, severity=ev.severity, title=title(ev.rule),
            message=ev.message, alert_id=ev.alert_id, at=at, value=ev.value, limit=ev.limit,
            predicted_at=predicted, spark=await self._spark(ev.device_id, ev.rule),
        )
        _, _, told = await alert_records.alert_fired(place, fired, now, self.notify)
        if told:
            self._woke()

    async def _spark(self, device_id: str, rule: str, n: int = 60) -> str:
        """The rule's metric over the device's last readings as a text sparkline (the card's
        trend): from the Redis window, else the evaluator's own short temperature ring."""
        metric = SPARK_METRIC.get(rule)
        if metric is None:
            return ""
        try:
            values = [row["m"].get(metric) for row in await self.recent(device_id, n)]
        except Exception:  # the trend is a nicety: the alert goes out without it
            log.exception("telemetry window read failed")
            values = []
        st = self.evaluator.devices.get(device_id)
        if not any(v is not None for v in values) and metric == "temperature_c" and st is not None:
            k = min(st.ring_n, len(st.ring_T))
            values = [st.ring_T[(st.ring_head - k + i) % len(st.ring_T)] for i in range(k)]
        return sparkline(values)

    def _woke(self) -> None:
        if self.on_card is not None:
            self.on_card()


def view(ingest: Callable[[], TelemetryIngest]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def post(request: web.Request) -> web.Response:
        return await ingest().post(request)

    return post


class StoredRulesBook:
    """Stored limits as chat changes them (``domain.projectors.RuleBook``): the defaults
    and checks of the rules-file code, and a nudge so this process uses a change at once
    (other processes find it within ``RULES_CHECK_S``)."""

    def __init__(self, ingest: Callable[[], TelemetryIngest | None], defaults: DeviceRules | None = None) -> None:
        self._ingest = ingest
        self.defaults = defaults or DeviceRules()

    def default(self, key: str) -> float:
        value = getattr(self.defaults, key, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise KeyError(key)
        return float(value)

    def check(self, cinema: Mapping[str, Any], devices: Mapping[str, Mapping[str, Any]]) -> None:
        _, problems = stored_ruleset({"*": cinema}, devices, {d: "*" for d in devices}, self.defaults)
        if problems:
            raise RulesError(problems[0])

    async def changed(self) -> None:
        ingest = self._ingest()
        if ingest is not None:
            await ingest.refresh_rules(force=True)
