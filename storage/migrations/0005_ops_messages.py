from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_payment_details')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Conversation',
            name='agent_thread_id',
            field=fields.BigIntField(null=True, description='The forum topic in the ops group where staff talk with this renter (None: none yet).'),
        ),
        ops.AddField(
            model_name='OpsAlert',
            name='telegram_message_id',
            field=fields.BigIntField(null=True, description='The message in the ops group that shows this alert, edited on changes (None: not sent).'),
        ),
    ]
