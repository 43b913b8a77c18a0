"""The scaled tier's outbox (issue 18): jobs are queued in the transaction of the rows that
call for them, on PostgreSQL with procrastinate's own defer on that connection.

- A dispatch claim and its fetch jobs commit together: a claim that dies before its commit
  leaves neither leases nor jobs; one that commits has exactly one job per batch, carrying
  the batch's source ids and lease name.
- A (town, host) whose fetch job still waits (queueing lock) costs only that batch: its
  sources stay unclaimed, the other batches go on.
- Delivery ledger rows and their `hub.publish_channel` job appear together (one job per
  channel however many rows), and neither survives a transaction that fails at its commit;
  a worker cannot start that job before the rows commit; with a worker running, new records
  reach a push channel long before the (hourly) publish tick.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text

from hub.models import Item, Parsed
from hub.store import FetchOutcome, FetchState
from hub.store.dispatch import DispatchStore
from hub.towns import load_deployment
from schedules.dispatch import FairPlanner, source_hosts
from tests.feedserver import FeedServer
from tests.runtimetown import channel_lines, deployment, feeds, town_config

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio(loop_scope="module")]

TOWN = "musterstadt"
# two sources on each of two hosts, one on a third
URLS = {"a0": "http://a.test/0.xml", "a1": "http://a.test/1.xml", "b0": "http://b.test/0.xml",
        "b1": "http://b.test/1.xml", "c0": "http://c.test/0.xml"}


def deployment_file(folder: Path, store_url: str) -> Path:
    config = town_config(folder / f"{TOWN}.yaml", TOWN, "http://musterstadt.test", URLS,
                         channel_file=folder / "archiv.jsonl")
    return deployment(folder / "deploy.yaml", store_url, {TOWN: config})


class Town:
    """A deployment of one town on PostgreSQL with procrastinate's tables, its app built (its
    tasks and outbox), no worker running: the jobs queued stay in the table to be looked at.
    One per module (a database costs seconds on a busy machine); `reset` between tests."""

    def __init__(self, tmp_path: Path, store_url: str) -> None:
        self.config = deployment_file(tmp_path, store_url)

    async def __aenter__(self) -> Town:
        from hub.cli.worker import migrate
        from schedules.procrastinate_app import Outbox, build_app
        from schedules.tasks import TownContexts

        migrate(self.config)
        self.deployment = load_deployment(self.config)
        self.contexts = TownContexts(self.deployment.towns, owner="test-worker")
        self.app = build_app(self.deployment, self.contexts)
        self.outbox = Outbox(self.app)
        self.ctx = await self.contexts.get(TOWN)
        self.store = self.ctx.store
        DispatchStore(self.store).sync_hosts(source_hosts(self.ctx.settings))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.contexts.close()

    def reset(self) -> None:
        """No jobs, no leases, no host waiting, every source due a minute ago."""
        self.now = datetime.now(timezone.utc)
        self.sql("DELETE FROM procrastinate_jobs")
        self.sql("UPDATE sources SET lease_owner = NULL, lease_until = NULL, next_fetch_at = :due",
                 due=self.now - timedelta(minutes=1))
        self.sql("UPDATE dispatch_hosts SET next_allowed_at = NULL, last_claim_at = NULL")

    def sql(self, statement: str, **params: object) -> list[tuple]:
        with self.store.engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return [tuple(r) for r in result] if result.returns_rows else []

    def claim(self, enqueue, owner: str = "tick-1"):
        return DispatchStore(self.store).claim(self.now, limit=100, per_host=10, spacing=timedelta(0), owner=owner,
                                               until=self.now + timedelta(minutes=5), enqueue=enqueue)

    def leased(self) -> dict[str, str]:
        return dict(self.sql("SELECT id, lease_owner FROM sources WHERE lease_owner IS NOT NULL"))

    def jobs(self, task: str) -> list[tuple]:
        """(queueing lock, lock, args) of the waiting jobs of `task`, by queueing lock."""
        return self.sql("SELECT queueing_lock, lock, args FROM procrastinate_jobs "
                        "WHERE task_name = :task AND status = 'todo' ORDER BY queueing_lock", task=task)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_town(tmp_path_factory, pg_template):
    import psycopg

    from tests.conftest import PG_ADMIN, _url_of

    name = f"hub_outbox_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        async with Town(tmp_path_factory.mktemp("outbox"), _url_of(name)) as town:
            yield town
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def town(module_town: Town) -> Town:
    module_town.reset()
    return module_town


async def test_a_claim_that_dies_before_its_commit_leaves_neither_leases_nor_jobs(town: Town) -> None:
    queue = town.outbox.fetch_batches(TOWN, "tick-1")
    queued = []

    def dies_after_the_first_batch(conn, batch) -> None:
        if queued:
            raise RuntimeError("the dispatcher died")
        queue(conn, batch)
        queued.append(batch)

    with pytest.raises(RuntimeError, match="died"):
        town.claim(dies_after_the_first_batch)
    assert queued, "the first batch's job was queued before the claim died"
    assert town.leased() == {}
    assert town.jobs("hub.fetch_sources") == []
    # nothing is lost: the next claim hands every source out
    assert sorted(i for b in town.claim(town.outbox.fetch_batches(TOWN, "tick-2")) for i in b.source_ids) == \
        sorted(URLS)


async def test_a_committed_claim_has_one_job_per_batch_with_its_sources(town: Town) -> None:
    from schedules.procrastinate_app import FETCH_TASK

    planner = FairPlanner(outbox=town.outbox.fetch_batches)
    planned = await planner(town.contexts, town.deployment, 100, town.now)

    assert sorted((j.host, sorted(j.source_ids)) for j in planned) == [
        ("a.test", ["a0", "a1"]), ("b.test", ["b0", "b1"]), ("c.test", ["c0"])]
    owner = planned[0].owner
    assert town.leased() == {sid: owner for sid in URLS}
    assert town.jobs(FETCH_TASK) == [
        (f"fetch:{TOWN}:{job.host}", f"host:{job.host}", {"town": TOWN, "source_ids": job.source_ids, "owner": owner})
        for job in sorted(planned, key=lambda j: j.host)]


async def test_packed_jobs_of_several_hosts_carry_no_keys_so_ticks_never_collide(town: Town) -> None:
    """The worker's default: a job holds the batches of several hosts; without a per-host key,
    jobs of two ticks never refuse each other (the leases keep a source from a second job)."""
    from schedules.procrastinate_app import FETCH_JOB_SOURCES, FETCH_TASK

    planner = FairPlanner(outbox=town.outbox.fetch_batches, pack=FETCH_JOB_SOURCES)
    planned = await planner(town.contexts, town.deployment, 100, town.now)

    assert [(j.host, sorted(j.source_ids)) for j in planned] == [(None, sorted(URLS))]
    assert town.jobs(FETCH_TASK) == [(None, None, {"town": TOWN, "source_ids": planned[0].source_ids,
                                                   "owner": planned[0].owner})]
    assert await planner(town.contexts, town.deployment, 100, town.now) == []  # all leased: nothing twice


async def test_a_worker_takes_the_dispatch_tick_before_the_fetch_jobs_that_wait(town: Town) -> None:
    """A tick deferred behind a full queue of fetch jobs would run only once the queue is
    empty: supply would come in bursts. The ticks go first."""
    from schedules.procrastinate_app import FETCH_TASK

    planner = FairPlanner(outbox=town.outbox.fetch_batches)  # one job per host: three waiting
    await planner(town.contexts, town.deployment, 100, town.now)
    async with town.app.open_async():
        await town.app.tasks["hub.dispatch"].defer_async(timestamp=0)
        taken = [await town.app.job_manager.fetch_job(queues=None, worker_id=None) for _ in range(2)]
    assert [job.task_name for job in taken] == ["hub.dispatch", FETCH_TASK]


async def test_a_waiting_job_for_a_host_skips_only_that_batch(town: Town) -> None:
    from schedules.procrastinate_app import FETCH_TASK

    with town.store.engine.begin() as conn:  # a job for a.test from an earlier tick still waits
        town.outbox.defer(conn, FETCH_TASK, queueing_lock=f"fetch:{TOWN}:a.test", lock="host:a.test", town=TOWN,
                          source_ids=["a0"], owner="tick-0")

    batches = town.claim(town.outbox.fetch_batches(TOWN, "tick-1"))

    assert sorted(b.host for b in batches) == ["b.test", "c.test"]
    assert town.leased() == {"b0": "tick-1", "b1": "tick-1", "c0": "tick-1"}  # a0, a1 stay due
    assert [(key, args["owner"]) for key, _, args in town.jobs(FETCH_TASK)] == [
        (f"fetch:{TOWN}:a.test", "tick-0"), (f"fetch:{TOWN}:b.test", "tick-1"), (f"fetch:{TOWN}:c.test", "tick-1")]


_posts = itertools.count(1)


def post(source: str, now: datetime) -> FetchOutcome:
    """A new post (each call another) of `source`."""
    n = next(_posts)
    item = Item(source_id=source, external_id=f"{source}-{n}", merchant_id=source, title=f"Beitrag {n} von {source}",
                summary=f"Text {n}", content_html=f"<p>Text {n}</p>", content_text=f"Text {n}",
                url=f"https://{source}.example/{n}", published=now - timedelta(hours=1))
    return FetchOutcome(source, now, "ok", parsed=Parsed((item,), complete=False), state=FetchState('"v1"', None))


def ledger_rows(town: Town) -> int:
    return town.sql("SELECT count(*) FROM ledger")[0][0]


async def test_ledger_rows_and_their_publish_job_appear_together(town: Town) -> None:
    from schedules.procrastinate_app import PUBLISH_CHANNEL_TASK

    before = ledger_rows(town)
    town.store.apply([post("a0", town.now)])
    assert ledger_rows(town) == before + 1
    key = f"publish_channel:{TOWN}:archiv"
    assert town.jobs(PUBLISH_CHANNEL_TASK) == [(key, key, {"town": TOWN, "channel": "archiv"})]

    town.store.apply([post("b0", town.now), post("c0", town.now)])  # a burst: still one waiting job
    assert ledger_rows(town) == before + 3
    assert len(town.jobs(PUBLISH_CHANNEL_TASK)) == 1


async def test_a_waiting_publish_job_cannot_start_before_new_rows_commit(town: Town) -> None:
    """A worker takes jobs with FOR UPDATE SKIP LOCKED; rows that rely on a waiting job hold
    it until they commit, else the job could run before they are visible and miss them."""
    import psycopg

    from schedules.procrastinate_app import PUBLISH_CHANNEL_TASK

    town.store.apply([post("a0", town.now)])  # the job now waits
    url = town.deployment.store_url.replace("postgresql+psycopg://", "postgresql://")

    def worker_takes() -> list[tuple]:
        with psycopg.connect(url, autocommit=True) as worker:
            return worker.execute("SELECT id FROM procrastinate_jobs WHERE task_name = %s AND status = 'todo' "
                                  "FOR UPDATE SKIP LOCKED", (PUBLISH_CHANNEL_TASK,)).fetchall()

    with town.store.engine.begin() as conn:  # more rows for the channel, not committed yet
        town.outbox.publish_channels(TOWN)(conn, ["archiv"])
        assert worker_takes() == []
    assert len(worker_takes()) == 1


async def test_rows_whose_transaction_fails_at_commit_leave_no_publish_job(town: Town) -> None:
    from schedules.procrastinate_app import PUBLISH_CHANNEL_TASK

    before = ledger_rows(town)
    # a check that fails only at COMMIT, after the rows and the job were written
    town.sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
             "$$ BEGIN RAISE EXCEPTION 'the disk is full'; END $$")
    town.sql("CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON ledger DEFERRABLE INITIALLY DEFERRED "
             "FOR EACH ROW EXECUTE FUNCTION refuse()")
    try:
        with pytest.raises(Exception, match="disk is full"):
            town.store.apply([post("a0", town.now)])
    finally:
        town.sql("DROP TRIGGER refuse_at_commit ON ledger")
        town.sql("DROP FUNCTION refuse()")
    assert ledger_rows(town) == before
    assert town.jobs(PUBLISH_CHANNEL_TASK) == []


async def test_a_new_record_reaches_a_push_channel_without_waiting_for_the_publish_tick(
        tmp_path: Path, pg_url: str) -> None:
    """End to end with a worker: the town's publish tick is hourly, yet fetched records reach
    the channel within seconds, delivered by the `hub.publish_channel` job their rows queued."""
    import psycopg

    from hub.cli.worker import migrate
    from schedules.procrastinate_app import PUBLISH_CHANNEL_TASK, build_app
    from schedules.tasks import TownContexts

    channel = tmp_path / "archiv.jsonl"
    with FeedServer(files=feeds(TOWN, 2)) as server:
        urls = {f"q{i}": server.url(f"/files/{TOWN}-{i}.xml") for i in range(2)}
        config = town_config(tmp_path / f"{TOWN}.yaml", TOWN, "http://musterstadt.test", urls, channel_file=channel)
        config.write_text(config.read_text().replace("publish_tick: 1s", "publish_tick: 1h"))
        migrate(deploy := deployment(tmp_path / "deploy.yaml", pg_url, {TOWN: config}))
        contexts = TownContexts(load_deployment(deploy).towns, owner="test-worker")
        app = build_app(load_deployment(deploy), contexts, stalled_after=5)
        async with app.open_async():
            worker = asyncio.create_task(app.run_worker_async(
                concurrency=4, install_signal_handlers=False, delete_jobs="never", update_heartbeat_interval=1))
            try:
                deadline = time.monotonic() + 20
                while len(channel_lines(channel)) < 4:
                    assert time.monotonic() < deadline, f"the channel got {len(channel_lines(channel))} of 4 records"
                    await asyncio.sleep(0.1)
            finally:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
                await contexts.close()
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        done = conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s AND status = 'succeeded'",
                            (PUBLISH_CHANNEL_TASK,)).fetchone()[0]
    assert done >= 1
    records = [line["record"] for line in channel_lines(channel)]
    assert len(records) == len(set(records)) == 4  # each record once


async def test_a_record_hidden_in_a_web_process_queues_its_channels_publish_job_with_the_rows(town: Town) -> None:
    """`hub serve` of a procrastinate deployment: the project manager hides a record in the
    cockpit; the channel's withdrawal row and its publish job commit together, so the record
    leaves the channel within seconds, not at the next (hourly) publish tick."""
    from hub.cli.towns import web_store_opener
    from hub.store.admin import AdminStore
    from schedules.procrastinate_app import PUBLISH_CHANNEL_TASK

    town.store.apply([post("a0", town.now)])
    record_id = town.sql("SELECT record_id FROM record_origins o JOIN items i ON i.id = o.item_id "
                         "WHERE i.source_id = 'a0' ORDER BY o.item_id DESC LIMIT 1")[0][0]
    town.sql("DELETE FROM procrastinate_jobs")  # the ingest's publish job has run
    before = ledger_rows(town)
    web_store = web_store_opener(town.deployment)(town.deployment.towns[TOWN])
    try:
        assert AdminStore(web_store).hide(record_id, "falsche Angaben", "kuemmerer")
    finally:
        web_store.close()
    assert ledger_rows(town) == before + 1  # the withdrawal
    key = f"publish_channel:{TOWN}:archiv"
    assert town.jobs(PUBLISH_CHANNEL_TASK) == [(key, key, {"town": TOWN, "channel": "archiv"})]


async def test_a_record_hidden_with_hub_items_queues_its_channels_publish_job_with_the_rows(town: Town) -> None:
    """`hub items --town T hide ID` on a procrastinate deployment writes the withdrawal row
    and the channel's publish job together, as the cockpit does."""
    from typer.testing import CliRunner

    from hub.cli.commands import app
    from schedules.procrastinate_app import PUBLISH_CHANNEL_TASK

    town.store.apply([post("a1", town.now)])
    record_id = town.sql("SELECT record_id FROM record_origins o JOIN items i ON i.id = o.item_id "
                         "WHERE i.source_id = 'a1' ORDER BY o.item_id DESC LIMIT 1")[0][0]
    town.sql("DELETE FROM procrastinate_jobs")
    before = ledger_rows(town)
    done = CliRunner().invoke(app, ["items", "-c", str(town.config), "--town", TOWN, "hide", str(record_id)])
    assert done.exit_code == 0, done.output
    assert f"record {record_id} is hidden" in done.output
    assert ledger_rows(town) == before + 1
    key = f"publish_channel:{TOWN}:archiv"
    assert town.jobs(PUBLISH_CHANNEL_TASK) == [(key, key, {"town": TOWN, "channel": "archiv"})]

    unknown = CliRunner().invoke(app, ["items", "-c", str(town.config), "--town", "nirgendwo"])
    assert unknown.exit_code == 2
    assert "has no town 'nirgendwo'" in unknown.output
