"""The in-process loop of `hub run`: one APScheduler job that fetches the sources that are due.

Scheduling is data: a source is due when its interval (`every:` in the config, else
DEFAULT_EVERY) has passed since its last fetch. There is never one scheduler job per source.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from hub.config import MerchantConfig, Settings, SourceConfig
from hub.pipeline import Pipeline
from hub.store import SourceStatus, utcnow

log = logging.getLogger("hub.schedule")
DEFAULT_EVERY = timedelta(minutes=30)
TICK = timedelta(minutes=1)


def due_sources(settings: Settings, statuses: list[SourceStatus], now: datetime
                ) -> list[tuple[MerchantConfig, SourceConfig]]:
    """The configured sources whose interval has passed (never-fetched ones first)."""
    last = {s.id: s.last_fetch_at for s in statuses}
    due = []
    for merchant, source in settings.sources():
        fetched = last.get(source.id)  # type: ignore[arg-type]
        if fetched is None or fetched + (source.every or DEFAULT_EVERY) <= now:
            due.append((merchant, source))
    return sorted(due, key=lambda ms: last.get(ms[1].id) is not None)  # type: ignore[arg-type]


class FetchLoop:
    def __init__(self, settings: Settings, pipeline: Pipeline, tick: timedelta = TICK) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.scheduler = AsyncIOScheduler(timezone=settings.platform.timezone)
        # max_instances=1 + coalesce: a slow tick is never run twice at once or caught up N times.
        self.scheduler.add_job(self.tick, "interval", seconds=tick.total_seconds(), next_run_time=datetime.now(),
                               id="fetch-tick", max_instances=1, coalesce=True,
                               misfire_grace_time=int(tick.total_seconds()))

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)

    async def tick(self) -> None:
        statuses = self.pipeline.store.source_statuses()
        due = due_sources(self.settings, statuses, utcnow())
        if not due:
            return
        reports = await self.pipeline.run(due)
        failed = [r for r in reports if r.status == "failed"]
        log.info("fetched %d sources: %d new items, %d changed, %d failed", len(reports),
                 sum(r.new for r in reports), sum(r.changed for r in reports), len(failed))
