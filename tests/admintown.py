"""A small town for the cockpit's tests (issue 17): feeds served by a real loopback server
(tests/feedserver.py), dated relative to now (so the suite passes on any day and with
`--clock-ahead`), a config with two cockpit users, and the real ingest path to fill the store.

    baeckerei   publishes at once; three fresh posts (one with two images), a contact address
    verein      `trust: review`: its two posts wait in the review queue
    modehaus    `block_words: [Gewinnspiel]`: one of its posts is hidden by the rule
    gaertnerei  quiet: its newest post is 60 days old; a contact address
    kaputt      a source whose URL answers 404: the deliberately broken one
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

from argon2 import PasswordHasher

from hub import config
from hub.http import Fetcher
from hub.moderation import rules_from
from hub.pipeline import Pipeline, source_specs
from hub.store import Store

ROOT = Path(__file__).resolve().parents[1]
USERS = {"anna": ("admin", "anna-geheim-2026"), "ben": ("moderator", "ben-geheim-2026")}
IMAGES = ROOT / "hub" / "demo" / "musterstadt" / "img"
_HASHES: dict[str, str] = {}  # argon2 is slow on purpose: once per test process


def rss(title: str, entries: list[tuple[str, str, str, int, list[str]]], server_url: str) -> bytes:
    """(guid, title, html, age in days, image file names) each, dated `age` days before now."""
    now = datetime.now(timezone.utc)
    items = []
    for guid, heading, html, age, images in entries:
        enclosures = "".join(f'<enclosure url="{server_url}/files/{name}" type="image/jpeg" length="1"/>'
                             for name in images)
        items.append(f"<item><title>{heading}</title><guid>{guid}</guid><link>https://{title}.example/{guid}</link>"
                     f"<pubDate>{format_datetime(now - timedelta(days=age, minutes=5))}</pubDate>"
                     f"<description><![CDATA[{html}]]></description>{enclosures}</item>")
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{title}</title>'
            f"<link>https://{title}.example/</link>{''.join(items)}</channel></rss>").encode()


def files(server_url: str) -> dict[str, bytes]:
    return {
        "baeckerei.xml": rss("baeckerei", [
            ("stollen", "Christstollen aus eigener Backstube", "<p>Ab heute gibt es unseren Stollen, nach Omas Rezept.</p>",
             0, ["stollen.jpg", "brot.jpg"]),
            ("brot", "Neues Dinkelbrot", "<p>Unser neues Dinkelbrot mit Walnüssen, jeden Dienstag frisch.</p>", 1,
             ["brot.jpg"]),
            ("ferien", "Betriebsferien im Januar", "<p>Vom 7. bis 14. Januar haben wir geschlossen.</p>", 3, []),
        ], server_url),
        "verein.xml": rss("verein", [
            ("fest", "Vereinsfest am Sportplatz", "<p>Grillen, Musik und ein Elfmeterschießen für alle.</p>", 0, []),
            ("werbung", "Billige Uhren kaufen", "<p>Nur heute: Uhren zum halben Preis, jetzt klicken.</p>", 1, []),
        ], server_url),
        "modehaus.xml": rss("modehaus", [
            ("winter", "Wintermäntel reduziert", "<p>Alle Wintermäntel 30 Prozent günstiger.</p>", 0, ["mode.jpg"]),
            ("gewinn", "Großes Gewinnspiel", "<p>Mitmachen und einen Gutschein gewinnen!</p>", 1, []),
        ], server_url),
        "gaertnerei.xml": rss("gaertnerei", [
            ("rosen", "Rosen im Angebot", "<p>Englische Rosen, solange der Vorrat reicht.</p>", 60, []),
        ], server_url),
        **{name: (IMAGES / name).read_bytes() for name in ("stollen.jpg", "brot.jpg", "mode.jpg")},
    }


# Real argon2id hashes, with the cheapest parameters: the hub checks a password with the
# parameters its hash names, and the suite logs in hundreds of times (`hub admin
# hash-password` and its test use the strong defaults).
_CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def password_hash(name: str) -> str:
    if name not in _HASHES:
        _HASHES[name] = _CHEAP.hash(USERS[name][1])
    return _HASHES[name]


def write_config(folder: Path, server_url: str, *, mail_port: int | None = None, store_url: str | None = None,
                 channels: str = "") -> Path:
    """The town's config; `channels`: more channel lines (YAML list items) besides the platform."""
    users = "".join(f'    - {{name: {n}, role: {USERS[n][0]}, password_hash: "{password_hash(n)}"}}\n' for n in USERS)
    mail = (f"mail: {{host: 127.0.0.1, port: {mail_port}, security: none, "
            f"from: 'Teststadt erleben <kuemmerer@teststadt.example>', timeout: 5}}\n" if mail_port else "")
    path = folder / "config.yaml"
    path.write_text(
        "platform: {name: Teststadt erleben, base_url: 'http://127.0.0.1:8000'}\n"
        f"store: {{url: '{store_url or f'sqlite:///{folder}/hub.db'}', data_dir: '{folder}/data'}}\n"
        "fetcher: {allow_private_networks: true, retries: 0, total_timeout: 10, host_spacing: 0}\n"
        f"admin:\n  users:\n{users}"
        f"{mail}"
        "merchants:\n"
        "  - id: baeckerei\n    name: Bäckerei Korn\n    website: https://baeckerei.example\n"
        "    contact_email: info@baeckerei.example\n"
        f"    sources: [{{connector: rss, url: '{server_url}/files/baeckerei.xml'}}]\n"
        "  - id: verein\n    name: Sportverein Teststadt\n    trust: review\n"
        f"    sources: [{{connector: rss, url: '{server_url}/files/verein.xml'}}]\n"
        "  - id: modehaus\n    name: Modehaus Faden\n    block_words: [Gewinnspiel]\n"
        f"    sources: [{{connector: rss, url: '{server_url}/files/modehaus.xml'}}]\n"
        "  - id: gaertnerei\n    name: Gärtnerei Blüte\n    contact_email: 'Gärtnerei Blüte <post@gaertnerei.example>'\n"
        f"    sources: [{{connector: rss, url: '{server_url}/files/gaertnerei.xml'}}]\n"
        "  - id: kaputt\n    name: Kiosk Kaputt\n"
        f"    sources: [{{connector: rss, id: kaputt-feed, url: '{server_url}/status/404'}}]\n"
        f"channels:\n  - {{id: platform, renderer: platform}}\n{channels}", encoding="utf-8")
    return path


def open_town(path: Path) -> tuple[config.Settings, Store]:
    settings = config.load(path, env={})
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    store.records.configure(rules_from(settings))
    return settings, store


async def ingest(settings: config.Settings, store: Store) -> list:
    """One fetch of every source through the real pipeline (fetcher, connectors, store)."""
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        pipeline = Pipeline(settings, store, fetcher, parse_workers=0)
        try:
            return await pipeline.run(settings.sources())
        finally:
            pipeline.close()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def login(client, name: str = "anna", password: str | None = None):
    """Log `client` (a TestClient) in through the login form; returns the last answer."""
    page = client.get("/admin/login")
    return client.post("/admin/login", data={"csrf": csrf_of(page.text), "username": name,
                                             "password": password or USERS[name][1], "weiter": "/admin"},
                       follow_redirects=False)


def record_id(store: Store, title: str) -> int:
    found = [r for r in store.records.list(status=None, expired=True, limit=500) if r.item.title == title]
    assert found, f"no record titled {title!r}"
    return found[0].id
