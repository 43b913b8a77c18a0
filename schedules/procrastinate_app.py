"""The scaled tier's runtime (`runtime: procrastinate`): the task functions of schedules/tasks.py
as procrastinate tasks, and the periodic ticks that defer them, for every town of a deployment.

    hub.dispatch      every DISPATCH_EVERY   claim due sources of every town and queue
                                             `hub.fetch_sources` jobs of up to FETCH_JOB_SOURCES
                                             sources (the batches of several hosts), both in
                                             the claim's transaction (the outbox, below)
    hub.publish_channel(town, channel)       queued with the delivery ledger rows that call
                                             for it, in their transaction: new records reach
                                             push channels at once, not at the next tick
    hub.tick(kind)    publish, newsletter    every schedule.publish_tick (the smallest of the towns')
                      media                  every 30 seconds
                      websub                 every 10 minutes
                      maintenance            every hour
                      media_gc, tokens       every day
                      -> one `hub.<kind>` job per town
    hub.retry_stalled every 5 seconds        a killed worker's jobs run again (heartbeats; more
                                             often when `hub worker --stalled-after` is shorter)

The outbox: a job is queued on the very connection that writes the rows calling for it
(procrastinate defers on an external connection; its tables are in `public`, which every
town's `search_path` reaches), so both commit or neither does. A dispatcher that dies
mid-claim leaves neither leases nor jobs; an ingest that rolls back leaves no publish job.
A batch whose (town, host) job still waits is rolled back to its savepoint and stays
unclaimed; a channel whose publish job still waits needs no second one. The periodic
publish tick stays as the safety net: pacing, retries, and rows a publish job missed (it
found the channel busy). A waiting publish job that new rows rely on is share-locked until
they commit, so no worker starts it too early.

Periodic ticks are procrastinate periodic tasks: every worker tries to defer them and the
database keeps one per period, so they go on while one worker lives. Jobs carry ids only:
the town, source ids, and the lease name their sources were claimed under.

A worker pool never hammers a host: the claim starts no host while one of its sources is in
flight (leased, from the claim until the job planned its next fetch), spaces a host's batches
(hub/store/dispatch.py), and a job fetches one host's sources at its spacing. Jobs put several
hosts' batches together: a worker takes one job at a time from the queue (~10 ms each), so a
job per host (a source or two) capped a worker at ~90 sources/s. The dispatch tick
tops the queue up to QUEUE_TARGET x FETCH_BATCH sources (backpressure; packed FETCH_JOB_SOURCES
to a job, that is up to ~200 jobs): when workers fall behind, due sources stay in the database,
oldest first, instead of piling up in the queue.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from procrastinate import App, PsycopgConnector, RetryStrategy, SyncPsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued, UniqueViolation
from procrastinate.jobs import Job, Status
from procrastinate.manager import JobManager
from sqlalchemy.engine import Connection, make_url

from hub.store.dispatch import AlreadyQueued, Batch, Enqueue
from hub.store.ledger import LedgerOutbox, attach_outbox
from hub.towns import Deployment, FollowsReloads
from schedules import tasks
from schedules.dispatch import FairPlanner, FetchJob
from schedules.tasks import TownContext, TownContexts

log = logging.getLogger("hub.worker")

DISPATCH_EVERY = timedelta(seconds=1)
FETCH_BATCH = 50  # sources per fetch job without a host (a host's batch is as big as its politeness allows)
# Sources per fetch job, of several hosts: a worker fetches one job at a time from the queue
# (~10 ms each), so jobs of a host's source or two capped a worker at ~90 sources/s.
FETCH_JOB_SOURCES = 16
QUEUE_TARGET = 64  # the queue's depth in FETCH_BATCH-sized units of sources; a tick tops it up to this
# Workers take jobs by priority, then in order: the ticks, which only defer work, go before the
# queued fetch jobs (a dispatch behind a full queue ran only once the queue was empty again).
TICK_PRIORITY = 10
STALLED_CHECK_EVERY = timedelta(seconds=5)
STALLED_AFTER = 30.0  # seconds without a worker's heartbeat before its jobs run again
FETCH_TASK = "hub.fetch_sources"
PUBLISH_CHANNEL_TASK = "hub.publish_channel"

TownTask = Callable[[TownContext], Awaitable[None]]
# (contexts, deployment, capacity in sources, now) -> the fetch jobs claimed and queued (the outbox)
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
    towns). `planner` claims and queues the fetch jobs of a dispatch tick: by default
    schedules/dispatch.py's FairPlanner (fair shares between towns, host-grouped polite claims,
    FOR UPDATE SKIP LOCKED) with this app's outbox. Each town's store gets the ledger outbox."""
    app = App(connector=PsycopgConnector(conninfo=conninfo(deployment.store_url)),
              periodic_defaults={"max_delay": 60})
    outbox = Outbox(app)
    plan = planner or FairPlanner(hostless_batch=FETCH_BATCH, outbox=outbox.fetch_batches, pack=FETCH_JOB_SOURCES)
    contexts.on_open(lambda town, store: attach_outbox(store.engine, outbox.publish_channels(town)))

    @app.task(name=FETCH_TASK, queue="fetch", retry=RetryStrategy(max_attempts=3, wait=5))
    async def fetch_sources(town: str, source_ids: list[str], owner: str) -> int:
        if _removed(contexts, town):
            return 0
        reports = await tasks.fetch_sources(await contexts.get(town), source_ids, owner)
        return len(reports)

    @app.task(name=PUBLISH_CHANNEL_TASK, queue="town")
    async def publish_channel(town: str, channel: str) -> None:
        if not _removed(contexts, town):
            await tasks.publish_channel(await contexts.get(town), channel)

    town_tasks = {kind: app.task(name=f"hub.{kind}", queue="town")(_town_task(contexts, fn))
                  for kind, fn in TOWN_TASKS.items()}

    # One tick at a time across all workers (`lock`), one more waiting (`queueing_lock`): a tick
    # reads the queue's depth before it claims, so two at once (the periodic deferrer adds one
    # every second; a tick can take longer) would each fill the queue up to QUEUE_TARGET.
    @app.task(name="hub.dispatch", queue="tick", queueing_lock="hub.dispatch", lock="hub.dispatch",
              priority=TICK_PRIORITY)
    async def dispatch(timestamp: int) -> int:
        waiting = await _waiting_fetch_jobs(app)
        capacity = max(0, QUEUE_TARGET - waiting) * FETCH_BATCH
        queued = await plan(contexts, _Served(contexts.towns), capacity, datetime.now(timezone.utc))
        return len(queued)

    app.periodic(cron=cron_every(DISPATCH_EVERY), periodic_id="dispatch")(dispatch)

    @app.task(name="hub.tick", queue="tick", priority=TICK_PRIORITY)
    async def tick(timestamp: int, kind: str) -> None:
        for town in list(contexts.towns):  # the towns served now (they follow `hub towns reload`)
            try:
                await town_tasks[kind].configure(lock=f"{kind}:{town}", queueing_lock=f"{kind}:{town}").defer_async(
                    town=town)
            except AlreadyEnqueued:  # the last one still waits: one is enough
                pass

    for kind, every in tick_intervals(deployment).items():
        app.periodic(cron=cron_every(every), periodic_id=kind, task_kwargs={"kind": kind})(tick)

    @app.task(name="hub.retry_stalled", queue="tick", queueing_lock="hub.retry_stalled", priority=TICK_PRIORITY)
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


class Outbox:
    """Jobs queued on the caller's own connection, inside its transaction, so the rows that
    call for a job and the job commit together or not at all. procrastinate defers on an
    external connection through a sync connector that is never opened (no pool of its own)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._jobs = JobManager(SyncPsycopgConnector())

    def defer(self, conn: Connection, task: str, *, queueing_lock: str | None, lock: str | None,
              **kwargs: object) -> None:
        """Queue a job of `task` (ids only in `kwargs`) in `conn`'s transaction. Raises
        AlreadyEnqueued when a job with `queueing_lock` waits: the caller's transaction is
        then aborted unless the call ran under a savepoint (`conn.begin_nested()`)."""
        job = self.app.tasks[task].configure(queueing_lock=queueing_lock, lock=lock).make_new_job(**kwargs)
        self._jobs.defer_job(job, connection=conn.connection.driver_connection)

    def fetch_batches(self, town: str, owner: str) -> Enqueue:
        """A town's claim hook for one dispatch tick (hub.store.dispatch): one `hub.fetch_sources`
        job per batch, leased under `owner`. A batch of one host: at most one job per (town,
        host) waits (`queueing_lock`) and one host's jobs run one at a time across workers
        (`lock`). A batch of several hosts or none (packed: `FETCH_JOB_SOURCES`) needs no key:
        its sources' leases keep them from being claimed twice, and the claim starts no host
        that has a source in flight."""
        def enqueue(conn: Connection, batch: Batch) -> None:
            key, lock = fetch_locks(town, batch.host)
            try:
                self.defer(conn, FETCH_TASK, queueing_lock=key, lock=lock, town=town,
                           source_ids=list(batch.source_ids), owner=owner)
            except AlreadyEnqueued as exc:  # the claim rolls this batch back: due again next tick
                raise AlreadyQueued(key) from exc
        return enqueue

    def publish_channels(self, town: str) -> LedgerOutbox:
        """A town store's ledger hook (hub.store.ledger.attach_outbox): a `hub.publish_channel`
        job for each channel that got rows. One waits per (town, channel) at most: a burst of
        rows gives one job, which claims all of them."""
        def queue(conn: Connection, channels: Sequence[str]) -> None:
            keys = {channel: f"publish_channel:{town}:{channel}" for channel in channels}
            waiting = _waiting_locks(conn, list(keys.values()))  # the usual case in a burst: one read
            for channel, key in keys.items():
                if key in waiting:
                    continue
                try:
                    with conn.begin_nested():  # a refusal must not abort the rows' transaction
                        self.defer(conn, PUBLISH_CHANNEL_TASK, queueing_lock=key, lock=key, town=town,
                                   channel=channel)
                except AlreadyEnqueued:
                    pass  # the waiting job claims these rows too
        return queue


def publishing_outbox(deployment: Deployment) -> Callable[[str], LedgerOutbox]:
    """Town id -> its ledger hook, for a process that queues jobs but runs none (a web
    process: the cockpit's approve, hide, edit, merge and split write ledger rows, whose
    publish job must commit with them, as an ingest's does in a worker). The app's tasks
    are registered only to make the jobs; it never opens a connection of its own."""
    outbox = Outbox(build_app(deployment, TownContexts(deployment.towns, owner="web")))
    return outbox.publish_channels


def _waiting_locks(conn: Connection, keys: list[str]) -> set[str]:
    """Which of these queueing locks a waiting job holds (procrastinate's unique index on them).
    Those jobs are share-locked until the caller commits: a worker fetches jobs with FOR
    UPDATE SKIP LOCKED, so it cannot start one before the rows that rely on it are visible
    (else it could run, find nothing, and leave the new rows to the next publish tick)."""
    rows = conn.exec_driver_sql("SELECT queueing_lock FROM procrastinate_jobs "
                                "WHERE status = 'todo' AND queueing_lock = ANY(%s) FOR SHARE", (keys,))
    return {key for key, in rows}


def fetch_locks(town: str, host: str | None) -> tuple[str | None, str | None]:
    """(queueing lock, lock) of a fetch job: per (town, host); none for a batch of several
    hosts or none."""
    if host:
        return f"fetch:{town}:{host}", f"host:{host}"
    return None, None


@dataclass(frozen=True)
class _Served:
    """What a planner reads of a deployment: the towns served right now."""

    towns: dict


async def follow_reloads(deployment: Deployment, contexts: TownContexts, every: float = 5.0) -> None:
    """Keep this worker's towns in step with `hub towns reload`: poll the towns registry's
    generation and, when it moves, read the deployment file again. Runs until cancelled."""
    from hub.store.townregistry import TownRegistry

    following = _WorkerTowns(deployment.path, TownRegistry(deployment.store_url), contexts)
    try:
        following.generation = await asyncio.to_thread(following.registry.generation)  # the towns as loaded
        while True:
            await asyncio.sleep(every)
            await following.refresh()
    finally:
        following.registry.close()


class _WorkerTowns(FollowsReloads):
    """A worker's towns (its `TownContexts`), following the registry like the web's."""

    def __init__(self, path, registry, contexts: TownContexts) -> None:
        self.path, self.registry, self.contexts = path, registry, contexts

    async def _apply(self, deployment: Deployment, registered: dict[str, str] | None) -> None:
        changed = self.contexts.follow(deployment.towns)
        log.info("towns reload: now %d towns; rebuilt or removed: %s", len(deployment.towns),
                 ", ".join(changed) or "none")


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
