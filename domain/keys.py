"""Key material the product generates for itself (e.g. the payment sandbox's keys).

Stored in the database so every process of a deployment (web, worker) sees the
same keys; created once, by whichever process asks first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.models import Model


class StoredKey(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    value = fields.JSONField()

    class Meta:
        table = "stored_key"


async def get_or_create(name: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    row = await StoredKey.get_or_none(name=name)
    if row is not None:
        return dict(row.value)
    try:
        row = await StoredKey.create(name=name, value=make())
    except IntegrityError:
        # Two processes started together: the first one's keys win.
        row = await StoredKey.get(name=name)
    return dict(row.value)
