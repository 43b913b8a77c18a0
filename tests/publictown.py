"""A small town for the tests of the public interfaces (JSON API, widget, sitemap): its
config, its app on the test's store, and a way to feed it items through the store's real
ingest path (`Store.apply` with items normalized as the parse workers do).

Dates are relative to now (the suite also runs a year ahead), never to a fixed day."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from hub import config
from hub.models import Event, FetchState, Item, Kind, Media, Offer, Parsed
from hub.moderation import rules_from
from hub.normalize import normalize_parsed
from hub.pipeline import source_specs
from hub.store import FetchOutcome, Store
from hub.web.app import create_app

BASE = "https://musterstadt.example"
BERLIN = ZoneInfo("Europe/Berlin")
CONFIG = f"""\
platform: {{name: Musterstadt erleben, base_url: "{BASE}"}}
merchants:
  - id: baeckerei
    name: "Bäckerei Schmitz & Söhne"
    category: gastronomie
    district: Altstadt
    website: "https://baeckerei.example/"
    sources:
      - {{connector: rss, url: "https://baeckerei.example/feed"}}
      - {{connector: jsonfeed, url: "https://baeckerei.example/facebook.json"}}
  - id: tsv
    name: TSV Musterstadt
    category: vereine
    district: Nord
    sources:
      - {{connector: rss, url: "https://tsv.example/feed"}}
  - id: modehaus
    name: Modehaus Becker
    category: handel
    district: Altstadt
    label: Anzeige
    sources:
      - {{connector: rss, url: "https://modehaus.example/feed"}}
  - id: rathaus
    name: Stadtverwaltung
    category: verwaltung
    sources:
      - {{connector: rss, url: "https://rathaus.example/feed"}}
channels:
  - {{id: platform, renderer: platform}}
"""


class Town:
    """The app of a small town on the test's store, and a way to feed it items."""

    def __init__(self, store: Store, tmp_path: Path, text: str = CONFIG) -> None:
        path = tmp_path / "config.yaml"
        path.write_text(text)
        self.settings = config.load(path, env={})
        self.store = store
        store.records.configure(rules_from(self.settings))
        store.sync_sources(source_specs(self.settings))
        self.now = datetime.now(timezone.utc).replace(microsecond=0)
        self.today = self.now.astimezone(BERLIN).date()
        self.fetches = 0
        self.client = TestClient(create_app(self.settings, store))

    def fetch(self, merchant: str, *items: Item, gone: tuple[str, ...] = (), source: str = "rss") -> None:
        """One fetch of one of the merchant's sources, normalized as the parse workers do."""
        self.fetches += 1
        parsed = normalize_parsed(Parsed(tuple(items), complete=False, gone=gone), "Europe/Berlin")
        at = datetime.now(timezone.utc) + timedelta(seconds=self.fetches)
        self.store.apply([FetchOutcome(f"{merchant}-{source}", at, "ok", parsed=parsed, state=FetchState())])

    def get(self, path: str, **headers: str):
        return self.client.get(path, headers=headers)


def item(merchant: str, key: str, title: str, *, hours_ago: float = 1, tags=(), event: Event | None = None,
         offer: Offer | None = None, image: bool = False, html: str | None = None, source: str = "rss") -> Item:
    now = datetime.now(timezone.utc)
    body = html if html is not None else f"<p>{title}: alles Weitere bei uns.</p>"
    return Item(source_id=f"{merchant}-{source}", external_id=key, merchant_id=merchant, title=title,
                content_html=body, content_text=re.sub("<[^>]+>", "", body), url=f"https://{merchant}.example/{key}",
                published=now - timedelta(hours=hours_ago), tags=tuple(tags),
                kind=Kind.EVENT if event else Kind.OFFER if offer else Kind.POST, event=event, offer=offer,
                media=(Media(f"https://cdn.{merchant}.example/{key}.jpg", width=1200, height=800,
                             alt=f"Bild: {title}"),) if image else ())


def evening(day: date, hour: int = 19, minute: int = 30, *, cancelled: bool = False) -> Event:
    start = datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN)
    return Event(start=start, end=start + timedelta(hours=2), timezone="Europe/Berlin", location="Stadthalle",
                 cancelled=cancelled)


def filled(town: Town) -> Town:
    """The town with a week of posts, events and offers from four merchants."""
    today = town.today
    town.fetch("baeckerei",
               item("baeckerei", "stollen", "Stollen frisch & warm", tags=("Advent", "#Backen"), image=True,
                    html='<p>Jetzt da <img src="https://cdn.baeckerei.example/inline.jpg" alt="Stollen"></p>'),
               item("baeckerei", "brot", "Brot des Monats", hours_ago=5, tags=("Brot",),
                    offer=Offer(price="3.90", currency="EUR", valid_until=town.now + timedelta(days=10))),
               item("baeckerei", "alt", "Osterbrot (abgelaufen)", hours_ago=30 * 24,
                    offer=Offer(price="2.00", currency="EUR", valid_until=town.now - timedelta(days=3))))
    town.fetch("tsv",
               item("tsv", "winterfest", "Winterfest der Jugend", hours_ago=2, tags=("Advent", "Jugend"),
                    event=evening(today + timedelta(days=3))),
               item("tsv", "sommerfest", "Sommerfest am Sportplatz", hours_ago=3,
                    event=evening(today + timedelta(days=9)), image=True),
               item("tsv", "abgesagt", "Hallenturnier", hours_ago=4,
                    event=evening(today + timedelta(days=5), cancelled=True)),
               item("tsv", "vorbei", "Saisonabschluss", hours_ago=24 * 20, event=evening(today - timedelta(days=10))),
               item("tsv", "bericht", "Bericht vom Heimspiel", hours_ago=6))
    town.fetch("modehaus", item("modehaus", "sale", "Winterschlussverkauf", hours_ago=7, tags=("Advent",),
                                offer=Offer(price="19.90", currency="EUR")))
    market_day = datetime.combine(today + timedelta(days=4), datetime.min.time(), BERLIN)
    town.fetch("rathaus", item("rathaus", "markt", "Weihnachtsmarkt", hours_ago=8, tags=("advent",),
                               event=Event(start=market_day, timezone="Europe/Berlin", all_day=True,
                                           location="Marktplatz")))
    return town
