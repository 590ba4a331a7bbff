"""Daily rollups for the console, the digest and managers' questions: what a page reads
instead of scanning raw rows.

Every rollup row is one *bucket* (a show, a cinema day of feedback for one film and hall,
a cinema day of work orders of one kind/team/category, a device day of one metric). A
bucket is kept equal to its raw rows by recomputing it, inside the transaction of the
change that touched it, after taking the bucket's row lock — so two writers of one bucket
take turns and the second sees the first's rows. ``rebuild`` recomputes every bucket
from raw rows (``cinebot rollups rebuild``).

Days are the cinema's business day (``domain.feedback.business_day``: it ends at 03:00),
of the show's start for sales, of the visit for feedback, of the opening for work orders.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class ShowSales(Model):
    """One show's sales as they stand: box office counts by the show's day."""

    id = fields.IntField(primary_key=True)
    showtime_id = fields.IntField(unique=True)
    cinema_id = fields.IntField()
    day = fields.DateField()  # business day of the show's start
    film_id = fields.IntField()
    hall_id = fields.IntField()
    starts_at = fields.DatetimeField()
    capacity = fields.IntField()  # seats in the hall's layout
    sold = fields.IntField(default=0)  # tickets standing now (issued or checked in)
    revenue_fen = fields.BigIntField(default=0)  # what the standing tickets were sold for
    orders = fields.IntField(default=0)  # orders with standing tickets
    refunded = fields.IntField(default=0)  # tickets refunded
    refunded_fen = fields.BigIntField(default=0)
    changed = fields.IntField(default=0)  # tickets changed away to another show
    checked_in = fields.IntField(default=0)
    updated_at = fields.DatetimeField(null=True)

    class Meta:
        table = "show_sales"
        indexes = (Index(fields=["cinema_id", "day"]),)


class FeedbackDay(Model):
    """Ratings of one cinema day, one film and one hall (film 0 / hall "" when unknown)."""

    id = fields.IntField(primary_key=True)
    cinema_id = fields.IntField()
    day = fields.DateField()  # the visit's business day
    film_id = fields.IntField(default=0)
    hall = fields.CharField(max_length=16, default="")
    responses = fields.IntField(default=0)
    stars = fields.JSONField(default=list)  # counts of 1..5 stars: [n1, n2, n3, n4, n5]
    nps = fields.JSONField(default=list)  # counts of scores 0..10
    comments = fields.IntField(default=0)  # responses with a comment
    negative = fields.IntField(default=0)  # comments read as negative
    categories = fields.JSONField(default=dict)  # comment category -> count

    class Meta:
        table = "feedback_day"
        unique_together = (("cinema_id", "day", "film_id", "hall"),)


class ServiceDay(Model):
    """Work orders opened on one cinema day, of one kind, team and category."""

    id = fields.IntField(primary_key=True)
    cinema_id = fields.IntField()
    day = fields.DateField()  # business day of the opening
    kind = fields.CharField(max_length=16)
    team = fields.CharField(max_length=16)
    category = fields.CharField(max_length=16)
    opened = fields.IntField(default=0)
    acknowledged = fields.IntField(default=0)
    resolved = fields.IntField(default=0)
    breached = fields.IntField(default=0)  # orders with at least one SLA breach
    ack_seconds = fields.JSONField(default=list)  # per acknowledged order, sorted
    resolve_seconds = fields.JSONField(default=list)  # per resolved order, sorted
    breaches = fields.JSONField(default=list)  # [{"ref", "clock", "held_by"}]

    class Meta:
        table = "service_day"
        unique_together = (("cinema_id", "day", "kind", "team", "category"),)


class DeviceDay(Model):
    """One device's metric over one business day, merged from its minutes (counts and
    sums add, min and max widen); metric ``health_score`` holds the health snapshots."""

    id = fields.BigIntField(primary_key=True)
    cinema_id = fields.IntField()
    device_id = fields.CharField(max_length=64)
    day = fields.DateField()
    metric = fields.CharField(max_length=48)
    n = fields.IntField()
    vmin = fields.FloatField()
    vmax = fields.FloatField()
    vsum = fields.FloatField()
    vlast = fields.FloatField(null=True)  # the day's latest value (health: the score at day end)

    class Meta:
        table = "device_day"
        unique_together = (("device_id", "day", "metric"),)
        indexes = (Index(fields=["cinema_id", "day"]),)
