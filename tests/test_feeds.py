"""Feeds out for every filtered view (issue 14), through the real app and store (SQLite and
PostgreSQL): Atom and RSS read by feedparser without a bozo flag and with the specs'
required elements, JSON Feed against the 1.1 schema, /events.ics read back by icalendar and
recurring-ical-events with the right local times on both sides of a daylight-saving change;
filters that combine and agree with the pages; 304 for an unchanged feed; edits, removals
and cancellations seen by subscribers; no image from a third party.

Dates are relative to now (the suite also runs a year ahead), never to a fixed day."""

from __future__ import annotations

import json
import re
import time
from datetime import date, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import feedparser
import icalendar
import jsonschema
import pytest
import recurring_ical_events
from fastapi.testclient import TestClient

from hub import config
from hub.models import Event, FetchState, Item, Kind, Media, Offer, Parsed
from hub.moderation import rules_from
from hub.normalize import normalize_parsed
from hub.http import Fetcher
from hub.pipeline import Pipeline, source_specs
from hub.store import FetchOutcome, SourceSpec, Store
from hub.web.app import CSP, create_app
from tests.feedserver import FeedServer

BASE = "https://musterstadt.example"
BERLIN = ZoneInfo("Europe/Berlin")
ATOM = "{http://www.w3.org/2005/Atom}"
SCHEMA = json.loads((Path(__file__).parent / "data" / "jsonfeed-1.1.schema.json").read_text())
FEEDS = ("/feed.atom", "/feed.rss", "/feed.json", "/events.ics")
CONFIG = f"""\
platform: {{name: Musterstadt erleben, base_url: "{BASE}"}}
merchants:
  - {{id: baeckerei, name: "Bäckerei Schmitz & Söhne", category: gastronomie, district: Altstadt}}
  - {{id: tsv, name: TSV Musterstadt, category: vereine, district: Nord}}
  - {{id: modehaus, name: Modehaus Becker, category: handel, district: Altstadt, label: Anzeige}}
  - {{id: rathaus, name: Stadtverwaltung, category: verwaltung}}
channels:
  - {{id: platform, renderer: platform}}
"""


def next_day_with_offset(start: date, hours: int) -> date:
    """The first day from `start` on whose evening Berlin is `hours` ahead of UTC."""
    day = start
    while datetime.combine(day, datetime.min.time().replace(hour=19), BERLIN).utcoffset() != timedelta(hours=hours):
        day += timedelta(days=1)
    return day


class Town:
    """The app of a small town on the test's store, and a way to feed it items."""

    def __init__(self, store: Store, tmp_path: Path) -> None:
        path = tmp_path / "config.yaml"
        path.write_text(CONFIG)
        self.settings = config.load(path, env={})
        self.store = store
        store.records.configure(rules_from(self.settings))
        store.sync_sources([SourceSpec(f"{m.id}-rss", m.id, "rss") for m in self.settings.merchants])
        self.now = datetime.now(timezone.utc).replace(microsecond=0)
        self.client = TestClient(create_app(self.settings, store))
        self.fetches = 0

    def fetch(self, merchant: str, *items: Item, gone: tuple[str, ...] = ()) -> None:
        """One fetch of the merchant's feed, normalized as the parse workers do."""
        self.fetches += 1
        parsed = normalize_parsed(Parsed(tuple(items), complete=False, gone=gone), "Europe/Berlin")
        at = self.now + timedelta(seconds=self.fetches)
        self.store.apply([FetchOutcome(f"{merchant}-rss", at, "ok", parsed=parsed, state=FetchState())])

    def get(self, path: str, **headers: str):
        return self.client.get(path, headers=headers)


def item(merchant: str, key: str, title: str, *, hours_ago: float = 1, tags=(), event: Event | None = None,
         offer: Offer | None = None, image: str | None = None, html: str | None = None) -> Item:
    now = datetime.now(timezone.utc)
    body = html if html is not None else f"<p>{title}: alles Weitere bei uns.</p>"
    return Item(source_id=f"{merchant}-rss", external_id=key, merchant_id=merchant, title=title, content_html=body,
                content_text=re.sub("<[^>]+>", "", body), url=f"https://{merchant}.example/{key}",
                published=now - timedelta(hours=hours_ago), tags=tuple(tags),
                kind=Kind.EVENT if event else Kind.OFFER if offer else Kind.POST, event=event, offer=offer,
                media=(Media(f"https://cdn.{merchant}.example/{key}.jpg", width=1200, height=800),) if image else ())


def evening(day: date, hour: int = 19, minute: int = 30) -> Event:
    start = datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN)
    return Event(start=start, end=start + timedelta(hours=2), timezone="Europe/Berlin", location="Stadthalle")


@pytest.fixture
def town(store, tmp_path) -> Town:
    t = Town(store, tmp_path)
    today = t.now.astimezone(BERLIN).date()
    winter = next_day_with_offset(today + timedelta(days=7), 1)
    summer = next_day_with_offset(today + timedelta(days=7), 2)
    t.winter, t.summer = winter, summer
    t.fetch("baeckerei",
            item("baeckerei", "stollen", "Stollen <frisch> & warm", tags=("Advent", "#Backen"), image="yes",
                 html='<p>Jetzt da <img src="https://cdn.baeckerei.example/inline.jpg" alt="Stollen"></p>'),
            item("baeckerei", "brot", "Brot des Monats", hours_ago=5, tags=("Brot",),
                 offer=Offer(price="3.90", currency="EUR")))
    t.fetch("tsv",
            item("tsv", "winterfest", "Winterfest der Jugend", hours_ago=2, tags=("Advent", "Jugend"),
                 event=evening(winter)),
            item("tsv", "sommerfest", "Sommerfest am Sportplatz", hours_ago=3, tags=("Sommer",), event=evening(summer),
                 image="yes"),
            item("tsv", "bericht", "Bericht vom Heimspiel", hours_ago=4))
    t.fetch("modehaus", item("modehaus", "sale", "Winterschlussverkauf", hours_ago=6, tags=("Advent",),
                             offer=Offer(price="19.90", currency="EUR")))
    t.fetch("rathaus", item("rathaus", "markt", "Weihnachtsmarkt", hours_ago=7, tags=("advent",),
                            event=Event(start=datetime.combine(winter + timedelta(days=1), datetime.min.time(), BERLIN),
                                        timezone="Europe/Berlin", all_day=True, location="Marktplatz")))
    return t


def page_ids(town: Town, path: str) -> list[int]:
    return [int(i) for i in re.findall(r'<h2><a href="/items/(\d+)">', town.get(path).text)]


def feed_ids(town: Town, path: str) -> list[int]:
    return [int(i["id"].rsplit("/", 1)[1]) for i in town.get(path).json()["items"]]


def calendar_of(town: Town, path: str = "/events.ics") -> icalendar.Calendar:
    response = town.get(path)
    assert response.status_code == 200
    return icalendar.Calendar.from_ical(response.content)


# --- valid feeds ------------------------------------------------------------------------------

def test_atom_and_rss_parse_cleanly_with_the_required_elements(town):
    atom = town.get("/feed.atom?tag=advent")
    assert atom.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(atom.content)
    assert parsed.bozo == 0 and parsed.version == "atom10"
    root = ElementTree.fromstring(atom.content)
    for required in ("id", "title", "updated"):
        assert root.find(ATOM + required).text
    links = {link.get("rel"): link.get("href") for link in root.findall(ATOM + "link")}
    assert links == {"self": f"{BASE}/feed.atom?tag=advent", "alternate": f"{BASE}/?tag=advent"}
    entries = root.findall(ATOM + "entry")
    assert len(entries) == 4 and len(parsed.entries) == 4
    for entry in entries:
        assert entry.find(ATOM + "id").text.startswith(f"{BASE}/items/")
        assert entry.find(ATOM + "title").text and entry.find(ATOM + "updated").text
        assert entry.find(f"{ATOM}author/{ATOM}name").text
        assert entry.find(f"{ATOM}link[@rel='alternate']").get("href") == entry.find(ATOM + "id").text
    first = parsed.entries[0]
    assert first.title == "Stollen <frisch> & warm"  # escaped in XML, intact for readers
    assert first.author == "Bäckerei Schmitz & Söhne"
    assert [t.term for t in first.tags] == ["Advent", "Backen"]
    assert {link.rel: link.href for link in first.links}["via"] == "https://baeckerei.example/stollen"
    assert "<img" in first.content[0].value and first.content[0].type == "text/html"
    assert any(e.title == "Anzeige: Winterschlussverkauf" for e in parsed.entries)  # ads stay marked

    rss = town.get("/feed.rss?tag=advent")
    assert rss.headers["content-type"].startswith("application/rss+xml")
    parsed = feedparser.parse(rss.content)
    assert parsed.bozo == 0 and parsed.version == "rss20"
    channel = ElementTree.fromstring(rss.content).find("channel")
    for required in ("title", "link", "description"):
        assert channel.find(required).text
    assert channel.find(ATOM + "link").attrib == {"rel": "self", "type": "application/rss+xml",
                                                   "href": f"{BASE}/feed.rss?tag=advent"}
    items = channel.findall("item")
    assert len(items) == 4
    for element in items:
        guid = element.find("guid")
        assert guid.get("isPermaLink") == "false" and re.fullmatch(r"record-\d+@musterstadt\.example", guid.text)
        assert element.find("title").text and element.find("link").text.startswith(f"{BASE}/items/")
        assert element.find("pubDate").text
    assert parsed.entries[0].author == "Bäckerei Schmitz & Söhne"  # dc:creator
    assert parsed.entries[0].enclosures[0].type == "image/jpeg"


def test_json_feed_follows_the_1_1_schema(town):
    response = town.get("/feed.json")
    assert response.headers["content-type"] == "application/feed+json"
    feed = response.json()
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(feed)
    assert (feed["version"], feed["home_page_url"], feed["feed_url"]) == (
        "https://jsonfeed.org/version/1.1", f"{BASE}/", f"{BASE}/feed.json")
    first = feed["items"][0]
    assert first["title"] == "Stollen <frisch> & warm" and first["authors"] == [
        {"name": "Bäckerei Schmitz & Söhne", "url": f"{BASE}/m/baeckerei"}]
    assert first["external_url"] == "https://baeckerei.example/stollen" and first["tags"] == ["Advent", "Backen"]
    assert first["date_modified"] >= first["date_published"]
    [fest] = [i for i in feed["items"] if i["title"] == "Winterfest der Jugend"]
    assert fest["_event"]["start"].startswith(town.winter.isoformat()) and fest["_event"]["cancelled"] is False
    broken = dict(feed, items=[{"id": "x", "title": "no content"}])
    with pytest.raises(jsonschema.ValidationError):  # the schema has teeth
        jsonschema.validate(broken, SCHEMA)


def test_events_read_back_with_local_times_on_both_sides_of_a_dst_change(town):
    response = town.get("/events.ics")
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    lines = response.content.split(b"\r\n")
    assert all(len(line) <= 75 for line in lines) and b"\n" not in response.content.replace(b"\r\n", b"")
    cal = icalendar.Calendar.from_ical(response.content)
    assert cal["VERSION"] == "2.0" and cal["PRODID"] and cal["X-WR-CALNAME"] == "Musterstadt erleben – Termine"
    [zone] = cal.walk("VTIMEZONE")
    assert zone["TZID"] == "Europe/Berlin" and {c.name for c in zone.subcomponents} == {"STANDARD", "DAYLIGHT"}

    found = recurring_ical_events.of(cal).between(town.now - timedelta(days=1), town.now + timedelta(days=400))
    by_title = {str(e["SUMMARY"]): e for e in found}
    assert set(by_title) == {"Winterfest der Jugend", "Sommerfest am Sportplatz", "Weihnachtsmarkt"}
    winter, summer = by_title["Winterfest der Jugend"]["DTSTART"].dt, by_title["Sommerfest am Sportplatz"]["DTSTART"].dt
    assert (winter.date(), winter.hour, winter.minute) == (town.winter, 19, 30)
    assert (summer.date(), summer.hour, summer.minute) == (town.summer, 19, 30)
    assert winter.utcoffset() == timedelta(hours=1) and summer.utcoffset() == timedelta(hours=2)
    assert winter.astimezone(timezone.utc).hour == 18 and summer.astimezone(timezone.utc).hour == 17
    assert by_title["Winterfest der Jugend"]["DTEND"].dt.hour == 21
    market = by_title["Weihnachtsmarkt"]
    assert market["DTSTART"].dt == town.winter + timedelta(days=1)  # all day: a DATE
    assert market["DTEND"].dt == town.winter + timedelta(days=2)  # exclusive

    for event in cal.walk("VEVENT"):
        assert re.fullmatch(r"record-\d+@musterstadt\.example", str(event["UID"]))
        assert event["DTSTAMP"] and event["SEQUENCE"] == 0 and event["STATUS"] == "CONFIRMED"
        assert str(event["URL"]).startswith(f"{BASE}/items/")
    raw = response.content.decode()
    assert "DTSTART;TZID=Europe/Berlin:" in raw and f"{town.summer:%Y%m%d}T193000" in raw


# --- filters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("query, titles", [
    ("", {"Stollen <frisch> & warm", "Brot des Monats", "Winterfest der Jugend", "Sommerfest am Sportplatz",
          "Bericht vom Heimspiel", "Anzeige: Winterschlussverkauf", "Weihnachtsmarkt"}),
    ("category=vereine", {"Winterfest der Jugend", "Sommerfest am Sportplatz", "Bericht vom Heimspiel"}),
    ("category=vereine&kind=event", {"Winterfest der Jugend", "Sommerfest am Sportplatz"}),
    ("district=altstadt&kind=offer", {"Brot des Monats", "Anzeige: Winterschlussverkauf"}),
    ("district=Altstadt&district=Nord&tag=Advent", {"Stollen <frisch> & warm", "Anzeige: Winterschlussverkauf",
                                                   "Winterfest der Jugend"}),
    ("merchant=tsv&merchant=rathaus&kind=event&kind=offer", {"Winterfest der Jugend", "Sommerfest am Sportplatz",
                                                            "Weihnachtsmarkt"}),
    ("tag=%23advent&kind=event", {"Winterfest der Jugend", "Weihnachtsmarkt"}),
    ("merchant=tsv&category=gastronomie", set()),  # each key narrows the others
    ("category=schwimmbad", set()), ("tag=unbekannt", set()), ("merchant=niemand", set()), ("district=Süd", set()),
])
def test_filters_combine_and_the_pages_agree_with_the_feeds(town, query, titles):
    feed = town.get(f"/feed.json?{query}").json()
    assert {i["title"] for i in feed["items"]} == titles
    assert page_ids(town, f"/?{query}") == feed_ids(town, f"/feed.json?{query}")
    atom = feedparser.parse(town.get(f"/feed.atom?{query}").content)
    rss = feedparser.parse(town.get(f"/feed.rss?{query}").content)
    assert [e.id for e in atom.entries] == [i["id"] for i in feed["items"]] and len(rss.entries) == len(titles)
    assert atom.bozo == rss.bozo == 0 and atom.feed.updated  # an empty feed too
    events = {str(e["SUMMARY"]) for e in calendar_of(town, f"/events.ics?{query}").walk("VEVENT")}
    assert events == {t for t in titles if t in {"Winterfest der Jugend", "Sommerfest am Sportplatz",
                                                 "Weihnachtsmarkt"}}


def test_a_merchant_page_is_its_merchant_filter(town):
    assert page_ids(town, "/m/tsv?kind=event") == feed_ids(town, "/feed.json?merchant=tsv&kind=event")
    assert page_ids(town, "/m/tsv?merchant=baeckerei") == feed_ids(town, "/feed.json?merchant=tsv")  # the path wins
    html = town.get("/m/tsv?kind=event&tag=Advent").text
    assert ('<link rel="alternate" type="text/calendar" title="Termine als Kalender (iCal)" '
            'href="/events.ics?merchant=tsv&amp;kind=event&amp;tag=Advent">') in html


def test_pages_advertise_their_feeds_with_their_filters(town):
    html = town.get("/?tag=advent&category=vereine&seite=1").text
    for kind, path in (("application/atom+xml", "/feed.atom"), ("application/rss+xml", "/feed.rss"),
                       ("application/feed+json", "/feed.json"), ("text/calendar", "/events.ics")):
        assert re.search(rf'<link rel="alternate" type="{re.escape(kind)}" title="[^"]+" '
                         rf'href="{path}\?category=vereine&amp;tag=advent">', html), kind
    assert 'href="/feed.atom">' in town.get("/").text


def test_an_unknown_kind_is_an_error_and_limits_are_capped(town):
    for path in FEEDS:
        response = town.get(f"{path}?kind=termin")
        assert response.status_code == 400 and "post" in response.text and "event" in response.text
    page = town.get("/?kind=termin")
    assert page.status_code == 400 and "Unbekannte Art" in page.text
    assert len(town.get("/feed.json?limit=2").json()["items"]) == 2
    assert len(town.get("/feed.json?limit=100000").json()["items"]) == 7
    assert town.get("/feed.rss?limit=viele").status_code == 400
    assert town.get("/events.ics?von=morgen").status_code == 400


def test_the_calendar_window(town):
    def summaries(query: str) -> list[str]:
        return [str(e["SUMMARY"]) for e in calendar_of(town, f"/events.ics?{query}").walk("VEVENT")]

    summer, winter = town.summer.isoformat(), town.winter.isoformat()
    assert summaries(f"von={summer}&bis={summer}") == ["Sommerfest am Sportplatz"]
    assert summaries(f"von={winter}&bis={winter}") == ["Winterfest der Jugend"]  # the market is the day after
    first = min(town.summer, town.winter)
    assert summaries(f"bis={first - timedelta(days=1)}") == []
    assert summaries("kind=post") == [] and len(summaries("kind=post&kind=event")) == 3


# --- caching, edits, removals, cancellations --------------------------------------------------

def test_an_unchanged_feed_answers_304_to_its_etag_and_its_date(town):
    first = {path: town.get(path) for path in FEEDS}
    for path, response in first.items():
        etag = response.headers["etag"]
        assert etag.startswith('W/"') and response.headers["content-security-policy"] == CSP
        again = town.get(path, **{"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        assert town.get(path, **{"If-None-Match": f'"other", {etag}'}).status_code == 304
        assert town.get(path, **{"If-None-Match": '"other"'}).status_code == 200
    time.sleep(1.05)  # a version gets its date once the second it was first served in is over
    for path in FEEDS:
        dated = town.get(path)
        last_modified = dated.headers["last-modified"]
        assert town.get(path, **{"If-Modified-Since": last_modified}).status_code == 304
        earlier = format_datetime(datetime.now(timezone.utc) - timedelta(hours=1), usegmt=True)
        assert town.get(path, **{"If-Modified-Since": earlier}).status_code == 200
        # If-None-Match decides when both are sent (RFC 9110)
        assert town.get(path, **{"If-None-Match": '"old"', "If-Modified-Since": last_modified}).status_code == 200
    assert town.get("/feed.atom?tag=advent").headers["etag"] != first["/feed.atom"].headers["etag"]


def test_an_edit_changes_the_etag_and_raises_the_sequence(town):
    before = town.get("/events.ics")
    uid = _vevent(before.content, "Winterfest der Jugend")["UID"]
    moved = evening(town.winter, hour=18)
    town.fetch("tsv", item("tsv", "winterfest", "Winterfest der Jugend", hours_ago=2, tags=("Advent", "Jugend"),
                           event=moved))
    assert town.get("/events.ics", **{"If-None-Match": before.headers["etag"]}).status_code == 200
    after = town.get("/events.ics")
    event = _vevent(after.content, "Winterfest der Jugend")
    assert event["UID"] == uid and event["SEQUENCE"] == 1 and event["DTSTART"].dt.hour == 18
    assert event["LAST-MODIFIED"].dt > _vevent(before.content, "Winterfest der Jugend")["LAST-MODIFIED"].dt
    town.fetch("tsv", item("tsv", "winterfest", "Winterfest der Jugend", hours_ago=2, tags=("Advent", "Jugend"),
                           event=evening(town.winter, hour=17)))
    assert _vevent(town.get("/events.ics").content, "Winterfest der Jugend")["SEQUENCE"] == 2
    for path in ("/feed.atom", "/feed.json"):  # the other feeds move on too
        assert town.get(path, **{"If-None-Match": town.get(path).headers["etag"]}).status_code == 304


def test_a_cancelled_event_stays_with_status_cancelled(town):
    uid = _vevent(town.get("/events.ics").content, "Sommerfest am Sportplatz")["UID"]
    town.fetch("tsv", item("tsv", "sommerfest", "Abgesagt: Sommerfest am Sportplatz", hours_ago=3, tags=("Sommer",),
                           event=evening(town.summer), image="yes"))
    event = _vevent(town.get("/events.ics").content, "Abgesagt: Sommerfest am Sportplatz")
    assert event["UID"] == uid and event["STATUS"] == "CANCELLED" and event["SEQUENCE"] == 1
    [fest] = [i for i in town.get("/feed.json").json()["items"] if "Sommerfest" in i["title"]]
    assert fest["_event"]["cancelled"] and "<strong>Abgesagt:</strong>" in fest["content_html"]


def test_a_removed_record_leaves_every_feed(town):
    def present() -> dict[str, bool]:
        return {path: "Sommerfest am Sportplatz" in town.get(path).content.decode() for path in FEEDS}

    assert present() == dict.fromkeys(FEEDS, True)
    etags = {path: town.get(path).headers["etag"] for path in FEEDS}
    town.fetch("tsv", gone=("sommerfest",))
    assert present() == dict.fromkeys(FEEDS, False)
    assert all(town.get(p, **{"If-None-Match": etags[p]}).status_code == 200 for p in FEEDS)


def test_no_image_comes_from_a_third_party(town):
    """Every image a feed shows (in the HTML, as enclosure, JSON `image`, iCalendar IMAGE) is
    on the hub's media route: a reader never asks a merchant's or a CDN's server."""
    def sources(html: str) -> list[str]:
        return re.findall(r'<img\b[^>]*?\bsrc="([^"]+)"', html)

    atom = ElementTree.fromstring(town.get("/feed.atom").content)
    rss = ElementTree.fromstring(town.get("/feed.rss").content)
    feed = town.get("/feed.json").json()
    urls = [link.get("href") for link in atom.iter(ATOM + "link") if link.get("rel") == "enclosure"]
    urls += [u for content in atom.iter(ATOM + "content") for u in sources(content.text)]
    urls += [e.get("url") for e in rss.iter("enclosure")]
    urls += [u for d in rss.iter("description") for u in sources(d.text or "")]
    urls += [i["image"] for i in feed["items"] if "image" in i]
    urls += [u for i in feed["items"] for u in sources(i["content_html"])]
    urls += [str(e["IMAGE"]) for e in calendar_of(town).walk("VEVENT") if "IMAGE" in e]
    assert len(urls) == 10  # per format: the inline image and two pictures (the calendar: one event's)
    assert all(u.startswith(f"{BASE}/media/") for u in urls), urls


def _vevent(body: bytes, summary: str) -> icalendar.Event:
    [event] = [e for e in icalendar.Calendar.from_ical(body).walk("VEVENT") if str(e["SUMMARY"]) == summary]
    return event


# --- end to end: a club's feed ----------------------------------------------------------------

def club_feed(day: date, title: str, *, with_event: bool = True) -> bytes:
    when = f"{day.day}.{day.month}.{day.year} um 19:30 Uhr"
    items = ""
    if with_event:
        items += (f"<item><title>{title}</title><guid>konzert</guid><link>https://chor.example/konzert</link>"
                  f"<pubDate>{format_datetime(datetime.now(timezone.utc) - timedelta(hours=1))}</pubDate>"
                  f"<description>Am {when} singt der Chor in der Kirche. Ort: Stadtkirche</description></item>")
    items += ("<item><title>Probenplan</title><guid>proben</guid><link>https://chor.example/proben</link>"
              f"<pubDate>{format_datetime(datetime.now(timezone.utc) - timedelta(days=3))}</pubDate>"
              "<description>Wir proben dienstags.</description></item>")
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Chor</title>{items}</channel></rss>'.encode()


async def test_a_club_announces_cancels_and_deletes_its_concert(tmp_path):
    """Through the real connector, normalization and pipeline: a concert announced in prose
    becomes an event in /events.ics; the club writes "Abgesagt" into the title and the
    calendar says CANCELLED with a higher SEQUENCE; the club deletes the post and it leaves."""
    day = datetime.now(BERLIN).date() + timedelta(days=12)
    with FeedServer(files={"chor.xml": club_feed(day, f"Adventskonzert am {day.day}.{day.month}.")}) as server:
        path = tmp_path / "config.yaml"
        path.write_text(f'platform: {{name: Teststadt, base_url: "{BASE}"}}\n'
                        f"store: {{url: 'sqlite:///{tmp_path}/hub.db'}}\n"
                        "fetcher: {allow_private_networks: true, retries: 0, total_timeout: 5, host_spacing: 0}\n"
                        "merchants:\n  - id: chor\n    name: Kirchenchor\n    category: vereine\n    sources:\n"
                        f"      - {{connector: rss, url: '{server.url('/files/chor.xml')}'}}\n"
                        "channels:\n  - {id: platform, renderer: platform}\n")
        settings = config.load(path, env={})
        store = Store(settings.store.url, base_dir=settings.base_dir)
        store.sync_sources(source_specs(settings))
        store.records.configure(rules_from(settings))

        async def cycle() -> None:
            async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
                reports = await Pipeline(settings, store, fetcher).run(settings.sources())
            assert all(r.status in ("ok", "not_modified") for r in reports), reports

        await cycle()
        client = TestClient(create_app(settings, store))
        [event] = icalendar.Calendar.from_ical(client.get("/events.ics?category=vereine").content).walk("VEVENT")
        assert (event["DTSTART"].dt.date(), event["DTSTART"].dt.hour, event["STATUS"]) == (day, 19, "CONFIRMED")
        assert event["LOCATION"] == "Stadtkirche" and event["SEQUENCE"] == 0

        server.files["chor.xml"] = club_feed(day, f"Abgesagt: Adventskonzert am {day.day}.{day.month}.")
        await cycle()
        [cancelled] = icalendar.Calendar.from_ical(client.get("/events.ics").content).walk("VEVENT")
        assert cancelled["UID"] == event["UID"] and cancelled["STATUS"] == "CANCELLED" and cancelled["SEQUENCE"] >= 1

        server.files["chor.xml"] = club_feed(day, "", with_event=False)
        await cycle()
        assert icalendar.Calendar.from_ical(client.get("/events.ics").content).walk("VEVENT") == []
        assert [e.title for e in feedparser.parse(client.get("/feed.rss").content).entries] == ["Probenplan"]
        store.close()
