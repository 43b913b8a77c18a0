"""The resident pages (issue 14) through the real app and store: the feed and its filters,
the agenda by day (the clock set to a Friday, so "Heute", "Morgen" and "Dieses Wochenende"
mean something), the date picker, offers, search, merchant and record pages with their
origins, JSON-LD, OpenGraph and canonical URLs, pagination, error pages in the site's look,
German and English, ETags, and what the pages never do (cookies, third-party assets,
inline styles).

Records arrive as a fetch's parse result through the store's ingest path
(`Store.apply`). Dates are relative to now or to the clock the test sets, never fixed."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timedelta, timezone
from html import escape
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest
import time_machine
from fastapi.testclient import TestClient

from hub import config
from hub.models import Event, FetchState, Item, Kind, Media, Offer, Parsed
from hub.moderation import rules_from
from hub.normalize import normalize_parsed
from hub.pipeline import source_specs
from hub.store import FetchOutcome, Store
from hub.web.app import create_app

BASE = "https://teststadt.example"
BERLIN = ZoneInfo("Europe/Berlin")
CONFIG = f"""\
platform: {{name: Teststadt erleben, base_url: "{BASE}/"}}
merchants:
  - id: baeckerei
    name: Bäckerei Schmitz
    category: gastronomie
    district: Altstadt
    website: https://baeckerei.example
    about: |
      Seit 1927 backen wir in der Altstadt.

      Alles aus eigener Backstube.
    address: "Kirchgasse 4\\n12345 Teststadt"
    opening_hours: ["Mo–Fr 7–18 Uhr", "Sa 7–13 Uhr"]
    sources:
      - {{connector: rss, url: "https://baeckerei.example/feed"}}
      - {{connector: facebook, page_id: "104523984512345", access_token: "not-a-token"}}
      - {{connector: instagram, ig_user_id: "17841400000000000", access_token: "not-a-token"}}
  - id: tsv
    name: TSV Teststadt
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
channels:
  - {{id: platform, renderer: platform, page_size: 3}}
"""


OPEN: list[Town] = []


@pytest.fixture(autouse=True)
def _towns_end_before_their_store(store):
    yield
    while OPEN:
        OPEN.pop().client.__exit__(None, None, None)


class Town:
    """The app of a small town on the test's store, and a way to feed it items."""

    def __init__(self, store: Store, tmp_path: Path, page_size: int = 3) -> None:
        path = tmp_path / "config.yaml"
        path.write_text(CONFIG.replace("page_size: 3", f"page_size: {page_size}"))
        self.settings = config.load(path, env={})
        self.store = store
        store.sync_sources(source_specs(self.settings))
        store.records.configure(rules_from(self.settings))
        self.client = TestClient(create_app(self.settings, store))
        self.client.__enter__()  # the app's lifespan: it ends (counters written) before the store goes
        OPEN.append(self)
        self.fetches = 0

    def fetch(self, source: str, *items: Item) -> None:
        """One fetch of a source, normalized as the parse workers do, stored as the pipeline stores it."""
        self.fetches += 1
        parsed = normalize_parsed(Parsed(tuple(items), complete=False), "Europe/Berlin")
        at = datetime.now(timezone.utc) + timedelta(milliseconds=self.fetches)
        self.store.apply([FetchOutcome(source, at, "ok", parsed=parsed, state=FetchState())])

    def get(self, path: str, **headers: str):
        """The answer; its text with Babel's no-break spaces ("3,90\u00a0€") as plain ones."""
        response = self.client.get(path, headers=headers)
        response.plain = response.text.replace("\u00a0", " ").replace("\u202f", " ")
        return response


def item(source: str, key: str, title: str, *, hours_ago: float = 1, tags=(), event: Event | None = None,
         offer: Offer | None = None, image: bool = False, html: str | None = None, url: str | None = None,
         summary: str = "") -> Item:
    merchant = source.split("-")[0]
    body = html if html is not None else f"<p>{escape(title)}. Mehr erfahren Sie bei uns im Laden.</p>"  # sanitized
    return Item(source_id=source, external_id=key, merchant_id=merchant, title=title, content_html=body,
                content_text=re.sub("<[^>]+>", "", body), summary=summary, url=url or f"https://{merchant}.example/{key}",
                published=datetime.now(timezone.utc) - timedelta(hours=hours_ago), tags=tuple(tags),
                kind=Kind.EVENT if event else Kind.OFFER if offer else Kind.POST, event=event, offer=offer,
                media=(Media(f"https://cdn.{merchant}.example/{key}.jpg", width=1200, height=800),) if image else ())


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), BERLIN)


def event(day: date, hour: int = 19, minute: int = 0, *, hours: float | None = 2, **more) -> Event:
    start = at(day, hour, minute)
    return Event(start=start, end=start + timedelta(hours=hours) if hours else None, timezone="Europe/Berlin", **more)


def titles(html: str, level: str = "h2") -> list[str]:
    return re.findall(rf'<{level}><a href="/items/\d+(?:\?[^"]*)?">([^<]+)</a></{level}>', html)


def headings(html: str) -> list[str]:
    return [" ".join(re.sub("<[^>]+>", " ", h).split()) for h in re.findall(r"<h2[^>]*>(.*?)</h2>", html, re.S)]


def canonical(html: str) -> str:
    return re.search(r'<link rel="canonical" href="([^"]+)">', html).group(1)


def meta(html: str, prop: str) -> str | None:
    found = re.search(rf'<meta property="{re.escape(prop)}" content="([^"]*)">', html)
    return found.group(1).replace("&amp;", "&") if found else None


def json_ld(html: str) -> dict:
    [block] = re.findall(r'<script type="application/ld\+json">(.*?)</script>', html, re.S)
    return json.loads(block)


@pytest.fixture
def town(store, tmp_path) -> Town:
    t = Town(store, tmp_path)
    t.fetch("baeckerei-rss",
            item("baeckerei-rss", "stollen", "Christstollen aus der Backstube", tags=("Advent", "Backen"), image=True,
                 summary="Butterstollen nach Omas Rezept."),
            item("baeckerei-rss", "brot", "Brot des Monats", hours_ago=5, tags=("Brot",),
                 offer=Offer(price="3.90", currency="EUR",
                             valid_until=datetime.now(timezone.utc) + timedelta(days=10))))
    t.fetch("tsv-rss",
            item("tsv-rss", "bericht", "Bericht vom Heimspiel", hours_ago=2, tags=("Fussball",)),
            item("tsv-rss", "training", "Neue Trainingszeiten der Jugend", hours_ago=3, tags=("Jugend",)))
    t.fetch("modehaus-rss", item("modehaus-rss", "sale", "Winterschlussverkauf", hours_ago=6, tags=("Advent",),
                                 offer=Offer(price="ab 19,90 €")))
    return t


# --- the feed and its filters --------------------------------------------------------------------

def test_the_feed_lists_every_record_and_its_filters_combine(town):
    page = town.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert titles(page.text) == ["Christstollen aus der Backstube", "Bericht vom Heimspiel",
                                 "Neue Trainingszeiten der Jugend"]  # page size 3, newest first
    assert titles(town.get("/?seite=2").text) == ["Brot des Monats", "Winterschlussverkauf"]
    for query, expected in [
        ("category=gastronomie", {"Christstollen aus der Backstube", "Brot des Monats"}),
        ("district=Nord", {"Bericht vom Heimspiel", "Neue Trainingszeiten der Jugend"}),
        ("kind=offer", {"Brot des Monats", "Winterschlussverkauf"}),
        ("kind=offer&district=Altstadt&category=handel", {"Winterschlussverkauf"}),
        ("tag=advent", {"Christstollen aus der Backstube", "Winterschlussverkauf"}),
        ("tag=advent&merchant=baeckerei", {"Christstollen aus der Backstube"}),
        ("category=gastronomie&category=vereine&kind=post", {"Christstollen aus der Backstube",
                                                             "Bericht vom Heimspiel",
                                                             "Neue Trainingszeiten der Jugend"}),
        ("category=schwimmbad", set()),
    ]:
        html = town.get(f"/?{query}").text
        assert set(titles(html)) == expected, query
    empty = town.get("/?category=schwimmbad").text
    assert "Zu diesen Filtern gibt es gerade nichts." in empty


def test_the_filter_bar_offers_what_is_there_as_links_and_a_form(town):
    html = town.get("/?tag=Advent").text
    for value in ("gastronomie", "vereine", "handel"):  # the configured categories ...
        assert f'<option value="{value}">' in html
    assert '<option value="Altstadt">' in html and '<option value="Nord">' in html  # ... districts, merchants
    assert '<option value="tsv">TSV Teststadt</option>' in html
    assert '<a href="/?kind=event&amp;tag=Advent">Veranstaltungen</a>' in html  # kinds keep the other filters
    assert '<input type="hidden" name="tag" value="Advent">' in html  # the form keeps them too
    assert '<form class="narrow" action="/" method="get">' in html
    assert re.search(r'<a href="/">#Advent <span aria-hidden="true">×</span>', html)  # an active filter, removable


def test_a_town_with_too_many_merchants_for_a_list_keeps_a_chosen_one_in_the_form(town, monkeypatch):
    """Thousands of merchants make no usable list (and a megabyte on every page): the form
    then offers categories and districts only, and a merchant chosen on a card rides along."""
    from hub.web import pages

    assert '<select name="merchant">' in town.get("/").text
    monkeypatch.setattr(pages, "MAX_MERCHANT_CHOICES", 2)  # the test town has three
    html = town.get("/?merchant=tsv&seite=1").text
    assert '<select name="merchant">' not in html and '<option value="tsv">' not in html
    assert '<option value="vereine">' in html  # categories stay
    assert '<input type="hidden" name="merchant" value="tsv">' in html
    assert re.search(r'<a href="/">TSV Teststadt <span aria-hidden="true">×</span>', html)  # removable
    assert set(titles(html)) == {"Bericht vom Heimspiel", "Neue Trainingszeiten der Jugend"}


def test_cards_show_price_validity_and_link_their_tags(town):
    html = town.get("/?kind=offer").plain
    assert "3,90 €" in html and "ab 19,90 €" in html
    until = (datetime.now(timezone.utc) + timedelta(days=10)).astimezone(BERLIN).date()
    assert f"gültig bis {until.day}.{until.month}." in html or f"gültig bis {until.day}.{until.month}.{until.year}" in html
    assert '<a href="/?tag=Brot">#Brot</a>' in html
    assert '<span class="label">Anzeige</span>' in html  # ads stay marked


# --- the agenda ----------------------------------------------------------------------------------

def next_weekday(weekday: int, hour: int) -> datetime:
    """The next such weekday from now (at least a day ahead), at `hour` in Berlin."""
    day = datetime.now(BERLIN).date() + timedelta(days=1)
    while day.weekday() != weekday:
        day += timedelta(days=1)
    return at(day, hour)


def agenda_town(store, tmp_path, today: date) -> Town:
    t = Town(store, tmp_path, page_size=30)
    d = lambda n: today + timedelta(days=n)  # noqa: E731
    t.fetch("tsv-rss",
            item("tsv-rss", "frueh", "Frühschwimmen im Hallenbad", event=event(today, 7, hours=1)),  # over at 8
            item("tsv-rss", "mittag", "Mittagslauf durch den Park", event=event(today, 9, hours=None)),  # no end: today
            item("tsv-rss", "abend", "Jahreshauptversammlung im Vereinsheim", event=event(today, 19, 30)),
            item("tsv-rss", "gestern", "Siegerehrung des Herbstturniers", event=event(d(-1), 18)),
            item("tsv-rss", "morgen", "Hallenturnier der Bambini", event=event(d(1), 10)),
            item("tsv-rss", "sonntag", "Wandertag zum Aussichtsturm", event=event(d(2), 9, hours=6)),
            item("tsv-rss", "dienstag", "Skatabend im Clubraum", event=event(d(4), 20)),
            item("tsv-rss", "abgesagt", "Weihnachtsfeier der Jugendabteilung",
                 event=event(d(1), 15, cancelled=True)))
    t.fetch("baeckerei-rss",
            item("baeckerei-rss", "markt", "Adventsmarkt auf dem Kirchplatz",  # Wednesday to Sunday, all day
                 event=Event(start=at(d(-2), 0), end=at(d(3), 0), timezone="Europe/Berlin", all_day=True,
                             location="Kirchplatz")))
    return t


def test_the_agenda_groups_today_tomorrow_the_weekend_and_later_days(store, tmp_path):
    friday = next_weekday(4, 10)
    with time_machine.travel(friday, tick=True):
        t = agenda_town(store, tmp_path, friday.date())
        html = t.get("/events").text
        tuesday = friday.date() + timedelta(days=4)
        year = f" {tuesday.year}" if tuesday.year != friday.year else ""  # a day of another year says so
        assert headings(html)[:4] == [f"Heute Freitag, {friday.day}. {month(friday.date())}",
                                      f"Morgen Samstag, {(friday + timedelta(days=1)).day}. "
                                      f"{month(friday.date() + timedelta(days=1))}",
                                      "Dieses Wochenende", f"Dienstag, {tuesday.day}. {month(tuesday)}{year}"]
        shown = titles(html, "h3")
        assert shown == ["Adventsmarkt auf dem Kirchplatz", "Mittagslauf durch den Park",
                         "Jahreshauptversammlung im Vereinsheim",  # today: running, started, to come
                         "Hallenturnier der Bambini", "Weihnachtsfeier der Jugendabteilung",  # tomorrow
                         "Wandertag zum Aussichtsturm", "Skatabend im Clubraum"]
        assert "Frühschwimmen" not in html and "Siegerehrung" not in html  # over: gone
        assert "läuft bis Sonntag" in html  # the market began on Wednesday and runs through the weekend
        assert "19:30–21:30 Uhr" in html and "So., 09:00–15:00 Uhr" in html
        cancelled = re.search(r'<article class="event cancelled">.*?</article>', html, re.S).group(0)
        assert '<strong class="badge">Abgesagt</strong>' in cancelled and "Weihnachtsfeier" in cancelled
        assert "Abgesagt" not in html.replace(cancelled, "")
        english = t.get("/events?lang=en").text
        assert headings(english)[:3] == [f"Today Friday {friday.day} {month(friday.date(), 'en')}",
                                         f"Tomorrow Saturday {(friday + timedelta(days=1)).day} "
                                         f"{month(friday.date() + timedelta(days=1), 'en')}", "This weekend"]
        assert "Cancelled" in english and "19:30–21:30" in english and "runs until Sunday" in english


def test_on_a_saturday_sunday_is_tomorrow_and_there_is_no_weekend_heading(store, tmp_path):
    saturday = next_weekday(5, 12)
    with time_machine.travel(saturday, tick=True):
        t = Town(store, tmp_path)
        t.fetch("tsv-rss", item("tsv-rss", "so", "Wandertag zum Aussichtsturm", event=event(saturday.date() + timedelta(days=1), 9)),
                item("tsv-rss", "sa", "Flohmarkt am Sportplatz", event=event(saturday.date(), 14)))
        assert [h.split()[0] for h in headings(t.get("/events").text)] == ["Heute", "Morgen"]


def test_the_date_picker_takes_whole_local_days(store, tmp_path):
    t = Town(store, tmp_path)
    first = datetime.now(BERLIN).date() + timedelta(days=10)
    last = first + timedelta(days=2)
    t.fetch("tsv-rss",
            item("tsv-rss", "vorher", "Probe vor dem Zeitraum", event=event(first - timedelta(days=1), 23, 30)),
            item("tsv-rss", "erster", "Konzert am ersten Tag", event=event(first, 0, 15)),
            item("tsv-rss", "letzter", "Lesung spät am letzten Tag", event=event(last, 23, 30, hours=1)),
            item("tsv-rss", "danach", "Frühstück danach", event=event(last + timedelta(days=1), 0, 30)))
    html = t.get(f"/events?von={first}&bis={last}").text
    assert titles(html, "h3") == ["Konzert am ersten Tag", "Lesung spät am letzten Tag"]
    assert f'name="von" value="{first}"' in html and f'name="bis" value="{last}"' in html
    assert canonical(html) == f"{BASE}/events?von={first}&amp;bis={last}"
    assert titles(t.get(f"/events?von={first}").text, "h3") == ["Konzert am ersten Tag", "Lesung spät am letzten Tag",
                                                              "Frühstück danach"]
    past = t.get(f"/events?von={first - timedelta(days=400)}&bis={first - timedelta(days=300)}")
    assert past.status_code == 200 and "vergangene Termine zeigt die Seite nicht" in past.text


@pytest.mark.dialect_free
@pytest.mark.parametrize("query, words", [
    ("von=24.12.2026", "„von“ ist ein Datum wie 2026-12-24"),
    ("bis=morgen", "„bis“ ist ein Datum wie 2026-12-24"),
    ("von=2030-01-10&bis=2030-01-02", "„bis“ (2030-01-02) liegt vor „von“ (2030-01-10)"),
])
def test_a_bad_date_is_a_friendly_400_in_the_sites_look(town, query, words):
    page = town.get(f"/events?{query}")
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
    assert words in page.text and "<h1>Das hat nicht geklappt</h1>" in page.text
    assert 'class="site"' in page.text and '<a class="skip" href="#inhalt">' in page.text


# --- offers, search, merchants, records ---------------------------------------------------------

def test_offers_are_current_with_price_and_validity(town):
    town.fetch("baeckerei-rss", item("baeckerei-rss", "alt", "Kürbissuppe zum halben Preis", hours_ago=30,
                                     offer=Offer(price="2.50", currency="EUR",
                                                 valid_until=datetime.now(timezone.utc) - timedelta(hours=1))))
    html = town.get("/offers").plain
    assert set(titles(html)) == {"Brot des Monats", "Winterschlussverkauf"}  # the expired one is gone
    assert "3,90 €" in html and "gültig bis" in html and "<h1>Angebote</h1>" in html
    english = town.get("/offers?lang=en").plain
    assert "€3.90" in english and "valid until" in english and "<h1>Offers</h1>" in english
    assert set(titles(town.get("/offers?district=Nord").text)) == set()


def test_search_finds_ranks_and_marks_within_the_filters(town):
    html = town.get("/search?q=backstube").text
    assert "<h1>Suche nach „backstube“</h1>" in html and "1 Treffer" in html
    assert re.search(r'<h2><a href="/items/\d+">Christstollen aus der <mark>Backstube</mark></a></h2>', html)
    assert set(titles(town.get("/search?q=laden&kind=offer").text)) == {"Brot des Monats", "Winterschlussverkauf"}
    assert set(titles(town.get("/search?q=laden&kind=offer&category=handel").text)) == {"Winterschlussverkauf"}
    english = town.get("/search?q=laden&district=Nord&lang=en").text
    assert "2 results" in english and set(titles(english)) == {"Bericht vom Heimspiel",
                                                               "Neue Trainingszeiten der Jugend"}
    nothing = town.get("/search?q=Schwimmbad")
    assert nothing.status_code == 200 and "Keine Treffer für „Schwimmbad“." in nothing.text
    start = town.get("/search")
    assert start.status_code == 200 and "Geben Sie ein Wort ein" in start.text
    assert '<meta name="robots" content="noindex, follow">' in html
    assert '<input id="suche-kopf" type="search" name="q" value="backstube"' in html  # the header's box
    escaped = town.get("/search?q=<script>alert(1)</script>").text
    assert "<script>alert" not in escaped and "&lt;script&gt;" in escaped


def test_search_ranks_by_relevance_and_finds_word_forms(town):
    town.fetch("tsv-rss",
               item("tsv-rss", "park", "Konzert im Stadtpark", hours_ago=30),
               item("tsv-rss", "fest", "Sommerfest am Sportplatz", hours_ago=1,
                    html="<p>Mit Grill, Tombola und am Abend einem kleinen Konzert.</p>"))
    html = town.get("/search?q=Konzerte").text  # a plural finds the singular (German stems)
    found = re.findall(r'<h2><a href="/items/\d+">(.*?)</a></h2>', html)
    assert found == ["<mark>Konzert</mark> im Stadtpark", "Sommerfest am Sportplatz"]  # the title counts most


def test_every_page_has_the_search_box_in_its_header(town):
    for path in ("/", "/events", "/offers", "/search?q=brot", "/m/tsv", "/gibt-es-nicht"):
        html = town.get(path).text
        assert re.search(r'<form class="search" role="search" action="/search" method="get">', html), path


def test_a_merchant_page_shows_about_address_hours_channels_and_its_items(town):
    html = town.get("/m/baeckerei").text
    assert "<h1>Bäckerei Schmitz</h1>" in html
    assert "Seit 1927 backen wir in der Altstadt." in html and "Alles aus eigener Backstube." in html
    assert "<address>Kirchgasse 4<br>12345 Teststadt</address>" in html
    assert "<li>Mo–Fr 7–18 Uhr</li><li>Sa 7–13 Uhr</li>" in html
    channels = re.search(r'<ul class="channels">(.*?)</ul>', html).group(1)
    assert re.findall(r">([^<]+)</", channels) == ["Website", "Facebook", "Instagram"]
    assert 'href="https://www.facebook.com/104523984512345"' in channels
    assert 'href="https://baeckerei.example"' in channels
    assert '<a href="/?category=gastronomie">Gastronomie</a>' in html
    assert titles(html) == ["Christstollen aus der Backstube", "Brot des Monats"]
    organization = json_ld(html)
    assert organization["@type"] == "Organization" and organization["address"] == "Kirchgasse 4\n12345 Teststadt"
    assert "https://www.facebook.com/104523984512345" in organization["sameAs"]
    assert town.get("/m/niemand").status_code == 404


def test_a_merchant_page_pages_its_items(town):
    town.fetch("tsv-rss", *[item("tsv-rss", f"n{i}", f"Vereinsnachricht Nummer {i}", hours_ago=10 + i)
                            for i in range(3)])
    first = town.get("/m/tsv").text
    assert titles(first) == ["Bericht vom Heimspiel", "Neue Trainingszeiten der Jugend", "Vereinsnachricht Nummer 0"]
    assert '<a href="/m/tsv?seite=2" rel="next">' in first and "Seite 1 von 2" in first
    assert '<link rel="next" href="https://teststadt.example/m/tsv?seite=2">' in first
    second = town.get("/m/tsv?seite=2").text
    assert titles(second) == ["Vereinsnachricht Nummer 1", "Vereinsnachricht Nummer 2"]
    assert '<a href="/m/tsv" rel="prev">' in second and '<link rel="prev" href="https://teststadt.example/m/tsv">' in second


def test_a_record_page_shows_its_origins_and_event_details(town):
    concert = event(datetime.now(BERLIN).date() + timedelta(days=5), 19, 30, location="Stadthalle, Marktplatz 1")
    town.fetch("baeckerei-rss", item("baeckerei-rss", "konzert", "Weihnachtskonzert mit dem Kinderchor",
                                     event=concert, url="https://baeckerei.example/2026/konzert/", image=True))
    town.fetch("baeckerei-facebook", item("baeckerei-facebook", "fb1", "Weihnachtskonzert mit dem Kinderchor",
                                          event=concert, url="https://www.facebook.com/baeckerei/posts/1"))
    [record] = [r for r in town.store.records.list(limit=50) if "Weihnachtskonzert" in r.item.title]
    assert len(record.origins) == 2
    html = town.get(f"/items/{record.id}").text
    origins = re.search(r'<section class="origins".*?</section>', html, re.S).group(0)
    assert '<a href="https://baeckerei.example/2026/konzert/" rel="noopener noreferrer nofollow">Auf der Website</a>' \
        in origins
    assert '<a href="https://www.facebook.com/baeckerei/posts/1" rel="noopener noreferrer nofollow">Auf Facebook</a>' \
        in origins
    assert "<dt>Wann</dt>" in html and "19:30–21:30 Uhr" in html and "<dd>Stadthalle, Marktplatz 1</dd>" in html
    english = town.get(f"/items/{record.id}?lang=en").text
    assert "On Facebook" in english and "On the website" in english and "<dt>Place</dt>" in english


# --- what search engines and link previews read -------------------------------------------------

def test_json_ld_for_an_event_with_place_and_offer(town):
    start = at(datetime.now(BERLIN).date() + timedelta(days=6), 20)
    town.fetch("tsv-rss", item("tsv-rss", "gala", "Sportlergala </script><script>alert(1)</script>",
                               event=Event(start=start, end=start + timedelta(hours=3), timezone="Europe/Berlin",
                                           location="Stadthalle", cancelled=True, latitude=50.1, longitude=8.6),
                               offer=Offer(price="12.00", currency="EUR"), image=True))
    [record] = [r for r in town.store.records.list(limit=50) if r.item.title.startswith("Sportlergala")]
    html = town.get(f"/items/{record.id}").text
    block = re.search(r'<script type="application/ld\+json">(.*?)</script>', html, re.S).group(1)
    assert "<" not in block  # nothing a merchant wrote can end the block
    data = json.loads(block)
    assert data["@context"] == "https://schema.org" and data["@type"] == "Event"
    assert data["name"] == "Sportlergala </script><script>alert(1)</script>"
    assert data["startDate"] == start.isoformat() and data["endDate"] == (start + timedelta(hours=3)).isoformat()
    assert data["eventStatus"] == "https://schema.org/EventCancelled"
    assert data["location"] == {"@type": "Place", "name": "Stadthalle", "address": "Stadthalle",
                                "geo": {"@type": "GeoCoordinates", "latitude": 50.1, "longitude": 8.6}}
    assert data["offers"]["@type"] == "Offer" and data["offers"]["price"] == "12.00"
    assert data["offers"]["priceCurrency"] == "EUR"
    assert data["organizer"] == {"@type": "Organization", "name": "TSV Teststadt", "url": f"{BASE}/m/tsv"}
    assert data["url"] == f"{BASE}/items/{record.id}" == canonical(html)
    assert data["image"][0].startswith(f"{BASE}/media/")
    assert "<strong class=\"badge\">Abgesagt</strong>" in html and "Diese Veranstaltung findet nicht statt." in html
    assert "<script>alert" not in html.replace(block, "")


def test_json_ld_for_an_offer_and_an_article_and_opengraph(town):
    records = {r.item.title: r for r in town.store.records.list(limit=50)}
    offer = json_ld(town.get(f"/items/{records['Brot des Monats'].id}").text)
    assert offer["@type"] == "Offer" and offer["name"] == "Brot des Monats" and offer["price"] == "3.90"
    assert offer["priceCurrency"] == "EUR" and offer["validThrough"]
    assert offer["seller"]["name"] == "Bäckerei Schmitz"
    words = json_ld(town.get(f"/items/{records['Winterschlussverkauf'].id}").text)
    assert words["@type"] == "Offer" and "price" not in words  # "ab 19,90 €" is no number ...
    assert words["priceSpecification"]["description"] == "ab 19,90 €"  # ... and said in words

    stollen = records["Christstollen aus der Backstube"]
    html = town.get(f"/items/{stollen.id}").text
    article = json_ld(html)
    assert article["@type"] == "NewsArticle" and article["headline"] == "Christstollen aus der Backstube"
    assert article["datePublished"] and article["author"]["name"] == "Bäckerei Schmitz"
    assert article["publisher"] == {"@type": "Organization", "name": "Teststadt erleben", "url": f"{BASE}/"}
    assert meta(html, "og:title") == "Christstollen aus der Backstube"
    assert meta(html, "og:description") == "Butterstollen nach Omas Rezept."
    assert meta(html, "og:type") == "article"
    assert meta(html, "og:url") == f"{BASE}/items/{stollen.id}" == canonical(html)
    image = meta(html, "og:image")
    assert image.startswith(f"{BASE}/media/") and "cdn.baeckerei" not in image  # the hub's own route


@pytest.mark.dialect_free
@pytest.mark.parametrize("path, expected", [
    ("/", f"{BASE}/"),
    ("/?seite=1&utm_source=newsletter", f"{BASE}/"),
    ("/?tag=advent&category=gastronomie&fbclid=x", f"{BASE}/?category=gastronomie&tag=advent"),
    ("/?seite=2", f"{BASE}/?seite=2"),
    ("/events", f"{BASE}/events"),
    ("/offers?kind=offer", f"{BASE}/offers"),
    ("/search?q=brot&zz=1", f"{BASE}/search?q=brot"),
    ("/m/tsv?merchant=baeckerei", f"{BASE}/m/tsv"),
    ("/?lang=en", f"{BASE}/?lang=en"),
    ("/offers?lang=de", f"{BASE}/offers"),
])
def test_every_page_names_its_canonical_url(town, path, expected):
    html = town.get(path).text
    assert canonical(html).replace("&amp;", "&") == expected
    assert meta(html, "og:url") == expected


def test_hreflang_alternates_name_both_languages(town):
    html = town.get("/events").text
    assert '<link rel="alternate" hreflang="de" href="https://teststadt.example/events">' in html
    assert '<link rel="alternate" hreflang="en" href="https://teststadt.example/events?lang=en">' in html
    assert '<link rel="alternate" hreflang="x-default" href="https://teststadt.example/events">' in html


# --- pagination and errors ---------------------------------------------------------------------

def test_pagination_keeps_the_filters_and_names_prev_and_next(town):
    town.fetch("tsv-rss", *[item("tsv-rss", f"p{i}", f"Spielbericht Nummer {i}", hours_ago=20 + i, tags=("Advent",))
                            for i in range(4)])
    first = town.get("/?tag=advent").text
    assert '<a href="/?tag=advent&amp;seite=2" rel="next">Ältere <span aria-hidden="true">→</span></a>' in first
    assert 'rel="prev"' not in first
    second = town.get("/?tag=advent&seite=2").text
    assert '<a href="/?tag=advent" rel="prev"><span aria-hidden="true">←</span> Neuere</a>' in second
    assert "Seite 2 von 2" in second
    english = town.get("/?tag=advent&lang=en").text
    assert '<a href="/?tag=advent&amp;seite=2&amp;lang=en" rel="next">Older' in english
    assert town.get("/?tag=advent&seite=3").status_code == 404
    for bad in ("seite=0", "seite=zwei", "seite=-1"):
        page = town.get(f"/?{bad}")
        assert page.status_code == 400 and "„seite“ ist eine Seitenzahl" in page.text


@pytest.mark.dialect_free
@pytest.mark.parametrize("path", ["/gibt-es-nicht", "/items/999999", "/items/abc", "/m/niemand", "/static/nix.css",
                                  "/%E2%82%AC", "/events/nix"])
def test_unknown_paths_get_a_404_page_in_the_sites_look(town, path):
    page = town.get(path)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "<h1>Nicht gefunden</h1>" in page.text and '<html lang="de">' in page.text
    assert '<main id="inhalt"' in page.text and "/static/style.css" in page.text
    assert '<meta name="robots" content="noindex, follow">' in page.text
    english = town.get(path, **{"Accept-Language": "en-GB,en;q=0.9"})
    assert "<h1>Not found</h1>" in english.text and '<html lang="en">' in english.text


@pytest.mark.dialect_free
@pytest.mark.parametrize("path", ["/api/v1/gibt-es-nicht", "/healthz/nix", "/media/nix", "/hooks/nix"])
def test_machine_addresses_answer_json_errors(town, path):
    page = town.get(path)
    assert page.status_code in (404, 405) and page.headers["content-type"] == "application/json"
    assert "detail" in page.json()


def test_a_wrong_method_is_a_405_page(town):
    page = town.client.post("/events")
    assert page.status_code == 405 and "<h1>Das hat nicht geklappt</h1>" in page.text
    assert {m.strip() for m in page.headers["allow"].split(",")} == {"GET", "HEAD"}


def test_a_crash_is_a_500_page_without_a_traceback(town):
    client = TestClient(town.client.app, raise_server_exceptions=False)
    with town.store.engine.begin() as conn:  # the database loses its records table under the running app
        conn.exec_driver_sql("ALTER TABLE records RENAME TO records_lost")
    page = client.get("/?lang=en")
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert "<h1>Something went wrong</h1>" in page.text and "Traceback" not in page.text
    assert "records" not in page.text and "sqlite" not in page.text.lower()
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert "set-cookie" not in page.headers


# --- language ----------------------------------------------------------------------------------

def test_english_by_query_is_kept_in_links_and_german_is_the_default(town):
    german = town.get("/").text
    assert '<html lang="de">' in german and "<h1>Was gibt's Neues in der Stadt?</h1>" in german
    english = town.get("/?lang=en").text
    assert '<html lang="en">' in english and "<h1>What's new in town?</h1>" in english
    assert "Skip to content" in english and "Events</a>" in english and "Zum Inhalt" not in english
    links = re.findall(r'<a [^>]*href="(/[^"]*)"', english)
    assert links and all(dict(parse_qsl(urlsplit(link.replace("&amp;", "&")).query)).get("lang") == "en"
                         for link in links if not link.startswith(("/feed", "/events.ics")) and "lang=de" not in link)
    assert '<a class="lang" href="/?lang=de" hreflang="de" lang="de">Deutsch</a>' in english
    assert '<input type="hidden" name="lang" value="en">' in english  # the search keeps it too
    assert "hours ago" in english or "hour ago" in english


@pytest.mark.dialect_free
@pytest.mark.parametrize("accept, lang", [
    ("en-US,en;q=0.9", "en"), ("en", "en"), ("de-DE,de;q=0.9,en;q=0.8", "de"), ("en,de", "de"),
    ("fr-FR,fr;q=0.9,en;q=0.5", "en"), ("fr", "de"), ("", "de"), ("en;q=0.5,de;q=0.5", "de"), ("*", "de"),
])
def test_accept_language_decides_without_a_query_and_german_wins_a_tie(town, accept, lang):
    html = town.get("/offers", **{"Accept-Language": accept}).text
    assert f'<html lang="{lang}">' in html
    assert ("<h1>Offers</h1>" if lang == "en" else "<h1>Angebote</h1>") in html
    assert "lang=en" not in re.sub(r'<(link|meta|a class="lang")[^>]*>', "", html)  # nothing chosen: links stay plain


def test_titles_say_the_filters_in_the_readers_language(town):
    assert "<title>Gastronomie · Beiträge – Teststadt erleben</title>" in town.get("/?category=gastronomie&kind=post").text
    english = town.get("/?category=gastronomie&kind=post&district=Altstadt&lang=en").text
    assert "<title>Food and drink · District Altstadt · Posts – Teststadt erleben</title>" in english


def test_the_query_beats_the_browser(town):
    assert '<html lang="de">' in town.get("/?lang=de", **{"Accept-Language": "en"}).text
    assert '<html lang="en">' in town.get("/?lang=en", **{"Accept-Language": "de"}).text
    assert '<html lang="de">' in town.get("/?lang=fr", **{"Accept-Language": "de"}).text  # unknown: ignored


# --- caching, privacy, safety --------------------------------------------------------------------

def test_pages_answer_304_to_their_etag_until_something_changes(town):
    first = town.get("/")
    etag = first.headers["etag"]
    assert etag.startswith('W/"') and first.headers["cache-control"] == "no-cache"
    assert "Accept-Language" in first.headers["vary"]
    again = town.get("/", **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert town.get("/?lang=en").headers["etag"] != etag
    town.fetch("tsv-rss", item("tsv-rss", "neu", "Neuer Vorstand gewählt", hours_ago=0.1))
    changed = town.get("/", **{"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag and "Neuer Vorstand" in changed.text
    [record] = [r for r in town.store.records.list(limit=50) if r.item.title == "Neuer Vorstand gewählt"]
    for path in ("/events", "/offers", "/search?q=vorstand", "/m/tsv", f"/items/{record.id}"):
        tag = town.get(path).headers["etag"]
        assert town.get(path, **{"If-None-Match": tag}).status_code == 304, path


def test_pages_answer_head_requests(town):
    for path in ("/", "/events", "/offers", "/search?q=brot", "/m/tsv"):
        response = town.client.head(path)
        assert response.status_code == 200 and response.headers["etag"] and response.content == b"", path


def test_pages_set_no_cookie_and_load_nothing_from_another_host(town):
    town.fetch("baeckerei-rss", item("baeckerei-rss", "bild", "Unser neuer Laden", image=True,
                                     html='<p>So sieht er aus: <img src="https://cdn.baeckerei.example/laden.jpg"></p>'))
    records = town.store.records.list(limit=50)
    paths = ["/", "/events", "/offers", "/search?q=laden", "/m/baeckerei", "/gibt-es-nicht",
             *(f"/items/{r.id}" for r in records)]
    for path in paths:
        page = town.get(path)
        assert "set-cookie" not in page.headers, path
        html = page.text
        assets = re.findall(r'<(?:img|script|source|link|iframe|video|audio)\b[^>]*?\b(?:src|href|srcset)="([^"]*)"',
                            html)
        foreign = [a for a in assets for url in a.split(",") if url.strip().startswith(("http:", "https:", "//"))
                   and not url.strip().startswith(BASE)]
        assert foreign == [], (path, foreign)
        assert " style=" not in html and "<style" not in html, path
        assert re.findall(r"<script(?![^>]*application/ld\+json)", html) == [], path
        assert page.headers["content-security-policy"].startswith("default-src 'none'"), path
    [shop] = [r for r in records if r.item.title == "Unser neuer Laden"]
    html = town.get(f"/items/{shop.id}").text
    assert re.search(r'<img alt="Bild zu „Unser neuer Laden“" src="/media/', html)  # an image without alt gets one


def test_every_image_has_alt_text(town):
    for path in ["/", "/m/baeckerei", *(f"/items/{r.id}" for r in town.store.records.list(limit=50))]:
        for tag in re.findall(r"<img\b[^>]*>", town.get(path).text):
            assert re.search(r'\balt="[^"]+"', tag), (path, tag)


def test_landmarks_headings_and_the_skip_link(town):
    for path in ("/", "/events", "/offers", "/search?q=brot", "/m/baeckerei", "/gibt-es-nicht"):
        html = town.get(path).text
        assert html.count("<h1") == 1, path
        assert all(tag in html for tag in ('<header class="site">', '<main id="inhalt"', '<footer class="site">',
                                           '<nav class="main-nav"', '<a class="skip" href="#inhalt">')), path
        levels = [int(n) for n in re.findall(r"<h([1-6])\b", html)]
        assert levels[0] == 1 and all(b - a <= 1 for a, b in zip(levels, levels[1:])), (path, levels)


def month(day: date, locale: str = "de") -> str:
    names = {"de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
                    "November", "Dezember"),
             "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                    "November", "December")}
    return names[locale][day.month - 1]
