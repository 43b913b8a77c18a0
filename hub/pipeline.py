"""retrieve -> parse -> store, for a set of sources at once.

Each source is fetched and parsed on its own, so one broken source never stops the others.
Writes go through one writer task that batches several sources into one transaction: with
SQLite, the commit (not the insert) is the expensive part of a small write.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable, Literal, Mapping, Sequence

from hub import plugins
from hub.config import MerchantConfig, Settings, SourceConfig
from hub.errors import ConnectorError, HubError, NotModified
from hub.http import Fetcher
from hub.models import FetchState, Parsed, Retrieved, SourceRef
from hub.ingest import parse_payload
from hub.store import FetchOutcome, SourceSpec, Store, UpsertResult, utcnow
from schedules.politeness import HostLimiter

log = logging.getLogger("hub.pipeline")
WRITE_BATCH = 200
# A commit costs an fsync (synchronous=FULL); waiting this long for more outcomes turns
# many small transactions into a few large ones.
WRITE_LINGER = 0.05
# Parsing is CPU work; from this many sources in one run on, it moves to worker processes
# so it uses every core and the event loop keeps fetching meanwhile.
POOL_FROM_SOURCES = 50


@dataclass
class SourceReport:
    """One line of `hub fetch`'s summary."""

    source_id: str
    merchant_id: str
    status: Literal["ok", "not_modified", "failed"]
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    gone: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # What the scheduler plans the next fetch with (schedules/policy.py).
    fresh_until: datetime | None = None  # the server's Retry-After, Cache-Control or Expires
    ttl_seconds: int | None = None  # the feed's <ttl>
    websub: tuple[str, str] | None = None  # (hub, topic) the feed advertises


def source_specs(settings: Settings) -> list[SourceSpec]:
    return [SourceSpec(s.id, m.id, s.connector) for m, s in settings.sources()]  # type: ignore[arg-type]


def select_sources(settings: Settings, source_ids: Sequence[str] | None = None,
                   merchant_ids: Sequence[str] | None = None) -> list[tuple[MerchantConfig, SourceConfig]]:
    chosen = settings.sources()
    if source_ids:
        chosen = [(m, s) for m, s in chosen if s.id in source_ids]
    if merchant_ids:
        chosen = [(m, s) for m, s in chosen if m.id in merchant_ids]
    return chosen


class Pipeline:
    def __init__(self, settings: Settings, store: Store, fetcher: Fetcher,
                 parse_workers: int | None = None) -> None:
        self.settings = settings
        self.store = store
        self.fetcher = fetcher
        self._hosts = HostLimiter(settings.fetcher.max_per_host, settings.fetcher.host_spacing,
                                  settings.fetcher.max_in_flight)
        self._workers = (os.cpu_count() or 1) if parse_workers is None else parse_workers
        self._pool: Executor | None = None

    async def start_workers(self) -> None:
        """Start the parse worker processes (once) and wait until each has imported the
        connectors, so the first real batch does not pay for interpreter start-up."""
        if self._pool is not None or self._workers < 2:
            return
        # spawn, not fork: this process runs threads (resolver, writer) that fork would copy mid-flight
        self._pool = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._pool, _warm_up) for _ in range(self._workers)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    async def run(self, sources: Sequence[tuple[MerchantConfig, SourceConfig]],
                  on_done: Callable[[SourceReport], None] | None = None,
                  pushed: Mapping[str, Retrieved] | None = None) -> list[SourceReport]:
        """Fetch, parse and store `sources`; returns one report per source. A source in
        `pushed` (by id) sent its payload itself (WebSub), so it is parsed, not retrieved."""
        states = await asyncio.to_thread(self.store.fetch_states, [s.id for _, s in sources])
        if len(sources) >= POOL_FROM_SOURCES:
            await self.start_workers()
        writer = _Writer(self.store)
        writer_task = asyncio.create_task(writer.run())

        async def one(merchant: MerchantConfig, source: SourceConfig) -> SourceReport:
            report = await self._fetch_one(merchant, source, states.get(source.id, FetchState()), writer,
                                           (pushed or {}).get(source.id))  # type: ignore[arg-type]
            if on_done:
                on_done(report)
            return report

        try:
            reports = await asyncio.gather(*(one(m, s) for m, s in sources))
        finally:
            await writer.close()
            await writer_task
        return list(reports)

    async def _fetch_one(self, merchant: MerchantConfig, source: SourceConfig, state: FetchState,
                         writer: _Writer, pushed: Retrieved | None) -> SourceReport:
        started = time.perf_counter()
        outcome = await self._read(merchant, source, state, pushed)
        report = SourceReport(source.id, merchant.id, outcome.status, error=outcome.error)  # type: ignore[arg-type]
        try:
            result = await writer.write(outcome)
        except HubError as exc:
            report.status, report.error = "failed", f"could not be stored: {exc}"
            result = None
        if result is not None:
            report.new, report.changed, report.gone = len(result.new), len(result.changed), len(result.gone)
            report.unchanged = result.unchanged
        if outcome.parsed is not None:
            report.warnings = list(outcome.parsed.warnings)
            report.ttl_seconds, report.websub = outcome.parsed.ttl_seconds, outcome.parsed.websub
        report.fresh_until = outcome.fresh_until
        report.seconds = time.perf_counter() - started
        if report.status == "failed":
            log.warning("source %s failed: %s", source.id, report.error)
        return report

    async def _read(self, merchant: MerchantConfig, source: SourceConfig, state: FetchState,
                    pushed: Retrieved | None) -> FetchOutcome:
        """Retrieve and parse one source; every failure becomes a recorded outcome."""
        connector = plugins.connector(source.connector)()
        ref = SourceRef(id=source.id, merchant_id=merchant.id,  # type: ignore[arg-type]
                        language=source.language or merchant.language or self.settings.platform.language,
                        timezone=self.settings.platform.timezone)
        try:
            got = pushed or await self._retrieve(connector, source, state)
            parsed = await self._parse(source, ref, got)
        except NotModified:
            return FetchOutcome(source.id, utcnow(), "not_modified")
        except ConnectorError as exc:
            return _failed(source.id, str(exc), exc.code, getattr(exc, "retry_after", None))
        except Exception as exc:  # a connector bug must not take the other sources down
            log.exception("connector %s crashed on source %s", source.connector, source.id)
            return _failed(source.id, f"unexpected error in the {source.connector} connector: {exc!r} "
                           "(this is a bug; please report it with the log)", "connector_crashed")
        if pushed is not None:  # a push may carry only what changed, so it cannot tell
            # deletions, and it leaves the feed's caching state (ETag) as it was
            return FetchOutcome(source.id, utcnow(), "ok", parsed=replace(parsed, complete=False))
        return FetchOutcome(source.id, utcnow(), "ok", parsed=parsed, state=got.state, fresh_until=got.fresh_until)

    async def _retrieve(self, connector, source: SourceConfig, state: FetchState) -> Retrieved:
        async with self._hosts.slot(getattr(source.options, "url", None)):
            return await connector.retrieve(source.options, state, self.fetcher)

    async def _parse(self, source: SourceConfig, ref: SourceRef, got: Retrieved) -> Parsed:
        if self._pool is not None:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self._pool, parse_payload, source.connector, source.options, ref, got)
            except BrokenProcessPool:
                log.warning("the parse worker pool broke; parsing in this process from now on")
                self.close()
        return parse_payload(source.connector, source.options, ref, got)


def _warm_up() -> None:
    for name in plugins.names("hub.connectors"):
        plugins.connector(name)


def _failed(source_id: str, message: str, code: str, retry_after: float | None = None) -> FetchOutcome:
    now = utcnow()
    fresh_until = now + timedelta(seconds=retry_after) if retry_after else None
    return FetchOutcome(source_id, now, "failed", error=message, error_code=code, fresh_until=fresh_until)


class _Writer:
    """Collects outcomes from many concurrent fetches and writes them in batches."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue: asyncio.Queue[tuple[FetchOutcome, asyncio.Future] | None] = asyncio.Queue()

    async def write(self, outcome: FetchOutcome) -> UpsertResult | None:
        done = asyncio.get_running_loop().create_future()
        await self.queue.put((outcome, done))
        return await done

    async def close(self) -> None:
        await self.queue.put(None)

    async def run(self) -> None:
        closing = False
        while not closing:
            first = await self.queue.get()
            if first is None:
                break
            # Linger, then drain without waiting. (Not `wait_for(queue.get())`: on Python
            # 3.11 a timeout racing an arriving item loses the item, and its source hangs.)
            if self.queue.qsize() < WRITE_BATCH:  # a full batch is waiting already: no need
                await asyncio.sleep(WRITE_LINGER)
            batch = [first]
            while len(batch) < WRITE_BATCH and not self.queue.empty():
                nxt = self.queue.get_nowait()
                if nxt is None:
                    closing = True
                    break
                batch.append(nxt)
            await self._flush(batch)

    async def _flush(self, batch: list[tuple[FetchOutcome, asyncio.Future]]) -> None:
        try:
            results = await asyncio.to_thread(self.store.apply, [o for o, _ in batch])
        except Exception as exc:  # nothing of this batch was committed; say so to each source
            log.exception("writing %d sources failed", len(batch))
            for _, done in batch:
                done.set_exception(HubError(f"database write failed: {exc}"))
            return
        by_source = {r.source_id: r for r in results}
        for outcome, done in batch:
            done.set_result(by_source.get(outcome.source_id))
