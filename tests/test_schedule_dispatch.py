"""The fetch tick against a real loopback server, with a clock the test moves by hand."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from hub.web.app import create_app
from tests.clock import ManualClock
from tests.feedserver import FeedServer
from tests.schedtown import feed, town, write_config

# Timeless: its feeds are dated relative to now and it checks nothing calendar-bound.
pytestmark = pytest.mark.timeless


@pytest.fixture
def server():
    with FeedServer() as srv:
        yield srv


def requests_to(server: FeedServer, name: str) -> int:
    return sum(1 for r in server.requests if r.path.split("?")[0] == f"/files/{name}.xml")


def sources(server: FeedServer, names, query: str = "") -> dict[str, str]:
    for name in names:
        server.files.setdefault(f"{name}.xml", feed(name))
    return {name: server.url(f"/files/{name}.xml{query}") for name in names}


async def test_due_sources_are_fetched_then_planned_from_how_often_they_post(server, tmp_path):
    server.files["busy.xml"] = feed("busy", posts=60, every=timedelta(hours=2))  # 60 within a week
    server.files["quiet.xml"] = feed("quiet", posts=3, every=timedelta(days=6))  # 0.75 a week
    path = write_config(tmp_path / "c.yaml", sources(server, ["busy", "quiet"]), store_url=f"sqlite:///{tmp_path}/h.db")
    clock = ManualClock()
    async with town(path, clock) as t:
        clock.advance(1)
        assert sorted(await t.fetch_due()) == ["busy", "quiet"]
        assert await t.fetch_due() == []  # planned, no longer due
        plans = t.plans.source_schedules()
        assert plans["busy"].interval_seconds == pytest.approx(7 * 86400 / 60, rel=0.11)
        assert "posts 60.0/week" in plans["busy"].reason
        assert plans["quiet"].interval_seconds == pytest.approx(86400, rel=0.11)
        assert "clamped to 1d" in plans["quiet"].reason
        clock.advance(3.2 * 3600)
        assert await t.fetch_due() == ["busy"]
        assert server.requests[-1].headers.get("if-none-match")  # a conditional GET: 304
        assert requests_to(server, "busy") == 2 and requests_to(server, "quiet") == 1


async def test_429_with_retry_after_120_means_no_request_for_120_seconds(server, tmp_path):
    path = write_config(tmp_path / "c.yaml", sources(server, ["laden", "kino"]),
                        store_url=f"sqlite:///{tmp_path}/h.db", fetcher=", host_spacing: 0")
    server.enqueue("/files/laden.xml", 429, headers={"Retry-After": "120"})
    server.enqueue("/files/kino.xml", 429, headers={"Retry-After": "3600"})
    clock = ManualClock()
    async with town(path, clock) as t:
        clock.advance(1)
        asked_at = datetime.now(timezone.utc)
        await t.fetch_due()
        assert requests_to(server, "laden") == requests_to(server, "kino") == 1
        for _ in range(120):
            clock.advance(1)
            await t.fetch_due()
        assert requests_to(server, "laden") == 1  # nothing within the 120 s
        plans = t.plans.source_schedules()
        assert plans["laden"].interval_seconds >= 120 and "backoff after 1 failed fetch" in plans["laden"].reason
        assert plans["kino"].next_fetch_at >= asked_at + timedelta(seconds=3600)
        assert "Retry-After" in plans["kino"].reason
        clock.advance((plans["laden"].next_fetch_at - clock.now()).total_seconds())
        assert await t.fetch_due() == ["laden"]
        assert requests_to(server, "laden") == 2 and requests_to(server, "kino") == 1
        assert {s.id: s.status for s in t.store.source_statuses()} == {"laden": "ok", "kino": "failing"}


async def test_at_most_two_requests_per_host_and_the_overflow_waits_its_turn(server, tmp_path):
    names = [f"s{i:02d}" for i in range(24)]
    path = write_config(tmp_path / "c.yaml", sources(server, names, "?delay=0.2"),
                        store_url=f"sqlite:///{tmp_path}/h.db", fetcher=", host_spacing: 0.1")
    clock = ManualClock()
    async with town(path, clock) as t:
        clock.advance(1)
        started = await t.fetch_due()  # 1 s tick / 0.1 s spacing: 10 per tick
        assert len(started) == 10 and server.max_in_flight == 2
        due = sorted(p.next_fetch_at for n, p in t.plans.source_schedules().items() if n not in started)
        assert [round((d - clock.now()).total_seconds()) for d in due] == [1] * 10 + [2] * 4
        clock.advance(1)
        assert len(await t.fetch_due()) == 10
        clock.advance(1)
        assert len(await t.fetch_due()) == 4
        assert server.max_in_flight == 2
        assert all(requests_to(server, n) == 1 for n in names)


async def test_a_failing_source_backs_off_and_stays_visible_never_disabled(server, tmp_path):
    urls = {"kaputt": server.url("/status/500"), **sources(server, ["heil"])}
    path = write_config(tmp_path / "c.yaml", urls, store_url=f"sqlite:///{tmp_path}/h.db", fetcher=", host_spacing: 0")
    clock = ManualClock()
    async with town(path, clock) as t:
        intervals = []
        for _ in range(14):
            clock.advance(1)
            await t.fetch_due()
            plan = t.plans.source_schedules()["kaputt"]
            intervals.append(plan.interval_seconds)
            clock.advance((plan.next_fetch_at - clock.now()).total_seconds())
        assert intervals == sorted(intervals) and intervals[-1] == 7 * 86400
        assert "backoff after 14 failed fetches" in plan.reason
        status = {s.id: s for s in t.store.source_statuses()}["kaputt"]
        assert (status.status, status.error_count) == ("failing", 14) and "HTTP 500" in status.last_error
        health = TestClient(create_app(t.settings, t.store)).get("/healthz").json()
        assert health["status"] == "degraded" and health["sources"]["failing"] == 1
        assert [f["id"] for f in health["failing_sources"]] == ["kaputt"]
        assert "HTTP" in health["failing_sources"][0]["error"] and not health["failing_sources"][0]["waiting_for_a_person"]


@asynccontextmanager
async def fetching_slowly(server: FeedServer, tmp_path, delay: float, schedule: str = "") -> AsyncIterator[tuple]:
    """A town whose one source "langsam" answers after `delay` seconds, once its fetch is under way."""
    path = write_config(tmp_path / "c.yaml", sources(server, ["langsam"], f"?delay={delay:g}"),
                        store_url=f"sqlite:///{tmp_path}/h.db", schedule=schedule)
    clock = ManualClock()
    async with town(path, clock) as t:
        clock.advance(1)
        assert await t.dispatcher.tick() == ["langsam"]
        while not server.in_flight:
            await asyncio.sleep(0.01)
        yield t, clock


async def test_shutdown_abandons_slow_fetches_and_hands_their_leases_back(server, tmp_path):
    async with fetching_slowly(server, tmp_path, delay=30) as (t, clock):
        assert t.plans.due_sources(clock.now(), 10) == []  # leased
        await t.dispatcher.close(grace=0.1)
        assert t.plans.due_sources(clock.now(), 10) == ["langsam"]  # free again, still due
        assert await t.dispatcher.tick() == []  # a closed dispatcher takes no new work
        assert t.store.source_statuses()[0].status == "new"  # nothing half-written


async def test_a_fetch_that_outlasts_its_lease_keeps_it_and_no_one_else_takes_the_source(server, tmp_path):
    async with fetching_slowly(server, tmp_path, delay=3, schedule=", lease: 0.3s") as (t, clock):
        clock.advance(5)  # the lease it was claimed with has long passed ...
        for _ in range(100):  # ... until its holder renews it (every third of a lease)
            if not t.plans.due_sources(clock.now(), 10):
                break
            await asyncio.sleep(0.02)
        assert t.plans.claim_sources(["langsam"], clock.now(), "another process", clock.now() + timedelta(minutes=1)) == []
        await t.dispatcher.drain()
        assert requests_to(server, "langsam") == 1
        assert t.store.source_statuses()[0].status == "ok"
        assert t.plans.due_sources(clock.now(), 10) == []  # planned and released: not due again yet


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    return f"sqlite:///{tmp_path}/hub.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")


async def test_two_schedulers_on_one_store_fetch_each_source_once_and_publish_each_item_once(
        server, tmp_path, db_url):
    names = [f"q{i:03d}" for i in range(200)]
    channel = f"  - {{id: archiv, renderer: jsonlines, path: '{tmp_path}/archiv.jsonl'}}"
    path = write_config(tmp_path / "c.yaml", sources(server, names), store_url=db_url, channels=channel,
                        fetcher=", host_spacing: 0, max_per_host: 4", schedule=", batch: 20")
    clock = ManualClock()
    async with town(path, clock, "a") as a, town(path, clock, "b") as b:
        clock.advance(1)
        started: dict[str, list[str]] = {"a": [], "b": []}
        # both tick at the same moments, as two processes would, until every source is started
        # (a loaded machine takes more ticks: each tick starts what the fetch slots allow)
        deadline = asyncio.get_running_loop().time() + 60
        while len(started["a"]) + len(started["b"]) < len(names) and asyncio.get_running_loop().time() < deadline:
            got_a, got_b = await asyncio.gather(a.dispatcher.tick(), b.dispatcher.tick())
            started["a"] += got_a
            started["b"] += got_b
            await asyncio.sleep(0.02)
        await asyncio.gather(a.dispatcher.drain(), b.dispatcher.drain())
        clock.advance(60)  # later in the same period: nothing is due again
        assert await asyncio.gather(a.fetch_due(), b.fetch_due()) == [[], []]
        for _ in range(3):
            await asyncio.gather(a.publisher.tick(), b.publisher.tick())

    counts = Counter(r.path for r in server.requests)
    assert len(counts) == 200 and set(counts.values()) == {1}
    assert sorted(started["a"] + started["b"]) == names
    assert started["a"] and started["b"]  # both did part of the work
    lines = (tmp_path / "archiv.jsonl").read_text().splitlines()
    keys = Counter(line.split('"external_id": ')[1].split(",")[0] for line in lines)
    assert len(keys) == 400 and set(keys.values()) == {1}
