"""`hub worker` and `hub migrate`: the scaled tier's processes (issue 18).

    hub migrate -c deploy.yaml                  the hub's schema in every town, procrastinate's tables
    hub worker  -c deploy.yaml --concurrency 32  one stateless worker; start as many as the load needs

Both take a deployment file (`towns:`) or a single town config; `hub worker` needs
`runtime: procrastinate` and a PostgreSQL store.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import typer

from hub.cli.common import ConfigOpt, deployment_from, err, out
from hub.errors import HubError
from hub.towns import Deployment


def migrate(config: ConfigOpt = Path("config.yaml")) -> None:
    """Apply the hub's schema to every town's store and, on PostgreSQL, create procrastinate's
    tables. Safe to run again: what is in place is left as it is."""
    from schedules.procrastinate_app import apply_procrastinate_schema
    from schedules.tasks import open_town_store

    deployment = deployment_from(config)
    for town in deployment.towns.values():
        try:
            store = open_town_store(town)  # migrates on open
        except HubError as exc:
            err.print(f"town {town.id}: {exc}", style="red", markup=False)
            raise typer.Exit(2) from None
        store.close()
        out.print(f"town {town.id}: schema up to date ({len(town.settings.sources()):,} sources)")
    if deployment.store_url.startswith("postgresql"):
        created = apply_procrastinate_schema(deployment.store_url)
        out.print("procrastinate: tables created" if created else "procrastinate: tables already in place")
    elif deployment.runtime == "procrastinate":
        err.print("runtime 'procrastinate' needs a PostgreSQL store", style="red")
        raise typer.Exit(2)


def worker(config: ConfigOpt = Path("config.yaml"),
           concurrency: Annotated[int, typer.Option(min=1, help="Jobs this process runs at once.")] = 32,
           stalled_after: Annotated[float, typer.Option(
               min=1, help="Seconds without a worker's heartbeat before its jobs run again elsewhere.")] = 30.0,
           ) -> None:
    """Run one procrastinate worker for every town of the deployment: fetch, parse and store,
    media, publish, newsletter and upkeep jobs, and the periodic ticks that defer them.
    Workers keep no state: start as many as needed, on any machine that reaches the
    database. SIGTERM or Ctrl-C stops it cleanly: running jobs finish (for at most the
    towns' `schedule.shutdown_grace`), no new job starts. `hub towns reload` reaches running
    workers within seconds: new towns get jobs, changed ones run on their new config."""
    deployment = deployment_from(config)
    if deployment.runtime != "procrastinate":
        err.print(f"{config} runs the embedded tier (runtime: {deployment.runtime}); `hub run` does its work. "
                  "For workers, set `runtime: procrastinate` and a PostgreSQL store.url, then `hub migrate`.",
                  style="red")
        raise typer.Exit(2)
    if not deployment.store_url.startswith("postgresql"):
        err.print(f"{config}: runtime 'procrastinate' needs a PostgreSQL store, not {deployment.store_url} "
                  "(hint: store.url: postgresql+psycopg://user@host/db)", style="red", markup=False)
        raise typer.Exit(2)
    import psycopg  # here, not at the top: every other `hub` command starts without it

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("procrastinate").setLevel(logging.WARNING)  # a line per job would drown the log
    try:
        asyncio.run(_run_worker(deployment, concurrency, stalled_after))
    except _SchemaMissing:
        err.print(f"procrastinate's tables are missing: run `hub migrate -c {config}` first", style="red")
        raise typer.Exit(2) from None
    except psycopg.OperationalError as exc:  # the database is not there (yet)
        err.print(f"cannot reach the database of {config}: {exc}".strip(), style="red", markup=False)
        raise typer.Exit(2) from None


POLL_EVERY = 1.0  # seconds between a worker's looks for jobs that no notification announces


class _SchemaMissing(Exception):
    pass


async def _run_worker(deployment: Deployment, concurrency: int, stalled_after: float) -> None:
    from schedules.procrastinate_app import build_app, follow_reloads, has_procrastinate_schema
    from schedules.scheduler import process_owner
    from schedules.tasks import TownContexts

    # A job does its database work in asyncio.to_thread; the loop's default pool has
    # cpu_count + 4 threads, so on a small machine most of `concurrency` jobs would queue
    # for a thread while the database idles. One per job (the town's connection pool
    # bounds the connections, and keeps about as many: TownContexts).
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=concurrency + 4, thread_name_prefix="hub-worker"))
    if not await asyncio.to_thread(has_procrastinate_schema, deployment.store_url):
        raise _SchemaMissing
    owner = process_owner()
    contexts = TownContexts(deployment.towns, owner=owner, connections=concurrency)
    app = build_app(deployment, contexts, stalled_after=stalled_after)
    grace = max((t.settings.schedule.shutdown_grace for t in deployment.towns.values())).total_seconds()
    following = asyncio.create_task(follow_reloads(deployment, contexts)) if not deployment.is_single_town else None
    try:
        async with app.open_async():
            await app.run_worker_async(
                name=owner, concurrency=concurrency, delete_jobs="successful", shutdown_graceful_timeout=grace,
                # New jobs arrive by LISTEN/NOTIFY, but a retried job (stalled or failed) or one
                # whose lock came free is only seen by polling: 1 s instead of 5 keeps that short.
                fetch_job_polling_interval=POLL_EVERY,
                update_heartbeat_interval=max(0.5, stalled_after / 4), stalled_worker_timeout=stalled_after)
    finally:
        if following:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        await contexts.close()
