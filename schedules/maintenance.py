"""The maintenance job: forget long-deleted items and keep the database in shape.

Safe to run in several processes at once: every step is idempotent.
"""

from __future__ import annotations

import asyncio
import logging

from hub.config import Settings
from hub.newsletter.upkeep import forget_expired
from hub.store.scheduling import ScheduleStore
from schedules.clock import Clock

log = logging.getLogger("hub.maintenance")


async def maintain(settings: Settings, plans: ScheduleStore, clock: Clock) -> None:
    """Delete items tombstoned more than `schedule.retention` ago and expired newsletter data,
    then SQLite housekeeping."""
    forgotten = await asyncio.to_thread(plans.forget_deleted, clock.now() - settings.schedule.retention)
    if forgotten:
        log.info("forgot %d items deleted at their source more than %s ago", forgotten,
                 settings.schedule.retention)
    # issue 15: unconfirmed newsletter sign-ups after 7 days, who got an old edition after `retention`
    await asyncio.to_thread(forget_expired, plans.store, clock.now(), settings.schedule.retention)
    await asyncio.to_thread(plans.housekeeping)
