"""Projectors: one per hall, each with its own key for signing telemetry."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from domain.cinemas import Cinema, Hall


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

    class Meta:
        table = "projector"
