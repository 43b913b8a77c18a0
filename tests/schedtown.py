"""A small town for scheduler tests: a config of N feeds on one loopback server, and the
real store, fetcher, pipeline, dispatcher and publisher built from it."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import AsyncIterator

from hub import config
from hub.config import Settings
from hub.http import Fetcher
from hub.pipeline import Pipeline, source_specs
from hub.store import Store
from hub.store.scheduling import ScheduleStore
from schedules.fetching import FetchDispatcher
from schedules.publishing import ChannelPublisher, prepare_channels
from schedules.websub import Subscriber


def feed(name: str, posts: int = 2, every: timedelta = timedelta(days=3), hub: str | None = None,
         now: datetime | None = None) -> bytes:
    """An RSS feed of `posts` entries, one per `every` back from now; `hub` adds WebSub links."""
    now = now or datetime.now(timezone.utc)
    links = (f'<atom:link rel="hub" href="{hub}"/><atom:link rel="self" href="https://{name}.example/feed"/>'
             if hub else "")
    items = "".join(f"<item><title>{name} {n}</title><guid>{name}-{n}</guid>"
                    f"<pubDate>{format_datetime(now - every * n)}</pubDate>"
                    f"<description>Beitrag {n} von {name}</description></item>" for n in range(posts))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">'
            f"<channel><title>{name}</title><link>https://{name}.example/</link>{links}{items}</channel></rss>"
            ).encode()


def write_config(path: Path, urls: dict[str, str], *, store_url: str, schedule: str = "", fetcher: str = "",
                 channels: str = "", platform: str = "", total_timeout: float = 10) -> Path:
    lines = [f"platform: {{name: Teststadt{platform}}}", f"store: {{url: '{store_url}'}}",
             f"fetcher: {{allow_private_networks: true, retries: 0, total_timeout: {total_timeout:g}{fetcher}}}",
             f"schedule: {{first_fetches_per_second: 1000{schedule}}}", "merchants:"]
    for sid, url in urls.items():
        lines += [f"  - id: {sid}", f"    name: {sid}", "    sources:",
                  f"      - {{connector: rss, id: {sid}, url: '{url}'}}"]
    if channels:
        lines += ["channels:", channels]
    path.write_text("\n".join(lines) + "\n")
    return path


class Town:
    """Everything one `hub run` process would hold, without the web server and APScheduler."""

    def __init__(self, settings: Settings, store: Store, fetcher: Fetcher, clock, owner: str) -> None:
        self.settings, self.store, self.clock = settings, store, clock
        self.plans = ScheduleStore(store)
        self.pipeline = Pipeline(settings, store, fetcher, parse_workers=0)
        self.subscriber = Subscriber(settings, self.plans, fetcher, clock=clock)
        self.dispatcher = FetchDispatcher(settings, store, self.pipeline, clock=clock, owner=owner,
                                          after_fetch=self.subscriber.after_fetch)
        self.publisher = ChannelPublisher(settings, store, fetcher, clock=clock, owner=owner)

    async def fetch_due(self) -> list[str]:
        """One tick, waiting for its fetches."""
        started = await self.dispatcher.tick()
        await self.dispatcher.drain()
        return started


@asynccontextmanager
async def town(path: Path, clock, owner: str = "test") -> AsyncIterator[Town]:
    settings = config.load(path, env={})
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    prepare_channels(settings, store, clock.now())
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        t = Town(settings, store, fetcher, clock, owner)
        t.dispatcher.prepare()
        try:
            yield t
        finally:
            store.close()
