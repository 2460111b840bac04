"""The rows of a rental's pickup and return, and the GPS positions of the items: what the
renter sent at each handover, and where the tracker last saw the item."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

if TYPE_CHECKING:  # foreign keys name their models by string; these are for the type checker
    from storage.models import Asset, Booking


class HandoverKind(StrEnum):
    PICKUP = "pickup"
    RETURN = "return"


class Handover(Model):
    """A booking's pickup or return as the renter goes through it in the chat: the photos sent
    so far and the answers to the checklist."""

    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        booking_id: int

    id = fields.IntField(primary_key=True)
    booking: fields.ForeignKeyRelation[Booking] = fields.ForeignKeyField(
        "models.Booking", related_name="handovers", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(HandoverKind, max_length=8)
    #: How many of the item's required photos have arrived (they are asked for in order).
    photos_done = fields.IntField(default=0)
    #: The checklist's answers so far, one per question in order: true for yes.
    answers: fields.Field[list[bool]] = fields.JSONField(default=list)
    started_at = fields.DatetimeField()
    completed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "handover"
        unique_together = (("booking", "kind"),)


class ConditionPhoto(Model):
    """A photo of an item's condition at pickup or return, kept sealed for the damage review and
    deleted ``KEYTURN_PHOTO_RETENTION_DAYS`` after the rental."""

    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        booking_id: int

    id = fields.IntField(primary_key=True)
    booking: fields.ForeignKeyRelation[Booking] = fields.ForeignKeyField(
        "models.Booking", related_name="condition_photos", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(HandoverKind, max_length=8)
    #: Which of the item's photo prompts this answers (0-based), and the prompt as it was asked.
    position = fields.IntField()
    prompt = fields.CharField(max_length=200)
    #: The image, Fernet-encrypted (None once deleted by retention).
    image_encrypted = fields.TextField(null=True)
    content_type = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField()

    class Meta:
        table = "condition_photo"
        indexes = (Index(fields=["booking_id"]),)


class GpsPosition(Model):
    """A position an item's tracker reported through Traccar, kept
    ``KEYTURN_GPS_RETENTION_DAYS``; only owners and managers ever see it."""

    if TYPE_CHECKING:  # the foreign keys' id columns, which Tortoise adds
        asset_id: int | None

    id = fields.BigIntField(primary_key=True)
    asset: fields.ForeignKeyNullableRelation[Asset] = fields.ForeignKeyField(
        "models.Asset", related_name="positions", null=True, on_delete=fields.SET_NULL
    )
    #: Traccar's device id and position id (the latter unique: a position is stored once).
    device_id = fields.BigIntField()
    position_id = fields.BigIntField(null=True, unique=True)
    latitude = fields.FloatField()
    longitude = fields.FloatField()
    #: When the tracker took the fix (Traccar's ``fixTime``), and when Keyturn received it.
    fixed_at = fields.DatetimeField()
    received_at = fields.DatetimeField()

    class Meta:
        table = "gps_position"
        indexes = (Index(fields=["asset_id", "fixed_at"]), Index(fields=["fixed_at"]))
