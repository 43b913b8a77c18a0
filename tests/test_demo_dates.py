"""The demo town is alive on any day: its feeds' dates move with the day they are read
(`hub.demo_dates`), through the fetcher's file: branch, with a clock the tests set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.feed import FeedConnector, FeedOptions
from hub.config import FetcherConfig
from hub.demo_dates import Anchor, find_anchor, redate, redate_at
from hub.errors import FetchError, NotModified
from hub.http import Fetcher
from hub.models import FetchState, Item, Kind, SourceRef
from hub.normalize import normalize_parsed

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "demo_dates"
DEMO = ROOT / "hub" / "demo" / "musterstadt"
BERLIN = ZoneInfo("Europe/Berlin")
ANCHOR = Anchor(datetime(2026, 11, 22, 8, 0), BERLIN)


# --- the shift itself (pure) ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["feed.xml", "feed.json", "calendar.ics"])
def test_a_recorded_document_read_on_a_set_day(name):
    """Input and expected output side by side in tests/data/demo_dates/: RFC 822 and ISO
    dates (offsets CET -> CEST, Z and GMT kept), German dates with their weekdays, runs of
    days across a month's end, entity-escaped spaces; URLs, ids and non-dates untouched.
    The calendar: iCalendar's three date forms (a UTC time keeps its local time of day),
    RRULE's UNTIL and BYDAY, EXDATE lists, escaped commas, a date across a folded line; its
    VTIMEZONE, UID and URL untouched."""
    now = datetime(2027, 6, 10, 12, 0, tzinfo=BERLIN)  # 200 days after the anchor
    expected = (DATA / name.replace(".", ".2027-06-10.")).read_bytes()
    assert redate_at((DATA / name).read_bytes(), now) == expected


def test_a_redated_document_names_its_new_anchor_so_redating_again_changes_nothing():
    now = datetime(2031, 2, 3, 9, 30, tzinfo=UTC)
    for name in ("feed.xml", "feed.json", "calendar.ics"):
        once = redate_at((DATA / name).read_bytes(), now)
        assert redate_at(once, now) == once


@pytest.mark.parametrize(("local", "days"), [
    ("2026-11-22T08:00", 0),
    ("2026-11-22T07:59", -1),  # the anchor's time of day has not come yet: one day less
    ("2026-11-23T07:59", 0),
    ("2026-11-23T08:00", 1),
    ("2027-11-22T08:00", 365),
    ("2027-03-28T08:30", 126),  # the day summer time starts
    ("2026-01-01T12:00", -325),  # before the anchor: dates move back
])
def test_days_until_counts_the_anchor_moment_on_the_wall_clock(local, days):
    now = datetime.fromisoformat(local).replace(tzinfo=BERLIN)
    assert ANCHOR.days_until(now) == days
    assert ANCHOR.days_until(now.astimezone(UTC)) == days


def test_a_run_of_days_across_the_year_end_names_each_month_and_year():
    doc = "<!-- hub: demo dates relative to 2026-11-22 Europe/Berlin -->\n<p>vom 20. bis 24. Dezember 2026</p>"
    moved = redate(doc.encode(), find_anchor(doc.encode()), 10).decode()
    assert "<p>vom 30. Dezember 2026 bis 3. Januar 2027</p>" in moved


def test_latin1_documents_stay_latin1_and_may_gain_a_maerz():
    doc = ('<?xml version="1.0" encoding="ISO-8859-1"?>\n<!-- hub: demo dates relative to 2026-11-22 -->\n'
           "<rss><channel><item><title>Gr\xfcnes Fest am 1. Dezember</title></item></channel></rss>")
    moved = redate(doc.encode("latin-1"), ANCHOR, 95)
    assert "Gr\xfcnes Fest am 6. M\xe4rz" in moved.decode("latin-1")


def test_documents_without_the_marker_are_left_alone():
    doc = b'<?xml version="1.0"?><rss><channel><pubDate>Sat, 21 Nov 2026 09:15:00 +0100</pubDate></channel></rss>'
    assert find_anchor(doc) is None
    assert redate_at(doc, datetime(2030, 1, 1, tzinfo=UTC)) == doc


@pytest.mark.parametrize("marker", [b"<!-- hub: demo dates relative to 2026-11-31 -->",
                                    b"<!-- hub: demo dates relative to 2026-11-22 Mars/Olympus -->"])
def test_a_marker_that_cannot_be_read_says_so(marker):
    with pytest.raises(ValueError, match="demo dates marker"):
        find_anchor(b'<?xml version="1.0"?>\n' + marker)


@pytest.mark.parametrize(("head", "zone"), [
    (b"BEGIN:VCALENDAR\r\nX-WR-TIMEZONE:Europe/Vienna\r\nX-HUB-DEMO-DATES-RELATIVE-TO:2026-11-22T08:00\r\n",
     "Europe/Vienna"),
    (b"BEGIN:VCALENDAR\nX-HUB-DEMO-DATES-RELATIVE-TO;TZID=Europe/Vienna:20261122T080000\n", "Europe/Vienna"),
    (b"BEGIN:VCALENDAR\r\nX-HUB-DEMO-DATES-RELATIVE-TO:20261122T080000\r\n", "Europe/Berlin"),
    (b"BEGIN:VCALENDAR\r\nX-HUB-DEMO-DATES-RELATIVE-TO:20261122T070000Z\r\n", "Europe/Berlin"),
])
def test_a_calendar_names_its_anchor_in_an_x_property(head, zone):
    anchor = find_anchor(head + b"END:VCALENDAR\r\n")
    assert anchor == Anchor(datetime(2026, 11, 22, 8, 0), ZoneInfo(zone))


def test_a_calendar_marker_that_cannot_be_read_says_so():
    with pytest.raises(ValueError, match="demo dates marker"):
        find_anchor(b"BEGIN:VCALENDAR\r\nX-HUB-DEMO-DATES-RELATIVE-TO:bald\r\n")
    with pytest.raises(ValueError, match="unknown time zone"):
        find_anchor(b"BEGIN:VCALENDAR\r\nX-WR-TIMEZONE:Mars/Olympus\r\nX-HUB-DEMO-DATES-RELATIVE-TO:2026-11-22\r\n")


def test_a_moved_calendar_reads_as_the_same_calendar_later():
    """The recorded calendar's weekly rehearsals, moved, expand to the same occurrences
    moved by the days: the rule still meets its exceptions (EXDATE) and its moved
    occurrence (RECURRENCE-ID), at the same local times."""
    import icalendar
    import recurring_ical_events

    def rehearsals(document: bytes, days: int) -> list[datetime]:
        start = datetime(2026, 11, 1, tzinfo=BERLIN) + timedelta(days=days)
        found = recurring_ical_events.of(icalendar.Calendar.from_ical(document)).between(start, start + timedelta(days=90))
        return sorted(c["DTSTART"].dt.astimezone(BERLIN).replace(tzinfo=None) - timedelta(days=days)
                      for c in found if "probe" in str(c["UID"]))

    original = (DATA / "calendar.ics").read_bytes()
    before = rehearsals(original, 0)
    assert datetime(2026, 12, 24, 19, 30) not in before and datetime(2026, 12, 11, 19, 0) in before
    for days in (200, 365, -30):
        assert rehearsals(redate(original, find_anchor(original), days), days) == before


# --- the demo town through the fetcher ------------------------------------------------------

def _demo_files() -> list[Path]:
    """The demo feeds (facebook.json is no feed: the fake Graph API's fixtures)."""
    return sorted(p for p in DEMO.iterdir() if p.suffix in (".xml", ".json", ".rdf") and p.name != "facebook.json")


async def _read_demo(now: datetime) -> list[Item]:
    """Every demo feed read and normalized as `hub fetch` does, on a fetcher whose clock says `now`."""
    items: list[Item] = []
    connector = FeedConnector()
    async with Fetcher(FetcherConfig(), base_dir=ROOT, clock=lambda: now) as fetcher:
        for path in _demo_files():
            opts = FeedOptions(url=f"file:{path.relative_to(ROOT).as_posix()}")
            got = await connector.retrieve(opts, FetchState(), fetcher)
            parsed = connector.parse(opts, SourceRef(id=path.stem, merchant_id=path.stem), got)
            items += normalize_parsed(parsed, "Europe/Berlin").items
    return items


def test_every_demo_feed_declares_the_same_anchor():
    anchors = {p.name: find_anchor(p.read_bytes()) for p in [*_demo_files(), DEMO / "facebook.json"]}
    assert len(anchors) == 12 and set(anchors.values()) == {ANCHOR}


NOW = datetime.now(UTC).replace(microsecond=0)
DAYS = {
    "today": NOW,
    "a year ahead": NOW + timedelta(days=365),
    "a summer morning before 08:00": datetime(2029, 7, 4, 6, 15, tzinfo=BERLIN),
    "the anchor day itself": datetime(2026, 11, 22, 8, 30, tzinfo=BERLIN),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("now", DAYS.values(), ids=DAYS.keys())
async def test_the_demo_town_has_fresh_news_and_events_ahead_on_any_day(now):
    items = await _read_demo(now)
    assert len(items) == 82

    published = sorted((i.published for i in items), reverse=True)
    assert published[0] <= now  # nothing from the future ...
    assert now - published[0] < timedelta(days=1)  # ... and news from the last hours
    assert sum(now - p < timedelta(days=2) for p in published) >= 5
    assert sum(now - p < timedelta(days=7) for p in published) >= 20

    ahead = sorted(i.event.start - now for i in items if i.kind == Kind.EVENT and i.event.start > now)
    assert len(ahead) >= 15
    assert sum(d <= timedelta(days=7) for d in ahead) >= 3  # this week
    assert sum(timedelta(days=7) < d <= timedelta(days=35) for d in ahead) >= 10  # the weeks after


@pytest.mark.parametrize("now", DAYS.values(), ids=DAYS.keys())
def test_the_bakerys_facebook_page_and_instagram_account_move_with_the_day_too(now):
    """The fake Graph API's demo fixtures (facebook.json) name the same anchor: the posts
    are as fresh as the feeds' and the events they announce as far ahead, on any day."""
    from connectors.facebook import post_to_item
    from connectors.instagram import media_to_item
    from hub.demo.graphapi import FakeGraph, load_fixtures
    from hub.models import Parsed

    graph = FakeGraph()
    graph.time_offset = now - datetime.now(UTC)  # the server's clock says `now`
    load_fixtures(graph, DEMO / "facebook.json")
    page, account = graph.pages["104523984512345"], graph.instagram["17841400000000000"]
    ref = SourceRef(id="schmitz", merchant_id="baeckerei-schmitz")
    items = [post_to_item(p, ref, "") for p in page.posts] + [media_to_item(m, ref, "") for m in account.media]
    items = normalize_parsed(Parsed(tuple(i for i in items if i)), "Europe/Berlin").items
    assert len(items) == 8  # the hidden post is not among them
    published = sorted((i.published for i in items), reverse=True)
    # the newest post is from the morning of the last 08:00 anchor: at most a day and a bit old
    assert published[0] <= now + timedelta(seconds=5) and now - published[0] < timedelta(hours=25)
    events = {i.title: i.event.start - now for i in items if i.kind == Kind.EVENT}
    assert set(events) == {"Stollenanschnitt auf dem Marktplatz!", "🍪 Schaubacken für Kinder!"}
    assert all(timedelta(days=5) < ahead < timedelta(days=14) for ahead in events.values())


@pytest.mark.asyncio
async def test_items_keep_their_identity_links_and_events_from_day_to_day():
    today, next_year = await _read_demo(DAYS["today"]), await _read_demo(DAYS["a year ahead"])
    assert [(i.source_id, i.external_id, i.url) for i in today] == \
           [(i.source_id, i.external_id, i.url) for i in next_year]
    # every date moved by the same whole days, at the same time of day in Musterstadt
    moves = {(b.date() - a.date(), a.time() == b.time())
             for a, b in ((i.published.astimezone(BERLIN), j.published.astimezone(BERLIN))
                          for i, j in zip(today, next_year))}
    assert len(moves) == 1 and moves.pop()[1]
    assert [(i.key, i.kind) for i in today] == [(i.key, i.kind) for i in next_year]


@pytest.mark.asyncio
async def test_a_demo_feed_is_not_modified_within_a_day_and_modified_the_next():
    clock = [datetime(2027, 6, 10, 12, 0, tzinfo=BERLIN)]
    url = "file:hub/demo/musterstadt/stadtverwaltung.xml"
    async with Fetcher(FetcherConfig(), base_dir=ROOT, clock=lambda: clock[0]) as fetcher:
        first = await fetcher.get(url)
        assert b"<updated>2027-06-09T08:30:00+02:00</updated>" in first.body
        assert first.state.last_modified == formatdate(datetime(2027, 6, 10, 6, 0, tzinfo=UTC).timestamp(),
                                                       usegmt=True)  # 08:00 CEST, when these dates began
        clock[0] += timedelta(hours=19)  # 07:00 the next morning: still the same dates
        with pytest.raises(NotModified):
            await fetcher.get(url, state=first.state)
        with pytest.raises(NotModified):
            await fetcher.get(url, state=FetchState(last_modified=first.state.last_modified))
        clock[0] += timedelta(hours=1)
        second = await fetcher.get(url, state=first.state)
        assert b"<updated>2027-06-10T08:30:00+02:00</updated>" in second.body
        assert second.state.etag != first.state.etag
        with pytest.raises(NotModified):
            await fetcher.get(url, state=FetchState(last_modified=second.state.last_modified))


@pytest.mark.asyncio
async def test_an_unreadable_marker_is_a_fetch_error(tmp_path):
    marker = b"<!-- hub: demo dates relative to 2026-02-30 -->"
    (tmp_path / "feed.xml").write_bytes(b'<?xml version="1.0"?>\n' + marker + b"\n<rss/>")
    async with Fetcher(FetcherConfig(), base_dir=tmp_path) as fetcher:
        with pytest.raises(FetchError, match="demo dates marker"):
            await fetcher.get("file:feed.xml")
