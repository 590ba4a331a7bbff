"""Projectors (one per hall) and the edge boxes that report them, each box with its own key."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from tortoise import fields
from tortoise.models import Model

from domain.cinemas import Cinema, Hall

log = logging.getLogger(__name__)


class Projector(Model):
    id = fields.IntField(primary_key=True)
    cinema: fields.ForeignKeyRelation[Cinema] = fields.ForeignKeyField(
        "models.Cinema", related_name="projectors", on_delete=fields.CASCADE
    )
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="projectors", on_delete=fields.CASCADE
    )
    device_id = fields.CharField(max_length=64, unique=True)
    key = fields.CharField(max_length=128)  # HMAC key of the edge box
    model = fields.CharField(max_length=64, default="")
    nominal_lumens = fields.IntField(null=True)
    # The latest health snapshot written by the telemetry process (score 0-100 and parts).
    health_score = fields.IntField(null=True)
    health = fields.JSONField(null=True)
    health_at = fields.DatetimeField(null=True)

    class Meta:
        table = "projector"


class EdgeBox(Model):
    """The small computer in a cinema that reports its projectors and signs with its own key."""

    id = fields.IntField(primary_key=True)
    box_id = fields.CharField(max_length=64, unique=True)
    cinema: fields.ForeignKeyRelation[Cinema] = fields.ForeignKeyField(
        "models.Cinema", related_name="edge_boxes", on_delete=fields.CASCADE
    )
    key = fields.CharField(max_length=128)  # HMAC-SHA256 key
    active = fields.BooleanField(default=True)

    class Meta:
        table = "edge_box"


@dataclass(frozen=True, slots=True)
class DevicePlace:
    device_id: str
    cinema_id: int
    hall: str


async def edge_box(box_id: str) -> EdgeBox | None:
    """An active box by its id (the ``X-Cinebot-Box`` header)."""
    return await EdgeBox.get_or_none(box_id=box_id, active=True)


async def places(cinema_id: int) -> dict[str, DevicePlace]:
    """Every projector of a cinema with its hall's name, by device id."""
    rows = await Projector.filter(cinema_id=cinema_id).prefetch_related("hall")
    return {p.device_id: DevicePlace(p.device_id, p.cinema_id, p.hall.name) for p in rows}


async def ensure_box(cinema: Cinema, box_id: str) -> EdgeBox:
    box, _ = await EdgeBox.get_or_create(
        box_id=box_id, defaults={"cinema": cinema, "key": secrets.token_hex(24)}
    )
    return box


async def demo_box() -> tuple[str, str]:
    """(box id, key) of the demo cinema's edge box, for the simulator and the bench."""
    box = await EdgeBox.get(box_id=DEMO_BOX_ID)
    return box.box_id, box.key


DEMO_BOX_ID = "BOX-DEMO-1"


class AlertRecord(Model):
    """One telemetry alert (an incident of a rule on a device) and the work order it opened."""

    id = fields.IntField(primary_key=True)
    alert_id = fields.CharField(max_length=128, unique=True)
    cinema: fields.ForeignKeyRelation[Cinema] = fields.ForeignKeyField(
        "models.Cinema", related_name="alerts", on_delete=fields.CASCADE
    )
    device_id = fields.CharField(max_length=64, db_index=True)
    hall = fields.CharField(max_length=32, default="")
    rule = fields.CharField(max_length=64)
    severity = fields.CharField(max_length=16)
    state = fields.CharField(max_length=16)  # firing | resolved
    message = fields.CharField(max_length=300, default="")
    value = fields.FloatField(null=True)
    limit = fields.FloatField(null=True)
    predicted_at = fields.DatetimeField(null=True)
    fired_at = fields.DatetimeField()  # the reading's time
    resolved_at = fields.DatetimeField(null=True)
    work_order_id = fields.IntField(null=True)
    created_at = fields.DatetimeField()
    acknowledged_at = fields.DatetimeField(null=True)
    acknowledged_by = fields.CharField(max_length=64, default="")
    repeats = fields.IntField(default=0)
    reminders = fields.IntField(default=0)
    reminded_at = fields.DatetimeField(null=True)
    silenced = fields.BooleanField(default=False)  # fired while a silence matched: no card
    spark = fields.CharField(max_length=64, default="")  # the trend when it fired (for a late card)

    class Meta:
        table = "telemetry_alert"


class AlertSilence(Model):
    """A silence: matching alerts are recorded but not told until it ends (e.g. 维护中 2小时).

    An empty device id matches every device of the cinema, an empty rule every rule."""

    id = fields.IntField(primary_key=True)
    cinema: fields.ForeignKeyRelation[Cinema] = fields.ForeignKeyField(
        "models.Cinema", related_name="silences", on_delete=fields.CASCADE
    )
    device_id = fields.CharField(max_length=64, default="")
    rule = fields.CharField(max_length=64, default="")
    reason = fields.CharField(max_length=200, default="")
    created_by = fields.CharField(max_length=64, default="")
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField(db_index=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "telemetry_silence"


class TelemetryRule(Model):
    """Stored alert limits of a cinema (empty device id) or of one projector.

    The settings are the keys of ``telemetry.rules.DeviceRules`` (e.g. brightness_warning_pct)."""

    id = fields.IntField(primary_key=True)
    cinema: fields.ForeignKeyRelation[Cinema] = fields.ForeignKeyField(
        "models.Cinema", related_name="telemetry_rules", on_delete=fields.CASCADE
    )
    device_id = fields.CharField(max_length=64, default="")
    settings = fields.JSONField(default=dict)
    updated_by = fields.CharField(max_length=64, default="")
    updated_at = fields.DatetimeField()

    class Meta:
        table = "telemetry_rule"
        unique_together = (("cinema", "device_id"),)


class TelemetryMinute(Model):
    """Per-minute aggregate of one metric of one device (kept for the retention period)."""

    id = fields.BigIntField(primary_key=True)
    cinema_id = fields.IntField()
    device_id = fields.CharField(max_length=64)
    minute = fields.DatetimeField(db_index=True)
    metric = fields.CharField(max_length=48)
    n = fields.IntField()
    vmin = fields.FloatField()
    vmax = fields.FloatField()
    vsum = fields.FloatField()

    class Meta:
        table = "telemetry_minute"
        unique_together = (("device_id", "minute", "metric"),)

# The alert lifecycle (records -> work orders, silences, reminders) is in domain.alerts.
