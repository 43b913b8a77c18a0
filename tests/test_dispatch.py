"""Dispatch at scale (issue 18): host-grouped claims with SKIP LOCKED, politeness in the
database, backpressure and fair shares between towns, and the figures operators see."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from hub.store import SOURCES, Store
from hub.store.dispatch import Batch, DispatchStore
from schedules.dispatch import FetchJob, StoreClaimer, capacity_left, plan_fetch_jobs

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
LEASE = timedelta(minutes=5)
SPACING = timedelta(seconds=1)


def seed(store: Store, n: int, hosts: int, *, prefix: str = "s", due: datetime = NOW - timedelta(minutes=1),
         hostless: int = 0) -> list[str]:
    """`n` due sources spread over `hosts` hosts (round-robin), plus `hostless` without one;
    source i is due i seconds before `due` is minus... older ids are due earlier."""
    ids = [f"{prefix}{i:05d}" for i in range(n + hostless)]
    rows = [{"id": sid, "merchant_id": "m", "connector": "rss", "status": "ok", "error_count": 0,
             "next_fetch_at": due - timedelta(seconds=len(ids) - i)} for i, sid in enumerate(ids)]
    with store.engine.begin() as conn:
        conn.execute(insert(SOURCES), rows)
    hosts_of = {sid: (f"h{i % hosts}.example" if i < n else None) for i, sid in enumerate(ids)}
    DispatchStore(store).sync_hosts(hosts_of)
    return ids


def claim(store: Store, limit: int, *, per_host: int = 2, owner: str = "a", now: datetime = NOW,
          spacing: timedelta = SPACING) -> list[Batch]:
    return DispatchStore(store).claim(now, limit=limit, per_host=per_host, spacing=spacing, owner=owner,
                                      until=now + LEASE)


def finish(store: Store, ids: list[str], next_at: datetime) -> None:
    """What planning the next fetch does: the lease goes, the source is due later."""
    with store.engine.begin() as conn:
        conn.execute(update(SOURCES).where(SOURCES.c.id.in_(ids))
                     .values(lease_owner=None, lease_until=None, next_fetch_at=next_at))


@pytest.fixture
def sqlite_store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    yield s
    s.close()


# --- the claim -----------------------------------------------------------------------------

def test_claims_group_by_host_with_a_per_host_limit_oldest_first(store):
    ids = seed(store, 30, hosts=3, hostless=5)
    batches = claim(store, 100, per_host=4)
    hosts = [b.host for b in batches]
    assert sorted(h for h in hosts if h) == ["h0.example", "h1.example", "h2.example"]
    for b in batches:
        if b.host is not None:  # the host's oldest four
            assert b.source_ids == [sid for i, sid in enumerate(ids[:30]) if f"h{i % 3}.example" == b.host][:4]
    hostless = [sid for b in batches if b.host is None for sid in b.source_ids]
    assert hostless == ids[30:]  # not host-limited, in batches of at most per_host
    assert all(len(b.source_ids) <= 4 for b in batches)
    assert batches[0].source_ids[0] == ids[0]  # the oldest due source's batch comes first


def test_a_host_with_a_batch_in_flight_gets_no_second_until_it_is_done_and_spaced(store):
    seed(store, 20, hosts=2)
    first = claim(store, 100, per_host=3)
    assert sorted(len(b.source_ids) for b in first) == [3, 3]
    assert claim(store, 100, per_host=3, now=NOW + timedelta(seconds=10)) == []  # in flight: nothing
    finish(store, [sid for b in first for sid in b.source_ids], NOW + timedelta(hours=1))
    assert claim(store, 100, per_host=3, now=NOW + timedelta(seconds=2)) == []  # 3 sources x 1 s spacing
    later = claim(store, 100, per_host=3, now=NOW + timedelta(seconds=3))
    assert sorted(len(b.source_ids) for b in later) == [3, 3]


def test_packed_jobs_hold_several_hosts_whole_and_stay_polite(store):
    """Jobs of several hosts (the scaled tier's): no host's batch is split over two jobs, each
    host is spaced as if alone, and a host in flight in a packed job is not claimed again."""
    ids = seed(store, 40, hosts=10)
    jobs = DispatchStore(store).claim(NOW, limit=100, per_host=3, spacing=SPACING, owner="a", until=NOW + LEASE,
                                      pack=7)
    host_of = {sid: f"h{i % 10}.example" for i, sid in enumerate(ids)}
    assert all(job.host is None and len(job.source_ids) <= 7 for job in jobs)
    hosts_per_job = [Counter(host_of[sid] for sid in job.source_ids) for job in jobs]
    assert all(n == 3 for hosts in hosts_per_job for n in hosts.values())  # whole host batches of 3
    assert sorted(h for hosts in hosts_per_job for h in hosts) == sorted(f"h{i}.example" for i in range(10))
    assert len(jobs) == 5  # 10 batches of 3, two to a job of at most 7
    claimed = [sid for job in jobs for sid in job.source_ids]
    assert claimed[0] == ids[0] and len(set(claimed)) == 30
    assert claim(store, 100, per_host=3, now=NOW + timedelta(seconds=10)) == []  # every host in flight
    finish(store, claimed, NOW + timedelta(hours=1))
    assert claim(store, 100, per_host=3, now=NOW + timedelta(seconds=2)) == []  # 3 sources x 1 s spacing
    assert sum(len(b.source_ids) for b in claim(store, 100, per_host=3, now=NOW + timedelta(seconds=3))) == 10


def test_the_limit_counts_sources_and_capacity_zero_claims_nothing(store):
    seed(store, 50, hosts=50)
    assert claim(store, 0) == []
    batches = claim(store, 7)
    assert sum(len(b.source_ids) for b in batches) == 7


def test_a_lease_that_passed_frees_the_host_again(sqlite_store):
    seed(sqlite_store, 4, hosts=1)
    assert len(claim(sqlite_store, 10, per_host=2)[0].source_ids) == 2
    later = NOW + LEASE + timedelta(seconds=1)  # the worker died: its lease passed
    again = claim(sqlite_store, 10, per_host=4, now=later)
    assert len(again[0].source_ids) == 4  # the two it held are due again, with the other two


def test_held_and_unscheduled_sources_are_not_claimed(sqlite_store):
    ids = seed(sqlite_store, 3, hosts=3)
    with sqlite_store.engine.begin() as conn:
        conn.execute(update(SOURCES).where(SOURCES.c.id == ids[0]).values(next_fetch_at=None))
    assert sorted(s for b in claim(sqlite_store, 10) for s in b.source_ids) == ids[1:]


@pytest.mark.postgres
def test_two_claimers_at_once_never_get_the_same_source_nor_the_same_host(pg_url):
    stores = [Store(pg_url), Store(pg_url, migrate=False)]
    try:
        seed(stores[0], 400, hosts=40)
        results: dict[str, list[Batch]] = {"a": [], "b": []}
        barrier = threading.Barrier(2)

        def claimer(owner: str, store: Store) -> None:
            barrier.wait()
            for _ in range(5):  # repeated claims race each other; hosts stay busy (in flight)
                results[owner] += claim(store, 60, per_host=3, owner=owner)

        threads = [threading.Thread(target=claimer, args=(o, s)) for o, s in zip("ab", stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        taken = [sid for batches in results.values() for b in batches for sid in b.source_ids]
        assert len(taken) == len(set(taken))  # never the same source twice
        hosts = Counter(b.host for batches in results.values() for b in batches)
        assert set(hosts.values()) == {1}  # one batch per host in flight, across both claimers
        assert len(hosts) == 40  # and every host got its batch from one of them
    finally:
        for s in stores:
            s.close()


# --- one tick over many towns ----------------------------------------------------------------

class FakeTown:
    """A town's due sources in memory, one host each, for the pure arithmetic."""

    owner = "tick"

    def __init__(self, town: str, due: int) -> None:
        self.town = town
        self.due = [f"{town}-{i}" for i in range(due)]
        self.asked: list[int] = []

    def claim(self, limit: int) -> list[Batch]:
        self.asked.append(limit)
        taken, self.due = self.due[:limit], self.due[limit:]
        return [Batch(f"{sid}.example", [sid]) for sid in taken]


def claimed(jobs: list[FetchJob]) -> Counter:
    return Counter(job.town for job in jobs for _ in job.source_ids)


def test_backpressure_claims_no_more_than_the_capacity():
    assert plan_fetch_jobs([FakeTown("a", 100)], 0, NOW) == []
    assert capacity_left(worker_slots=50, queued=80) == 0
    assert claimed(plan_fetch_jobs([FakeTown("a", 100), FakeTown("b", 100)], capacity_left(50, 20), NOW)) == \
        {"a": 15, "b": 15}


def test_unused_shares_go_to_the_towns_with_more_work():
    towns = [FakeTown("big", 10_000), FakeTown("small", 10), FakeTown("idle", 0)]
    assert claimed(plan_fetch_jobs(towns, 300, NOW)) == {"big": 290, "small": 10}


def test_the_odd_remainder_rotates_between_towns():
    firsts = Counter()
    for tick in range(6):
        jobs = plan_fetch_jobs([FakeTown("a", 10), FakeTown("b", 10), FakeTown("c", 10)], 1, NOW, start=tick)
        firsts.update(claimed(jobs))
    assert firsts == {"a": 2, "b": 2, "c": 2}


def test_a_big_town_does_not_starve_a_small_one_on_real_stores(tmp_path: Path):
    big, small = Store(f"sqlite:///{tmp_path / 'big.db'}"), Store(f"sqlite:///{tmp_path / 'small.db'}")
    try:
        seed(big, 10_000, hosts=2_000, prefix="b")
        seed(small, 10, hosts=10, prefix="s")
        towns = [StoreClaimer(name, DispatchStore(s), NOW, "tick-1", NOW + LEASE, 2, SPACING)
                 for name, s in (("big", big), ("small", small))]
        jobs = plan_fetch_jobs(towns, 500, NOW, start=0)  # the big town is asked first
        assert claimed(jobs) == {"big": 490, "small": 10}
        assert all(len(job.source_ids) <= 2 for job in jobs)
    finally:
        big.close()
        small.close()


# --- what operators see --------------------------------------------------------------------

def test_figures_count_backlog_lag_in_flight_and_recent_work(store):
    ids = seed(store, 6, hosts=2, due=NOW - timedelta(minutes=10))  # due 10m6s .. 10m1s ago
    claim(store, 2, per_host=1)  # two in flight (one per host)
    with store.engine.begin() as conn:
        conn.execute(update(SOURCES).where(SOURCES.c.id.in_(ids[4:])).values(
            next_fetch_at=NOW + timedelta(hours=1), last_fetch_at=NOW - timedelta(minutes=1)))
        conn.execute(update(SOURCES).where(SOURCES.c.id == ids[5]).values(status="failing"))
    f = DispatchStore(store).figures(NOW, timedelta(minutes=5))
    assert (f.sources, f.due, f.in_flight, f.fetched, f.failed) == (6, 2, 2, 2, 1)
    assert f.lag_seconds == 604  # ids[2], the oldest not in flight: due 10m4s ago
    assert (f.hosts, f.hosts_waiting) == (2, 2)
    assert (f.published, f.publish_errors, f.publish_backlog) == (0, 0, 0)


def test_metrics_carry_the_town_label(sqlite_store):
    from hub.fleet_metrics import registry
    from prometheus_client import generate_latest

    seed(sqlite_store, 3, hosts=3)
    text = generate_latest(registry({"musterstadt": sqlite_store}, lambda: NOW)).decode()
    assert 'hub_town_due_sources{town="musterstadt"} 3.0' in text
    assert 'hub_town_lag_seconds{town="musterstadt"} 63.0' in text  # the oldest: due 1m3s before NOW


def test_hub_status_prints_each_towns_figures(tmp_path: Path):
    import json

    from typer.testing import CliRunner

    from hub.cli.commands import app
    from hub.towns import load_deployment

    (tmp_path / "towns").mkdir()
    for town in ("a", "b"):
        (tmp_path / "towns" / f"{town}.yaml").write_text(
            f"platform: {{name: {town.upper()}, base_url: https://{town}.example}}\n")
    (tmp_path / "deploy.yaml").write_text("store: {url: sqlite:///hub.db}\n"
                                          "towns: {a: towns/a.yaml, b: towns/b.yaml}\n")
    now = datetime.now(timezone.utc)  # hub status reads the real clock: dates relative to it
    for town, n in (("a", 5), ("b", 2)):
        store = load_deployment(tmp_path / "deploy.yaml").towns[town].open_store()
        seed(store, n, hosts=1, due=now - timedelta(minutes=10))
        store.close()
    result = CliRunner().invoke(app, ["status", "-c", str(tmp_path / "deploy.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["town"]: row for row in json.loads(result.output)}
    assert (rows["a"]["due"], rows["b"]["due"]) == (5, 2)
    assert 600 < rows["a"]["lag_seconds"] < 900
    table = CliRunner().invoke(app, ["status", "-c", str(tmp_path / "deploy.yaml")])
    assert table.exit_code == 0 and "Dispatch by town" in table.output and "10m" in table.output
