"""`hub run`'s background half: APScheduler 3 with eight static jobs over state in the store.

    fetch        every schedule.tick          claim due sources, fetch, plan (schedules/fetching.py)
    publish      every schedule.publish_tick  run due push channels (schedules/publishing.py)
    websub       every 10 minutes             renew WebSub leases (schedules/websub.py)
    maintenance  every hour                   retention, SQLite housekeeping
    media        every 30 seconds             download new records' images (hub/media.py), and re-read
                                              once the entries whose image URL expired (hub/refresh.py)
    media-gc     every day                    remove images no record uses any more
    tokens       every day                    ask how granted tokens stand (hub/tokens.py): expiry, scopes
    newsletter   every schedule.publish_tick  make due newsletter editions, send what they have left
                                              (hub/newsletter/job.py)

The jobs call the task functions of schedules/tasks.py, the same ones a procrastinate worker
runs in the scaled tier (`runtime: procrastinate`, where `hub run` starts none of these jobs).
Never one job per source: a source's schedule is its `next_fetch_at` row. The jobs live in
APScheduler's memory store and are added again at each start; what must survive a restart
or be shared with another `hub run` is in the database, under leases.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from functools import partial

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from hub.config import Settings
from hub.http import Fetcher
from hub.pipeline import Pipeline
from hub.store import Store
from hub.towns import DEFAULT_TOWN
from schedules import tasks
from schedules.clock import Clock, SystemClock

log = logging.getLogger("hub.schedule")
WEBSUB_EVERY = timedelta(minutes=10)
MAINTENANCE_EVERY = timedelta(hours=1)
MEDIA_EVERY = timedelta(seconds=30)
MEDIA_GC_EVERY = timedelta(days=1)
TOKENS_EVERY = timedelta(days=1)


def process_owner() -> str:
    """This process's name on the leases it takes: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Scheduler:
    def __init__(self, settings: Settings, store: Store, pipeline: Pipeline, fetcher: Fetcher, *,
                 clock: Clock | None = None, owner: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock or SystemClock()
        self.owner = owner or process_owner()
        # The same task functions and context as a procrastinate worker's (schedules/tasks.py)
        self.ctx = tasks.TownContext.build(DEFAULT_TOWN, settings, store, pipeline, fetcher, clock=self.clock,
                                           owner=self.owner)
        self.ctx.fetching.fetch_task = partial(tasks.fetch_sources, self.ctx)
        self.plans = self.ctx.plans
        self.subscriber = self.ctx.subscriber
        self.fetching = self.ctx.fetching
        self.publishing = self.ctx.publishing
        self.media = self.ctx.media  # issue 4
        self.newsletters = self.ctx.newsletters  # issue 15
        self.fetcher = fetcher
        self._aps = AsyncIOScheduler(timezone=timezone.utc)

    def start(self) -> None:
        """Schedule new sources and channels, then start the jobs (inside the running loop)."""
        tasks.prepare(self.ctx)
        cfg = self.settings.schedule
        # The embedded dispatcher claims in this process and runs tasks.fetch_sources on each
        # batch, as a procrastinate worker does, without a queue between.
        self._add("fetch", self.fetching.tick, cfg.tick)
        self._add("publish", partial(tasks.publish, self.ctx), cfg.publish_tick)
        self._add("websub", partial(tasks.websub, self.ctx), WEBSUB_EVERY)
        self._add("maintenance", partial(tasks.maintenance, self.ctx), MAINTENANCE_EVERY)
        # issue 4: new records' images are downloaded soon after ingest; unused ones collected daily;
        # issue 12: Facebook's and Instagram's image URLs that expired before the download are re-read once
        self._add("media", partial(tasks.media, self.ctx), MEDIA_EVERY)
        self._add("media-gc", partial(tasks.media_gc, self.ctx), MEDIA_GC_EVERY)
        # issue 12: a Facebook token running out, or lacking a permission, warns in time
        self._add("tokens", partial(tasks.tokens, self.ctx), TOKENS_EVERY)
        # issue 15: a newsletter's edition per cron slot, sent once to every subscriber (its own ledger)
        self._add("newsletter", partial(tasks.newsletter, self.ctx), cfg.publish_tick)
        # The fetch tick runs every second; APScheduler's two INFO lines per run would drown the log.
        logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
        self._aps.start()
        log.info("scheduler %s started: %d sources, %d channels", self.owner, len(self.settings.sources()),
                 len(self.settings.channel_list()))

    async def stop(self) -> None:
        """Take no new work; let in-flight work finish within `shutdown_grace`, abandon the rest."""
        self._aps.shutdown(wait=False)
        grace = self.settings.schedule.shutdown_grace.total_seconds()
        await self.fetching.close(grace)
        await self.publishing.close(grace)
        await self.newsletters.close(grace)
        log.info("scheduler %s stopped", self.owner)

    def _add(self, name: str, job: Callable[[], Awaitable[object]], every: timedelta) -> None:
        # max_instances=1 + coalesce: a slow run is never doubled nor caught up N times;
        # a grace as long as the interval delays a late run instead of dropping it.
        seconds = every.total_seconds()
        self._aps.add_job(_ends_quietly_when_cancelled(name, job), "interval", seconds=seconds, id=name, next_run_time=datetime.now(timezone.utc),
                          max_instances=1, coalesce=True, misfire_grace_time=max(1, int(seconds)))


def _ends_quietly_when_cancelled(name: str, job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
    """A run under way when `hub run` stops is cancelled as the loop ends: that is how
    shutdown works, not an error worth APScheduler's traceback. Its work is safe (leases
    pass, ledger rows stay claimed until they do)."""
    async def run() -> object:
        try:
            return await job()
        except asyncio.CancelledError:
            log.info("job %s was cancelled by the shutdown; its work is picked up again", name)
            return None
    return run
