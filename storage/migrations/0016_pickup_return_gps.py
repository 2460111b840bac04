"""Pickup and return, proven: the items' checklists, photo prompts, late fees and GPS trackers,
the locations' home geofences, each booking's handover record, condition photos and GPS
positions. New tables and nullable or defaulted columns only: nothing is rewritten."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from storage.rental_models import HandoverKind
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

from storage.migrations._filled import AddFilledField

class Migration(migrations.Migration):
    dependencies = [('models', '0015_code_pacing')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ConditionPhoto',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('booking', fields.ForeignKeyField('models.Booking', source_field='booking_id', db_constraint=True, to_field='id', related_name='condition_photos', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='PICKUP: pickup\nRETURN: return', enum_type=HandoverKind, max_length=8)),
                ('position', fields.IntField(description="Which of the item's photo prompts this answers (0-based), and the prompt as it was asked.")),
                ('prompt', fields.CharField(max_length=200)),
                ('image_encrypted', fields.TextField(null=True, unique=False)),
                ('content_type', fields.CharField(default='', max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'condition_photo', 'app': 'models', 'indexes': [Index(fields=['booking_id'])], 'pk_attr': 'id', 'table_description': "A photo of an item's condition at pickup or return, kept sealed for the damage review and"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='GpsPosition',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('asset', fields.ForeignKeyField('models.Asset', source_field='asset_id', null=True, db_constraint=True, to_field='id', related_name='positions', on_delete=OnDelete.SET_NULL)),
                ('device_id', fields.BigIntField(description="Traccar's device id and position id (the latter unique: a position is stored once).")),
                ('position_id', fields.BigIntField(null=True, unique=True)),
                ('latitude', fields.FloatField()),
                ('longitude', fields.FloatField()),
                ('fixed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'gps_position', 'app': 'models', 'indexes': [Index(fields=['asset_id', 'fixed_at']), Index(fields=['fixed_at'])], 'pk_attr': 'id', 'table_description': "A position an item's tracker reported through Traccar, kept"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Handover',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('booking', fields.ForeignKeyField('models.Booking', source_field='booking_id', db_constraint=True, to_field='id', related_name='handovers', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='PICKUP: pickup\nRETURN: return', enum_type=HandoverKind, max_length=8)),
                ('photos_done', fields.IntField(default=0)),
                ('answers', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'handover', 'app': 'models', 'unique_together': (('booking', 'kind'),), 'pk_attr': 'id', 'table_description': "A booking's pickup or return as the renter goes through it in the chat: the photos sent"},
            bases=['Model'],
        ),
        AddFilledField(
            model_name='Asset',
            name='early_return_ends_codes',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='Asset',
            name='gps_home',
            field=fields.BooleanField(null=True),
        ),
        ops.AddField(
            model_name='Asset',
            name='gps_home_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        AddFilledField(
            model_name='Asset',
            name='late_fee_per_hour_cents',
            field=fields.IntField(default=0),
        ),
        AddFilledField(
            model_name='Asset',
            name='late_grace_minutes',
            field=fields.IntField(default=15),
        ),
        AddFilledField(
            model_name='Asset',
            name='pickup_checklist',
            field=fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads),
        ),
        AddFilledField(
            model_name='Asset',
            name='pickup_photos',
            field=fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads),
        ),
        AddFilledField(
            model_name='Asset',
            name='pin_after_checklist',
            field=fields.BooleanField(default=False),
        ),
        AddFilledField(
            model_name='Asset',
            name='return_checklist',
            field=fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads),
        ),
        AddFilledField(
            model_name='Asset',
            name='return_photos',
            field=fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.AddField(
            model_name='Asset',
            name='traccar_device_id',
            field=fields.BigIntField(null=True),
        ),
        AddFilledField(
            model_name='Booking',
            name='late_fee_cents',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='Booking',
            name='pickup_done_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Booking',
            name='return_checklist_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        AddFilledField(
            model_name='Booking',
            name='return_timing',
            field=fields.CharField(default='', max_length=8),
        ),
        ops.AddField(
            model_name='Booking',
            name='returned_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Booking',
            name='returned_home_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Location',
            name='home_geofence_id',
            field=fields.BigIntField(null=True),
        ),
    ]
