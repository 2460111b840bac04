from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

from storage.migrations._filled import AddFilledField

class Migration(migrations.Migration):
    dependencies = [('models', '0003_simulated_locks')]

    initial = False

    operations = [
        AddFilledField(
            model_name='Payment',
            name='details',
            field=fields.JSONField(default=dict, description='Provider detail needed later: the payment intent, the saved customer and card, the URL.', encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]
