"""domain.pricing: integer fen arithmetic, factors, rounding, discounts, the chat summary."""

from __future__ import annotations

import pytest

from domain.pricing import SEAT_FACTORS, TIER_FACTORS, PriceLine, Quote, format_fen, quote


def one(base: int, kind: str = "standard", tier: str = "regular", off: int = 0) -> int:
    q = quote(base, [("5-7", kind)], tier, off)
    assert len(q.lines) == 1
    return q.lines[0].fen


def test_the_factor_tables_are_the_agreed_ones() -> None:
    assert SEAT_FACTORS == {"standard": 100, "vip": 150, "couple": 120, "wheelchair": 100}
    assert TIER_FACTORS == {"regular": 100, "silver": 95, "gold": 90, "platinum": 85}


@pytest.mark.parametrize(
    ("kind", "fen"), [("standard", 4500), ("vip", 6750), ("couple", 5400), ("wheelchair", 4500)]
)
def test_seat_kind_factors(kind: str, fen: int) -> None:
    assert one(4500, kind) == fen


@pytest.mark.parametrize(
    ("tier", "fen"), [("regular", 4500), ("silver", 4275), ("gold", 4050), ("platinum", 3825)]
)
def test_member_tier_factors(tier: str, fen: int) -> None:
    assert one(4500, tier=tier) == fen


def test_couple_factor_is_per_seat() -> None:
    q = quote(4500, [("12-1", "couple"), ("12-2", "couple")], "regular")
    assert [line.fen for line in q.lines] == [5400, 5400]
    assert q.total_fen == 10800


def test_an_exact_half_fen_rounds_up_not_to_even() -> None:
    # 4550 × 95% = 4322.5 fen; Python's round() would give 4322.
    assert one(4550, tier="silver") == 4323
    # 4550 × 150% × 85% = 5801.25 → 5801 (down below the half).
    assert one(4550, "vip", "platinum") == 5801


def test_rounding_happens_once_at_the_end() -> None:
    # 3003 × 150% × 95% × 90% = 3851.3475 fen. Rounding after every step would give
    # 4504.5 → 4505, × 95% = 4279.75 → 4280, × 90% = 3852.
    assert one(3003, "vip", "silver", off=10) == 3851


def test_results_are_ints_and_the_total_is_the_sum_of_the_lines() -> None:
    seats = [
        ("6-1", "vip"), ("6-2", "vip"), ("12-1", "couple"), ("12-2", "couple"),
        ("1-1", "wheelchair"),
    ]
    q = quote(3333, seats, "platinum", 7, "周二特惠")
    assert all(type(line.fen) is int for line in q.lines)
    assert type(q.total_fen) is int
    assert q.total_fen == sum(line.fen for line in q.lines)
    assert [line.seat for line in q.lines] == [label for label, _ in seats]
    assert [line.kind for line in q.lines] == [kind for _, kind in seats]
    # 3333 × 150% × 85% × 93% = 3952.1 → 3952; couple 3333 × 120% × 85% × 93% = 3161.6 → 3162.
    assert [line.fen for line in q.lines] == [3952, 3952, 3162, 3162, 2635]


def test_a_discount_applies_on_top_of_the_member_price() -> None:
    q = quote(5000, [("5-7", "standard")], "gold", 20, "早场特惠")
    assert q.lines[0].fen == 3600  # 5000 × 90% × 80%
    assert q.discount == "早场特惠"
    assert "早场特惠" in q.describe()


def test_an_unnamed_discount_gets_a_name_and_no_discount_has_none() -> None:
    assert quote(5000, [("5-7", "standard")], "regular", 15).discount == "8.5折优惠"
    q = quote(5000, [("5-7", "standard")], "regular", 0, "早场特惠")
    assert q.discount is None  # a name without a percentage off is no discount
    assert "早场特惠" not in q.describe()


def test_an_unknown_tier_pays_the_regular_price() -> None:
    q = quote(4500, [("5-7", "vip")], "diamond")
    assert q.lines[0].fen == 6750
    assert q.tier == "regular"
    assert "会员" not in q.describe()


@pytest.mark.parametrize(
    ("base", "seats", "off"),
    [
        (4500, [], 0),
        (-1, [("5-7", "standard")], 0),
        (4500, [("5-7", "standard")], 101),
        (4500, [("5-7", "standard")], -5),
        (4500, [("5-7", "blocked")], 0),
        (4500, [("5-7", "sofa")], 0),
    ],
)
def test_impossible_requests_are_refused(base: int, seats: list, off: int) -> None:
    with pytest.raises(ValueError):
        quote(base, seats, "regular", off)


def test_a_float_base_price_is_refused() -> None:
    with pytest.raises(TypeError):
        quote(45.0, [("5-7", "standard")], "regular")  # type: ignore[arg-type]


def test_describe_matches_the_chat_example() -> None:
    q = quote(4500, [("5-7", "standard"), ("5-8", "standard")], "gold")
    assert q.describe() == "2张 · 标准座 ¥45×2 · 会员9折 · 合计 ¥81.00"


def test_describe_without_any_discount_is_one_line() -> None:
    q = quote(4550, [("5-7", "standard")], "regular")
    assert q.describe() == "1张 · 标准座 ¥45.50×1 · 合计 ¥45.50"


def test_describe_splits_several_seat_kinds_over_three_lines() -> None:
    q = quote(4500, [("5-7", "vip"), ("12-1", "couple"), ("12-2", "couple")], "silver", 20, "早场特惠")
    assert q.describe().split("\n") == [
        "3张 · 贵宾座 ¥67.50×1 + 情侣座 ¥54×2",
        "会员9.5折 · 早场特惠",
        f"合计 {format_fen(q.total_fen, cents=True)}",
    ]
    # 6750 × 95% × 80% = 5130; 5400 × 95% × 80% = 4104 (twice).
    assert q.total_fen == 5130 + 2 * 4104


def test_describe_of_a_hand_built_quote_uses_the_seat_prices() -> None:
    q = Quote((PriceLine("5-7", "standard", 3990),), 3990, "regular", None)
    assert q.describe() == "1张 · 标准座 ¥39.90×1 · 合计 ¥39.90"


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (4500, "¥45"), (4550, "¥45.50"), (4505, "¥45.05"),
        (5, "¥0.05"), (0, "¥0"), (-4550, "-¥45.50"),
    ],
)
def test_format_fen(fen: int, text: str) -> None:
    assert format_fen(fen) == text


def test_format_fen_with_cents() -> None:
    assert format_fen(8100, cents=True) == "¥81.00"
    assert format_fen(8105, cents=True) == "¥81.05"
