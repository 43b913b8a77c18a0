"""The scaled tier's runtime (`runtime: procrastinate`): the task functions of schedules/tasks.py
as procrastinate tasks, and the periodic ticks that defer them, for every town of a deployment.

    hub.dispatch      every DISPATCH_EVERY   claim due sources of every town, defer one
                                             `hub.fetch_sources` job per host batch
    hub.tick(kind)    publish, newsletter    every schedule.publish_tick (the smallest of the towns')
                      media                  every 30 seconds
                      websub                 every 10 minutes
                      maintenance            every hour
                      media_gc, tokens       every day
                      -> one `hub.<kind>` job per town
    hub.retry_stalled every 5 seconds        a killed worker's jobs run again (heartbeats; more
                                             often when `hub worker --stalled-after` is shorter)

Periodic ticks are procrastinate periodic tasks: every worker tries to defer them and the
database keeps one per period, so they go on while one worker lives. Jobs carry ids only:
the town, source ids, and the lease name their sources were claimed under.

At most one fetch job per (town, host) waits (`queueing_lock`) and one host's jobs run one at
a time across all workers (`lock`), so a worker pool never hammers a host. The dispatch tick
defers no more than QUEUE_TARGET fetch jobs in all (backpressure): when workers fall behind,
due sources stay in the database, oldest first, instead of piling up in the queue.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from procrastinate import App, PsycopgConnector, RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued, UniqueViolation
from procrastinate.jobs import Job, Status
from sqlalchemy.engine import make_url

from hub.towns import Deployment
from schedules import tasks
from schedules.dispatch import FairPlanner, FetchJob
from schedules.tasks import TownContext, TownContexts

log = logging.getLogger("hub.worker")

DISPATCH_EVERY = timedelta(seconds=1)
FETCH_BATCH = 50  # sources per fetch job without a host (a host's batch is as big as its politeness allows)
QUEUE_TARGET = 32  # fetch jobs waiting at most; the dispatch tick tops the queue up to this
STALLED_CHECK_EVERY = timedelta(seconds=5)
STALLED_AFTER = 30.0  # seconds without a worker's heartbeat before its jobs run again
FETCH_TASK = "hub.fetch_sources"

TownTask = Callable[[TownContext], Awaitable[None]]
# (contexts, deployment, capacity in sources, now) -> the fetch jobs to defer, their sources claimed
Planner = Callable[[TownContexts, Deployment, int, datetime], Awaitable[list[FetchJob]]]
TOWN_TASKS: dict[str, TownTask] = {
    "publish": tasks.publish, "newsletter": tasks.newsletter, "media": tasks.media, "media_gc": tasks.media_gc,
    "maintenance": tasks.maintenance, "tokens": tasks.tokens, "websub": tasks.websub,
}


def conninfo(store_url: str) -> str:
    """libpq's form of the store's SQLAlchemy URL (postgresql+psycopg://... -> postgresql://...)."""
    url = make_url(store_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"runtime 'procrastinate' needs a PostgreSQL store, not {url.get_backend_name()} "
                         "(hint: store.url: postgresql+psycopg://user@host/db, or runtime: inprocess)")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def tick_intervals(deployment: Deployment) -> dict[str, timedelta]:
    """How often each kind of town task is deferred; publish and newsletter follow the
    smallest `schedule.publish_tick` of the towns (each town's job checks what is due)."""
    from schedules.scheduler import MAINTENANCE_EVERY, MEDIA_EVERY, MEDIA_GC_EVERY, TOKENS_EVERY, WEBSUB_EVERY

    publish = min((t.settings.schedule.publish_tick for t in deployment.towns.values()),
                  default=timedelta(seconds=30))
    return {"publish": publish, "newsletter": publish, "media": MEDIA_EVERY, "websub": WEBSUB_EVERY,
            "maintenance": MAINTENANCE_EVERY, "media_gc": MEDIA_GC_EVERY, "tokens": TOKENS_EVERY}


def cron_every(every: timedelta) -> str:
    """A cron expression (with procrastinate's 6th field, seconds) firing every `every`,
    rounded to what cron can say: seconds dividing a minute, minutes dividing an hour, hours, days."""
    seconds = max(1, round(every.total_seconds()))
    if seconds < 60:
        step = _divisor_at_least(seconds, 60)
        return f"* * * * * */{step}"
    if seconds < 3600:
        return f"*/{_divisor_at_least(math.ceil(seconds / 60), 60)} * * * * 0"
    if seconds < 86400:
        return f"0 */{_divisor_at_least(math.ceil(seconds / 3600), 24)} * * * 0"
    return "0 3 * * * 0"  # daily work at night


def _divisor_at_least(n: int, whole: int) -> int:
    return next(d for d in range(min(n, whole), whole + 1) if whole % d == 0)


def build_app(deployment: Deployment, contexts: TownContexts, *, stalled_after: float = STALLED_AFTER,
              planner: Planner | None = None) -> App:
    """The procrastinate App of a deployment, its tasks bound to `contexts` (this process's
    towns). `planner` claims the fetch jobs of a dispatch tick: by default schedules/dispatch.py's
    FairPlanner (fair shares between towns, host-grouped polite claims, FOR UPDATE SKIP LOCKED)."""
    app = App(connector=PsycopgConnector(conninfo=conninfo(deployment.store_url)),
              periodic_defaults={"max_delay": 60})
    plan = planner or FairPlanner(hostless_batch=FETCH_BATCH)

    @app.task(name=FETCH_TASK, queue="fetch", retry=RetryStrategy(max_attempts=3, wait=5))
    async def fetch_sources(town: str, source_ids: list[str], owner: str) -> int:
        if _removed(contexts, town):
            return 0
        reports = await tasks.fetch_sources(await contexts.get(town), source_ids, owner)
        return len(reports)

    town_tasks = {kind: app.task(name=f"hub.{kind}", queue="town")(_town_task(contexts, fn))
                  for kind, fn in TOWN_TASKS.items()}

    @app.task(name="hub.dispatch", queue="tick", queueing_lock="hub.dispatch")
    async def dispatch(timestamp: int) -> int:
        waiting = await _waiting_fetch_jobs(app)
        capacity = max(0, QUEUE_TARGET - waiting) * FETCH_BATCH
        batches = await plan(contexts, _Served(contexts.towns), capacity, datetime.now(timezone.utc))
        return await _defer_fetches(fetch_sources, contexts, batches)

    app.periodic(cron=cron_every(DISPATCH_EVERY), periodic_id="dispatch")(dispatch)

    @app.task(name="hub.tick", queue="tick")
    async def tick(timestamp: int, kind: str) -> None:
        for town in list(contexts.towns):  # the towns served now (they follow `hub towns reload`)
            try:
                await town_tasks[kind].configure(lock=f"{kind}:{town}", queueing_lock=f"{kind}:{town}").defer_async(
                    town=town)
            except AlreadyEnqueued:  # the last one still waits: one is enough
                pass

    for kind, every in tick_intervals(deployment).items():
        app.periodic(cron=cron_every(every), periodic_id=kind, task_kwargs={"kind": kind})(tick)

    @app.task(name="hub.retry_stalled", queue="tick", queueing_lock="hub.retry_stalled")
    async def retry_stalled(timestamp: int) -> int:
        """Jobs of a worker that stopped sending heartbeats (killed, or its machine gone) run again."""
        stalled = list(await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after))
        for job in stalled:
            try:
                await app.job_manager.retry_job(job)
                log.warning("job %s (%s) of a vanished worker runs again", job.id, job.task_name)
            except UniqueViolation:  # a successor with its queueing lock waits already
                await _supersede(app, contexts, job)
        return len(stalled)

    check_every = min(STALLED_CHECK_EVERY, timedelta(seconds=stalled_after / 2))
    app.periodic(cron=cron_every(check_every), periodic_id="retry_stalled")(retry_stalled)
    return app


@dataclass(frozen=True)
class _Served:
    """What a planner reads of a deployment: the towns served right now."""

    towns: dict


async def follow_reloads(deployment: Deployment, contexts: TownContexts, every: float = 5.0) -> None:
    """Keep this worker's towns in step with `hub towns reload`: poll the towns registry's
    generation and, when it moves, read the deployment file again. Runs until cancelled."""
    from hub.store.townregistry import TownRegistry
    from hub.towns import load_deployment

    registry = TownRegistry(deployment.store_url)
    try:
        seen = await asyncio.to_thread(registry.generation)
        while True:
            await asyncio.sleep(every)
            generation = await asyncio.to_thread(registry.generation)
            if generation == seen:
                continue
            try:
                fresh = await asyncio.to_thread(load_deployment, deployment.path)
            except Exception as exc:  # noqa: BLE001 - a broken file: keep serving what runs now
                log.error("towns reload %d not followed, the deployment file has problems: %s", generation, exc)
            else:
                changed = contexts.follow(fresh.towns)
                log.info("towns reload %d: now %d towns; rebuilt or removed: %s", generation, len(fresh.towns),
                         ", ".join(changed) or "none")
            seen = generation
    finally:
        registry.close()


def _removed(contexts: TownContexts, town: str) -> bool:
    """A job for a town no longer served (removed by `hub towns reload`) has nothing to do."""
    if town in contexts.towns:
        return False
    log.info("a job for town %s, which is no longer served, ends without work", town)
    return True


async def _supersede(app: App, contexts: TownContexts, job: Job) -> None:
    """End a vanished worker's job that cannot run again because a job with its queueing
    lock waits already (that one does the same work). A fetch job gives its sources' leases
    back first, so the next dispatch tick hands them out at once instead of after the lease."""
    if job.task_name == FETCH_TASK:
        args = job.task_kwargs
        ctx = await contexts.get(str(args["town"]))
        await asyncio.to_thread(ctx.plans.release_sources, list(args["source_ids"]), str(args["owner"]))
    await app.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
    log.warning("job %s (%s) of a vanished worker ended: a newer one with its queueing lock waits", job.id,
                job.task_name)


def _town_task(contexts: TownContexts, fn: TownTask) -> Callable[[str], Awaitable[None]]:
    async def run(town: str) -> None:
        if not _removed(contexts, town):
            await fn(await contexts.get(town))
    run.__name__ = run.__qualname__ = fn.__name__
    return run


async def _defer_fetches(fetch_task, contexts: TownContexts, batches: list[FetchJob]) -> int:
    """Defer one job per batch. A (town, host) whose last job still waits gets no second
    one: that batch's leases are given back, and the sources are due again next tick."""
    deferred = 0
    hostless: dict[str, int] = defaultdict(int)
    for batch in batches:
        if batch.host:
            key, lock = f"fetch:{batch.town}:{batch.host}", f"host:{batch.host}"
        else:  # no host to be polite to (e.g. the Graph API): batches only need their own keys
            hostless[batch.town] += 1
            key, lock = f"fetch:{batch.town}:-:{hostless[batch.town]}", None
        try:
            await fetch_task.configure(queueing_lock=key, lock=lock).defer_async(
                town=batch.town, source_ids=batch.source_ids, owner=batch.owner)
            deferred += 1
        except AlreadyEnqueued:
            ctx = await contexts.get(batch.town)
            await asyncio.to_thread(ctx.plans.release_sources, batch.source_ids, batch.owner)
    return deferred


async def _waiting_fetch_jobs(app: App) -> int:
    row = await app.connector.execute_query_one_async(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'todo' AND task_name = %(task)s",
        task=FETCH_TASK)
    return int(row["n"])


def has_procrastinate_schema(store_url: str) -> bool:
    import psycopg

    with psycopg.connect(conninfo(store_url), autocommit=True) as conn:
        return conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is not None


def apply_procrastinate_schema(store_url: str) -> bool:
    """Create procrastinate's tables in the deployment's database unless they exist;
    returns whether it created them. (Upgrades between procrastinate versions are its own
    migrations, applied with its `procrastinate schema` tooling.)"""
    import psycopg
    from procrastinate.schema import SchemaManager

    if has_procrastinate_schema(store_url):
        return False
    with psycopg.connect(conninfo(store_url), autocommit=True) as conn, conn.transaction():
        conn.execute(SchemaManager.get_schema())
    return True
