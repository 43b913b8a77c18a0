"""The task functions of both runtimes: what one unit of background work does for one town.

The embedded tier (`hub run`, schedules/scheduler.py) calls them from APScheduler jobs; the
scaled tier (`runtime: procrastinate`, schedules/procrastinate_app.py) calls them from
procrastinate tasks whose arguments are ids only (the town, source ids, a lease owner) and
which find the town's context in a per-process cache (`TownContexts`).

Every function here is idempotent, so a job that runs twice (a killed worker's job retried)
does no harm: items are unique per (source, external id), each (channel, item) has one
ledger row claimed before it is sent, each (edition, subscriber) one mail row; and a source
is fetched only under its lease (see `fetch_sources`).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Protocol

from hub.config import MerchantConfig, Settings, SourceConfig
from hub.http import Fetcher
from hub.media import MediaStore, collect_media_garbage, ingest_media
from hub.moderation import rules_from
from hub.newsletter.job import NewsletterJob
from hub.pipeline import Pipeline, SourceReport, source_specs
from hub.refresh import refresh_expired_images
from hub.store import TOWN_KEEPS, Store
from hub.store.scheduling import ScheduleStore
from hub.tokens import daily_check
from schedules.clock import Clock, SystemClock
from schedules.fetching import FetchDispatcher, leases_kept
from schedules.maintenance import maintain
from schedules.publishing import ChannelPublisher, prepare_channels, push_channels
from schedules.websub import Subscriber

log = logging.getLogger("hub.tasks")


@dataclass
class TownContext:
    """Everything a task needs for one town, built once per process and reused by its tasks."""

    town: str
    settings: Settings
    store: Store
    fetcher: Fetcher
    pipeline: Pipeline
    clock: Clock
    owner: str  # this process's name on channel and newsletter leases
    plans: ScheduleStore
    subscriber: Subscriber
    fetching: FetchDispatcher
    publishing: ChannelPublisher
    media: MediaStore
    newsletters: NewsletterJob

    @classmethod
    def build(cls, town: str, settings: Settings, store: Store, pipeline: Pipeline, fetcher: Fetcher, *,
              clock: Clock, owner: str) -> TownContext:
        plans = ScheduleStore(store)
        subscriber = Subscriber(settings, plans, fetcher, clock=clock)
        media = MediaStore(settings.data_dir, settings.base_dir, store.records.media, fetcher)  # issue 4
        return cls(
            town=town, settings=settings, store=store, fetcher=fetcher, pipeline=pipeline, clock=clock, owner=owner,
            plans=plans, subscriber=subscriber,
            fetching=FetchDispatcher(settings, store, pipeline, clock=clock, owner=owner,
                                     after_fetch=subscriber.after_fetch),
            publishing=ChannelPublisher(settings, store, fetcher, clock=clock, owner=owner),
            media=media,
            newsletters=NewsletterJob(settings, store, owner=owner, now=clock.now, pictures=media.pictures))

    def source(self, source_id: str) -> tuple[MerchantConfig, SourceConfig] | None:
        return self.fetching._sources.get(source_id)  # noqa: SLF001 — the dispatcher's map of the config


# --- the task functions ----------------------------------------------------------------------

def prepare(ctx: TownContext) -> None:
    """Due times for new sources, a schedule row per channel and newsletter (idempotent)."""
    ctx.fetching.prepare()
    prepare_channels(ctx.settings, ctx.store, ctx.clock.now())
    ctx.newsletters.prepare()


async def fetch_sources(ctx: TownContext, source_ids: Sequence[str], owner: str) -> list[SourceReport]:
    """Fetch, parse and store the sources a dispatcher claimed under the lease name `owner`,
    then plan each one's next fetch (which releases its lease).

    The job renews the leases first and fetches only the sources still held by `owner`: a
    retried job (its worker was killed) carries the same `owner`, so it takes its own
    sources over at once instead of waiting for their leases to pass; a source whose lease
    passed and went to a later dispatch is left to that one, so no source is fetched twice
    at the same time. The leases are renewed while the fetch runs (`leases_kept`)."""
    until = ctx.clock.now() + ctx.settings.schedule.lease
    held = await asyncio.to_thread(ctx.plans.renew_leases, list(source_ids), owner, until)
    chosen = [pair for sid in held if (pair := ctx.source(sid)) is not None]
    gone = set(held) - {s.id for _, s in chosen}
    if gone:  # claimed, then removed from the config (a reload): give them back
        await asyncio.to_thread(ctx.plans.release_sources, gone, owner)
    if not chosen:
        return []
    async with leases_kept(ctx.plans, [s.id for _, s in chosen], owner, ctx.clock, ctx.settings.schedule.lease):
        reports = await ctx.pipeline.run(chosen)
    await _as_owner(ctx.fetching, owner).plan_next(reports)
    await ctx.subscriber.after_fetch(reports)
    return reports


async def publish(ctx: TownContext) -> None:
    """Run the town's due push channels (ledger rows claimed before each send)."""
    await ctx.publishing.tick()


async def publish_channel(ctx: TownContext, channel_id: str) -> None:
    """Run one push channel now: new ledger rows wait for it (the scaled tier queues this job
    with the rows). A channel with a `schedule:` keeps its cron times and one no longer in
    the config has nothing to do; pace, quiet hours and retries hold as in the tick."""
    channel = next((c for c in push_channels(ctx.settings) if c.id == channel_id), None)
    if channel is None or channel.schedule:
        return
    for report in await ctx.publishing.publish([channel_id]):
        if report.status == "busy":  # another run holds the channel; rows it missed go at the next tick
            log.info("channel %s of town %s is busy; the publish tick takes what is left", channel_id, ctx.town)


async def newsletter(ctx: TownContext) -> None:
    """Make due newsletter editions and send what they have left (a per-recipient ledger)."""
    await ctx.newsletters.tick()


async def media(ctx: TownContext) -> None:
    """Download new records' images; re-read once the entries whose image URL expired (issue 12)."""
    await ingest_media(ctx.media)
    await refresh_expired_images(ctx.settings, ctx.store, ctx.media, ctx.fetcher)


async def media_gc(ctx: TownContext) -> None:
    await collect_media_garbage(ctx.media)


async def maintenance(ctx: TownContext) -> None:
    await maintain(ctx.settings, ctx.plans, ctx.clock)


async def tokens(ctx: TownContext) -> None:
    await daily_check(ctx.settings, ctx.store, ctx.fetcher)


async def websub(ctx: TownContext) -> None:
    await ctx.subscriber.renew()


def _as_owner(dispatcher: FetchDispatcher, owner: str) -> FetchDispatcher:
    """The dispatcher's planning under another lease name: `plan_next` records the plans
    (and releases the leases) as `dispatcher.owner`, and jobs of one process run under
    different names at once. A shallow copy shares the config maps; nothing is rebuilt."""
    twin = copy.copy(dispatcher)
    twin.owner = owner
    return twin


# --- the per-process cache of towns (workers) --------------------------------------------------

class TownLike(Protocol):
    """What the cache needs of a town (hub.towns.Town has it)."""

    id: str
    settings: Settings

    def open_store(self, **kwargs) -> Store: ...


class TownContexts:
    """Town id -> its context, built on first use: a worker serves every town of the
    deployment, and each town's store, fetcher and pipeline are made once per process.
    Parsing happens in the worker process itself (parse_workers=0): run more workers
    rather than a process pool inside each."""

    def __init__(self, towns: dict[str, TownLike], *, owner: str, clock: Clock | None = None,
                 connections: int = 0) -> None:
        """`connections`: the idle database connections this process keeps over all its
        towns, shared evenly (at least hub.store.TOWN_KEEPS each): about as many as its
        jobs use at once, so a busy town does not open a connection for every query."""
        self.towns = dict(towns)
        self.connections = connections
        self.owner = owner
        self.clock = clock or SystemClock()
        self._contexts: dict[str, TownContext] = {}
        self._building = asyncio.Lock()
        self._stack = AsyncExitStack()
        self._on_open: list[Callable[[str, Store], None]] = []

    def on_open(self, hook: Callable[[str, Store], None]) -> None:
        """Call `hook(town, store)` for every town store this cache opens (and has opened):
        how the runtime attaches its ledger outbox to each town's store."""
        self._on_open.append(hook)
        for town, ctx in self._contexts.items():
            hook(town, ctx.store)

    def follow(self, towns: dict[str, TownLike]) -> list[str]:
        """Serve this set of towns from now on (`hub towns reload`): a town added is built on
        first use, one changed is built again from its new config, one removed gets no more
        jobs. Returns the ids that changed. A dropped context's store stays open until the
        process ends: a job may still be using it."""
        changed = sorted({t for t in set(self.towns) | set(towns)
                          if t not in towns or t not in self.towns or _digest(towns[t]) != _digest(self.towns[t])})
        for town in changed:
            self._contexts.pop(town, None)
        self.towns = dict(towns)
        return changed

    async def get(self, town: str) -> TownContext:
        if (ctx := self._contexts.get(town)) is not None:
            return ctx
        async with self._building:
            if town not in self._contexts:
                self._contexts[town] = await self._build(town)
            return self._contexts[town]

    async def _build(self, town_id: str) -> TownContext:
        town = self.towns.get(town_id)
        if town is None:
            raise LookupError(f"town {town_id!r} is not in this deployment (known: {', '.join(sorted(self.towns))}); "
                              "a job for a removed town has nothing to do")
        settings = town.settings
        keep = max(TOWN_KEEPS, self.connections // max(1, len(self.towns)))
        store = await asyncio.to_thread(open_town_store, town, keep)
        self._stack.callback(store.close)
        for hook in self._on_open:
            hook(town_id, store)
        fetcher = await self._stack.enter_async_context(Fetcher(settings.fetcher, base_dir=settings.base_dir))
        # The fetch jobs of a town running at once store in shared batches: two at a time on
        # PostgreSQL (one parses while the other waits for the database), one on SQLite.
        pipeline = Pipeline(settings, store, fetcher, parse_workers=0,
                            shared_batches=1 if store.dialect == "sqlite" else 2)
        self._stack.push_async_callback(pipeline.aclose)
        ctx = TownContext.build(town_id, settings, store, pipeline, fetcher, clock=self.clock, owner=self.owner)
        await asyncio.to_thread(prepare, ctx)
        return ctx

    async def close(self) -> None:
        self._contexts.clear()
        await self._stack.aclose()


def _digest(town: TownLike) -> object:
    return getattr(town, "digest", None) or id(town.settings)


def open_town_store(town: TownLike, keep: int = TOWN_KEEPS) -> Store:
    """The town's store with its config's sources and moderation rules in it (as `hub`'s
    commands open a store: see hub/cli/common.py's open_store); `keep`: idle connections
    it keeps."""
    store = town.open_store(keep=keep)
    store.sync_sources(source_specs(town.settings))
    store.records.configure(rules_from(town.settings))
    return store
