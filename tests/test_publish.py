"""Push channels: cron schedules, the delivery ledger, `hub publish`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.clock import ManualClock
from tests.feedserver import FeedServer
from tests.schedtown import feed, town, write_config

ROOT = Path(__file__).resolve().parents[1]


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def server():
    with FeedServer(files={f"m{i}.xml": feed(f"m{i}") for i in range(3)}) as srv:
        yield srv


def urls(server: FeedServer) -> dict[str, str]:
    return {f"m{i}": server.url(f"/files/m{i}.xml") for i in range(3)}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    return f"sqlite:///{tmp_path}/hub.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")


async def test_a_scheduled_channel_runs_once_per_cron_time_whoever_ticks(server, tmp_path, db_url):
    clock = ManualClock()
    minute = (clock.now() + timedelta(minutes=2)).minute
    out = tmp_path / "stündlich.jsonl"
    channel = f"  - {{id: stuendlich, renderer: jsonlines, path: '{out}', schedule: '{minute} * * * *'}}"
    path = write_config(tmp_path / "c.yaml", urls(server), store_url=db_url, channels=channel,
                        fetcher=", host_spacing: 0")
    async with town(path, clock, "a") as a, town(path, clock, "b") as b:
        clock.advance(1)
        await a.fetch_due()
        assert await asyncio.gather(a.publisher.tick(), b.publisher.tick()) == [[], []]  # not yet
        clock.advance(180)
        first, second = await asyncio.gather(a.publisher.tick(), b.publisher.tick())
        [report] = first + second  # one of the two ran it
        assert (report.status, report.sent) == ("published", 6)
        assert len(lines_of(out)) == 6
        server.files["m0.xml"] = feed("m0", posts=3)
        clock.advance(25 * 3600)
        await a.fetch_due()
        for _ in range(3):
            clock.advance(60)
            reports = await asyncio.gather(a.publisher.tick(), b.publisher.tick())
            assert len(reports[0] + reports[1]) <= 1
        assert [r["item"]["external_id"] for r in lines_of(out)].count("m0-2") == 1
        assert len(lines_of(out)) == 7


async def test_include_rules_choose_the_items(tmp_path):
    with FeedServer() as srv:
        srv.files["a.xml"] = feed("a")
        srv.files["b.xml"] = feed("b").replace(b"<description>Beitrag 0", b"<category>Markt</category><description>B")
        channels = "\n".join([
            f"  - {{id: nur-a, renderer: jsonlines, path: '{tmp_path}/a.jsonl', include: {{merchants: [a]}}}}",
            f"  - {{id: markt, renderer: jsonlines, path: '{tmp_path}/markt.jsonl', include: {{tags: [Markt]}}}}",
            f"  - {{id: events, renderer: jsonlines, path: '{tmp_path}/e.jsonl', include: {{kinds: [event]}}}}"])
        path = write_config(tmp_path / "c.yaml", {"a": srv.url("/files/a.xml"), "b": srv.url("/files/b.xml")},
                            store_url=f"sqlite:///{tmp_path}/h.db", channels=channels, fetcher=", host_spacing: 0")
        clock = ManualClock()
        async with town(path, clock) as t:
            clock.advance(1)
            await t.fetch_due()
            reports = {r.channel_id: r for r in await t.publisher.publish()}
    assert {k: (r.status, r.sent) for k, r in reports.items()} == \
        {"nur-a": ("published", 2), "markt": ("published", 1), "events": ("nothing new", 0)}
    assert [r["item"]["external_id"] for r in lines_of(tmp_path / "markt.jsonl")] == ["b-0"]


async def test_a_failed_delivery_is_retried_and_a_crashed_runs_items_come_back(server, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the channel wants a folder")
    channel = f"  - {{id: archiv, renderer: jsonlines, path: '{blocker}/archiv.jsonl'}}"
    path = write_config(tmp_path / "c.yaml", urls(server), store_url=f"sqlite:///{tmp_path}/h.db",
                        channels=channel, fetcher=", host_spacing: 0")
    clock = ManualClock()
    async with town(path, clock) as t:
        clock.advance(1)
        await t.fetch_due()
        [report] = await t.publisher.publish()
        assert (report.status, report.failed) == ("failed", 6) and "cannot append" in report.error
        blocker.unlink()
        [report] = await t.publisher.publish()  # tried again after the backoff's first step (5 s), not sooner
        assert report.status == "nothing new"
        clock.advance(7)
        # A run that died after claiming two deliveries: they wait for its lease, then come back.
        t.publisher.ledger.claim("archiv", clock.now(), "a run that died", clock.now() + timedelta(minutes=5), 2)
        [report] = await t.publisher.publish()
        assert (report.status, report.sent) == ("published", 4)
        clock.advance(301)
        [report] = await t.publisher.publish()
        assert (report.status, report.sent) == ("published", 2)
        [report] = await t.publisher.publish()
        assert report.status == "nothing new"
    assert len(lines_of(blocker / "archiv.jsonl")) == 6


async def test_a_run_slowed_past_its_lease_leaves_what_another_run_took_up_to_it(server, tmp_path, db_url, caplog):
    out = tmp_path / "archiv.jsonl"
    channel = f"  - {{id: archiv, renderer: jsonlines, path: '{out}'}}"
    path = write_config(tmp_path / "c.yaml", urls(server), store_url=db_url, channels=channel,
                        fetcher=", host_spacing: 0")
    clock = ManualClock()
    async with town(path, clock, "langsam") as slow, town(path, clock, "flink") as quick:
        clock.advance(1)
        await slow.fetch_due()
        loop = asyncio.get_running_loop()
        jobs = slow.publisher._jobs

        def stalled(*args):
            """`langsam` has claimed the deliveries; it stalls past its lease, and `flink` runs."""
            found = jobs(*args)
            clock.advance(slow.settings.schedule.lease.total_seconds() + 1)
            [report] = asyncio.run_coroutine_threadsafe(quick.publisher.publish(), loop).result(30)
            assert (report.status, report.sent) == ("published", 6)
            return found

        slow.publisher._jobs = stalled
        [report] = await slow.publisher.publish()
    assert report.sent == 0
    assert "another run took up 6 deliveries" in caplog.text
    assert sorted(r["item"]["external_id"] for r in lines_of(out)) == [f"m{i}-{j}" for i in range(3) for j in range(2)]


def hub(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                               "HUB_TEST_CLOCK_AHEAD": os.environ.get("HUB_TEST_CLOCK_AHEAD", ""), "COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_hub_publish_dry_run_then_publish_then_nothing_new(tmp_path):
    (tmp_path / "laden.xml").write_bytes(feed("laden"))
    channel = "  - {id: archiv, renderer: jsonlines, path: archiv.jsonl}\n  - {id: platform, renderer: platform}"
    path = write_config(tmp_path / "config.yaml", {"laden": "file:laden.xml"}, store_url="sqlite:///hub.db",
                        channels=channel)
    assert hub("fetch", "-c", str(path), cwd=tmp_path).returncode == 0
    dry = hub("publish", "-c", str(path), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "would send 2: laden 0; laden 1" in dry.stdout
    assert not (tmp_path / "archiv.jsonl").exists()
    done = hub("publish", "-c", str(path), cwd=tmp_path)
    assert done.returncode == 0 and "published" in done.stdout
    assert len(lines_of(tmp_path / "archiv.jsonl")) == 2
    again = hub("publish", "-c", str(path), "--channel", "archiv", cwd=tmp_path)
    assert again.returncode == 0 and "nothing new" in again.stdout
    wrong = hub("publish", "-c", str(path), "--channel", "platform", cwd=tmp_path)
    assert wrong.returncode == 2 and "push channels in the config: archiv" in wrong.stderr


def test_push_channels_send_each_record_once_and_respect_moderation(tmp_path):
    """A post on the blog and the same post shared on the merchant's page are one record,
    so the channel gets it once; a merchant held for review sends nothing until approved."""
    def rss(guid: str, link: str) -> bytes:
        return (f'<rss version="2.0"><channel><title>x</title><item><title>Stollen ist da</title>'
                f"<guid>{guid}</guid><link>{link}</link><pubDate>Sat, 21 Nov 2026 09:00:00 +0100</pubDate>"
                f"<description>Unser Butterstollen ist da, 12,90 Euro das Stück.</description></item>"
                f"</channel></rss>").encode()

    article = "https://baeckerei.example/stollen"
    files = {"blog.xml": rss("blog-1", article), "seite.xml": rss("seite-1", article),
             "mode.xml": rss("mode-1", "https://mode.example/sale")}
    out = tmp_path / "archiv.jsonl"
    with FeedServer(files=files) as srv:
        config = tmp_path / "c.yaml"
        config.write_text(f"""
store: {{url: "sqlite:///{tmp_path}/hub.db"}}
fetcher: {{allow_private_networks: true, host_spacing: 0}}
merchants:
  - id: baeckerei
    name: Bäckerei
    sources:
      - {{connector: rss, id: blog, url: "{srv.url('/files/blog.xml')}"}}
      - {{connector: rss, id: seite, url: "{srv.url('/files/seite.xml')}"}}
  - id: mode
    name: Modehaus
    trust: review
    sources:
      - {{connector: rss, id: mode, url: "{srv.url('/files/mode.xml')}"}}
channels:
  - {{id: archiv, renderer: jsonlines, path: "{out}"}}
""")
        hub = [sys.executable, "-m", "hub"]
        run = lambda *args: subprocess.run([*hub, *args, "-c", str(config)], capture_output=True, text=True,
                                           cwd=ROOT, timeout=120)
        assert run("fetch").returncode == 0
        assert run("publish").returncode == 0
        sent = lines_of(out)
        assert [line["item"]["merchant_id"] for line in sent] == ["baeckerei"]

        pending = json.loads(run("items", "--pending", "-f", "json").stdout.splitlines()[0])
        assert run("items", "approve", str(pending["id"])).returncode == 0
        assert run("publish").returncode == 0
        assert sorted(line["item"]["merchant_id"] for line in lines_of(out)) == ["baeckerei", "mode"]
