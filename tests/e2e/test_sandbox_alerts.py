"""An alert resolved on the sandbox page is resolved with its audit event, or not at all."""

from __future__ import annotations

from pathlib import Path

from storage.db import connection
from storage.journal import raise_alert
from storage.models import AuditEvent, OpsAlert
from tests.e2e.sandbox_apps import NOW, sandbox_apps


async def test_an_alert_whose_audit_could_not_be_written_stays_open_until_resolved_again(
    database: str, tmp_path: Path
) -> None:
    async with sandbox_apps(database, tmp_path) as make:
        client, _runtime = await make()
        alert = await raise_alert(
            None,
            now=NOW,
            kind="lock_offline",
            group_key="lock-offline:harbor-t1",
            message_key="ops.lock_offline",
        )
        path = f"/sandbox/api/alerts/{alert.id}/resolve"
        await connection().execute_script("ALTER TABLE audit_event RENAME TO audit_event_away")
        try:
            assert (await client.post(path)).status == 500
        finally:
            await connection().execute_script("ALTER TABLE audit_event_away RENAME TO audit_event")
        await alert.refresh_from_db()
        assert alert.resolved_at is None, "not resolved without its audit"
        response = await client.post(path)
        assert response.status == 200, await response.text()
        await alert.refresh_from_db()
        assert alert.resolved_by == "sandbox operator"
        [audit] = await AuditEvent.filter(action="alert.resolved")
        assert audit.subject == f"alert:{alert.id}" and audit.actor == "sandbox operator"
        assert await OpsAlert.filter(open_key__isnull=False).count() == 0
