"""The pieces of tests/benchmarks/bench_scale.py that must be right for its figures to mean
anything: the town configs it writes load, sources are split in the stated shares, and the
fake feed web answers a repeat poll with 304 until the feed's next item is due."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub import config
from tests.benchmarks.bench_scale import SHARES, parse_runs, split, write_deployment
from tests.benchmarks.scalefeeds import FeedWeb, host, version


def test_sources_are_split_in_the_stated_shares() -> None:
    assert split(100_000) == [55_000, 25_000, 15_000, 5_000]
    assert sum(split(1_003)) == 1_003
    assert len(split(10)) == len(SHARES)


def test_written_town_configs_load_with_the_schedule_and_hosts(tmp_path: Path) -> None:
    deploy = write_deployment(tmp_path, "postgresql+psycopg://x@127.0.0.1/x", 200, 30, 8080, 8000, 600)
    town = config.load(tmp_path / "town3.yaml")
    sources = town.sources()
    assert len(sources) == 10
    assert town.schedule.min_interval == town.schedule.max_interval
    assert town.schedule.min_interval.total_seconds() == 600
    assert town.schedule.first_fetches_per_second * 600 == pytest.approx(10, rel=1e-3)  # first fetches over one interval
    assert town.platform.base_url.startswith("http://town3.bench:8000")
    _, first = sources[0]
    assert first.options.url.startswith(f"http://{host(190 % 30)}:8080/f/s190.xml")
    assert "town0: town0.yaml" in deploy.read_text()


def test_feed_versions_change_every_period_at_a_phase_of_their_own() -> None:
    seen = {version("s1", t, 60) for t in range(0, 600, 10)}
    assert len(seen) in (10, 11)  # one new item a minute over ten minutes
    phases = {version(f"s{i}", 0, 3600) for i in range(50)}
    assert phases == {0}  # within the first period all are at version 0 ...
    changes = {next(t for t in range(0, 3601, 30) if version(f"s{i}", t, 3600) == 1) for i in range(50)}
    assert len(changes) > 10  # ... and they move on at different times


def test_runs_are_parsed_as_worker_interval_pairs() -> None:
    assert parse_runs("1:300,2:300,2:3600") == [(1, 300), (2, 300), (2, 3600)]


def test_feed_web_answers_304_to_the_current_etag() -> None:
    import asyncio

    from aiohttp.test_utils import make_mocked_request

    web = FeedWeb(change_every=3600)

    async def poll(etag: str | None):
        headers = {"If-None-Match": etag} if etag else {}
        request = make_mocked_request("GET", "/f/s7.xml", headers=headers, match_info={"source": "s7"})
        return await web.serve_feed(request)

    first = asyncio.run(poll(None))
    assert first.status == 200 and b"<item>" in first.body
    again = asyncio.run(poll(first.headers["ETag"]))
    assert again.status == 304
    assert (web.ok, web.not_modified) == (1, 1)
