"""The fetch tick: claim the sources that are due, fetch them, plan each one's next fetch.

Scheduling is data: every source has `next_fetch_at` in the store, and one tick (run every
`schedule.tick`) looks for due ones. A tick does not wait for its fetches; it hands them to
a task and returns, so a slow source never delays the next tick. At most `schedule.batch`
sources are in flight per process (backpressure), and a host gets no more per tick than it
can serve politely: the rest of a busy host's sources are moved to the following ticks,
which also spreads a crowd of due sources evenly over time.

A source is fetched only by the process holding its lease (see hub/store/scheduling.py).
The holder renews it while the fetch is under way (`leases_kept`), so a fetch slower than a
lease is not taken over and fetched twice. Planning the next fetch releases the lease; a
process that dies just lets it pass.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from hub.config import MerchantConfig, Settings, SourceConfig
from hub.pipeline import Pipeline, SourceReport
from hub.store import Store
from hub.store.scheduling import ScheduleStore, SourceFacts
from schedules import policy
from schedules.clock import Clock
from hub.politeness import host_of

log = logging.getLogger("hub.schedule")

AfterFetch = Callable[[list[SourceReport]], Awaitable[None]]


def bounds_of(settings: Settings) -> policy.Bounds:
    cfg = settings.schedule
    return policy.Bounds(cfg.min_interval, cfg.max_interval, cfg.max_backoff, cfg.jitter, cfg.push_slowdown)


@asynccontextmanager
async def leases_kept(plans: ScheduleStore, ids: Sequence[str], owner: str, clock: Clock, lease: timedelta
                      ) -> AsyncIterator[None]:
    """Renew `owner`'s leases of `ids` whenever a third of a lease has passed, while the body
    runs: a slow host or a loaded machine can make a batch's fetch outlast its lease, and
    another process would then claim the sources and fetch them a second time. A lease that
    passed and went to another process stays with that one (`renew_leases`)."""
    async def renew() -> None:
        while True:
            await asyncio.sleep(lease.total_seconds() / 3)
            try:
                await asyncio.to_thread(plans.renew_leases, list(ids), owner, clock.now() + lease)
            except Exception as exc:  # the database away for a moment: try again a third later
                log.warning("could not renew the leases of %d sources being fetched: %s", len(ids), exc)

    renewing = asyncio.create_task(renew())
    try:
        yield
    finally:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)


class FetchDispatcher:
    def __init__(self, settings: Settings, store: Store, pipeline: Pipeline, *, clock: Clock, owner: str,
                 after_fetch: AfterFetch | None = None, rand: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.plans = ScheduleStore(store)
        self.pipeline = pipeline
        self.clock = clock
        self.owner = owner
        self.bounds = bounds_of(settings)
        self._after_fetch = after_fetch
        self._rand = rand
        self._sources: dict[str, tuple[MerchantConfig, SourceConfig]] = {
            s.id: (m, s) for m, s in settings.sources()}  # type: ignore[misc]
        self._hosts = {sid: host_of(getattr(s.options, "url", None)) for sid, (_, s) in self._sources.items()}
        # What fetches a claimed batch: schedules/tasks.py's fetch_sources when set (the embedded
        # tier runs the same task function as a procrastinate worker), else the steps below.
        self.fetch_task: Callable[[list[str], str], Awaitable[object]] | None = None
        self._in_flight: dict[str, str | None] = {}  # claimed source id -> its host
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    def prepare(self) -> None:
        """Due times for new sources, spread at `first_fetches_per_second` but all within
        `min_interval`; sources no longer configured stop being due."""
        cfg = self.settings.schedule
        step = min(timedelta(seconds=1 / cfg.first_fetches_per_second), cfg.min_interval / max(1, len(self._sources)))
        self.plans.prepare_sources(self._sources, self.clock.now(), step)

    async def tick(self) -> list[str]:
        """Claim what is due and start fetching it; returns the ids started."""
        room = self.settings.schedule.batch - len(self._in_flight)
        if self._closing or room <= 0:
            return []
        now = self.clock.now()
        due = [sid for sid in await asyncio.to_thread(self.plans.due_sources, now, room) if sid in self._sources]
        start, later = self._split_by_host(due, now)
        await asyncio.to_thread(self.plans.postpone, later, now)
        until = now + self.settings.schedule.lease
        claimed = await asyncio.to_thread(self.plans.claim_sources, start, now, self.owner, until)
        if self._closing:  # shutdown began while this tick was claiming
            await asyncio.to_thread(self.plans.release_sources, claimed, self.owner)
            return []
        if claimed:
            self._in_flight.update((sid, self._hosts[sid]) for sid in claimed)
            task = asyncio.create_task(self._fetch(claimed))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return claimed

    async def drain(self) -> None:
        """Wait until every fetch started so far is done (tests, the benchmark, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def close(self, grace: float) -> None:
        """Stop taking work; give in-flight fetches `grace` seconds, then abandon the rest:
        their leases are released, so any process fetches them again soon."""
        self._closing = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace)
        abandoned = list(self._in_flight)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.to_thread(self.plans.release_sources, abandoned, self.owner)
        if abandoned:
            log.info("shutdown: %d unfinished fetches abandoned; they are retried soon", len(abandoned))

    def _split_by_host(self, ids: Sequence[str], now: datetime) -> tuple[list[str], dict[str, datetime]]:
        """Which of `ids` start now, and the later due times of a busy host's overflow:
        a host gets as many per tick as its spacing allows, and the rest follow tick by tick."""
        budget = self._host_budget()
        if budget is None:
            return list(ids), {}
        busy = Counter(host for host in self._in_flight.values() if host)
        tick = self.settings.schedule.tick
        start, later = [], {}
        for sid in ids:
            host = self._hosts[sid]
            if host is None:
                start.append(sid)
                continue
            position, busy[host] = busy[host], busy[host] + 1
            if position < budget:
                start.append(sid)
            else:
                later[sid] = now + tick * (position // budget)
        return start, later

    def _host_budget(self) -> int | None:
        """How many fetches one host can start per tick; None when spacing does not limit."""
        fetcher = self.settings.fetcher
        if fetcher.host_spacing <= 0:
            return None
        per_tick = math.floor(self.settings.schedule.tick.total_seconds() / fetcher.host_spacing)
        return max(fetcher.max_per_host, per_tick)

    async def _fetch(self, ids: list[str]) -> None:
        try:
            if self.fetch_task is not None:  # the task function both runtimes run (schedules/tasks.py)
                await self.fetch_task(ids, self.owner)
                return
            async with leases_kept(self.plans, ids, self.owner, self.clock, self.settings.schedule.lease):
                reports = await self.pipeline.run([self._sources[sid] for sid in ids])
            await self.plan_next(reports)
        except Exception:  # e.g. the database is gone; the leases pass and the work comes back
            log.exception("fetching %d sources failed; they are tried again once their lease passes", len(ids))
            return
        finally:
            for sid in ids:
                self._in_flight.pop(sid, None)
        if self._after_fetch:
            await self._after_fetch(reports)

    async def plan_next(self, reports: list[SourceReport]) -> None:
        """Plan each fetched source's next fetch from its report and release its lease."""
        now = self.clock.now()
        facts = await asyncio.to_thread(self.plans.source_facts, [r.source_id for r in reports], now,
                                        policy.HISTORY)
        plans = {r.source_id: self._plan_one(r, facts[r.source_id], now) for r in reports}
        await asyncio.to_thread(self.plans.record_plans,
                                {sid: (p.at, p.interval, p.reason) for sid, p in plans.items()}, self.owner)
        new, changed = sum(r.new for r in reports), sum(r.changed for r in reports)
        failed = sum(r.status == "failed" for r in reports)
        if new or changed or failed:
            log.info("fetched %d sources: %d new items, %d changed, %d failed", len(reports), new, changed, failed)
        for report in reports:
            if report.status == "failed":
                plan = plans[report.source_id]
                log.warning("source %s is failing (%s); next try %s: %s", report.source_id, report.error,
                            plan.at.isoformat(timespec="seconds"), plan.reason)

    def _plan_one(self, report: SourceReport, known: SourceFacts, now: datetime) -> policy.Plan:
        _, source = self._sources[report.source_id]
        failures = max(1, known.failures) if report.status == "failed" else 0
        facts = policy.Facts(recent_posts=known.recent_posts, span=known.span, every=source.every,
                             failures=failures, not_before=report.fresh_until, push_live=known.push_live,
                             ttl=timedelta(seconds=report.ttl_seconds) if report.ttl_seconds else None)
        return policy.plan(facts, now, self.bounds, self._rand())
