"""One contract, two runtimes (issue 18): the embedded tier (APScheduler in this process,
SQLite) and the scaled tier (procrastinate workers, PostgreSQL) run the same task functions
(schedules/tasks.py) and must give the same results:

- due sources are fetched once per period (and again once they are due again);
- new items land once;
- a push channel (jsonlines) gets each record once;
- maintenance runs (an item tombstoned long ago is forgotten).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from hub.http import Fetcher
from hub.pipeline import Pipeline
from hub.towns import Deployment, load_deployment
from schedules.clock import SystemClock
from tests.feedserver import FeedServer
from tests.runtimetown import channel_lines, deployment, feeds, town_config

# Timeless: its feeds are dated relative to now and it checks nothing calendar-bound.
pytestmark = pytest.mark.timeless

N_SOURCES = 6
POSTS = 2
TOWN = "musterstadt"


class InProcess:
    """`hub run`'s half without the web: the embedded Scheduler over a SQLite town."""

    def __init__(self, tmp_path: Path, urls: dict[str, str], channel: Path) -> None:
        self.config = town_config(tmp_path / "town.yaml", TOWN, "http://musterstadt.test", urls,
                                  store_url=f"sqlite:///{tmp_path / 'hub.db'}", channel_file=channel)

    async def __aenter__(self) -> InProcess:
        from schedules.scheduler import Scheduler
        from schedules.tasks import open_town_store

        self.deployment = load_deployment(self.config)
        town = self.deployment.towns["default"]
        self.store = open_town_store(town)
        self.fetcher = await Fetcher(town.settings.fetcher, base_dir=town.settings.base_dir).__aenter__()
        pipeline = Pipeline(town.settings, self.store, self.fetcher, parse_workers=0)
        self.scheduler = Scheduler(town.settings, self.store, pipeline, self.fetcher, clock=SystemClock())
        self.scheduler.start()
        return self

    async def run_now(self, kind: str) -> None:
        self.scheduler._aps.modify_job(kind, next_run_time=datetime.now(timezone.utc))

    async def __aexit__(self, *exc: object) -> None:
        await self.scheduler.stop()
        await self.fetcher.__aexit__(None, None, None)
        self.store.close()


class Procrastinate:
    """A procrastinate worker (run_worker_async, as `hub worker` runs it) over a deployment
    of one town on PostgreSQL."""

    def __init__(self, tmp_path: Path, urls: dict[str, str], channel: Path, pg_url: str) -> None:
        town = town_config(tmp_path / f"{TOWN}.yaml", TOWN, "http://musterstadt.test", urls, channel_file=channel)
        self.config = deployment(tmp_path / "deploy.yaml", pg_url, {TOWN: town})

    async def __aenter__(self) -> Procrastinate:
        from hub.cli.worker import migrate
        from schedules.procrastinate_app import build_app
        from schedules.tasks import TownContexts, open_town_store

        migrate(self.config)
        self.deployment: Deployment = load_deployment(self.config)
        self.store = open_town_store(self.deployment.towns[TOWN])
        self.contexts = TownContexts(self.deployment.towns, owner="test-worker")
        self.app = build_app(self.deployment, self.contexts, stalled_after=5)
        await self.app.open_async().__aenter__()
        self.worker = asyncio.create_task(self.app.run_worker_async(
            concurrency=4, install_signal_handlers=False, delete_jobs="successful", update_heartbeat_interval=1))
        return self

    async def run_now(self, kind: str) -> None:
        await self.app.tasks[f"hub.{kind}"].defer_async(town=TOWN)

    async def __aexit__(self, *exc: object) -> None:
        self.worker.cancel()
        await asyncio.gather(self.worker, return_exceptions=True)
        await self.app.close_async()
        await self.contexts.close()
        self.store.close()


@pytest.fixture(params=["inprocess", pytest.param("procrastinate", marks=pytest.mark.postgres)])
def runtime_kind(request) -> str:
    return request.param


async def until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.1)


def fetches(server: FeedServer) -> Counter:
    return Counter(r.path.split("?")[0] for r in server.requests if r.path.startswith("/files/"))


def scalar(store, sql: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


async def test_both_runtimes_keep_the_contract(runtime_kind: str, request, tmp_path: Path) -> None:
    channel = tmp_path / "archiv.jsonl"
    with FeedServer(files=feeds(TOWN, N_SOURCES, POSTS)) as server:
        urls = {f"q{i}": server.url(f"/files/{TOWN}-{i}.xml") for i in range(N_SOURCES)}
        runtime = (InProcess(tmp_path, urls, channel) if runtime_kind == "inprocess" else
                   Procrastinate(tmp_path, urls, channel, request.getfixturevalue("pg_url")))
        async with runtime:
            store = runtime.store
            # every due source once, each new item once, and each record once on the channel
            await until(lambda: len(fetches(server)) == N_SOURCES, "every source was fetched")
            await until(lambda: len(channel_lines(channel)) >= N_SOURCES * POSTS, "the channel got every record")
            await asyncio.sleep(1.5)  # more ticks: nothing is fetched or sent again within the period
            assert set(fetches(server).values()) == {1}, fetches(server)
            assert scalar(store, "SELECT count(*) FROM items") == N_SOURCES * POSTS
            sent = Counter(line["record"] for line in channel_lines(channel))
            assert len(sent) == N_SOURCES * POSTS and set(sent.values()) == {1}, sent

            # the next period: due again, fetched once more (conditional GET: nothing new, nothing resent)
            with store.engine.begin() as conn:
                conn.execute(text("UPDATE sources SET next_fetch_at = :now"), {"now": datetime.now(timezone.utc)})
            await until(lambda: set(fetches(server).values()) == {2}, "every source was fetched again")
            await asyncio.sleep(1.5)
            assert set(fetches(server).values()) == {2}, fetches(server)
            assert scalar(store, "SELECT count(*) FROM items") == N_SOURCES * POSTS
            assert len(channel_lines(channel)) == N_SOURCES * POSTS

            # maintenance: an item deleted at its source long ago (beyond retention) is forgotten
            long_ago = datetime.now(timezone.utc) - timedelta(days=365)
            with store.engine.begin() as conn:
                gone = conn.execute(text("SELECT id FROM items ORDER BY id LIMIT 1")).scalar_one()
                conn.execute(text("UPDATE items SET deleted_at = :at WHERE id = :id"), {"at": long_ago, "id": gone})
            await runtime.run_now("maintenance")
            await until(lambda: scalar(store, "SELECT count(*) FROM items") == N_SOURCES * POSTS - 1,
                        "maintenance forgot the old tombstone")



@pytest.mark.parametrize(("every", "cron"), [
    (timedelta(seconds=1), "* * * * * */1"), (timedelta(seconds=7), "* * * * * */10"),
    (timedelta(seconds=30), "* * * * * */30"), (timedelta(minutes=10), "*/10 * * * * 0"),
    (timedelta(minutes=7), "*/10 * * * * 0"), (timedelta(hours=1), "0 */1 * * * 0"), (timedelta(days=1), "0 3 * * * 0"),
])
def test_ticks_become_cron_expressions_no_more_often_than_asked(every: timedelta, cron: str) -> None:
    from schedules.procrastinate_app import cron_every

    assert cron_every(every) == cron


def test_hub_worker_refuses_the_embedded_tier(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hub.cli.commands import app

    config = town_config(tmp_path / "town.yaml", TOWN, "http://musterstadt.test", {"q0": "http://127.0.0.1:9/feed"},
                         store_url=f"sqlite:///{tmp_path / 'hub.db'}")
    result = CliRunner().invoke(app, ["worker", "-c", str(config)])
    assert result.exit_code == 2
    assert "runtime: inprocess" in result.output and "hub run" in result.output


@pytest.mark.postgres
async def test_a_running_worker_follows_towns_reload(tmp_path: Path, pg_url: str) -> None:
    """`hub towns reload` reaches a running worker: a town added to the deployment file gets
    its sources fetched without a restart."""
    from hub.cli.towns import register
    from schedules.procrastinate_app import follow_reloads

    with FeedServer(files={**feeds(TOWN, 2), **feeds("beispielheim", 2)}) as server:
        urls = {f"q{i}": server.url(f"/files/{TOWN}-{i}.xml") for i in range(2)}
        async with Procrastinate(tmp_path, urls, tmp_path / "archiv.jsonl", pg_url) as runtime:
            register(runtime.deployment)
            following = asyncio.create_task(follow_reloads(runtime.deployment, runtime.contexts, every=0.2))
            try:
                await until(lambda: len(fetches(server)) == 2, "the first town's sources were fetched")
                other = town_config(tmp_path / "beispielheim.yaml", "beispielheim", "http://beispielheim.test",
                                    {f"b{i}": server.url(f"/files/beispielheim-{i}.xml") for i in range(2)})
                deployment(runtime.config, pg_url, {TOWN: tmp_path / f"{TOWN}.yaml", "beispielheim": other})
                register(load_deployment(runtime.config))
                await until(lambda: len(fetches(server)) == 4, "the new town's sources were fetched")
            finally:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
        assert set(fetches(server).values()) == {1}
