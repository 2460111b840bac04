"""Sandbox conversations get renters of their own.

The sandbox page lets anyone type any phone number as their address, and its conversations used
to find the renter by that number: the renter of a real SMS or WhatsApp conversation (their
bookings, their PIN). From now on a sandbox conversation's renter is known only through it.
Existing rows are separated the same way:

- a sandbox conversation whose renter also writes on a real channel gets a new renter (its name
  and language copied); the bookings stay with the real renter;
- a renter only the sandbox knows loses its phone number, so that the person who really has
  that number starts afresh when they write by SMS or WhatsApp.
"""

import re
from datetime import UTC, datetime

from tortoise import migrations
from tortoise.migrations import operations as ops

_PLACEHOLDER = re.compile(r"\$\d+")


def _statement(client, statement):
    if client.capabilities.dialect == "postgres":
        return statement
    return _PLACEHOLDER.sub("?", statement)


async def forward(apps, schema_editor):
    client = schema_editor.client
    now = datetime.now(UTC)
    sandbox = await client.execute_query_dict(
        "SELECT c.id, c.renter_id, r.name, r.language FROM conversation c"
        " JOIN renter r ON r.id = c.renter_id WHERE c.channel = 'sandbox'"
    )
    for row in sandbox:
        real = await client.execute_query_dict(
            _statement(
                client,
                "SELECT 1 AS found FROM conversation WHERE renter_id = $1 AND channel <> 'sandbox'",
            ),
            [row["renter_id"]],
        )
        if not real:
            await client.execute_query(
                _statement(client, "UPDATE renter SET phone = NULL WHERE id = $1"),
                [row["renter_id"]],
            )
            continue
        [added] = await client.execute_query_dict(
            _statement(
                client,
                "INSERT INTO renter (name, language, opted_out, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            ),
            [row["name"], row["language"], False, now, now],
        )
        await client.execute_query(
            _statement(client, "UPDATE conversation SET renter_id = $1 WHERE id = $2"),
            [added["id"], row["id"]],
        )


class Migration(migrations.Migration):
    dependencies = [('models', '0010_location_booking_horizon')]

    initial = False

    operations = [
        ops.RunPython(forward, ops.RunPython.noop),
    ]
