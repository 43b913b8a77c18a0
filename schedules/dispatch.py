"""One dispatch tick over many towns (issue 18): what to hand to the workers now.

Two rules keep a deployment of many towns healthy:

- Backpressure: a tick claims no more sources than the workers can take (`capacity`: what
  they can hold minus what is already queued; the caller knows the queue). What is not
  claimed stays due in its store and is claimed by a later tick, oldest first; nothing
  piles up in the job queue when the workers fall behind.
- Fair shares: every town with due work gets an equal share of the capacity; a share a town
  cannot use (it has less due, or its hosts are busy) goes to the others, round after round,
  until the capacity is used or no town has more. The towns are asked in turn from a
  rotating start, so the odd remainder does not always favour the same town. A town with
  10,000 due sources therefore cannot starve one with 10.

The claiming itself (host grouping, politeness, leases) is the store's
(hub/store/dispatch.py); this module is the pure arithmetic on top, testable with fakes.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from hub.config import Settings
from hub.politeness import host_of
from hub.store import Store
from hub.store.dispatch import Batch, DispatchStore, Enqueue


class FetchJob(NamedTuple):
    """One job to defer: fetch these sources of one town, all of one host (or of none),
    leased under `owner` (the job hands it to the fetch, which plans under that name)."""

    town: str
    host: str | None
    source_ids: list[str]
    owner: str = ""


class TownClaimer(Protocol):
    """A town's due work, claimed on demand: up to `limit` sources, as batches per host."""

    town: str
    owner: str

    def claim(self, limit: int) -> list[Batch]: ...


def capacity_left(worker_slots: int, queued: int) -> int:
    """How many sources a tick may claim: what the workers can hold minus what waits already."""
    return max(0, worker_slots - queued)


def plan_fetch_jobs(towns: Sequence[TownClaimer], capacity: int, now: datetime, *,
                    start: int | None = None) -> list[FetchJob]:
    """Claim due sources from `towns`, at most `capacity` in all, in fair shares; returns the
    jobs to defer, one per batch. `start`: which town is asked first (a tick counter does
    nicely); by default it follows from `now`, so successive ticks start elsewhere."""
    if capacity <= 0 or not towns:
        return []
    first = (start if start is not None else zlib.crc32(now.isoformat().encode())) % len(towns)
    waiting = list(towns[first:]) + list(towns[:first])
    jobs: list[FetchJob] = []
    left = capacity
    # Each round asks every waiting town for its share; a town that takes less than its share
    # has no more this tick and drops out. Every round either claims something or shrinks
    # the list, so the loop ends.
    while left > 0 and waiting:
        share, extra = divmod(left, len(waiting))
        unasked, still = [], []
        for i, town in enumerate(waiting):
            want = share + (1 if i < extra else 0)
            if want == 0:  # fewer sources left than towns: this one is asked first next round
                unasked.append(town)
                continue
            batches = town.claim(want)
            got = sum(len(b.source_ids) for b in batches)
            jobs += [FetchJob(town.town, b.host, list(b.source_ids), town.owner) for b in batches]
            left -= got
            if got >= want:  # it may have more
                still.append(town)
        waiting = unasked + still
    return jobs


@dataclass
class StoreClaimer:
    """A town's claimer on its store (hub/store/dispatch.py), with the town's politeness."""

    town: str
    dispatch: DispatchStore
    now: datetime
    owner: str
    until: datetime
    per_host: int
    spacing: timedelta
    hostless_batch: int | None = None
    enqueue: Enqueue | None = None  # queues each batch's job in the claim's transaction (the outbox)
    pack: int | None = None  # sources of several hosts in one job, up to this many (DispatchStore.claim)

    def claim(self, limit: int) -> list[Batch]:
        return self.dispatch.claim(self.now, limit=limit, per_host=self.per_host, spacing=self.spacing,
                                   owner=self.owner, until=self.until, hostless_batch=self.hostless_batch,
                                   enqueue=self.enqueue, pack=self.pack)


def town_claimer(town: str, settings: Settings, store: Store, now: datetime, owner: str, *,
                 hostless_batch: int | None = None, enqueue: Enqueue | None = None,
                 pack: int | None = None) -> StoreClaimer:
    """The claimer for a town at `now`: leases for `schedule.lease`, batches per host as big
    as the host's politeness allows per tick (as the in-process dispatcher does), packed
    into jobs of up to `pack` sources of several hosts if given."""
    spacing = settings.fetcher.host_spacing
    return StoreClaimer(town, DispatchStore(store), now, owner, now + settings.schedule.lease,
                        per_host_batch(settings), timedelta(seconds=spacing), hostless_batch, enqueue, pack)


class FairPlanner:
    """A dispatch tick's planner for the procrastinate runtime (`build_app(planner=...)`):
    `await planner(contexts, deployment, capacity, now)` claims each town's due sources in
    fair shares, host-grouped and polite, and returns the jobs to defer (`FetchJob`s carry
    the fields the runtime's batches have: town, host, source_ids, owner). Each town's
    source hosts are written to its store the first time the planner sees the town's config.
    `outbox(town, owner)`: the hook that queues a town's batches in their claim's transaction."""

    def __init__(self, *, hostless_batch: int = 50, outbox: Callable[[str, str], Enqueue] | None = None,
                 pack: int | None = None) -> None:
        self.hostless_batch = hostless_batch
        self.outbox = outbox
        self.pack = pack  # sources of several hosts per job, up to this many (None: a job per host)
        self._synced: dict[str, int] = {}  # town -> id of the settings whose hosts were written
        self._ticks = 0

    async def __call__(self, contexts, deployment, capacity: int, now: datetime) -> list[FetchJob]:
        if capacity <= 0 or not deployment.towns:
            return []
        owner = f"dispatch:{secrets.token_hex(6)}"
        claimers = []
        for town in deployment.towns:
            ctx = await contexts.get(town)
            if self._synced.get(town) != id(ctx.settings):
                await asyncio.to_thread(DispatchStore(ctx.store).sync_hosts, source_hosts(ctx.settings))
                self._synced[town] = id(ctx.settings)
            claimers.append(town_claimer(town, ctx.settings, ctx.store, now, owner, hostless_batch=self.hostless_batch,
                                         enqueue=self.outbox(town, owner) if self.outbox else None, pack=self.pack))
        self._ticks += 1
        return await asyncio.to_thread(plan_fetch_jobs, claimers, capacity, now, start=self._ticks)


def per_host_batch(settings: Settings) -> int:
    """How many sources of one host a batch holds: as many as one tick allows at the host's
    spacing, at least `fetcher.max_per_host`; without spacing, `schedule.batch`."""
    spacing = settings.fetcher.host_spacing
    if spacing <= 0:
        return settings.schedule.batch
    return max(settings.fetcher.max_per_host, math.floor(settings.schedule.tick.total_seconds() / spacing))


def source_hosts(settings: Settings) -> dict[str, str | None]:
    """Each configured source's host (None: not host-limited), for `DispatchStore.sync_hosts`."""
    return {s.id: host_of(getattr(s.options, "url", None)) for _, s in settings.sources()}  # type: ignore[misc]
