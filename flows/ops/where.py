"""``/where <item>``: where an item's tracker last saw it, for owners and managers only.

The position stored last (from Traccar's events), or, when none is stored, the one Traccar's
REST API gives; with its age and a map link. No other role and no renter ever sees a position.
"""

from __future__ import annotations

from datetime import datetime

from babel.dates import format_timedelta

from flows.effects import Audit, Outcome
from flows.gps import GpsFix, GpsSource, GpsUnavailable
from flows.handoff import OPS_LANGUAGE
from flows.i18n import local_time
from flows.ops.answers import Context, OpsAnswer, Refused
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
        try:
            fix = await self._latest_fix(asset)
        except GpsUnavailable as err:
            return OpsAnswer([self.t("ops.where_unavailable", asset=asset.code, why=str(err))])
        if fix is None:
            return OpsAnswer([self.t("ops.where_unknown", asset=asset.code)])
        now = self.clock.now()
        home = {True: "ops.where_home", False: "ops.where_away", None: "ops.unknown"}
        # Who looked where an item is stays on record (a position is personal data while it
        # is rented).
        looked = Audit(actor_of(staff), "gps.where", f"asset:{asset.code}")
        return OpsAnswer(
            outcome=Outcome(audits=[looked]),
            lines=[
                self.t(
                    "ops.where_line",
                    asset=f"{asset.code} {asset.label}",
                    at=local_time(fix.fixed_at, asset.location.timezone, OPS_LANGUAGE),
                    age=_age(now, fix.fixed_at),
                    home=self.t(home[asset.gps_home]),
                    link=map_link(fix.latitude, fix.longitude),
                )
            ],
        )

    async def _latest_fix(self, asset: Asset) -> GpsFix | None:
        """The stored position, or Traccar's latest when none is stored (a read, no state)."""
        stored = await last_position(asset.id)
        if stored is not None:
            return GpsFix(
                stored.position_id or 0, stored.latitude, stored.longitude, stored.fixed_at
            )
        assert self.gps is not None and asset.traccar_device_id is not None
        return await self.gps.latest_position(asset.traccar_device_id)


def _age(now: datetime, then: datetime) -> str:
    return format_timedelta(max(now - then, now - now), locale=OPS_LANGUAGE)
