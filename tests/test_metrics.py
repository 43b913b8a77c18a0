"""`/metrics` (issue 17): Prometheus text that prometheus_client's own parser reads, from the
store: sources by state, fetches and failures by connector (counted by the store's trigger
on every fetch, whichever process fetched), records by status, the delivery ledger and its
backlog, ingest and publish delays. Its own registry: never the global one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import prometheus_client
import pytest
import time_machine
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from hub.http import Fetcher
from hub.web.app import create_app
from schedules.clock import SystemClock
from schedules.publishing import ChannelPublisher, prepare_channels
from tests.admintown import files, ingest, open_town, rss, write_config
from tests.feedserver import FeedServer

# Timeless: its feeds are dated relative to now and it checks nothing calendar-bound.
pytestmark = pytest.mark.timeless


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def types(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


@pytest.fixture
def server():
    with FeedServer() as s:
        yield s


async def test_metrics_parse_and_tell_the_state_of_the_town(tmp_path, server):
    url = server.url("").rstrip("/")
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    with time_machine.travel(yesterday, tick=True):  # the town's first fetch was yesterday
        server.files.update(files(url))
        path = write_config(tmp_path, url, channels=f"  - {{id: archiv, renderer: jsonlines, path: {tmp_path}/archiv.jsonl}}\n")
        settings, store = open_town(path)
        prepare_channels(settings, store)
        await ingest(settings, store)
    # today: a new post 10 minutes old, read now; the archive channel sends what it has
    server.files["baeckerei.xml"] = rss("baeckerei", [
        ("neu", "Heute frische Brezeln", "<p>Ab sofort jeden Morgen.</p>", 0, []),
        ("stollen", "Christstollen aus eigener Backstube", "<p>Ab heute gibt es unseren Stollen.</p>", 1, [])], url)
    await ingest(settings, store)
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        reports = await ChannelPublisher(settings, store, fetcher, clock=SystemClock(), owner="test").publish()
    assert reports[0].sent >= 1

    with TestClient(create_app(settings, store), base_url="http://127.0.0.1") as client:
        answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "set-cookie" not in answer.headers
    found, kinds = samples(answer.text), types(answer.text)
    assert found[("hub_sources", (("state", "failing"),))] == 1
    assert found[("hub_sources", (("state", "ok"),))] == 4
    assert found[("hub_fetches_total", (("connector", "rss"),))] == 10  # five sources, fetched twice
    assert found[("hub_fetch_failures_total", (("connector", "rss"),))] == 2
    assert kinds["hub_fetches"] == "counter"
    assert found[("hub_records", (("status", "pending"),))] == 2
    assert found[("hub_records", (("status", "hidden"),))] == 1
    assert found[("hub_ledger_rows", (("channel", "archiv"), ("status", "sent")))] == reports[0].sent
    assert found[("hub_ledger_backlog", (("channel", "archiv"),))] == 0
    # today's post: published 10 minutes before the hub saw it (yesterday's first fetch is no delay)
    assert found[("hub_ingest_delay_seconds_bucket", (("le", "900.0"),))] == 1
    assert found[("hub_ingest_delay_seconds_bucket", (("le", "300.0"),))] == 0
    assert found[("hub_ingest_delay_seconds_gcount", ())] == 1
    assert kinds["hub_ingest_delay_seconds"] == "histogram"
    assert found[("hub_publish_delay_seconds_bucket", (("channel", "archiv"), ("le", "+Inf")))] == reports[0].sent
    store.close()


async def test_each_app_has_its_own_registry(tmp_path, server):
    server.files.update(files(server.url("").rstrip("/")))
    settings, store = open_town(write_config(tmp_path, server.url("").rstrip("/")))
    with TestClient(create_app(settings, store)) as one, TestClient(create_app(settings, store)) as two:
        assert one.get("/metrics").text.count("# TYPE hub_sources gauge") == 1
        assert two.get("/metrics").status_code == 200
    assert not [m for m in prometheus_client.REGISTRY.collect() if m.name.startswith("hub_")]
    store.close()
