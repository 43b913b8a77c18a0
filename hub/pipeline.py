"""fetch here, parse and store in worker processes, for a set of sources at once.

Each source is fetched on its own, so one broken source never stops the others. What was
fetched goes in batches to `hub.ingest`, which parses and stores a whole batch in one
transaction (with SQLite, the commit, not the insert, is the expensive part of a small
write). Large runs use a pool of worker processes, one per core, so parsing and database
work leave this process's event loop free to keep fetching.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import time
import types
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Awaitable, Callable, Iterable, Iterator, Literal, Mapping, Sequence

from hub import plugins
from hub.config import MerchantConfig, Settings, SourceConfig
from hub.errors import NotModified
from hub.http import Fetcher
from hub.ingest import Fetched, Stored, connector_failed, ingest, ingest_in_worker, start_worker
from hub.models import FetchState, Retrieved, SourceRef
from hub.store import FetchOutcome, SourceSpec, Store, utcnow
from hub.politeness import HostLimiter

log = logging.getLogger("hub.pipeline")
# Payloads per batch: a batch is one transaction; fewer, larger ones cost less per entry,
# smaller ones keep both workers busy to the end of a run. Outcomes without a payload (a
# 304, a failure) cost next to nothing to record, so any number of them ride along.
BATCH_SOURCES = 50
# Waiting this long for more fetches to finish turns many small transactions into a few
# large ones; while every worker is busy, batches grow on their own.
BATCH_LINGER = 0.02
# From this many sources in one run on, parsing and storing move to worker processes.
POOL_FROM_SOURCES = 50
# Sources between the start of their fetch and the end of their write: fetching runs
# ahead of the workers only this far, so fetched payloads do not pile up in memory.
IN_PROGRESS = 4 * BATCH_SOURCES


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
    return [SourceSpec(s.id, m.id, s.connector, s.fingerprint) for m, s in settings.sources()]  # type: ignore[arg-type]


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
                 parse_workers: int | None = None, *, shared_batches: int = 0) -> None:
        """`shared_batches`: store what concurrent `run`s fetched in batches they share, at
        most this many at a time (0: each run has its own). A `hub worker` runs many small
        fetch jobs at once, each of a source or two: one transaction for each cost more than
        the storing itself; shared, the jobs' payloads go in one batch (ingest in this
        process: parse_workers=0). Close with `aclose`."""
        self.settings = settings
        self.store = store
        self.fetcher = fetcher
        self._hosts = HostLimiter(settings.fetcher.max_per_host, settings.fetcher.host_spacing,
                                  settings.fetcher.max_in_flight)
        self._workers = (os.cpu_count() or 1) if parse_workers is None else parse_workers
        if store.url == "sqlite:///:memory:":
            self._workers = 0  # another process cannot see this database
        self._pool: ProcessPoolExecutor | None = None
        self._shared_slots = shared_batches
        self._shared: _Batches | None = None

    async def start_workers(self) -> None:
        """Start the worker processes (once) and wait until each has imported what it
        needs, so the first real batch does not pay for interpreter start-up."""
        if self._pool is not None or self._workers < 2:
            return
        # spawn, not fork: this process runs threads (DNS, database) that fork would copy mid-flight
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(self._workers, mp_context=context, initializer=start_worker,
                                         initargs=(context.Lock(), os.getpid()))
        loop = asyncio.get_running_loop()
        try:
            for _ in range(5):  # workers start on demand; ask until each one has answered
                with _main_module_hidden(), _born_ignoring_sigint():  # a worker starts within the call, not later
                    asking = [loop.run_in_executor(self._pool, os.getpid) for _ in range(self._workers)]
                if len(set(await asyncio.gather(*asking))) == self._workers:
                    break
        except BrokenProcessPool:
            log.warning("a worker process did not start; parsing and storing in this process")
            self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    async def aclose(self) -> None:
        """`close`, and end the shared batches (`shared_batches`) once what they hold is stored."""
        if self._shared is not None:
            shared, self._shared = self._shared, None
            await shared.close()
        self.close()

    def _batches(self) -> tuple[_Batches, bool]:
        """The batches of one run, and whether the run owns them (closes them at its end)."""
        if self._shared_slots:
            if self._shared is None:
                self._shared = _Batches(self._ingest, slots=self._shared_slots)
            return self._shared, False
        return _Batches(self._ingest, slots=max(1, self._workers if self._pool else 1)), True

    async def run(self, sources: Sequence[tuple[MerchantConfig, SourceConfig]],
                  on_done: Callable[[SourceReport], None] | None = None,
                  pushed: Mapping[str, Retrieved] | None = None, stop: Stop | None = None) -> list[SourceReport]:
        """Fetch, parse and store `sources`; returns one report per source. A source in
        `pushed` (by id) sent its payload itself (WebSub), so it is parsed, not retrieved.

        Once `stop` is requested no fetch starts any more; fetches under way may finish
        until it is abandoned (see `Stop`), and what they fetched is stored. The reports are
        then those of the sources done, fewer than `sources`; the others were left as they
        were (not even their caching state changed), so the next run fetches them."""
        states = await asyncio.to_thread(self.store.fetch_states, [s.id for _, s in sources])
        if len(sources) >= POOL_FROM_SOURCES and not (stop and stop.requested.is_set()):
            await self.start_workers()
        batches, own_batches = self._batches()
        in_progress = asyncio.Semaphore(IN_PROGRESS)
        retrieving = _Retrievals(stop)

        async def one(merchant: MerchantConfig, source: SourceConfig) -> SourceReport | None:
            started, permit = time.perf_counter(), _Permit(in_progress)
            try:
                with retrieving.one() as may_start:
                    work = await self._retrieve(merchant, source, states.get(source.id, FetchState()),
                                                (pushed or {}).get(source.id), permit, may_start)
                if work is None:  # stopped before it was fetched
                    return None
                report = _report(merchant.id, await batches.submit(work), time.perf_counter() - started)
            except _Abandoned:
                return None
            finally:
                permit.release()
            if on_done:
                on_done(report)
            return report

        watching = asyncio.create_task(retrieving.watch()) if stop else None
        try:
            reports = await asyncio.gather(*(one(m, s) for m, s in sources))
            return [r for r in reports if r is not None]
        finally:
            if watching:
                watching.cancel()
            if own_batches:
                await batches.close()

    async def _retrieve(self, merchant: MerchantConfig, source: SourceConfig, state: FetchState,
                        pushed: Retrieved | None, permit: _Permit,
                        may_start: Callable[[], bool] = lambda: True) -> Fetched | FetchOutcome | None:
        """Retrieve one source; a failure becomes an outcome to record. `permit` is taken
        once the host may be asked (not before: a queue for one busy host must not hold
        permits the others need), and given back by the caller once stored. None: the run
        is stopping, and `may_start` said not to begin."""
        ref = SourceRef(id=source.id, merchant_id=merchant.id,  # type: ignore[arg-type]
                        language=source.language or merchant.language or self.settings.platform.language,
                        timezone=self.settings.platform.timezone)
        if pushed is not None:
            await permit.take()
            return Fetched(source.id, source.connector, source.options, ref, pushed, utcnow(), pushed=True)
        try:
            connector = plugins.connector(source.connector)()
            async with self._hosts.slot(getattr(source.options, "url", None)):
                await permit.take()
                if not may_start():
                    return None
                got = await connector.retrieve(source.options, state, self.fetcher)
        except NotModified:
            return FetchOutcome(source.id, utcnow(), "not_modified")
        except Exception as exc:
            return connector_failed(source.id, source.connector, utcnow(), exc)
        return Fetched(source.id, source.connector, source.options, ref, got, utcnow())

    async def _ingest(self, work: list[Fetched | FetchOutcome]) -> list[Stored]:
        if self._pool is not None:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self._pool, ingest_in_worker, self.store.url,
                                                  self.store.records.rules, work, self.store.schema)
            except BrokenProcessPool:
                log.warning("the worker pool broke; parsing and storing in this process from now on")
                self.close()
        return await asyncio.to_thread(ingest, self.store, work)


@contextmanager
def _born_ignoring_sigint() -> Iterator[None]:
    """Workers started in here cannot be interrupted while they import (a second or so): a
    Ctrl-C then would kill them with a traceback. The calling thread blocks SIGINT while it
    starts them, and a blocked signal stays blocked across fork and exec; `start_worker`
    then ignores SIGINT (which drops one that came meanwhile) and unblocks it.

    Blocking, not ignoring: a Ctrl-C to this process while the workers start stays pending
    (or reaches another thread) and is handled once they have started, never lost."""
    sigint = {signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, sigint)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """A spawned process imports its parent's __main__ again, in case what it runs was
    defined there. The workers run `hub.ingest` alone, and for `hub run` that import would
    be the whole CLI and web stack: 30 MB more in each worker, for nothing."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _report(merchant_id: str, stored: Stored, seconds: float) -> SourceReport:
    report = SourceReport(stored.source_id, merchant_id, stored.status, stored.new, stored.changed,
                          stored.unchanged, stored.gone, stored.error, list(stored.warnings), seconds,
                          stored.fresh_until, stored.ttl_seconds, stored.websub)
    if report.status == "failed":
        log.warning("source %s failed: %s", report.source_id, report.error)
    return report


class Stop:
    """A request to end a run early (SIGTERM, Ctrl-C). From `request` on, no fetch starts;
    fetches under way get `grace` seconds to finish (a second request cuts that short),
    then they are `abandoned`: nothing of theirs is stored, so the next run fetches them
    again. What was fetched is stored, and a batch handed to a worker always finishes: it
    is one transaction, committed or rolled back as a whole, never half-written."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.abandoned = asyncio.Event()
        self.reason: str | None = None  # what asked for it, e.g. "SIGTERM"
        self._timer: asyncio.TimerHandle | None = None

    def request(self, reason: str, grace: float) -> bool:
        """Ask the run to stop; True the first time, False if it was already asked (and
        now abandons what is under way at once)."""
        if self.requested.is_set():
            self.abandon()
            return False
        self.reason = reason
        self.requested.set()
        self._timer = asyncio.get_running_loop().call_later(grace, self.abandon)
        return True

    def abandon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.requested.set()
        self.abandoned.set()


class _Abandoned(Exception):
    """A fetch cut short by `Stop`."""


class _Retrievals:
    """The sources of one run between the start of their retrieval and its end, so a
    `Stop` can end them: those still waiting for their host at once, those being fetched
    once the stop is abandoned. A task cancelled here raises `_Abandoned` from `one()`; a
    cancellation from anywhere else (`hub run` stopping its fetch tasks) passes through."""

    def __init__(self, stop: Stop | None) -> None:
        self._stop = stop
        self._tasks: dict[asyncio.Task, bool] = {}  # task -> fetching (past its host's queue)
        self._cancelled: set[asyncio.Task] = set()

    @contextmanager
    def one(self) -> Iterator[Callable[[], bool]]:
        """Around one retrieval; gives `may_start`, to be called once the host may be asked."""
        stop = self._stop
        if stop is None:
            yield lambda: True
            return
        if stop.requested.is_set():
            raise _Abandoned()
        task = asyncio.current_task()
        assert task is not None

        def may_start() -> bool:
            self._tasks[task] = True
            return not stop.requested.is_set()

        self._tasks[task] = False
        try:
            yield may_start
        except asyncio.CancelledError:
            if task not in self._cancelled or task.cancelling() > 1:
                raise
            task.uncancel()
            raise _Abandoned() from None
        finally:
            self._tasks.pop(task, None)

    async def watch(self) -> None:
        assert self._stop is not None
        await self._stop.requested.wait()
        self._cancel(t for t, fetching in self._tasks.items() if not fetching)
        await self._stop.abandoned.wait()
        self._cancel(self._tasks)

    def _cancel(self, tasks: Iterable[asyncio.Task]) -> None:
        for task in list(tasks):
            self._cancelled.add(task)
            task.cancel()


class _Permit:
    """One permit of a semaphore, taken at some point and given back at most once."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore
        self._taken = False

    async def take(self) -> None:
        await self._semaphore.acquire()
        self._taken = True

    def release(self) -> None:
        if self._taken:
            self._taken = False
            self._semaphore.release()


class _Batches:
    """Collects what concurrent fetches retrieved and hands it on in batches, at most
    `slots` batches at a time (one per worker): while every worker is busy, fetched
    payloads wait here and the next batch grows."""

    def __init__(self, run: Callable[[list], Awaitable[list[Stored]]], slots: int) -> None:
        self._run = run
        self._slots = asyncio.Semaphore(slots)
        self._waiting: list[tuple[Fetched | FetchOutcome, asyncio.Future]] = []
        self._arrived = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._dispatcher = asyncio.create_task(self._dispatch())

    async def submit(self, work: Fetched | FetchOutcome) -> Stored:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((work, done))
        self._arrived.set()
        return await done

    async def close(self) -> None:
        self._dispatcher.cancel()
        await asyncio.gather(self._dispatcher, *self._tasks, return_exceptions=True)

    async def _dispatch(self) -> None:
        while True:
            await self._arrived.wait()
            await self._slots.acquire()
            if self._payloads() < BATCH_SOURCES:
                await asyncio.sleep(BATCH_LINGER)
            cut = self._cut()
            batch, self._waiting = self._waiting[:cut], self._waiting[cut:]
            if not self._waiting:
                self._arrived.clear()
            task = asyncio.create_task(self._one(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _payloads(self) -> int:
        return sum(isinstance(work, Fetched) for work, _ in self._waiting)

    def _cut(self) -> int:
        """Where the next batch ends: after BATCH_SOURCES payloads, or with all that waits."""
        payloads = 0
        for n, (work, _) in enumerate(self._waiting):
            payloads += isinstance(work, Fetched)
            if payloads > BATCH_SOURCES:
                return n
        return len(self._waiting)

    async def _one(self, batch: list[tuple[Fetched | FetchOutcome, asyncio.Future]]) -> None:
        try:
            stored = await self._run([work for work, _ in batch])
        except Exception as exc:  # nothing of this batch was stored; say so to each source
            log.exception("ingesting %d sources failed", len(batch))
            stored = [Stored(work.source_id, "failed", f"could not be stored: {exc}") for work, _ in batch]
        finally:
            self._slots.release()
        for (_, done), result in zip(batch, stored):
            if not done.done():
                done.set_result(result)
