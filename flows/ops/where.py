"""``/where <item>``: where an item's tracker last saw it, for owners and managers only.

The position stored last (from Traccar's events), or, when none is stored, the one Traccar's
REST API gives; with its age and a map link. No other role and no renter ever sees a position.

Traccar is an outside call, so it is never made inside the command's unit of work: the command
answers with the position to ask for (``OpsAnswer.position``), and the ops bot, the runner, asks
Traccar once the command has committed (``where_now``) and records who looked in a unit of work
of its own.
"""

from __future__ import annotations

from datetime import datetime

from babel.dates import format_timedelta

from flows.effects import Audit, Outcome, Write
from flows.gps import GpsFix, GpsSource, GpsUnavailable
from flows.handoff import OPS_LANGUAGE
from flows.i18n import local_time
from flows.ops.answers import Context, OpsAnswer, PositionAsked, Refused
from flows.ops.base import DeskBase, actor_of
from storage.columns import fits_column
from storage.gps import last_position
from storage.models import Asset, StaffMember
from storage.uow import UnitOfWork


def map_link(latitude: float, longitude: float) -> str:
    lat, lon = f"{latitude:.5f}", f"{longitude:.5f}"
    return f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=17/{lat}/{lon}"


class WhereCommands(DeskBase):
    gps: GpsSource | None

    async def _where(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        code = args[0].strip().upper()
        asset = None
        if fits_column(Asset, "code", code):
            asset = await Asset.get_or_none(code=code).prefetch_related("location")
        if asset is None:
            raise Refused("ops.not_found", what=args[0][:20])
        if not self._in_scope(staff, asset.location.slug):
            raise Refused("ops.out_of_scope", what=asset.code)
        if self.gps is None:
            return OpsAnswer([self.t("ops.where_gps_off")])
        if asset.traccar_device_id is None:
            return OpsAnswer([self.t("ops.where_no_tracker", asset=asset.code)])
        stored = await last_position(asset.id)
        if stored is None:
            # Traccar is asked by the runner, after this unit of work.
            return OpsAnswer(position=PositionAsked(asset.code, actor_of(staff)))
        fix = GpsFix(stored.position_id or 0, stored.latitude, stored.longitude, stored.fixed_at)
        line, looked = self._position_line(asset, fix, actor_of(staff))
        return OpsAnswer([line], outcome=Outcome(audits=[looked]))

    async def where_now(self, asked: PositionAsked) -> tuple[list[str], Write | None]:
        """Traccar's latest position of the item, read outside any transaction (the caller is a
        runner): what to answer, and the write recording who looked, which the caller commits
        (none when no position was shown)."""
        asset = await Asset.get_or_none(code=asked.asset).prefetch_related("location")
        if asset is None or asset.traccar_device_id is None or self.gps is None:
            return [self.t("ops.not_found", what=asked.asset)], None
        try:
            fix = await self.gps.latest_position(asset.traccar_device_id)
        except GpsUnavailable as err:
            return [self.t("ops.where_unavailable", asset=asset.code, why=str(err))], None
        if fix is None:
            return [self.t("ops.where_unknown", asset=asset.code)], None
        line, looked = self._position_line(asset, fix, asked.actor)

        async def record(conn: UnitOfWork) -> Outcome:
            return Outcome(audits=[looked])

        return [line], record

    def _position_line(self, asset: Asset, fix: GpsFix, actor: str) -> tuple[str, Audit]:
        """The answer's line, and its audit: who looked where an item is stays on record (a
        position is personal data while it is rented)."""
        home = {True: "ops.where_home", False: "ops.where_away", None: "ops.unknown"}
        line = self.t(
            "ops.where_line",
            asset=f"{asset.code} {asset.label}",
            at=local_time(fix.fixed_at, asset.location.timezone, OPS_LANGUAGE),
            age=_age(self.clock.now(), fix.fixed_at),
            home=self.t(home[asset.gps_home]),
            link=map_link(fix.latitude, fix.longitude),
        )
        return line, Audit(actor, "gps.where", f"asset:{asset.code}")


def _age(now: datetime, then: datetime) -> str:
    return format_timedelta(max(now - then, now - now), locale=OPS_LANGUAGE)
