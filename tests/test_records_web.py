"""End to end: two channels of one bakery on a real loopback server, through the real
pipeline, seen on the resident page. The same offer shows once; deleted on one channel it
stays; deleted on every channel it is gone from `/` after one fetch cycle, and the store
reports the removal for the channels."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

from fastapi.testclient import TestClient

from hub import config
from hub.http import Fetcher
from hub.moderation import rules_from
from hub.pipeline import Pipeline, source_specs
from hub.store import Store
from hub.web.app import create_app
from tests.feedserver import FeedServer

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)
ARTICLE = "https://baeckerei.example/2026/11/21/adventsfruehstueck/"
OFFER = ("offer", "Adventsfrühstück für zwei",
         "<p>An allen Adventswochenenden: zwei Kaffee, vier Brötchen, Butter und Marmelade für 14,90 €.</p>", 0)
OLD = ("old", "Unsere Öffnungszeiten im Winter", "<p>Montag bis Freitag 7 bis 18 Uhr.</p>", 20)


def blog(*entries) -> bytes:
    items = "".join(f"<item><title>{title}</title><guid>{guid}</guid>"
                    f"<link>{ARTICLE if guid == 'offer' else 'https://baeckerei.example/' + guid}</link>"
                    f"<pubDate>{format_datetime(T0 - timedelta(days=age))}</pubDate>"
                    f"<description><![CDATA[{html}]]></description></item>" for guid, title, html, age in entries)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Blog</title>{items}</channel></rss>'.encode()


def facebook(*posts: tuple[str, str, int]) -> bytes:
    items = [{"id": pid, "url": f"https://www.facebook.com/baeckerei/posts/{pid}", "content_html": html,
              "date_published": (T0 + timedelta(hours=1) - timedelta(days=age)).isoformat()} for pid, html, age in posts]
    return json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "Facebook", "items": items}).encode()


FB_OFFER = ("801", f'<p>Frühstücken wie im Advent! ☕ Alle Infos: <a href="{ARTICLE}?fbclid=IwAR1">hier</a></p>', 0)
FB_OLD = ("700", "<p>Wir bilden aus: Bewerbungen bis Ende Januar.</p>", 15)


def write_config(tmp_path: Path, server: FeedServer) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"platform: {{name: Teststadt}}\nstore: {{url: 'sqlite:///{tmp_path}/hub.db'}}\n"
        "fetcher: {allow_private_networks: true, retries: 0, total_timeout: 5}\n"
        "merchants:\n  - id: baeckerei\n    name: Bäckerei\n    sources:\n"
        f"      - {{connector: rss, url: '{server.url('/files/blog.xml')}'}}\n"
        f"      - {{connector: jsonfeed, url: '{server.url('/files/fb.json')}'}}\n"
        "channels:\n  - {id: platform, renderer: platform}\n")
    return path


async def fetch_cycle(path: Path) -> Store:
    settings = config.load(path, env={})
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    store.records.configure(rules_from(settings))
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        reports = await Pipeline(settings, store, fetcher).run(settings.sources())
    assert all(r.status in ("ok", "not_modified") for r in reports), reports
    return store


def cards(client: TestClient) -> list[str]:
    return re.findall(r'<h2><a href="/items/\d+">([^<]+)</a></h2>', client.get("/").text)


async def test_one_record_per_offer_and_deletion_within_one_fetch_cycle(tmp_path):
    with FeedServer(files={"blog.xml": blog(OFFER, OLD), "fb.json": facebook(FB_OFFER, FB_OLD)}) as server:
        path = write_config(tmp_path, server)
        store = await fetch_cycle(path)
        settings = config.load(path, env={})
        with TestClient(create_app(settings, store)) as client:
            assert sorted(cards(client)) == ["Adventsfrühstück für zwei", "Unsere Öffnungszeiten im Winter",
                                            "Wir bilden aus: Bewerbungen bis Ende Januar."]
            [offer] = [r for r in store.records.list() if len(r.origins) == 2]
            assert offer.merged_because[0]["rule"] == "links-to"
            assert client.get(f"/items/{offer.id}").status_code == 200

            server.files["fb.json"] = facebook(FB_OLD)  # deleted on Facebook only
            await fetch_cycle(path)
            assert "Adventsfrühstück für zwei" in cards(client)
            seen = max(c.id for c in store.records.changes())

            server.files["blog.xml"] = blog(OLD)  # ... and now on the website too
            await fetch_cycle(path)
            assert "Adventsfrühstück für zwei" not in cards(client)
            assert client.get(f"/items/{offer.id}").status_code == 404
            assert [(c.record_id, c.change) for c in store.records.changes(seen) if c.change == "removed"] == \
                   [(offer.id, "removed")]
