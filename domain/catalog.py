"""Films and showtimes."""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise import fields
from tortoise.models import Model

from domain.cinemas import Cinema, Hall

FORMATS = ("2D", "3D", "IMAX", "Dolby", "4D")


class Film(Model):
    id = fields.IntField(primary_key=True)
    title = fields.CharField(max_length=64, unique=True)  # canonical title
    aliases = fields.JSONField(default=list)  # nicknames people type: 沙丘2, 哪吒2, dune2
    duration_min = fields.IntField()
    genres = fields.JSONField(default=list)
    rating = fields.FloatField(null=True)  # audience score out of 10
    formats = fields.JSONField(default=list)
    synopsis = fields.TextField(default="")
    release_date = fields.DateField(null=True)

    class Meta:
        table = "film"

    def names(self) -> list[str]:
        return [self.title, *self.aliases]


class Showtime(Model):
    id = fields.IntField(primary_key=True)
    cinema: fields.ForeignKeyRelation[Cinema] = fields.ForeignKeyField(
        "models.Cinema", related_name="showtimes", on_delete=fields.CASCADE
    )
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="showtimes", on_delete=fields.CASCADE
    )
    film: fields.ForeignKeyRelation[Film] = fields.ForeignKeyField(
        "models.Film", related_name="showtimes", on_delete=fields.CASCADE
    )
    starts_at = fields.DatetimeField(db_index=True)
    ends_at = fields.DatetimeField()
    format = fields.CharField(max_length=8, default="2D")
    base_price_fen = fields.IntField()  # money in fen: no floating point near prices
    cancelled_at = fields.DatetimeField(null=True)  # a cancelled show sells nothing and is refunded

    class Meta:
        table = "showtime"
        unique_together = (("hall", "starts_at"),)


async def find_films(text: str) -> list[Film]:
    """Films whose title or an alias appears in ``text`` (case- and width-insensitive)."""
    import unicodedata

    def norm(s: str) -> str:
        return "".join(ch for ch in unicodedata.normalize("NFKC", s).lower() if ch.isalnum())

    needle = norm(text)
    found = []
    for film in await Film.all():
        if any(norm(name) and norm(name) in needle for name in film.names()):
            found.append(film)
    return found


async def upcoming_showtimes(
    cinema_id: int,
    start: datetime,
    end: datetime,
    film_ids: list[int] | None = None,
    limit: int = 20,
) -> list[Showtime]:
    # SQLite compares stored timestamps as text: always query in UTC, as they are stored.
    query = Showtime.filter(
        cinema_id=cinema_id,
        starts_at__gte=start.astimezone(UTC),
        starts_at__lt=end.astimezone(UTC),
        cancelled_at=None,
    )
    if film_ids:
        query = query.filter(film_id__in=film_ids)
    return await query.order_by("starts_at").limit(limit).prefetch_related("film", "hall")
