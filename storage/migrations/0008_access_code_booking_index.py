"""A booking's access codes are read by booking (its PIN, moving its window, whether a cancelled
booking still has an offline code that holds its time): index the column."""

from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0007_worker_claims')]

    initial = False

    operations = [
        ops.AddIndex(model_name='AccessCode', index=Index(fields=['booking_id'])),
    ]
