"""The publish tick and `hub publish`: push channels get the items they have not had yet.

A channel with `schedule:` runs at its cron times (platform time zone); one without runs on
every publish tick that finds something new. A run holds the channel's lease, so two
processes never run one channel at once, and claims a ledger row per item before sending,
so an item is never sent twice, even when a lease ran out under a slow run. Should a
process die between sending and recording, the claimed items are sent again once the lease
has passed: at-least-once for that window, once otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Sequence

from hub import plugins
from hub.config import ChannelConfig, Settings
from hub.errors import DeliveryError
from hub.http import Fetcher
from hub.store import Store, StoredItem
from hub.store.scheduling import ChannelFilter, ScheduleStore
from renderers.base import ChannelRef, Delivery, item_key
from schedules.clock import Clock, SystemClock
from hub.cron import next_run

log = logging.getLogger("hub.publish")
PUBLISH_BATCH = 1000  # most items one run sends; the rest go out on the next run

Status = Literal["published", "nothing new", "failed", "busy", "dry run"]


@dataclass
class PublishReport:
    """One line of `hub publish`'s summary."""

    channel_id: str
    status: Status
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    error: str | None = None
    titles: list[str] = field(default_factory=list)  # what a dry run would send


def push_channels(settings: Settings) -> list[ChannelConfig]:
    """Channels whose renderer publishes (pull channels are served by the web app)."""
    return [c for c in settings.channel_list() if hasattr(plugins.renderer(c.renderer), "publish")]


def prepare_channels(settings: Settings, store: Store, now: datetime | None = None) -> None:
    """A ledger row per push channel, created before any item can arrive for it: a channel
    gets the items first seen after it was added."""
    now = now or SystemClock().now()
    channels = push_channels(settings)
    ScheduleStore(store).sync_channels({c.id: c.schedule for c in channels},
                                       {c.id: _next_run(settings, c, now) for c in channels}, now)


class ChannelPublisher:
    def __init__(self, settings: Settings, store: Store, fetcher: Fetcher, *, clock: Clock, owner: str) -> None:
        self.settings = settings
        self.store = store
        self.plans = ScheduleStore(store)
        self.fetcher = fetcher
        self.clock = clock
        self.owner = owner
        self._running = asyncio.Lock()  # held while the tick runs; shutdown waits for it

    async def tick(self) -> list[PublishReport]:
        """Run every push channel that is due."""
        async with self._running:
            reports = [await self._run(c, scheduled=True) for c in push_channels(self.settings)]
        return [r for r in reports if r is not None]

    async def publish(self, channel_ids: Sequence[str] | None = None, *, dry_run: bool = False) -> list[PublishReport]:
        """Run channels now, whatever their schedule (`hub publish`); a dry run sends nothing."""
        chosen = [c for c in push_channels(self.settings) if not channel_ids or c.id in channel_ids]
        if dry_run:
            return [await self._dry_run(c) for c in chosen]
        return [r for r in [await self._run(c, scheduled=False) for c in chosen] if r is not None]

    async def close(self, grace: float) -> None:
        """Let a running publication finish, for up to `grace` seconds."""
        try:
            await asyncio.wait_for(self._running.acquire(), grace)
        except TimeoutError:
            log.warning("shutdown: a publication is still running; its items are retried after its lease")

    async def _run(self, channel: ChannelConfig, *, scheduled: bool) -> PublishReport | None:
        now = self.clock.now()
        until = now + self.settings.schedule.lease
        if not await asyncio.to_thread(self.plans.claim_channel, channel.id, now, self.owner, until,
                                       due_only=scheduled):
            return None if scheduled else PublishReport(channel.id, "busy")
        try:
            report = await self._deliver(channel, now)
        except Exception as exc:  # e.g. the database went away: claimed items return after the lease
            log.exception("publishing channel %s failed", channel.id)
            report = PublishReport(channel.id, "failed", error=str(exc))
        next_at = _next_run(self.settings, channel, now) if scheduled else None
        await asyncio.to_thread(self.plans.finish_channel, channel.id, self.owner, self.clock.now(),
                                report.status, report.error, next_at)
        if report.sent or report.failed:
            log.info("channel %s: %d sent, %d skipped, %d failed", channel.id, report.sent, report.skipped,
                     report.failed)
        return report

    async def _deliver(self, channel: ChannelConfig, now: datetime) -> PublishReport:
        items = await asyncio.to_thread(self.plans.pending_items, channel.id, self._filter(channel), now,
                                        PUBLISH_BATCH)
        claimed = set(await asyncio.to_thread(self.plans.claim_deliveries, channel.id, [s.id for s in items], now,
                                              now + self.settings.schedule.lease))
        items = [s for s in items if s.id in claimed]
        if not items:
            return PublishReport(channel.id, "nothing new")
        results = await self._send(channel, items)
        await asyncio.to_thread(self.plans.record_deliveries, channel.id, results, self.clock.now())
        counts = Counter(status for status, _ in results.values())
        error = next((detail for status, detail in results.values() if status == "failed"), None)
        return PublishReport(channel.id, "failed" if counts["failed"] else "published", counts["sent"],
                             counts["skipped"], counts["failed"], error)

    async def _send(self, channel: ChannelConfig, items: list[StoredItem]) -> dict[int, tuple[str, str]]:
        """Call the publisher; every item gets a (status, detail), whatever it does."""
        publisher = plugins.renderer(channel.renderer)()
        try:
            deliveries: list[Delivery] = await publisher.publish(channel.options, self._ref(channel),
                                                                 [s.item for s in items], self.fetcher)
        except DeliveryError as exc:
            return {s.id: ("failed", str(exc)) for s in items}
        except Exception as exc:  # a publisher bug must not leave the claimed items in limbo
            log.exception("publisher %s crashed on channel %s", channel.renderer, channel.id)
            return {s.id: ("failed", f"unexpected error in the {channel.renderer} publisher: {exc!r}") for s in items}
        by_key = {d.item_key: d for d in deliveries}
        missing = ("failed", "the publisher did not report this item")
        return {s.id: (d.status, d.detail) if (d := by_key.get(item_key(s.item))) else missing for s in items}

    async def _dry_run(self, channel: ChannelConfig) -> PublishReport:
        items = await asyncio.to_thread(self.plans.pending_items, channel.id, self._filter(channel),
                                        self.clock.now(), PUBLISH_BATCH)
        return PublishReport(channel.id, "dry run", titles=[s.item.title for s in items])

    def _filter(self, channel: ChannelConfig) -> ChannelFilter:
        rule = channel.include
        merchants = None
        if rule.merchants or rule.categories:
            merchants = tuple(set(rule.merchants) | {m.id for m in self.settings.merchants
                                                     if m.category in rule.categories})
        return ChannelFilter(kinds=tuple(rule.kinds), merchants=merchants, tags=tuple(rule.tags))

    def _ref(self, channel: ChannelConfig) -> ChannelRef:
        platform = self.settings.platform
        return ChannelRef(channel.id, platform.name, platform.base_url, platform.timezone, self.settings.base_dir)


def _next_run(settings: Settings, channel: ChannelConfig, now: datetime) -> datetime:
    """A scheduled channel's next cron time; an unscheduled one is due at every tick."""
    return next_run(channel.schedule, now, settings.platform.timezone) if channel.schedule else now
