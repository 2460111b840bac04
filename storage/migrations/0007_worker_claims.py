from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

from storage.migrations._filled import AddFilledField

class Migration(migrations.Migration):
    dependencies = [('models', '0006_sealed_messages')]

    initial = False

    operations = [
        AddFilledField(
            model_name='OutboxEffect',
            name='claimed_by',
            field=fields.CharField(default='', description='The worker that claimed it last ("host/pid"): whose lease ``next_attempt_at`` is.', max_length=100),
        ),
        AddFilledField(
            model_name='Timer',
            name='claimed_by',
            field=fields.CharField(default='', description='The worker that claimed it last ("host/pid").', max_length=100),
        ),
    ]
