"""Progress of long command-line work, always on stderr: a live bar (rich) when stderr is a
terminal, a few plain lines when it is not (logs, CI), and never a byte on stdout, which
carries the commands' data (``telemetry replay`` and ``nlu parse`` write JSON lines there).

Every ``cinebot`` command shows progress through :class:`Progress`, so they all look alike::

    with Progress("回放读数", total=size, unit="B") as bar:
        for ...:
            bar.update(position, note=f"{count:,} 条")
    # leaving the block normally fills the bar; an exception leaves it where it stopped

Plain lines (no terminal): one when another tenth of the work is done or after a minute
without one, every 10 seconds when the total is unknown, never two within 2 seconds; a last
line when the work ends, if any line was written before it — a short run says nothing, its
command's own summary is enough.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import IO, Any, Literal, Self, TypeVar

Mode = Literal["bar", "lines", "off"]
T = TypeVar("T")

STEP = 0.1  # a plain line at every tenth of the work...
HEARTBEAT_S = 60.0  # ...or after this long without one...
COUNTER_EVERY_S = 10.0  # ...or, when the total is unknown, this often...
MIN_GAP_S = 2.0  # ...but never two lines closer together than this
BYTES = "B"  # unit of a total counted in bytes (shown as kB, MB, ...)


def choose_mode(stream: IO[str]) -> Mode:
    """A bar on a terminal (stderr is a TTY and not a dumb one), plain lines otherwise."""
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        tty = False
    return "bar" if tty and os.environ.get("TERM") != "dumb" else "lines"


class Progress:
    """One piece of long work on ``stream`` (default stderr).

    ``total``: the amount of work in ``unit`` (``"条"``, ``"步"``, :data:`BYTES`, ...);
    ``None`` when unknown (stdin): then a counter. ``mode``: ``"bar"``, ``"lines"``,
    ``"off"`` or ``None`` (chosen by :func:`choose_mode`). ``eta``: show the time left
    (misleading for steps of very different lengths).
    """

    def __init__(
        self,
        label: str,
        total: float | None = None,
        *,
        unit: str = "条",
        note: str = "",
        stream: IO[str] | None = None,
        mode: Mode | None = None,
        eta: bool = True,
        step: float = STEP,
        heartbeat_s: float | None = None,
        min_gap_s: float = MIN_GAP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.note = note
        self.done = 0.0
        self.stream = stream if stream is not None else sys.stderr
        self.mode: Mode = mode or choose_mode(self.stream)
        self.eta = eta
        self.closed = False
        self._step, self._min_gap = step, min_gap_s
        self._heartbeat = heartbeat_s  # None: HEARTBEAT_S, or COUNTER_EVERY_S for a counter
        self._clock = clock
        self._started = self._last_line = clock()
        self._last_tenth = 0
        self._lines = 0
        self._rich: Any = None
        self._task: Any = None
        self._messages: Any = None
        self._lock = threading.Lock()
        self._ended = threading.Event()
        if self.mode == "bar":
            self._start_bar()
        elif self.mode == "lines":
            # Lines are also due while nothing reports: during one long step, a stage
            # reported just before the 2 s gap ran out, a counter that stalls.
            threading.Thread(target=self._tick, name="progress-lines", daemon=True).start()

    # --- reporting -------------------------------------------------------------------------
    def update(self, done: float, note: str | None = None) -> None:
        """``done`` units of the work are done (an absolute amount)."""
        if self.closed:
            return
        self.done = done
        if note is not None:
            self.note = note
        if self._rich is not None:
            self._rich.update(self._task, completed=done, note=self.note)
        elif self.mode == "lines":
            with self._lock:
                self._maybe_line()

    def advance(self, amount: float = 1, note: str | None = None) -> None:
        self.update(self.done + amount, note)

    def set_total(self, total: float | None) -> None:
        """The total, once known (e.g. after a simulation, before writing it out)."""
        self.total = total
        if self._rich is not None:
            self._rich.update(self._task, total=total)

    def iterate(self, items: Iterable[T]) -> Iterator[T]:
        """The items, one unit of progress each."""
        for item in items:
            yield item
            self.advance()

    @property
    def messages(self) -> IO[str]:
        """Where to write messages while the bar is shown: whole lines go above it, not
        through it (and after it, to the stream as usual)."""
        if self._rich is None:
            return self.stream
        if self._messages is None:
            self._messages = _Above(self)
        return self._messages  # type: ignore[return-value]

    # --- ending ----------------------------------------------------------------------------
    def close(self, note: str | None = None) -> None:
        """The work is done: the bar is filled (when the total is known) and stays on screen."""
        if self.closed:
            return
        if self.total is not None and self.done < self.total:
            self.done = self.total
        if note is not None:
            self.note = note
        self._end(finished=True)

    def stop(self, keep: bool = True) -> None:
        """The work ended early (an error, Ctrl+C, a closed pipe): the bar stays where it was,
        or (``keep=False``: nothing was done, e.g. bad input) is wiped, leaving only the
        command's error message."""
        if self.closed:
            return
        if self._rich is not None:
            if keep:
                self.note = f"{self.note}（中止）"
            else:
                self._rich.live.transient = True
        self._end(finished=False, keep=keep)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.stop()

    def _end(self, finished: bool, keep: bool = True) -> None:
        self.closed = True
        self._ended.set()
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done, total=self.total, note=self.note)
            if finished and self.total is None:
                # A counter has no end to reach: mark it done so the spinner turns into a tick.
                self._rich.update(self._task, total=self.done)
            self._rich.stop()
        elif self.mode == "lines" and self._lines and keep:
            with self._lock:
                self._write_line(self._final_line() if finished else self._stopped_line())

    # --- plain lines -----------------------------------------------------------------------
    def _tick(self) -> None:
        while not self._ended.wait(0.5):
            with self._lock:
                if not self.closed:
                    self._maybe_line()

    def _maybe_line(self) -> None:
        now = self._clock()
        if now - self._last_line < self._min_gap:
            return
        tenth = 0
        heartbeat = self._heartbeat
        if heartbeat is None:
            heartbeat = HEARTBEAT_S if self.total is not None else COUNTER_EVERY_S
        due = now - self._last_line >= heartbeat
        if self.total:
            tenth = int(min(self.done / self.total, 1.0) / self._step + 1e-9)
            due = due or tenth > self._last_tenth
        finished = self.total is not None and self.done >= self.total
        if due and not finished:  # (the last line says it)
            self._last_line, self._last_tenth = now, max(tenth, self._last_tenth)
            self._write_line(self._progress_line(now))

    def _write_line(self, text: str) -> None:
        self._lines += 1
        self.stream.write(text + "\n")
        self.stream.flush()

    def _amount(self) -> str:
        parts = [quantity(self.done, self.total, self.unit)]
        if self.note:
            parts.append(self.note)
        return " · ".join(p for p in parts if p)

    def _share(self) -> float:
        if not self.total:
            return 1.0
        return max(0.0, min(self.done / self.total, 1.0))

    def _progress_line(self, now: float) -> str:
        elapsed = now - self._started
        if self.total is None:
            return f"{self.label}：已处理 {self._amount() or '…'} · 已用 {human_seconds(elapsed)}"
        share = self._share()
        left = ""
        if self.eta and 0 < share < 1:
            left = f" · 约剩 {human_seconds(elapsed * (1 - share) / share)}"
        spent = human_seconds(elapsed)
        return f"{self.label}：{share:.0%}（{self._amount()}）· 已用 {spent}{left}"

    def _final_line(self) -> str:
        elapsed = self._clock() - self._started
        return f"{self.label}：完成{self._bracketed()}· 用时 {human_seconds(elapsed)}"

    def _stopped_line(self) -> str:
        elapsed = self._clock() - self._started
        where = "" if self.total is None else f" {self._share():.0%}"
        return f"{self.label}：中止于{where}{self._bracketed()}· 已用 {human_seconds(elapsed)}"

    def _bracketed(self) -> str:
        amount = self._amount()
        return f"（{amount}）" if amount else " "

    # --- the bar ---------------------------------------------------------------------------
    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, SpinnerColumn, TextColumn
        from rich.progress import Progress as RichProgress
        from rich.table import Column

        amount, elapsed = _rich_columns()
        console = Console(
            file=self.stream, force_terminal=True, force_interactive=True, highlight=False,
            emoji=False, markup=False,
        )
        self._rich = RichProgress(
            SpinnerColumn(finished_text="✓"),
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=24),
            amount(self.unit),
            TextColumn("{task.fields[note]}", markup=False, table_column=Column(no_wrap=True)),
            elapsed(self.eta),
            console=console,
            redirect_stdout=False,  # stdout is the command's data: never touch it
            redirect_stderr=self.stream is sys.stderr,  # stray stderr prints go above the bar
            refresh_per_second=8,
        )
        self._task = self._rich.add_task(self.label, total=self.total, note=self.note)
        self._rich.start()


class _Above:
    """A text stream for messages while a bar is shown: each whole line is printed above the
    bar (unwrapped: the terminal wraps it, as it would without a bar); once the bar is gone,
    straight to the stream."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._pending = ""

    def write(self, text: str) -> int:
        progress = self._progress
        if progress.closed:
            self.flush()
            progress.stream.write(text)
            return len(text)
        *lines, self._pending = (self._pending + text).split("\n")
        if lines:
            from rich.text import Text

            progress._rich.console.print(Text("\n".join(lines)), soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, ""
            self._progress.stream.write(pending)
        self._progress.stream.flush()

    def isatty(self) -> bool:
        return self._progress.stream.isatty()

    def fileno(self) -> int:
        return self._progress.stream.fileno()


@functools.cache
def _rich_columns() -> tuple[type, type]:
    """Our two bar columns; made on first use, so plain-line runs never import rich."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class AmountColumn(ProgressColumn):
        """``40% 12.3/36.8 MB`` or ``40% 1,234/5,000 条``; a counter when the total is unknown."""

        def __init__(self, unit: str) -> None:
            super().__init__()
            self.unit = unit

        def render(self, task: Any) -> Text:
            done, total = task.completed, task.total
            share = "" if total is None else f"{task.percentage:>3.0f}%"
            text = " ".join(p for p in (share, quantity(done, total, self.unit)) if p)
            return Text(text, style="progress.percentage", no_wrap=True)

    class TimeColumn(ProgressColumn):
        """``0:03 · 剩余 0:05``: elapsed, then (while running) the time left."""

        def __init__(self, eta: bool) -> None:
            super().__init__()
            self.eta = eta

        def render(self, task: Any) -> Text:
            text = _clock_text(task.finished_time if task.finished else task.elapsed)
            if self.eta and not task.finished and task.total is not None:
                left = task.time_remaining
                text += f" · 剩余 {_clock_text(left) if left is not None else '-:--'}"
            return Text(text, style="progress.elapsed", no_wrap=True, overflow="ellipsis")

    return AmountColumn, TimeColumn


def _clock_text(seconds: float | None) -> str:
    s = int(seconds or 0)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def quantity(done: float, total: float | None, unit: str) -> str:
    """``1,234/5,000 条``, ``12.3/36.8 MB``; ``1,234 条`` when the total is unknown; nothing for
    the unit ``""`` (the note says it all)."""
    if not unit:
        return ""
    if unit == BYTES:
        if total is None:
            return human_bytes(done)
        divisor, suffix = _byte_scale(total)
        digits = 0 if divisor == 1 else 1
        return f"{done / divisor:,.{digits}f}/{total / divisor:,.{digits}f} {suffix}"
    if total is None:
        return f"{done:,.0f} {unit}"
    return f"{done:,.0f}/{total:,.0f} {unit}"


def human_seconds(seconds: float) -> str:
    """``6.5 秒``, ``2 分 05 秒``, ``1 小时 02 分``."""
    if seconds < 60:
        return f"{seconds:.1f} 秒"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60} 分 {s % 60:02d} 秒"
    return f"{s // 3600} 小时 {s // 60 % 60:02d} 分"


def human_bytes(size: float) -> str:
    """Decimal units, as rich and most file managers show them: ``36.8 MB``."""
    divisor, suffix = _byte_scale(size)
    return f"{size:,.0f} B" if divisor == 1 else f"{size / divisor:,.1f} {suffix}"


def _byte_scale(size: float) -> tuple[float, str]:
    divisor = 1.0
    for suffix in ("B", "kB", "MB", "GB"):
        if size < divisor * 1000 or suffix == "GB":
            return divisor, suffix
        divisor *= 1000
    raise AssertionError("unreachable")
