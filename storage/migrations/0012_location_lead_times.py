"""How long before a booking a location programs its codes, wants them set, and sends the PIN;
empty means the setting's default."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0011_sandbox_renters')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Location',
            name='code_lead_minutes',
            field=fields.IntField(null=True, description='Minutes before a booking that its codes are programmed (None: KEYTURN_CODE_LEAD_MINUTES).'),
        ),
        ops.AddField(
            model_name='Location',
            name='confirm_before_minutes',
            field=fields.IntField(null=True, description='Minutes before a booking by which its codes must be set (None: KEYTURN_CONFIRM_BEFORE_MINUTES).'),
        ),
        ops.AddField(
            model_name='Location',
            name='pin_lead_minutes',
            field=fields.IntField(null=True, description='Minutes before a booking that its PIN is sent (None: KEYTURN_PIN_LEAD_MINUTES).'),
        ),
    ]
