"""Each lock keeps its pace: the slots lately taken by code creations and code updates sent to
it, shared by every worker, so a device never gets more than its provider takes a minute. One
nullable column: adding it rewrites nothing and holds no long lock."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0014_retention_indexes")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Lock",
            name="code_pace",
            field=fields.JSONField(null=True),
        ),
    ]
