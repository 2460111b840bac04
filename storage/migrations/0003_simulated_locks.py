from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_booking_no_overlap')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SimulatedCode',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('device_id', fields.CharField(db_index=True, max_length=200)),
                ('name', fields.CharField(default='', max_length=100)),
                ('pin_encrypted', fields.TextField(description='The PIN, Fernet-encrypted like every PIN Keyturn keeps.', unique=False)),
                ('starts_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('removed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'simulated_code', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A code held by a simulated lock: what its keypad would accept, and when.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SimulatedUnlock',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('device_id', fields.CharField(max_length=200)),
                ('source', fields.CharField(max_length=16)),
                ('accepted', fields.BooleanField()),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'simulated_unlock', 'app': 'models', 'pk_attr': 'id', 'table_description': "A remote open or keypad entry on a simulated lock, for the sandbox's keypad log."},
            bases=['Model'],
        ),
    ]
