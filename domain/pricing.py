"""Ticket prices: the one place a price is computed, in whole fen (no floats anywhere).

A seat's price is ``base × seat factor × tier factor × (100 − percent off)``, all factors in
percent, computed exactly in integers and rounded half-up to the fen once, at the end. The
total is the sum of the seats' prices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SEAT_FACTORS = {"standard": 100, "vip": 150, "couple": 120, "wheelchair": 100}  # couple: a seat
TIER_FACTORS = {"regular": 100, "silver": 95, "gold": 90, "platinum": 85}
SEAT_NAMES = {"standard": "标准座", "vip": "贵宾座", "couple": "情侣座", "wheelchair": "轮椅位"}


@dataclass(frozen=True)
class PriceLine:
    seat: str  # label, "5-7"
    kind: str  # a SEAT_FACTORS key
    fen: int  # what this seat costs
    list_fen: int | None = None  # base × seat factor, before member and other discounts


@dataclass(frozen=True)
class Quote:
    lines: tuple[PriceLine, ...]
    total_fen: int
    tier: str  # the tier priced ("regular" for a tier without a discount)
    discount: str | None  # the discount's name, when one applies

    def describe(self) -> str:
        """A one-to-three-line summary for chat.

        "2张 · 标准座 ¥45×2 · 会员9折 · 合计 ¥81.00": list prices per seat kind, then the
        member and other discounts, then the total (always with fen).
        """
        counts: dict[tuple[str, int], int] = {}
        for line in self.lines:
            key = (line.kind, line.fen if line.list_fen is None else line.list_fen)
            counts[key] = counts.get(key, 0) + 1
        groups = [
            f"{SEAT_NAMES.get(kind, kind)} {format_fen(fen)}×{n}"
            for (kind, fen), n in counts.items()
        ]
        seats = f"{len(self.lines)}张 · " + " + ".join(groups)
        offers = []
        factor = TIER_FACTORS.get(self.tier, 100)
        if factor != 100:
            offers.append(f"会员{_zhe(factor)}折")
        if self.discount:
            offers.append(self.discount)
        total = f"合计 {format_fen(self.total_fen, cents=True)}"
        if len(groups) == 1:
            return " · ".join([seats, *offers, total])
        return "\n".join([seats, *([" · ".join(offers)] if offers else []), total])


def _zhe(percent: int) -> str:
    """90 → "9", 95 → "9.5", 88 → "8.8" (Chinese discount notation: 9折 = 90% of the price)."""
    whole, tenth = divmod(percent, 10)
    return f"{whole}" if tenth == 0 else f"{whole}.{tenth}"


def _round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up, both non-negative."""
    return (2 * numerator + denominator) // (2 * denominator)


def quote(
    base_price_fen: int,
    seats: Sequence[tuple[str, str]],
    tier: str,
    discount_percent_off: int = 0,
    discount_name: str | None = None,
) -> Quote:
    """Price ``seats`` ((label, kind) pairs) at a showtime's base price for a member tier.

    An unknown tier pays the regular price. ``discount_percent_off`` (0–100) applies on top
    of the member price; its name defaults to "N折优惠". Raises ValueError for no seats, a
    negative base price, a discount out of range, or a seat kind that is not for sale.
    """
    if not seats:
        raise ValueError("no seats to price")
    if isinstance(base_price_fen, bool) or not isinstance(base_price_fen, int):
        raise TypeError("base_price_fen must be an int")
    if base_price_fen < 0:
        raise ValueError("base price cannot be negative")
    if not 0 <= discount_percent_off <= 100:
        raise ValueError("discount_percent_off must be between 0 and 100")
    tier_factor = TIER_FACTORS.get(tier)
    if tier_factor is None:
        tier, tier_factor = "regular", 100
    keep = 100 - discount_percent_off
    lines = []
    for label, kind in seats:
        seat_factor = SEAT_FACTORS.get(kind)
        if seat_factor is None:
            raise ValueError(f"seat {label}: {kind!r} seats are not for sale")
        fen = _round_half_up(base_price_fen * seat_factor * tier_factor * keep, 100**3)
        list_fen = _round_half_up(base_price_fen * seat_factor, 100)
        lines.append(PriceLine(label, kind, fen, list_fen))
    discount = None
    if discount_percent_off:
        discount = discount_name or f"{_zhe(keep)}折优惠"
    return Quote(tuple(lines), sum(line.fen for line in lines), tier, discount)


def format_fen(fen: int, *, cents: bool = False) -> str:
    """4500 → "¥45", 4550 → "¥45.50", 5 → "¥0.05"; ``cents`` always shows fen ("¥45.00")."""
    sign = "-" if fen < 0 else ""
    yuan, rest = divmod(abs(fen), 100)
    if rest == 0 and not cents:
        return f"{sign}¥{yuan}"
    return f"{sign}¥{yuan}.{rest:02d}"
