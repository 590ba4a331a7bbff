"""The production evaluation loop: readings and clock ticks in, alert events out.

One :class:`Evaluator` holds every device of a process (tens of thousands: a device is
a few kilobytes, see :mod:`telemetry.state`). It has no I/O and no clock of its own —
time is the readings' timestamps and the ``now`` of :meth:`Evaluator.tick` — so the
server, ``cinebot telemetry replay`` and the tests run exactly the same code.

"No data" is checked on ticks: a min-heap holds each device's deadline (re-armed lazily
when popped), so a tick costs only the devices whose deadline has passed.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Sequence

from telemetry.alerts import CRITICAL, WARNING, AlertEvent, Lifecycle, Verdict
from telemetry.detectors import Detector, default_detectors
from telemetry.readings import Reading
from telemetry.rules import RuleSet
from telemetry.state import DeviceState

NO_DATA = "no_data"


class Evaluator:
    def __init__(self, rules: RuleSet | None = None, detectors: Sequence[Detector] | None = None) -> None:
        self.rules = rules or RuleSet()
        self.detectors = list(detectors) if detectors is not None else default_detectors()
        self.devices: dict[str, DeviceState] = {}
        self.lifecycle = Lifecycle()
        self._heap: list[tuple[float, str]] = []
        self.now = -math.inf
        self.readings = 0
        self.out_of_order = 0

    def device(self, device_id: str) -> DeviceState:
        st = self.devices.get(device_id)
        if st is None:
            st = self.devices[device_id] = DeviceState(device_id, self.rules.for_device(device_id))
        return st

    def set_rules(self, rules: RuleSet) -> list[str]:
        """Swap the limits (stored rules changed); the devices whose limits changed.

        Each device keeps everything it has learned (baselines, trends, open alerts): only
        its resolved :class:`~telemetry.rules.DeviceRules` is replaced, and the detectors
        judge the next reading by the new limits (an alert the new limits no longer hold
        clears through its recovery line as usual)."""
        resolved = {device_id: rules.for_device(device_id) for device_id in self.devices}  # may raise
        self.rules = rules
        changed: list[str] = []
        for device_id, new in resolved.items():
            st = self.devices[device_id]
            if new == st.rules:
                continue
            st.rules = new
            changed.append(device_id)
            # A shorter no-data limit takes effect now, not at the old (later) deadline.
            if st.heap_due != math.inf:
                due = st.last_t + st.no_data_after()
                if due < st.heap_due:
                    heapq.heappush(self._heap, (due, device_id))
                    st.heap_due = due
        return changed

    def observe(self, r: Reading) -> list[AlertEvent]:
        """Evaluate one reading; the events it causes (usually none)."""
        st = self.device(r.device_id)
        if r.t <= st.last_t:
            self.out_of_order += 1  # a duplicate or late reading: the device's clock went past it
            return []
        self.readings += 1
        if r.t > self.now:
            self.now = r.t
        out: list[AlertEvent] = []
        life = self.lifecycle
        if NO_DATA in st.alerts:
            life.apply(st, Verdict(NO_DATA, False), r.t, out)
        f = st.condition(r)
        verdicts: list[Verdict] = []
        for detector in self.detectors:
            detector.evaluate(st, f, verdicts)
        disabled = st.rules.disabled
        for v in verdicts:
            if not disabled or v.rule not in disabled:
                life.apply(st, v, r.t, out)
        due = r.t + st.no_data_after()
        if due < st.heap_due:  # no entry yet, or the device's rhythm got faster
            heapq.heappush(self._heap, (due, st.device_id))
            st.heap_due = due
        return out

    def tick(self, now: float) -> list[AlertEvent]:
        """Advance the clock: devices silent past their deadline become 'no data'."""
        if now > self.now:
            self.now = now
        out: list[AlertEvent] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, device_id = heapq.heappop(heap)
            st = self.devices[device_id]
            if deadline != st.heap_due:
                continue  # superseded by an earlier entry
            due = st.last_t + st.no_data_after()
            if due > now:
                heapq.heappush(heap, (due, device_id))
                st.heap_due = due
                continue
            st.heap_due = math.inf
            if not st.rules.enabled(NO_DATA):
                continue
            silent_min = (now - st.last_t) / 60.0
            powered = st.power == 1
            message = f"{silent_min:.0f} 分钟没有收到数据（最后状态：{'开机' if powered else '关机'}）"
            verdict = Verdict(NO_DATA, True, CRITICAL if powered else WARNING, silent_min, None, message)
            self.lifecycle.fire_now(st, verdict, now, out)
        return out

    def run(self, readings: Iterable[Reading], tick_s: float = 60.0) -> Iterator[AlertEvent]:
        """Readings in time order, the clock ticking every `tick_s` of reading time, and a
        last tick at the final reading's time."""
        next_tick = -math.inf
        last = None
        for r in readings:
            t = r.t
            if t >= next_tick:
                boundary = t - t % tick_s
                if self._heap and self._heap[0][0] <= boundary:
                    yield from self.tick(boundary)
                next_tick = boundary + tick_s
            events = self.observe(r)
            if events:
                yield from events
            last = t
        if last is not None:
            yield from self.tick(last)
