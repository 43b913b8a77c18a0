"""A worker's town stores keep the connections its jobs use (issue 18).

A pool closes each connection given back beyond the ones it keeps, and a PostgreSQL
connection is a server process of its own: with two kept per town, a worker running 64 jobs
opened ~14 connections a second (bench_scale.py), each a new process warming its caches. A
`hub worker` now shares its job count among its towns as connections to keep.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import event

from hub.store import TOWN_KEEPS, Store
from hub.towns import load_deployment
from tests.runtimetown import deployment, town_config

pytestmark = pytest.mark.postgres

TOWNS = ("musterstadt", "beispielheim")
AT_ONCE = 8  # queries of one town at the same time
ROUNDS = 5


def connections_opened(store: Store) -> int:
    """Connections the store opens while AT_ONCE threads query it at the same time, ROUNDS
    times, each round waiting for all (what a worker's concurrent jobs of one town do);
    counted after a first such round."""
    opened = []
    together = threading.Barrier(AT_ONCE)

    def one_query() -> None:
        with store.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            together.wait(timeout=30)  # every thread holds its connection now

    with ThreadPoolExecutor(AT_ONCE) as pool:
        for round_ in range(ROUNDS + 1):
            if round_ == 1:
                event.listen(store.engine, "connect", lambda *_: opened.append(1))
            list(pool.map(lambda _: one_query(), range(AT_ONCE)))
    return len(opened)


def deployment_of_two_towns(folder: Path, store_url: str) -> Path:
    configs = {t: town_config(folder / f"{t}.yaml", t, f"http://{t}.test", {f"{t}0": f"http://{t}.test/0.xml"})
               for t in TOWNS}
    return deployment(folder / "deploy.yaml", store_url, configs)


def test_a_workers_town_store_keeps_the_connections_its_jobs_use(tmp_path: Path, pg_url: str) -> None:
    from hub.cli.worker import migrate
    from schedules.tasks import TownContexts

    path = deployment_of_two_towns(tmp_path, pg_url)
    migrate(path)
    towns = load_deployment(path).towns

    async def opened(connections: int) -> int:
        contexts = TownContexts(towns, owner="test-worker", connections=connections)
        try:
            store = (await contexts.get(TOWNS[0])).store
            return await asyncio.to_thread(connections_opened, store)
        finally:
            await contexts.close()

    # a worker of 16 jobs and two towns keeps 8 a town: none is opened again
    assert asyncio.run(opened(16)) == 0
    # the default (a process with no jobs to share, e.g. `hub serve`) keeps two: the
    # others are closed after every round and opened again
    assert asyncio.run(opened(0)) == ROUNDS * (AT_ONCE - TOWN_KEEPS)
