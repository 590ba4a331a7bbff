"""Seat choice rules for one showtime: best seats, isolated seats, a text seat map.

Pure functions over a :class:`SeatPlan` (built once per hall layout and reused) and the set
of seat labels that are unavailable for the showtime (sold, or held by someone else).
Blocked seats (``X``) are always unavailable, whatever the set says.

Vocabulary:

* a *block* is a run of places in one row between aisles (``_``) or the row's ends; seats in
  different blocks are never adjacent;
* a *unit* is what is sold as one: a single seat, or a couple pair (two ``C`` places, always
  taken whole);
* a *gap* is a maximal run of free places in a block after a choice;
* an *orphan* — an isolated seat — is a gap of exactly one free standard or VIP seat that has a
  taken seat on at least one side and, on its other side, either a taken seat or an aisle.
  A lone seat next to the wall (the row's end) is not an orphan: it is the block's edge seat and
  still sells. Wheelchair places are meant to be sold singly and never count as orphans (a free
  one does count as a free neighbour, for a companion seat); a lone half of a couple pair
  cannot be sold either way and does not count. Leading or trailing ``_`` in a row string are
  padding (the row's ends), not aisles.

The *flexible* isolated-seat rule (:func:`check_choice`): a choice that leaves an orphan is
refused only when the same number of adjacent seats could be had in the same block without
leaving one; otherwise the orphan is unavoidable and the choice stands.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from domain.cinemas import AISLE, SEAT_TYPES, Seat

# --- the plan of a hall -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """A run of places between aisles (or the row's ends) in one row."""

    row: int  # 1 = front row
    index: int  # 0-based, left to right within the row
    labels: tuple[str, ...]
    kinds: tuple[str, ...]  # SEAT_TYPES values, one per label
    positions: tuple[int, ...]  # character index of each place in the row string
    aisle_left: bool  # an aisle (not the row's end) is next to the first place
    aisle_right: bool  # an aisle (not the row's end) is next to the last place

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, slots=True)
class _Window:
    """A candidate run of whole units in one block, with its precomputed ranking key."""

    key: tuple[int, int, int, int]  # (cost, -VIP seats, -row, first col): smaller is better
    row: int
    block: Block
    start: int  # index of the first place in the block
    end: int  # index of the last place in the block (inclusive)
    labels: tuple[str, ...]
    wheelchair: bool


@dataclass(frozen=True, eq=False)
class SeatPlan:
    """A hall's seats arranged in rows and blocks, for seat choice and maps.

    Immutable apart from a private cache of candidate runs, so one plan per layout can be
    shared by every showtime in the hall: :meth:`from_layout` returns the same object for the
    same layout.
    """

    layout: tuple[str, ...]
    rows: tuple[tuple[Block, ...], ...]  # rows[r - 1] = the blocks of row r
    seats: Mapping[str, Seat]  # label -> Seat, in layout order (front row first, left to right)
    capacity: int  # sellable places: every place that is not blocked
    _where: Mapping[str, tuple[Block, int]] = field(repr=False)
    _partner: Mapping[str, str] = field(repr=False)
    _row_centre2: tuple[int, ...] = field(repr=False)  # 2 × centre position of each row
    _windows: dict[tuple[int, int | None], tuple[_Window, ...]] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def from_layout(cls, rows: Iterable[str]) -> SeatPlan:
        """The plan for a layout (row strings, front row first); cached per layout.

        Raises ValueError for an unknown mark or an unpaired couple seat.
        """
        return _plan(tuple(rows))

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def __contains__(self, label: object) -> bool:
        return label in self.seats

    def seat(self, label: str) -> Seat | None:
        return self.seats.get(label)

    def kind(self, label: str) -> str | None:
        """The seat's kind (a ``SEAT_TYPES`` value), None for an unknown label."""
        seat = self.seats.get(label)
        return seat.kind if seat else None

    def block_of(self, label: str) -> Block:
        """The block holding ``label``; KeyError for an unknown label."""
        return self._where[label][0]

    def partner(self, label: str) -> str | None:
        """The other half of a couple pair, None for any other seat."""
        return self._partner.get(label)

    def blocks(self) -> Iterable[Block]:
        for blocks in self.rows:
            yield from blocks

    def _candidates(self, count: int, row: int | None = None) -> tuple[_Window, ...]:
        """Every run of whole units of ``count`` places with no blocked place, best first."""
        key = (count, row)
        found = self._windows.get(key)
        if found is None:
            if row is None:
                found = self._build_windows(count)
            else:
                found = tuple(w for w in self._candidates(count) if w.row == row)
            self._windows[key] = found
        return found

    def _build_windows(self, count: int) -> tuple[_Window, ...]:
        n = len(self.rows)
        windows: list[_Window] = []
        for block in self.blocks():
            # Row distance from ~2/3 of the way back, in thirds of a row: 3·row − (2n + 1).
            dy3 = 3 * block.row - (2 * n + 1)
            centre2 = self._row_centre2[block.row - 1]
            units = _units(block, self._partner)
            for first in range(len(units)):
                size, last = 0, first
                while last < len(units) and size < count:
                    size += units[last][1] - units[last][0] + 1
                    last += 1
                if size != count:
                    continue
                start, end = units[first][0], units[last - 1][1]
                kinds = block.kinds[start : end + 1]
                if "blocked" in kinds:
                    continue
                # Offset from the row's centre in half places (physical positions, aisles count).
                dx2 = block.positions[start] + block.positions[end] - centre2
                cost = 9 * dx2 * dx2 + 8 * dy3 * dy3  # 36 × (dx² + 2·dy²)
                labels = block.labels[start : end + 1]
                col = self.seats[labels[0]].col
                windows.append(
                    _Window(
                        key=(cost, -kinds.count("vip"), -block.row, col),
                        row=block.row,
                        block=block,
                        start=start,
                        end=end,
                        labels=labels,
                        wheelchair="wheelchair" in kinds,
                    )
                )
        windows.sort(key=lambda w: w.key)
        return tuple(windows)


def _units(block: Block, partner: Mapping[str, str]) -> list[tuple[int, int]]:
    """The block's sale units as (first, last) place indexes: couple pairs are one unit."""
    units: list[tuple[int, int]] = []
    i = 0
    while i < len(block.labels):
        if block.labels[i] in partner:
            units.append((i, i + 1))  # a pair's first half is always followed by its second
            i += 2
        else:
            units.append((i, i))
            i += 1
    return units


@functools.lru_cache(maxsize=128)
def _plan(layout: tuple[str, ...]) -> SeatPlan:
    rows: list[tuple[Block, ...]] = []
    seats: dict[str, Seat] = {}
    where: dict[str, tuple[Block, int]] = {}
    partner: dict[str, str] = {}
    centres: list[int] = []
    for r, line in enumerate(layout, start=1):
        if not isinstance(line, str):
            raise ValueError(f"row {r}: a row is a string of seat marks")
        col = 0
        runs: list[list[tuple[int, Seat]]] = [[]]
        couple_run: list[str] = []
        for pos, mark in enumerate(line + AISLE):
            if mark == "C":
                couple_run.append(f"{r}-{col + 1}")
            elif couple_run:
                if len(couple_run) % 2:
                    raise ValueError(f"row {r}: couple seats must come in pairs")
                for a, b in zip(couple_run[::2], couple_run[1::2], strict=True):
                    partner[a], partner[b] = b, a
                couple_run = []
            if mark == AISLE:
                if runs[-1]:
                    runs.append([])
                continue
            if mark not in SEAT_TYPES:
                raise ValueError(f"row {r}: unknown seat mark {mark!r}")
            col += 1
            seat = Seat(r, col, SEAT_TYPES[mark])
            seats[seat.label] = seat
            runs[-1].append((pos, seat))
        runs = [run for run in runs if run]
        blocks = []
        for i, run in enumerate(runs):
            block = Block(
                row=r,
                index=i,
                labels=tuple(s.label for _, s in run),
                kinds=tuple(s.kind for _, s in run),
                positions=tuple(p for p, _ in run),
                aisle_left=i > 0,
                aisle_right=i < len(runs) - 1,
            )
            blocks.append(block)
            for j, label in enumerate(block.labels):
                where[label] = (block, j)
        rows.append(tuple(blocks))
        centres.append(runs[0][0][0] + runs[-1][-1][0] if runs else 0)
    return SeatPlan(
        layout=layout,
        rows=tuple(rows),
        seats=MappingProxyType(seats),
        capacity=sum(1 for s in seats.values() if s.kind != "blocked"),
        _where=MappingProxyType(where),
        _partner=MappingProxyType(partner),
        _row_centre2=tuple(centres),
    )


# --- isolated seats ---------------------------------------------------------------------------


def _taken_set(unavailable: Collection[str]) -> set[str] | frozenset[str]:
    return unavailable if isinstance(unavailable, set | frozenset) else set(unavailable)


def _lone_seat_is_orphan(block: Block, i: int, taken: Collection[str]) -> bool:
    """Whether place ``i``, free, becomes an orphan given ``taken`` (blocked places are taken)."""
    if block.kinds[i] not in ("standard", "vip"):
        return False

    def side(j: int, aisle: bool) -> str:
        if 0 <= j < len(block):
            free = block.kinds[j] != "blocked" and block.labels[j] not in taken
            return "free" if free else "taken"
        return "aisle" if aisle else "wall"

    left, right = side(i - 1, block.aisle_left), side(i + 1, block.aisle_right)
    if "free" in (left, right) or "taken" not in (left, right):
        return False
    return "wall" not in (left, right)


def _orphans_in(block: Block, taken: Collection[str]) -> list[str]:
    found = []
    for i, label in enumerate(block.labels):
        if block.kinds[i] != "blocked" and label not in taken:
            if _lone_seat_is_orphan(block, i, taken):
                found.append(label)
    return found


def _window_orphans(window: _Window, taken: Collection[str]) -> bool:
    """Whether taking a free window would leave an orphan right beside it.

    Only the places just outside the window change neighbours, and before the choice they had
    a free neighbour (the window), so any orphan there is new.
    """
    block = window.block
    for i in (window.start - 1, window.end + 1):
        if 0 <= i < len(block) and block.kinds[i] != "blocked" and block.labels[i] not in taken:
            if _lone_seat_is_orphan(block, i, _Plus(taken, window.labels)):
                return True
    return False


class _Plus(Collection[str]):
    """``taken`` together with a few more labels, without copying ``taken``."""

    __slots__ = ("base", "extra")

    def __init__(self, base: Collection[str], extra: Collection[str]):
        self.base, self.extra = base, extra

    def __contains__(self, label: object) -> bool:
        return label in self.extra or label in self.base

    def __iter__(self):  # pragma: no cover - membership is all the rules need
        yield from self.base
        yield from self.extra

    def __len__(self) -> int:  # pragma: no cover
        return len(self.base) + len(self.extra)


def orphans_created(
    plan: SeatPlan, unavailable: Collection[str], chosen: Collection[str]
) -> list[str]:
    """Labels of the free seats that taking ``chosen`` would leave isolated (see module doc).

    Only new orphans count: a seat already isolated before the choice is not reported.
    Raises KeyError for a chosen label that is not in the plan.
    """
    taken = _taken_set(unavailable)
    after = _Plus(taken, set(chosen))
    touched: dict[tuple[int, int], Block] = {}
    for label in chosen:
        block = plan.block_of(label)
        touched[(block.row, block.index)] = block
    found: list[str] = []
    for _, block in sorted(touched.items()):
        before = set(_orphans_in(block, taken))
        found.extend(label for label in _orphans_in(block, after) if label not in before)
    return found


# --- choosing seats ---------------------------------------------------------------------------


def best_seats(
    plan: SeatPlan,
    unavailable: Collection[str],
    count: int,
    *,
    row: int | None = None,
    allow_wheelchair: bool = False,
) -> list[str] | None:
    """The best ``count`` adjacent free seats, or None when no such run exists.

    The seats are one run in one block of one row (``row`` only, when given), made of whole
    units — a couple pair is two seats and is never split — and without wheelchair places
    unless ``allow_wheelchair`` (which allows them; it does not prefer them). Runs are ranked
    by ``dx² + 2·dy²``, where ``dx`` is the run's offset from the row's horizontal centre in
    places (aisles count) and ``dy`` its distance from the row 2/3 of the way back; ties go to
    more VIP seats, then the back row, then the left. A run that leaves an isolated seat is
    returned only when every possible run (within ``row``, when given) would leave one.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    taken = _taken_set(unavailable)
    fallback: _Window | None = None
    for window in plan._candidates(count, row):
        if window.wheelchair and not allow_wheelchair:
            continue
        if not taken.isdisjoint(window.labels):
            continue
        if not _window_orphans(window, taken):
            return list(window.labels)
        if fallback is None:
            fallback = window
    return list(fallback.labels) if fallback else None


def seat_name(label: str) -> str:
    """"5-7" → "5排7座" (anything else is returned as it is)."""
    r, sep, c = label.partition("-")
    return f"{r}排{c}座" if sep and r.isdigit() and c.isdigit() else label


def check_choice(
    plan: SeatPlan, unavailable: Collection[str], chosen: Collection[str]
) -> str | None:
    """None when the user's own pick of seats is acceptable, else a short reason in Chinese.

    Refused: nothing chosen, a seat the hall does not have, a blocked seat, a seat that is
    sold or held, half of a couple pair, and a pick that leaves an isolated seat while the
    same number of adjacent seats is free in the same block without leaving one (wheelchair
    places count as an alternative only when the pick itself has one). Seats need not be
    adjacent: people may pick scattered seats themselves.
    """
    picked = list(dict.fromkeys(chosen))
    if not picked:
        return "还没有选座位哦。"
    taken = _taken_set(unavailable)
    for label in picked:
        seat = plan.seat(label)
        if seat is None:
            return f"没有{seat_name(label)}。"
        if seat.kind == "blocked":
            return f"{seat_name(label)}暂停使用，换一个吧。"
        if label in taken:
            return f"{seat_name(label)}已经被选走了，换一个吧。"
    chosen_set = set(picked)
    for label in picked:
        other = plan.partner(label)
        if other is not None and other not in chosen_set:
            return f"{seat_name(label)}是情侣座，要和{seat_name(other)}一起选。"
    orphans = orphans_created(plan, taken, picked)
    if not orphans:
        return None
    with_wheelchair = any(plan.kind(label) == "wheelchair" for label in picked)
    blocks = {(plan.block_of(label).row, plan.block_of(label).index) for label in picked}
    for window in plan._candidates(len(picked)):
        if (window.row, window.block.index) not in blocks:
            continue
        if window.wheelchair and not with_wheelchair:
            continue
        if taken.isdisjoint(window.labels) and not _window_orphans(window, taken):
            first = orphans[0]
            return (
                f"这样会在{plan.seat(first).row}排留下一个单独的空座（{seat_name(first)}），"
                "换个位置试试？"
            )
    return None


# --- the seat map -----------------------------------------------------------------------------

FREE, TAKEN, MINE, BLOCKED, WHEELCHAIR, COUPLE, PARTLY = "□", "■", "★", "✕", "♿", "♡", "◧"
AISLE_MARK = "\u3000"  # a full-width space: the seat marks are full-width in Chinese fonts
_PAD = "\u2007"  # figure space: as wide as a digit, keeps row numbers right-aligned
_LEGEND = (
    (FREE, "可选"),
    (COUPLE, "情侣座"),
    (WHEELCHAIR, "轮椅位"),
    (MINE, "您的座位"),
    (TAKEN, "已售"),
    (PARTLY, "部分可选"),
    (BLOCKED, "停用"),
)


def _mark(seat: Seat, label: str, states: Mapping[str, str], mine: Collection[str]) -> str:
    if seat.kind == "blocked":
        return BLOCKED
    if label in mine:
        return MINE
    if states.get(label, "free") != "free":
        return TAKEN
    return {"wheelchair": WHEELCHAIR, "couple": COUPLE}.get(seat.kind, FREE)


def _group_mark(marks: list[str]) -> str:
    """One mark for several places shown as one (compressed map)."""
    if MINE in marks:
        return MINE
    if all(m == BLOCKED for m in marks):
        return BLOCKED
    if all(m in (TAKEN, BLOCKED) for m in marks):
        return TAKEN
    if any(m in (TAKEN, BLOCKED) for m in marks):
        return PARTLY
    if WHEELCHAIR in marks:
        return WHEELCHAIR
    if all(m == COUPLE for m in marks):
        return COUPLE
    return FREE


def _row_body(
    plan: SeatPlan, r: int, group: int, states: Mapping[str, str], mine: Collection[str]
) -> str:
    line = plan.layout[r - 1]
    out: list[str] = []
    blocks = iter(plan.rows[r - 1])
    i = 0
    while i < len(line):
        if line[i] == AISLE:
            j = i
            while j < len(line) and line[j] == AISLE:
                j += 1
            out.append(AISLE_MARK * math.ceil((j - i) / group))
            i = j
            continue
        block = next(blocks)
        marks = [_mark(plan.seats[label], label, states, mine) for label in block.labels]
        for k in range(0, len(marks), group):
            out.append(marks[k] if group == 1 else _group_mark(marks[k : k + group]))
        i += len(block)
    return "".join(out).rstrip(AISLE_MARK)


def render_map(
    plan: SeatPlan,
    states: Mapping[str, str],
    mine: Collection[str] = (),
    *,
    width: int = 24,
    legend: bool = True,
) -> str:
    """A compact text seat map for a chat message.

    A ``屏幕`` line, then one line a row (front row first) starting with the row number:
    ``□`` free, ``♡`` free couple seat, ``♿`` free wheelchair place, ``■`` sold or held,
    ``★`` in ``mine`` (the user's own or offered seats), ``✕`` blocked, a full-width space for
    an aisle. ``states`` maps a label to "sold" or "held" (a missing label, or "free", is
    free; any other value counts as taken). Then, with ``legend``, what the marks mean.

    Lines stay within ``width`` characters: when a hall is too wide, every row is compressed
    the same way — each mark stands for the same number of consecutive places within a block
    (``◧`` when only some of them are free), aisles kept — and the legend says so.
    """
    mine = set(mine)
    digits = len(str(plan.row_count))
    widest_block = max((len(b) for b in plan.blocks()), default=1)
    group = 1
    while True:
        bodies = [_row_body(plan, r, group, states, mine) for r in range(1, plan.row_count + 1)]
        body_width = max((len(b) for b in bodies), default=0)
        if digits + 1 + body_width <= width or group >= widest_block:
            break
        group += 1
    lines = [_PAD * digits + " " + AISLE_MARK * max(0, (body_width - 2) // 2) + "屏幕"]
    for r, body in enumerate(bodies, start=1):
        lines.append(f"{r:>{digits}}".replace(" ", _PAD) + " " + body)
    if legend:
        shown = set("".join(bodies))
        items = [f"{mark}{text}" for mark, text in _LEGEND if mark in shown]
        if group > 1:
            items.append(f"每格{group}座")
        current = ""
        for item in items:
            if current and len(current) + 1 + len(item) > width:
                lines.append(current)
                current = item
            else:
                current = f"{current} {item}" if current else item
        if current:
            lines.append(current)
    return "\n".join(lines)
