from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

from storage.migrations._filled import AddFilledField

class Migration(migrations.Migration):
    dependencies = [('models', '0005_ops_messages')]

    initial = False

    operations = [
        AddFilledField(
            model_name='Message',
            name='sealed',
            field=fields.BooleanField(default=False, description='True when ``body`` is Fernet-encrypted: messages that carry a PIN are sealed at rest.'),
        ),
    ]
