"""How far ahead a location takes bookings; empty means the setting's default."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0009_booking_blocked_range')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Location',
            name='booking_horizon_days',
            field=fields.IntField(null=True, description='How many days ahead a booking may start here (None: KEYTURN_BOOKING_HORIZON_DAYS).'),
        ),
    ]
