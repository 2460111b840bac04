"""Condition photos' images are deleted a set time after their rental ended
(``KEYTURN_PHOTO_RETENTION_DAYS``), a batch at a time: each batch is chosen through a partial
index that holds only the photos still keeping an image, so a batch reads what it deletes and
nothing it deleted before. Built without locking the table (``CREATE INDEX CONCURRENTLY`` on
PostgreSQL, outside a transaction); the name and predicate are storage/retention.py's."""

from tortoise import migrations

from storage.migrations._indexes import LiveIndex, build_live

INDEXES = [
    LiveIndex(
        "condition_photo_with_image",
        "condition_photo",
        "(booking_id) WHERE image_encrypted IS NOT NULL",
    ),
]


class Migration(migrations.Migration):
    dependencies = [("models", "0016_pickup_return_gps")]

    initial = False
    #: CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    operations = [build_live(INDEXES)]
