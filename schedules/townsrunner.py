"""The embedded tier for a deployment of many towns (issue 18): one Scheduler per town, in
the process that serves them (`hub run -c deploy.yaml` with `runtime: inprocess`).

Each town gets what the single-town `hub run` gives its one town: its own store, fetcher,
Pipeline and Scheduler (schedules/scheduler.py, eight static jobs over the town's rows).
The runner keeps that set in step with `hub towns reload`: it reads the towns registry's
generation every few seconds (one tiny query) and, when it moved, reads the deployment file
again, starts the towns that were added, restarts those whose config digest changed and
stops those that were removed. `Scheduler.stop` lets in-flight work finish within the town's
`shutdown_grace` and hands the rest back (leases), as at the end of `hub run`.

Like hub.web.towns, the runner only runs a town's config whose digest is the one the registry
recorded: a file edited after the reload (not yet checked) waits for the next reload, and
the town keeps running as it was.

Parsing happens in this process (`parse_workers=0`, in a thread), never in a process pool
per town: a pool costs `cpu_count` spawned interpreters per town (a hundred towns on two
cores would be two hundred processes), and a pool worker opens the store by URL alone,
which on PostgreSQL misses the town's schema. Many towns on one machine is the case for the
scaled tier's `hub worker` processes anyway.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from hub.http import Fetcher
from hub.pipeline import Pipeline
from hub.store import Store
from hub.store.townregistry import TownRegistry
from hub.towns import Deployment, FollowsReloads, Town
from schedules.clock import Clock
from schedules.scheduler import Scheduler, process_owner
from schedules.tasks import open_town_store

log = logging.getLogger("hub.towns.run")
POLL_SECONDS = 3.0
PARSE_WORKERS = 0  # see the module's docstring
# The town whose scheduler does the work at hand. Each town's APScheduler starts in a context
# of its own, so its jobs (and the threads they hand work to) carry their town's id, and the
# log can say which town a line is about (`town_in_log_records`).
TOWN: contextvars.ContextVar[str | None] = contextvars.ContextVar("hub_town", default=None)


def town_in_log_records() -> None:
    """Give every log record a `town` attribute: " [<id>]" inside a town's scheduler work,
    "" elsewhere (a format may then use `%(name)s%(town)s`)."""
    make = logging.getLogRecordFactory()

    def record(*args, **kwargs) -> logging.LogRecord:
        result = make(*args, **kwargs)
        town = TOWN.get()
        result.town = f" [{town}]" if town else ""
        return result

    logging.setLogRecordFactory(record)


@dataclass
class _RunningTown:
    """A town whose scheduler runs in this process, and what to close when it stops."""

    town: Town
    digest: str
    scheduler: Scheduler
    stack: AsyncExitStack


class TownsRunner(FollowsReloads):
    """Runs one embedded Scheduler per town of the deployment at `deployment.path`.

    `registry`: the towns registry to follow (None: run the file's towns as they are, no
    polling); `open_store(town)`: the town's store with its sources known (schedules.tasks'
    by default)."""

    keeping = "the schedulers keep running as they are"

    def __init__(self, deployment: Deployment, *, registry: TownRegistry | None = None,
                 poll_seconds: float = POLL_SECONDS, open_store: Callable[[Town], Store] = open_town_store,
                 clock: Clock | None = None, owner: str | None = None) -> None:
        self.path = deployment.path
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.open_store = open_store
        self.clock = clock
        self.owner = owner or process_owner()
        self.towns: dict[str, _RunningTown] = {}
        self.generation: int | None = None
        self._first: Deployment | None = deployment
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def start(self, *, background: bool = False) -> None:
        """Start every town's scheduler, then follow the registry (inside the running loop).
        `background`: return at once and start the towns behind (`hub run`: the web serves
        meanwhile; a town takes ~0.25-0.5 s to open and schedule)."""
        starting = asyncio.create_task(self._begin(), name="towns-runner-start")
        self._tasks.append(starting)
        if not background:
            await starting

    async def stop(self) -> None:
        """Start no more towns and stop following (a reload under way is finished, never cut
        in half), then stop every town's scheduler (each hands its work back)."""
        self._stopping.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        running, self.towns = list(self.towns.values()), {}
        await asyncio.gather(*(_stop(r) for r in running))

    async def _begin(self) -> None:
        # Each town's APScheduler would add ten INFO lines (a job added, started, shut down)
        # to what hub.schedule says already, once per town: a deployment's log drowned in them.
        logging.getLogger("apscheduler.scheduler").setLevel(logging.WARNING)
        deployment, self._first = self._first, None
        try:
            generation, registered = await self._registered()
            await self._apply(deployment, registered)
            self.generation = generation
        except Exception:  # noqa: BLE001 - e.g. the registry unreachable: the polling tries again
            log.exception("towns: the schedulers did not start; trying again at the next look at the registry")
        if self.registry is not None and not self._stopping.is_set():
            self._tasks.append(asyncio.create_task(self._poll(), name="towns-runner-poll"))

    async def _poll(self) -> None:
        while not await _wait(self._stopping, self.poll_seconds):
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the following
                log.exception("towns: cannot follow the towns registry; trying again")

    async def _apply(self, deployment: Deployment, registered: dict[str, str] | None) -> None:
        """Stop the towns that went or changed, then start the new and changed ones."""
        wanted = _wanted(deployment, registered, self.towns)
        going = [r for i, r in self.towns.items() if i not in wanted or wanted[i].digest != r.digest]
        for running in going:
            del self.towns[running.town.id]
            what = "changed; its scheduler restarts" if running.town.id in wanted else "removed; its scheduler stops"
            log.info("towns: %s %s", running.town.id, what)
        await asyncio.gather(*(_stop(r) for r in going))
        for town_id, town in sorted(wanted.items()):
            if self._stopping.is_set():  # shutting down: the towns not yet started stay so
                break
            if town_id not in self.towns:
                await self._start(town)

    async def _start(self, town: Town) -> None:
        """Open the town's store, fetcher and pipeline and start its scheduler. A town that
        cannot start is logged and left out; the other towns run on."""
        stack = AsyncExitStack()
        try:
            store = await asyncio.to_thread(self.open_store, town)
            stack.callback(store.close)
            fetcher = await stack.enter_async_context(Fetcher(town.settings.fetcher, base_dir=town.settings.base_dir))
            pipeline = Pipeline(town.settings, store, fetcher, parse_workers=PARSE_WORKERS)
            stack.callback(pipeline.close)
            scheduler = Scheduler(town.settings, store, pipeline, fetcher, clock=self.clock,
                                  owner=f"{self.owner}/{town.id}")
            contextvars.copy_context().run(_start_in_town, scheduler, town.id)
        except Exception:  # noqa: BLE001 - one town's trouble must not stop the others
            log.exception("towns: the scheduler of %s did not start; it is tried again at the next reload", town.id)
            await stack.aclose()
            return
        except BaseException:  # cancelled (Ctrl-C while starting): leave nothing open
            await stack.aclose()
            raise
        self.towns[town.id] = _RunningTown(town, town.digest, scheduler, stack)


def _wanted(deployment: Deployment, registered: dict[str, str] | None,
            running: dict[str, _RunningTown]) -> dict[str, Town]:
    """The towns to run: the registry's (or the file's, without a registry). A town whose
    file differs from what the registry checked keeps running as it was, or waits."""
    if registered is None:
        return dict(deployment.towns)
    wanted: dict[str, Town] = {}
    for town_id, digest in registered.items():
        town = deployment.towns.get(town_id)
        if town is not None and town.digest == digest:
            wanted[town_id] = town
            continue
        log.warning("towns: %s's config differs from the one `hub towns reload` checked; its scheduler keeps "
                    "running as it was (run `hub towns reload` again)", town_id)
        if town_id in running:
            wanted[town_id] = running[town_id].town
    return wanted


def _start_in_town(scheduler: Scheduler, town_id: str) -> None:
    """Start the scheduler inside a context whose TOWN is `town_id`: APScheduler's timers
    and the job tasks they create keep the context they were started in."""
    TOWN.set(town_id)
    scheduler.start()


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` passed; True if it was set."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


async def _stop(running: _RunningTown) -> None:
    """Stop the town's scheduler (in-flight work finishes within its grace or is handed
    back), then close its pipeline, fetcher and store."""
    try:
        await running.scheduler.stop()
    except Exception:  # noqa: BLE001 - the town goes either way
        log.exception("towns: the scheduler of %s did not stop cleanly", running.town.id)
    finally:
        await running.stack.aclose()
