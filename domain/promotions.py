"""Discounts a cinema runs: "周二半价", "早场8折". Pricing itself lives in ``domain.pricing``."""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise import fields
from tortoise.expressions import Q
from tortoise.models import Model


class Discount(Model):
    id = fields.IntField(primary_key=True)
    cinema_id = fields.IntField(db_index=True)
    name = fields.CharField(max_length=32)
    percent_off = fields.IntField()  # 0–100
    film_id = fields.IntField(null=True)  # None: every film
    weekdays = fields.JSONField(default=list)  # 0 = Monday … 6 = Sunday; [] = every day
    starts_at = fields.DatetimeField()  # when the discount may first be applied
    ends_at = fields.DatetimeField()
    active = fields.BooleanField(default=True)

    class Meta:
        table = "discount"


async def best_discount(
    cinema_id: int, film_id: int, show_local_weekday: int, now: datetime
) -> Discount | None:
    """The largest discount that applies to a show of ``film_id`` bought at ``now``."""
    now_utc = now.astimezone(UTC)
    candidates = await Discount.filter(
        Q(film_id=None) | Q(film_id=film_id),
        cinema_id=cinema_id,
        active=True,
        starts_at__lte=now_utc,
        ends_at__gt=now_utc,
    )
    fitting = [d for d in candidates if not d.weekdays or show_local_weekday in d.weekdays]
    return max(fitting, key=lambda d: d.percent_off, default=None)
