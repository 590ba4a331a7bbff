"""domain.seating: the seat plan, best seats, the isolated-seat rule and the text seat map."""

from __future__ import annotations

import random
import time
from fractions import Fraction

import pytest

from domain.cinemas import parse_layout
from domain.demo import HALLS, hall_layout
from domain.seating import (
    AISLE_MARK,
    SeatPlan,
    best_seats,
    check_choice,
    orphans_created,
    render_map,
)

LAYOUTS = {h.name: h.layout for h in HALLS}
FIG = "\u2007"  # the figure space padding row numbers


def plan(name: str) -> SeatPlan:
    return SeatPlan.from_layout(LAYOUTS[name])


def row_labels(p: SeatPlan, r: int) -> list[str]:
    return [label for block in p.rows[r - 1] for label in block.labels]


def all_but(p: SeatPlan, *free: str) -> set[str]:
    return set(p.seats) - set(free)


# --- the plan ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_plan_agrees_with_parse_layout(name: str) -> None:
    p = plan(name)
    seats = parse_layout(LAYOUTS[name])
    assert list(p.seats) == [s.label for s in seats]
    assert [p.kind(s.label) for s in seats] == [s.kind for s in seats]
    assert p.capacity == len(seats)  # the demo halls have no blocked seats
    assert p.row_count == len(LAYOUTS[name])
    # Every seat is in exactly one block, and blocks follow the aisles of the row string.
    for r, line in enumerate(LAYOUTS[name], start=1):
        sizes = [len(b) for b in p.rows[r - 1]]
        assert sizes == [len(run) for run in line.split("_") if run]


def test_blocks_know_aisles_from_walls() -> None:
    p = plan("1号厅")
    left, middle, right = p.rows[0]
    assert left.labels == ("1-1", "1-2", "1-3", "1-4")
    assert middle.labels[0] == "1-5" and middle.labels[-1] == "1-14"
    assert (left.aisle_left, left.aisle_right) == (False, True)
    assert (middle.aisle_left, middle.aisle_right) == (True, True)
    assert (right.aisle_left, right.aisle_right) == (True, False)
    assert p.block_of("1-15") is right
    # 3号厅's couple row has no aisle: one block of twelve.
    assert [len(b) for b in plan("3号厅").rows[7]] == [12]


def test_padding_underscores_at_the_ends_are_not_aisles() -> None:
    p = SeatPlan.from_layout(["__SSS_SS_"])
    first, second = p.rows[0]
    assert (first.aisle_left, first.aisle_right) == (False, True)
    assert (second.aisle_left, second.aisle_right) == (True, False)
    assert first.labels == ("1-1", "1-2", "1-3")


def test_capacity_leaves_out_blocked_seats_and_couples_know_their_partner() -> None:
    p = SeatPlan.from_layout(["SXS_VV", "CCCC"])
    assert p.capacity == 8  # 5 + 4 places, one blocked
    assert p.kind("1-2") == "blocked"
    assert p.kind("9-9") is None and "9-9" not in p and "1-1" in p
    assert [p.partner(f"2-{c}") for c in range(1, 5)] == ["2-2", "2-1", "2-4", "2-3"]
    assert p.partner("1-1") is None


def test_a_plan_is_built_once_per_layout() -> None:
    layout = hall_layout(6, 10, (3, 7))
    assert SeatPlan.from_layout(layout) is SeatPlan.from_layout(list(layout))
    assert SeatPlan.from_layout(layout) is not SeatPlan.from_layout(layout[:-1])


@pytest.mark.parametrize("layout", [["SSC"], ["SQS"], ["CC_C"]])
def test_a_bad_layout_is_refused(layout: list[str]) -> None:
    with pytest.raises(ValueError):
        SeatPlan.from_layout(layout)


# --- best seats -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "count", "expected"),
    [
        ("1号厅", 2, ["8-9", "8-10"]),  # 12 rows: row 8 is ~2/3 back; row centre between 9 and 10
        ("1号厅", 1, ["8-9"]),
        ("2号厅", 2, ["7-8", "7-9"]),  # 10 rows → row 7
        ("5号厅", 4, ["8-7", "8-8", "8-9", "8-10"]),  # 11 rows → row 8
        ("IMAX厅", 2, ["10-12", "10-13"]),  # 14 rows → row 10
    ],
)
def test_an_empty_hall_gives_centre_seats_two_thirds_back(
    name: str, count: int, expected: list[str]
) -> None:
    assert best_seats(plan(name), set(), count) == expected


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_an_empty_hall_gives_a_row_two_thirds_back_and_the_row_centre(name: str) -> None:
    p = plan(name)
    n = p.row_count
    chosen = best_seats(p, set(), 2)
    assert chosen is not None
    rows = {p.seats[label].row for label in chosen}
    assert rows == {round((2 * n + 1) / 3)}
    (r,) = rows
    line = LAYOUTS[name][r - 1]
    places = [i for i, mark in enumerate(line) if mark != "_"]
    positions = [places[p.seats[label].col - 1] for label in chosen]
    assert sum(positions) / 2 == (places[0] + places[-1]) / 2


def test_a_full_best_row_moves_back_before_it_moves_far_sideways() -> None:
    p = plan("1号厅")
    # Row 8 sold but its left and right blocks: its best free pair would be 4 places off centre.
    sold = {f"8-{c}" for c in range(5, 15)}
    assert best_seats(p, sold, 2) == ["9-9", "9-10"]  # 2/3 of a row off beats 4 places off
    # With row 9 sold too, row 7 (1⅓ rows off) still beats row 8's side blocks.
    sold |= set(row_labels(p, 9))
    assert best_seats(p, sold, 2) == ["7-9", "7-10"]


def test_vip_wins_a_tie() -> None:
    # 2号厅 has 10 rows: row 7 is the target, rows 6 (VIP) and 8 (standard) tie behind it.
    p = plan("2号厅")
    sold = set(row_labels(p, 7))
    assert best_seats(p, sold, 2) == ["6-8", "6-9"]
    # The same hall without VIP rows takes the row further back on that tie.
    plain = SeatPlan.from_layout([line.replace("V", "S") for line in LAYOUTS["2号厅"]])
    assert best_seats(plain, sold, 2) == ["8-8", "8-9"]


def test_seats_never_straddle_an_aisle() -> None:
    p = plan("1号厅")
    # Only 8-14 (end of the middle block) and 8-15 (start of the right block) are free in row 8:
    # next to each other in the row string, but across the aisle.
    sold = all_but(p, "8-14", "8-15")
    assert best_seats(p, sold, 2, row=8) is None
    assert best_seats(p, sold, 1, row=8) in (["8-14"], ["8-15"])
    small = SeatPlan.from_layout(["SS_SS"])
    assert best_seats(small, set(), 3) is None
    assert best_seats(small, set(), 2) in (["1-1", "1-2"], ["1-3", "1-4"])


def test_couple_pairs_are_never_split() -> None:
    p = plan("1号厅")
    assert best_seats(p, set(), 1, row=12) is None
    assert best_seats(p, set(), 3, row=12) is None
    pair = best_seats(p, set(), 2, row=12)
    assert pair is not None and p.partner(pair[0]) == pair[1]
    four = best_seats(p, set(), 4, row=12)
    assert four is not None and len(four) == 4
    assert all(p.partner(label) in four for label in four)
    # A half-sold pair (bad data) is not offered either, not even its free half.
    sold = {f"12-{c}" for c in range(1, 19)} - {"12-10", "12-11"}  # pairs (9,10) and (11,12)
    assert best_seats(p, sold, 2, row=12) is None
    # In a mixed block, a pair is not cut to make two seats with a single.
    mixed = SeatPlan.from_layout(["SCC"])
    assert best_seats(mixed, set(), 2) == ["1-2", "1-3"]
    assert best_seats(mixed, {"1-2", "1-3"}, 2) is None


def test_wheelchair_places_only_when_asked() -> None:
    p = plan("1号厅")
    # Row 1 is WSSS_SSSSSSSSSS_SSWS; only 1-1 (wheelchair) and 1-2 are free.
    sold = all_but(p, "1-1", "1-2")
    assert best_seats(p, sold, 2) is None
    assert best_seats(p, sold, 1) == ["1-2"]
    assert best_seats(p, sold, 2, allow_wheelchair=True) == ["1-1", "1-2"]
    assert best_seats(p, all_but(p, "1-1"), 1) is None
    assert best_seats(p, all_but(p, "1-1"), 1, allow_wheelchair=True) == ["1-1"]


def test_a_requested_row_is_honoured() -> None:
    p = plan("1号厅")
    assert best_seats(p, set(), 2, row=7) == ["7-9", "7-10"]
    assert best_seats(p, set(), 3, row=2) == ["2-8", "2-9", "2-10"]
    assert best_seats(p, set(), 2, row=99) is None
    # The asked row is kept even when a better row has room.
    sold = {f"3-{c}" for c in range(5, 15)}
    chosen = best_seats(p, sold, 2, row=3)
    assert chosen is not None and all(label.startswith("3-") for label in chosen)


def test_a_full_row_or_hall_gives_none() -> None:
    p = plan("1号厅")
    full_row = set(row_labels(p, 5))
    assert best_seats(p, full_row, 1, row=5) is None
    assert best_seats(p, full_row, 1) == ["8-9"]
    assert best_seats(p, set(p.seats), 1) is None
    assert best_seats(p, set(), 11) is None  # no block has 11 seats
    with pytest.raises(ValueError):
        best_seats(p, set(), 0)


def test_blocked_seats_are_never_offered() -> None:
    p = SeatPlan.from_layout(["SSXSS"])
    assert best_seats(p, set(), 1) in (["1-2"], ["1-4"])
    assert best_seats(p, set(), 3) is None
    assert best_seats(p, {"1-1", "1-2", "1-4", "1-5"}, 1) is None


def test_best_seats_steps_aside_to_avoid_an_isolated_seat() -> None:
    p = plan("3号厅")  # rows SSS_SSSSSS_SSS: the middle block is 6-4 … 6-9
    # The best-placed three (6-5…6-7, tied with 6-6…6-8) would leave one seat by the aisle.
    assert orphans_created(p, set(), ["6-5", "6-6", "6-7"]) == ["6-4"]
    assert orphans_created(p, set(), ["6-6", "6-7", "6-8"]) == ["6-9"]
    chosen = best_seats(p, set(), 3)
    assert chosen == ["6-4", "6-5", "6-6"]
    assert orphans_created(p, set(), chosen) == []


def test_best_seats_leaves_an_isolated_seat_only_when_it_cannot_be_helped() -> None:
    p = SeatPlan.from_layout(["SS_SSS_SS"])
    sold = {"1-1", "1-2", "1-6", "1-7"}
    chosen = best_seats(p, sold, 2)
    assert chosen == ["1-3", "1-4"]
    assert orphans_created(p, sold, chosen) == ["1-5"]
    assert check_choice(p, sold, chosen) is None


# An independent brute force over the row strings, for the properties below.


def _runs(layout: list[str], count: int, allow_wheelchair: bool) -> list[list[str]]:
    """Every run of `count` adjacent places in one block, pairs whole, no blocked seat."""
    runs = []
    for r, line in enumerate(layout, start=1):
        col = 0
        for segment in line.split("_"):
            labels, half = [], []  # half: 0 single, 1 first of a pair, 2 second of a pair
            couple = 0
            for mark in segment:
                col += 1
                labels.append(f"{r}-{col}")
                couple = couple + 1 if mark == "C" else 0
                half.append(0 if mark != "C" else (1 if couple % 2 else 2))
            for i in range(len(segment) - count + 1):
                marks = segment[i : i + count]
                if "X" in marks or (not allow_wheelchair and "W" in marks):
                    continue
                if half[i] == 2 or half[i + count - 1] == 1:
                    continue
                runs.append(labels[i : i + count])
    return runs


def _rank(layout: list[str], run: list[str]) -> tuple:
    n = len(layout)
    r = int(run[0].split("-")[0])
    line = layout[r - 1]
    places = [i for i, mark in enumerate(line) if mark != "_"]
    cols = [int(label.split("-")[1]) for label in run]
    mid = Fraction(places[cols[0] - 1] + places[cols[-1] - 1], 2)
    dx = mid - Fraction(places[0] + places[-1], 2)
    dy = r - Fraction(2 * n + 1, 3)
    vip = sum(line[places[c - 1]] == "V" for c in cols)
    return (dx * dx + 2 * dy * dy, -vip, -r, cols[0])


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_best_seats_against_a_brute_force(name: str) -> None:
    layout = LAYOUTS[name]
    p = plan(name)
    rng = random.Random(name)
    for trial in range(60):
        sold = {label for label in p.seats if rng.random() < trial / 60}
        count = rng.randint(1, 5)
        row = rng.choice([None, None, rng.randint(1, p.row_count)])
        wheel = rng.random() < 0.2
        runs = [
            run
            for run in _runs(layout, count, wheel)
            if not sold & set(run) and (row is None or run[0].startswith(f"{row}-"))
        ]
        clean = [run for run in runs if not orphans_created(p, sold, run)]
        chosen = best_seats(p, sold, count, row=row, allow_wheelchair=wheel)
        if not runs:
            assert chosen is None
            continue
        pool = clean or runs
        assert chosen == min(pool, key=lambda run: _rank(layout, run)), (trial, count, row)
        assert check_choice(p, sold, chosen) is None


def test_best_seats_is_fast_on_a_300_seat_hall() -> None:
    p = SeatPlan.from_layout(hall_layout(15, 20, (5, 15), (7, 8, 9)))
    assert p.capacity == 300
    rng = random.Random(7)
    sold = set(rng.sample(sorted(p.seats), 200))
    for count in (1, 2, 4):
        best_seats(p, sold, count)  # first use per count builds the candidate list
    start = time.perf_counter()
    for _ in range(100):
        for count in (1, 2, 4):
            best_seats(p, sold, count)
            best_seats(p, set(p.seats), count)  # the worst case: nothing fits
    per_call = (time.perf_counter() - start) / 600
    assert per_call < 0.001, f"{per_call * 1e6:.0f} µs a call"


# --- isolated seats ---------------------------------------------------------------------------

ROW = ["SSS_SSSS_SSS"]  # blocks 1-1…1-3 (wall|aisle), 1-4…1-7 (aisle|aisle), 1-8…1-10 (aisle|wall)


@pytest.mark.parametrize(
    ("sold", "chosen", "orphans"),
    [
        ({"1-4"}, ["1-6", "1-7"], ["1-5"]),  # one seat between two taken seats
        (set(), ["1-5", "1-6"], ["1-4", "1-7"]),  # one seat between a taken seat and an aisle
        (set(), ["1-2", "1-3"], []),  # one seat between a taken seat and the wall: not isolated
        (set(), ["1-2"], ["1-3"]),  # …but its other neighbour, by the aisle, is
        (set(), ["1-9"], ["1-8"]),  # the same at the other end of the row
        ({"1-4", "1-6"}, ["1-9", "1-10"], ["1-8"]),  # only the chosen seats' block changes
        ({"1-4", "1-6"}, ["1-7"], []),  # 1-5 was isolated before: not reported
        (set(), ["1-4", "1-5", "1-6", "1-7"], []),
        (set(), ["1-4", "1-6"], ["1-5", "1-7"]),  # scattered seats count too
    ],
)
def test_orphans_created(sold: set[str], chosen: list[str], orphans: list[str]) -> None:
    assert orphans_created(SeatPlan.from_layout(ROW), sold, chosen) == orphans


def test_orphan_rule_details() -> None:
    # A lone wheelchair place is not an isolated seat; the same spot as a seat is.
    assert orphans_created(SeatPlan.from_layout(["SWSS"]), {"1-1"}, ["1-3"]) == []
    assert orphans_created(SeatPlan.from_layout(["SSSS"]), {"1-1"}, ["1-3"]) == ["1-2"]
    # A free wheelchair place is a neighbour: the seat beside it is not alone.
    assert orphans_created(SeatPlan.from_layout(["SSW"]), set(), ["1-1"]) == []
    # A blocked seat is taken.
    assert orphans_created(SeatPlan.from_layout(["SXSS"]), set(), ["1-4"]) == ["1-3"]
    # Padding at the row's start is the wall, not an aisle.
    assert orphans_created(SeatPlan.from_layout(["_SSS"]), set(), ["1-2", "1-3"]) == []
    assert orphans_created(SeatPlan.from_layout(["S_SSS"]), set(), ["1-3", "1-4"]) == ["1-2"]
    with pytest.raises(KeyError):
        orphans_created(SeatPlan.from_layout(ROW), set(), ["9-9"])


# --- checking a user's own choice ---------------------------------------------------------------


def test_an_isolated_seat_is_refused_when_an_equivalent_choice_exists() -> None:
    p = SeatPlan.from_layout(ROW)
    reason = check_choice(p, set(), ["1-5", "1-6"])  # 1-4…1-7 free: 1-4 + 1-5 would do
    assert reason is not None
    assert "1排" in reason and "单独的空座" in reason and "1排4座" in reason
    assert check_choice(p, set(), ["1-4", "1-5"]) is None


def test_an_isolated_seat_is_allowed_when_the_block_has_no_better_choice() -> None:
    p = SeatPlan.from_layout(ROW)
    sold = {"1-4"}  # the middle block has 1-5, 1-6, 1-7 free: any pair leaves one alone
    assert orphans_created(p, sold, ["1-5", "1-6"]) == ["1-7"]
    assert orphans_created(p, sold, ["1-6", "1-7"]) == ["1-5"]
    assert check_choice(p, sold, ["1-5", "1-6"]) is None
    assert check_choice(p, sold, ["1-6", "1-7"]) is None
    # A clean pair in another block (1-2 + 1-3) is no reason to refuse: it is not equivalent.
    assert best_seats(p, sold, 2, row=1) is not None


def test_a_wheelchair_run_is_an_equivalent_only_for_a_wheelchair_pick() -> None:
    # Middle block: 1-2 wheelchair, 1-3 sold, 1-4, 1-5; aisles either side.
    p = SeatPlan.from_layout(["S_WSSS_S"])
    sold = {"1-3"}
    assert orphans_created(p, sold, ["1-4"]) == ["1-5"]  # 1-5 left by the aisle
    assert orphans_created(p, sold, ["1-5"]) == ["1-4"]  # 1-4 left between taken seats
    assert orphans_created(p, sold, ["1-2"]) == []  # only the wheelchair place is clean …
    assert check_choice(p, sold, ["1-4"]) is None  # … and it is no equivalent for a seat
    # Middle block: 1-2, 1-3 wheelchair places, 1-4 a seat.
    q = SeatPlan.from_layout(["S_WWS_S"])
    assert orphans_created(q, set(), ["1-2", "1-3"]) == ["1-4"]
    assert orphans_created(q, set(), ["1-3", "1-4"]) == []  # leaves a lone wheelchair place
    reason = check_choice(q, set(), ["1-2", "1-3"])  # a wheelchair pick: that one counts
    assert reason is not None and "1排4座" in reason


def test_check_choice_refuses_impossible_picks() -> None:
    p = plan("1号厅")
    assert check_choice(p, set(), ["5-30"]) == "没有5排30座。"
    assert check_choice(p, set(), ["balcony"]) == "没有balcony。"
    assert check_choice(p, set(), []) is not None
    sold_reason = check_choice(p, {"5-7"}, ["5-7", "5-8"])
    assert sold_reason is not None and "5排7座" in sold_reason
    couple_reason = check_choice(p, set(), ["12-1"])
    assert couple_reason is not None and "12排2座" in couple_reason
    assert check_choice(p, set(), ["12-1", "12-2"]) is None
    blocked = SeatPlan.from_layout(["SXS"])
    blocked_reason = check_choice(blocked, set(), ["1-2"])
    assert blocked_reason is not None and "1排2座" in blocked_reason


def test_scattered_seats_are_allowed() -> None:
    p = plan("1号厅")
    assert check_choice(p, set(), ["6-7", "6-12"]) is None
    assert check_choice(p, set(), ["3-1", "9-18"]) is None
    # A repeated label is one seat: one seat in S_SSS_S beside a sold 1-2 leaves one alone
    # whichever it is, so it stands (two seats, 1-3 + 1-4, would fill the block instead).
    small = SeatPlan.from_layout(["S_SSS_S"])
    assert orphans_created(small, {"1-2"}, ["1-3"]) == ["1-4"]
    assert check_choice(small, {"1-2"}, ["1-3", "1-3"]) is None


# --- the seat map -----------------------------------------------------------------------------


def _rows(text: str) -> dict[int, str]:
    """Row number → marks, from a rendered map."""
    out = {}
    for line in text.split("\n"):
        head, _, body = line.partition(" ")
        number = head.strip(FIG)
        if number.isdigit() and body:
            out[int(number)] = body
    return out


def test_map_shape_for_a_demo_hall() -> None:
    p = plan("1号厅")
    text = render_map(p, {})
    lines = text.split("\n")
    assert lines[0].endswith("屏幕")
    assert all(len(line) <= 24 for line in lines), [len(line) for line in lines]
    rows = _rows(text)
    assert sorted(rows) == list(range(1, 13))
    numbers = [ln.partition(" ")[0].strip(FIG) for ln in lines[1:13]]
    assert numbers == [str(r) for r in range(1, 13)]
    assert rows[1] == "♿□□□" + AISLE_MARK + "□" * 10 + AISLE_MARK + "□□♿□"
    assert rows[8] == "□□□□" + AISLE_MARK + "□" * 10 + AISLE_MARK + "□□□□"
    assert rows[12] == "♡" * 4 + AISLE_MARK + "♡" * 10 + AISLE_MARK + "♡" * 4
    # Screen centred over the seats.
    assert lines[0].index("屏幕") - lines[1].index(" ") - 1 == (20 - 2) // 2


def test_map_marks_taken_mine_and_blocked_seats() -> None:
    p = SeatPlan.from_layout(["SSXS_CC", "WSSV_SS"])
    states = {"1-1": "sold", "1-2": "held", "2-3": "held", "2-4": "free"}
    text = render_map(p, states, mine=["2-3", "2-2"])
    rows = _rows(text)
    assert rows[1] == "■■✕□" + AISLE_MARK + "♡♡"
    assert rows[2] == "♿★★□" + AISLE_MARK + "□□"  # mine wins over "held" (the user's own hold)
    legend = "\n".join(text.split("\n")[3:])
    for item in ("□可选", "■已售", "★您的座位", "✕停用", "♡情侣座", "♿轮椅位"):
        assert item in legend
    assert "部分可选" not in legend and "每格" not in legend  # not compressed
    # Without `mine`, the user's held seat is just taken.
    assert _rows(render_map(p, states))[2] == "♿□■□" + AISLE_MARK + "□□"


def test_map_legend_can_be_left_out() -> None:
    p = plan("3号厅")
    lines = render_map(p, {}, legend=False).split("\n")
    assert len(lines) == 1 + 8
    assert len(render_map(p, {}).split("\n")) > 1 + 8


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_demo_hall_map_fits_the_chat_width(name: str) -> None:
    p = plan(name)
    sold = {label: "sold" for label in list(p.seats)[::3]}
    text = render_map(p, sold, best_seats(p, set(sold), 2) or ())
    assert all(len(line) <= 24 for line in text.split("\n")), text
    assert sorted(_rows(text)) == list(range(1, p.row_count + 1))
    assert "★" in text


def test_a_wide_hall_is_compressed_the_same_way_on_every_row() -> None:
    p = plan("IMAX厅")  # 24 seats and 2 aisles a row
    full = render_map(p, {}, width=100)
    assert len(_rows(full)[5]) == 26
    assert "每格" not in full
    states = {"8-9": "sold", "5-1": "sold", "5-2": "sold"}
    text = render_map(p, states, mine=["10-12"])
    rows = _rows(text)
    assert "每格2座" in text
    # Blocks of 6, 12 and 6 places become 3, 6 and 3 marks, aisles kept.
    assert {len(body) for body in rows.values()} == {3 + 1 + 6 + 1 + 3}
    assert all(body[3] == AISLE_MARK and body[10] == AISLE_MARK for body in rows.values())
    assert rows[5][0] == "■"  # both of 5-1, 5-2 taken
    assert rows[8][5] == "◧"  # 8-9 taken, 8-10 free
    assert rows[8][4] == "□"  # 8-7, 8-8
    assert rows[10][6] == "★"  # 10-11 + 10-12
    assert rows[14] == "♡♡♡" + AISLE_MARK + "♡" * 6 + AISLE_MARK + "♡♡♡"
    assert rows[1][:3] == "♿♿□"  # WS WS SS
    assert all(len(line) <= 24 for line in text.split("\n"))
