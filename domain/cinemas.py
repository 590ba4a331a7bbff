"""Cinemas and halls, with seat layouts people can read."""

from __future__ import annotations

from dataclasses import dataclass

from tortoise import fields
from tortoise.models import Model

# One character a place in a row string; `_` is an aisle or an empty place.
SEAT_TYPES = {
    "S": "standard",
    "V": "vip",
    "C": "couple",  # comes in adjacent pairs
    "W": "wheelchair",
    "X": "blocked",  # broken or taken out of sale
}
AISLE = "_"


class Cinema(Model):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=64)
    city = fields.CharField(max_length=32, default="")
    address = fields.CharField(max_length=128, default="")
    phone = fields.CharField(max_length=32, default="")
    latitude = fields.FloatField(null=True)
    longitude = fields.FloatField(null=True)
    opens_at = fields.CharField(max_length=5, default="09:00")
    closes_at = fields.CharField(max_length=5, default="02:00")
    # Ticketing policy, per cinema.
    hold_minutes = fields.IntField(default=10)
    refund_cutoff_minutes = fields.IntField(default=30)  # no refund later than this before start
    change_cutoff_minutes = fields.IntField(default=30)
    changes_enabled = fields.BooleanField(default=True)
    monthly_refund_quota = fields.IntField(default=3)  # refunds + changes per member a month
    max_seats_per_showtime = fields.IntField(default=6)  # per buyer
    max_seats_per_order = fields.IntField(default=10)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "cinema"


class Hall(Model):
    id = fields.IntField(primary_key=True)
    cinema: fields.ForeignKeyRelation[Cinema] = fields.ForeignKeyField(
        "models.Cinema", related_name="halls", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=16)  # 3号厅, IMAX厅
    screen = fields.CharField(max_length=16, default="standard")  # standard | IMAX | Dolby | 4D
    layout = fields.JSONField()  # list of row strings, front row first

    class Meta:
        table = "hall"
        unique_together = (("cinema", "name"),)

    def seats(self) -> list[Seat]:
        return parse_layout(self.layout)


@dataclass(frozen=True, slots=True)
class Seat:
    row: int  # 1 = front row
    col: int  # seat number within the row, aisles not counted
    kind: str  # a SEAT_TYPES value

    @property
    def label(self) -> str:
        return f"{self.row}-{self.col}"


def parse_layout(rows: list[str]) -> list[Seat]:
    """Row strings → seats. Raises ValueError for an unknown mark or an unpaired couple seat."""
    seats: list[Seat] = []
    for r, line in enumerate(rows, start=1):
        col = 0
        couple_run = 0
        for mark in line + AISLE:
            if mark == "C":
                couple_run += 1
            elif couple_run:
                if couple_run % 2:
                    raise ValueError(f"row {r}: couple seats must come in pairs")
                couple_run = 0
            if mark == AISLE:
                continue
            if mark not in SEAT_TYPES:
                raise ValueError(f"row {r}: unknown seat mark {mark!r}")
            col += 1
            seats.append(Seat(r, col, SEAT_TYPES[mark]))
    return seats


async def home_cinema(cinema_id: int | None = None) -> Cinema | None:
    """The actor's cinema, or for audiences (not yet tied to one) the chain's first cinema."""
    if cinema_id is not None:
        return await Cinema.get_or_none(id=cinema_id)
    return await Cinema.all().order_by("id").first()
