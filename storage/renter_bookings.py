"""A few renters' latest bookings in one statement, however many bookings each has had.

``/find`` shows each renter it found with their latest bookings. Read per renter newest first
through ``booking_renter_start`` and cut there: on PostgreSQL a ``LATERAL`` subquery reads only
the rows it keeps; SQLite, which has no ``LATERAL``, numbers each renter's bookings in the same
index order and keeps the first.
"""

from __future__ import annotations

from collections.abc import Sequence

from storage import db

_POSTGRES = """
SELECT r.id AS renter_id, latest.reference, latest.state, latest.slug
FROM unnest($1::int[]) WITH ORDINALITY AS r(id, position)
CROSS JOIN LATERAL (
    SELECT b.reference, b.state, l.slug, b.start_at, b.id
    FROM booking b JOIN asset a ON a.id = b.asset_id JOIN location l ON l.id = a.location_id
    WHERE b.renter_id = r.id
    ORDER BY b.start_at DESC, b.id DESC
    LIMIT $2
) latest
ORDER BY r.position, latest.start_at DESC, latest.id DESC
"""

_SQLITE = """
SELECT renter_id, reference, state, slug FROM (
    SELECT b.renter_id, b.reference, b.state, l.slug,
           ROW_NUMBER() OVER (PARTITION BY b.renter_id ORDER BY b.start_at DESC, b.id DESC) AS n
    FROM booking b JOIN asset a ON a.id = b.asset_id JOIN location l ON l.id = a.location_id
    WHERE b.renter_id IN (SELECT value FROM json_each(?))
) latest
WHERE n <= ?
ORDER BY renter_id, n
"""


async def latest_bookings(
    renter_ids: Sequence[int], per_renter: int
) -> dict[int, list[tuple[str, str, str]]]:
    """Per renter, up to ``per_renter`` of their latest bookings as (reference, state,
    location slug), newest first."""
    if not renter_ids:
        return {}
    client = db.connection()
    if db.dialect() == "postgres":
        rows = await client.execute_query_dict(_POSTGRES, [list(renter_ids), per_renter])
    else:
        ids = "[" + ",".join(str(int(i)) for i in renter_ids) + "]"
        rows = await client.execute_query_dict(_SQLITE, [ids, per_renter])
    latest: dict[int, list[tuple[str, str, str]]] = {}
    for row in rows:
        latest.setdefault(int(row["renter_id"]), []).append(
            (str(row["reference"]), str(row["state"]), str(row["slug"]))
        )
    return latest
