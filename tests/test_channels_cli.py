"""`hub publish --channel ID --dry-run` shows what would go out and how it looks on the channel
(the rendered text and the payload) and changes nothing; `hub channels` shows each channel's
state, backlog and last error; a third-party publisher of the first contract
(`publish(items)`), registered through the `hub.renderers` entry-point group, keeps working;
the demo's channels in config.example.yaml are valid and harmless (issue 16)."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub import config, plugins
from hub.cli.commands import app
from tests.channelfakes import (SECRET, Entry, WebhookReceiver, channel_config, channel_town, ingest, ledger_rows,
                                refetch, rss)
from tests.clock import ManualClock
from tests.feedserver import FeedServer

ROOT = Path(__file__).resolve().parents[1]
BREZELN = Entry("a", "Frische Brezeln", "Ab sofort jeden Morgen frische Brezeln.")
STOLLEN = Entry("b", "Christstollen", "Unser Butterstollen ist da.", age=timedelta(days=2))


def hub(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_dry_run_shows_the_text_and_payload_and_sends_nothing(tmp_path):
    with FeedServer() as feeds, WebhookReceiver() as hook:
        feeds.files["laden.xml"] = rss([BREZELN, STOLLEN], feeds.url("").rstrip("/"))
        channels = "\n".join([
            f'  - {{id: stadtapp, renderer: webhook, url: "{hook.url("/hook")}", secret: "{SECRET}"}}',
            '  - {id: mastodon, renderer: mastodon, base_url: "https://social.example", access_token: x}',
            "  - {id: platform, renderer: platform}"])
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"), channels)
        assert hub("fetch", "-c", str(path), "--no-images").exit_code == 0
        dry = hub("publish", "-c", str(path), "--channel", "stadtapp", "--channel", "mastodon", "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "stadtapp: created record" in dry.output and "mastodon: created record" in dry.output
        assert '"type": "record.created"' in dry.output and '"webhook-signature": "v1,' in dry.output
        assert "Mehr: https://musterstadt.example/items/" in dry.output  # the status as Mastodon would show it
        assert '"visibility": "public"' in dry.output
        assert "would send 2" in dry.output
        assert hook.requests == []
        shown = hub("channels", "-c", str(path))
        assert shown.exit_code == 0 and "stadtapp" in shown.output and "mastodon" in shown.output
        rows = [json.loads(line) for line in hub("channels", "-c", str(path), "-f", "json").output.splitlines()]
        assert {r["channel"]: (r["state"], r["backlog"], r["counts"]) for r in rows} == {
            "mastodon": ("active", 2, {"pending": 2}), "stadtapp": ("active", 2, {"pending": 2})}

        sent = hub("publish", "-c", str(path), "--channel", "stadtapp")
        assert sent.exit_code == 0 and "published" in sent.output
        assert len(hook.received) == 2
        [row] = [json.loads(line) for line in hub("channels", "-c", str(path), "-f", "json").output.splitlines()
                 if json.loads(line)["channel"] == "stadtapp"]
        assert row["counts"] == {"sent": 2} and row["last_sent_at"] and row["last_error"] is None
        wrong = hub("publish", "-c", str(path), "--channel", "platform")
        assert wrong.exit_code == 2 and "stadtapp" in wrong.output
        assert hub("channels", "retry", "nowhere", "-c", str(path)).exit_code == 2


LEGACY = '''
from typing import ClassVar
from renderers.base import Delivery, RendererOptions, item_key

class Options(RendererOptions):
    tag: str = "alt"

SEEN = []

class OldPublisher:
    kind: ClassVar[str] = "altkanal"
    Options: ClassVar[type] = Options

    async def publish(self, opts, channel, items, client):
        SEEN.extend((opts.tag, i.title) for i in items)
        return [Delivery(item_key(i), "sent") for i in items]
'''


@pytest.fixture
def legacy_plugin(tmp_path, monkeypatch):
    """A third-party package with a publisher of the first contract, installed the way pip
    would: its module, and a dist-info with an entry point in `hub.renderers`."""
    site = tmp_path / "site"
    (site / "altkanal_plugin.py").parent.mkdir(parents=True)
    (site / "altkanal_plugin.py").write_text(LEGACY)
    info = site / "altkanal_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: altkanal-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[hub.renderers]\naltkanal = altkanal_plugin:OldPublisher\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    plugins._table.cache_clear()
    plugins.load.cache_clear()
    yield
    plugins._table.cache_clear()
    plugins.load.cache_clear()
    sys.modules.pop("altkanal_plugin", None)


async def test_a_third_party_publisher_of_the_first_contract_gets_the_new_records(tmp_path, legacy_plugin):
    with FeedServer() as feeds:
        feeds.files["laden.xml"] = rss([BREZELN, STOLLEN], feeds.url("").rstrip("/"))
        path = channel_config(tmp_path / "c.yaml", feeds.url("/files/laden.xml"),
                              "  - {id: alt, renderer: altkanal, tag: drittanbieter}")
        clock = ManualClock()
        async with channel_town(path, clock) as t:
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert (report.status, report.sent) == ("published", 2)
            seen = sys.modules["altkanal_plugin"].SEEN
            assert sorted(seen) == [("drittanbieter", "Christstollen"), ("drittanbieter", "Frische Brezeln")]
            feeds.files["laden.xml"] = rss([Entry("a", "Brezeln, frisch", BREZELN.text), STOLLEN],
                                           feeds.url("").rstrip("/"))
            refetch(t)
            await ingest(t, clock)
            [report] = await t.publisher.publish()
            assert (report.sent, report.skipped) == (0, 1) and len(seen) == 2  # it takes new records only
            assert "cannot edit" in ledger_rows(t.store, "alt")[-1]["detail"]


def test_the_demo_channels_are_valid_and_point_nowhere_harmful():
    settings = config.load(ROOT / "config.example.yaml", env={})
    kinds = {c.id: c.renderer for c in settings.channel_list()}
    assert "webhook" in kinds.values()
    for channel in settings.channel_list():
        url = getattr(channel.options, "url", None)
        if channel.renderer == "webhook":
            assert url.startswith("http://127.0.0.1:"), url  # a local receiver: fails quietly when none listens
