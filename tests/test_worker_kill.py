"""A `hub worker` killed with SIGKILL in the middle of its fetch batches, 20 times over and
restarted each time, loses no fetch and duplicates no item (issue 18).

150 sources on 5 loopback hosts (30 per host: one fetch job each), every answer 0.3 s late
so a batch is still under way when the kill comes. A killed worker's jobs stay `doing`
until its heartbeat is older than `--stalled-after`; the next worker's `hub.retry_stalled`
tick runs them again, and since they carry the lease name their sources were claimed
under, they take those sources over at once (schedules/tasks.py: fetch_sources).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from hub.towns import load_deployment
from schedules.procrastinate_app import conninfo
from tests.feedserver import FeedServer
from tests.runtimetown import deployment, feeds, town_config

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

HOSTS = [f"127.0.0.{i}" for i in range(1, 6)]
PER_HOST = 30
POSTS = 2
KILLS = 20
TOWN = "musterstadt"
HUB = [sys.executable, "-m", "hub"]
POOL = 3  # workers alive at a time: a killed one's successor starts while the others work
STALLED_AFTER = 1.5  # seconds without a heartbeat before a worker's jobs run again


class Fleet:
    """The `hub worker` processes of the test: POOL alive at a time, like a small pool; a
    worker is killed only while another one is up, so the work goes on while its successor
    starts (an interpreter's start-up takes seconds on a busy machine). A process is matched
    to its procrastinate worker row by registration order (rows are numbered as they come)."""

    def __init__(self, config: Path, log: Path, pg_url: str) -> None:
        self.config, self.log = config, log
        self.db = psycopg.connect(conninfo(pg_url), autocommit=True)
        self.processes: list[subprocess.Popen] = []
        self.worker_ids: dict[int, subprocess.Popen] = {}  # procrastinate worker id -> process
        self._seen = max(self._ids(), default=0)

    def start(self) -> None:
        self.processes.append(subprocess.Popen(
            [*HUB, "worker", "-c", str(self.config), "--concurrency", "8", "--stalled-after", str(STALLED_AFTER)],
            stdout=self.log.open("a"), stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}))

    def fetching(self) -> subprocess.Popen | None:
        """A live process running a fetch job right now (the oldest such), if any."""
        self._match()
        rows = self.db.execute("SELECT DISTINCT worker_id FROM procrastinate_jobs WHERE status = 'doing' "
                               "AND task_name = 'hub.fetch_sources' ORDER BY worker_id").fetchall()
        busy = [self.worker_ids[wid] for (wid,) in rows if wid in self.worker_ids]
        return next((p for p in busy if p.poll() is None), None)

    def others_ready(self, process: subprocess.Popen) -> bool:
        """Another live worker has registered: killing `process` leaves the pool working."""
        return any(p is not process and p.poll() is None for p in self.worker_ids.values())

    def kill(self, process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self) -> list[int]:
        """SIGTERM to the live workers, once each has started (a process still importing has
        no handler yet, and SIGTERM would end it like a kill); their exit codes."""
        alive = [p for p in self.processes if p.poll() is None]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self._match()
            if all(p in self.worker_ids.values() for p in alive):
                break
            time.sleep(0.2)
        for p in alive:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=20) for p in alive]
        self.db.close()
        return codes

    def _ids(self) -> list[int]:
        return [wid for (wid,) in self.db.execute("SELECT id FROM procrastinate_workers ORDER BY id")]

    def _match(self) -> None:
        waiting = [p for p in self.processes if p not in self.worker_ids.values()]
        for wid in self._ids():
            if wid > self._seen and waiting:
                self._seen = wid
                self.worker_ids[wid] = waiting.pop(0)


def wait_for(condition, what: str, timeout: float, state=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what} {state()}"
        time.sleep(0.05)


def _state(store, db) -> str:
    """Sources by lease and plan, jobs by task and status: what a stuck run looks like."""
    with store.engine.connect() as conn:
        sources = conn.execute(text(
            "SELECT lease_owner IS NULL AS free, next_fetch_at > now() AS planned, last_ok_at IS NOT NULL AS ok, "
            "count(*) FROM sources GROUP BY 1, 2, 3")).all()
    jobs = db.execute("SELECT task_name, status, lock, count(*) FROM procrastinate_jobs "
                      "WHERE status IN ('todo', 'doing') GROUP BY 1, 2, 3").fetchall()
    return f"sources (free, planned, ok, n): {sources}; jobs: {jobs}"


def test_sigkill_mid_batch_loses_no_fetch_and_duplicates_no_item(tmp_path: Path, pg_url: str) -> None:
    rng = random.Random(18)
    n = len(HOSTS) * PER_HOST
    with FeedServer(host=HOSTS[0], aliases=HOSTS[1:], files=feeds(TOWN, n, POSTS)) as server:
        urls = {f"q{i}": server.url(f"/files/{TOWN}-{i}.xml?delay=0.3", host=HOSTS[i % len(HOSTS)])
                for i in range(n)}
        # A claim and its jobs commit together (the outbox), and a killed worker's job runs
        # again and takes its sources back; a short lease only bounds what a bug would delay.
        town = town_config(tmp_path / f"{TOWN}.yaml", TOWN, "http://musterstadt.test", urls, lease="15s")
        config = deployment(tmp_path / "deploy.yaml", pg_url, {TOWN: town})
        subprocess.run([*HUB, "migrate", "-c", str(config)], check=True, capture_output=True)
        store = load_deployment(config).towns[TOWN].open_store()
        fleet = Fleet(config, tmp_path / "worker.log", pg_url)
        started = time.monotonic()
        for _ in range(POOL):
            fleet.start()
        kills = 0
        while kills < KILLS:
            # mid-batch: a worker is running a fetch job (its requests are under way); a moment more
            wait_for(lambda: _victim(fleet) is not None or _due_again(store), "a worker runs a fetch job",
                     timeout=60)  # a loaded machine takes its time to start a worker
            time.sleep(rng.uniform(0.05, 0.3))
            victim = _victim(fleet)
            if victim is not None:  # (its job may have ended in the moment)
                fleet.kill(victim)
                kills += 1
                fleet.start()  # the restart
        try:
            wait_for(lambda: _fetched(store) == n, "every source was fetched", timeout=30,
                     state=lambda: _state(store, fleet.db))
        finally:
            codes = fleet.stop()
        seconds = time.monotonic() - started
        with store.engine.connect() as conn:
            items = conn.execute(text("SELECT count(*) FROM items")).scalar_one()
            distinct = conn.execute(text("SELECT count(DISTINCT (source_id, external_id)) FROM items")).scalar_one()
            leased = conn.execute(text("SELECT count(*) FROM sources WHERE lease_owner IS NOT NULL")).scalar_one()
        store.close()
        requests = sum(1 for r in server.requests if r.path.startswith("/files/"))
        counts = (f"{kills} workers killed with SIGKILL while running a fetch job, {n} sources, "
                  f"{_fetched_count} fetched, {items} items ({distinct} distinct, {n * POSTS} expected), "
                  f"{requests} feed requests, {leased} leases left, {seconds:.0f} s")
        print(counts)
        assert kills == KILLS and codes == [0] * POOL, (codes, counts)  # SIGTERM stops a worker cleanly
        assert _fetched_count == n and leased == 0, counts
        assert items == distinct == n * POSTS, counts


def _victim(fleet: Fleet) -> subprocess.Popen | None:
    victim = fleet.fetching()
    return victim if victim is not None and fleet.others_ready(victim) else None


_fetched_count = 0
_last_due_again = 0.0


def _due_again(store) -> bool:
    """Work for the next kill: once no fetch job runs for a second, every source not under
    a lease is due again (its next period), and the dispatch tick hands it out."""
    global _last_due_again
    if time.monotonic() - _last_due_again > 1:
        _last_due_again = time.monotonic()
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE sources SET next_fetch_at = now() WHERE lease_owner IS NULL"))
    return False


def _fetched(store) -> int:
    """Sources fetched and planned: a successful fetch on record, the lease given back, the
    next fetch planned ahead (nothing due is left undone)."""
    global _fetched_count
    with store.engine.connect() as conn:
        _fetched_count = conn.execute(text(
            "SELECT count(*) FROM sources WHERE last_ok_at IS NOT NULL AND lease_owner IS NULL "
            "AND next_fetch_at > now()")).scalar_one()
    return _fetched_count
