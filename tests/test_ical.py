"""The calendar connector: recorded calendars served by a real HTTP server on loopback, each
read at a fixed moment and compared with its expected items; retrieval (webcal://,
conditional GET, the moving window), options, and broken input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.ical import REEXPAND_AFTER, ICalConnector, ICalOptions, addresses_of, cursor, retrieved_at
from connectors.ical_occurrences import MAX_PER_SERIES
from hub.config import FetcherConfig
from hub.errors import NotModified, ParseError, TooLarge
from hub.http import Fetcher
from hub.models import FetchState, Retrieved
from tests import icalcases
from tests.feedserver import FeedServer

CASES = icalcases.inputs()


@pytest.fixture
def server():
    with FeedServer(files={case.name: case.read_bytes() for case in CASES}) as srv:
        yield srv


@pytest.fixture
async def fetcher(tmp_path):
    async with Fetcher(FetcherConfig(allow_private_networks=True, retries=0, total_timeout=10),
                       base_dir=tmp_path) as f:
        yield f


def serve(server: FeedServer, case: Path) -> str:
    """The case's URL; a case served with another content type than text/calendar is
    scripted to be answered with it."""
    content_type = icalcases.settings(case).get("content_type")
    if content_type:
        server.enqueue(f"/files/{case.name}", 200, case.read_bytes(), {"Content-Type": content_type})
    return server.url(f"/files/{case.name}")


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
async def test_recorded_calendar(case, server, fetcher):
    url = serve(server, case)
    got = await ICalConnector().retrieve(icalcases.options(case, url), FetchState(), fetcher)
    assert got.payload == case.read_bytes()
    assert got.content_type == icalcases.settings(case).get("content_type", "text/calendar")
    expected = json.loads(icalcases.expected_path(case).read_text())
    assert icalcases.run_case(case, got) == expected


def test_the_required_calendars_are_recorded():
    names = {case.name for case in CASES}
    assert {"wochenmarkt.ics", "stadtfest.ics", "ohne-zeitzone.ics", "abgesagt.ics", "sommerzeit.ics",
            "x-wr-timezone.ics", "bom-textplain.ics"} <= names
    assert (icalcases.CASES / "bom-textplain.ics").read_bytes().startswith(b"\xef\xbb\xbf")
    assert b"\r\n" not in (icalcases.CASES / "bom-textplain.ics").read_bytes()


def items_of(case: str) -> dict[str, dict]:
    expected = json.loads(icalcases.expected_path(icalcases.CASES / case).read_text())
    return {item["external_id"]: item for item in expected["items"]}


def test_expected_files_say_what_the_issue_asks():
    """The expected files are the specification; these are its key lines, spelled out."""
    market = items_of("wochenmarkt.ics")
    uid = "wochenmarkt-samstag@stadtmarketing.musterstadt.example"
    assert f"{uid}#20261031T060000Z" not in market  # EXDATE
    moved = market[f"{uid}#20261114T060000Z"]  # keyed by its original Saturday...
    assert moved["event"]["start"] == "2026-11-13T07:00:00+01:00"  # ...it is on the Friday
    assert moved["title"].endswith("(am Freitag)")
    assert {i["event"]["latitude"] for i in market.values()} == {50.1109}

    festival = items_of("stadtfest.ics")["3k1v9l2m8q7r6s5t4u3v2w1x0y@google.com"]["event"]
    assert festival["all_day"] and festival["start"] == "2026-10-30T00:00:00+01:00"
    assert festival["end"] == "2026-11-02T00:00:00+01:00"  # exclusive: the festival ends with Sunday

    floating = [i["event"]["start"] for i in items_of("ohne-zeitzone.ics").values() if not i["event"]["all_day"]]
    assert "2026-11-05T19:30:00+01:00" in floating  # 19:30 in the platform's zone, not UTC

    runs = [i["event"]["start"][11:] for i in items_of("sommerzeit.ics").values()]
    assert runs == ["19:00:00+02:00", "19:00:00+02:00", "19:00:00+01:00", "19:00:00+01:00", "19:00:00+01:00"]

    london = items_of("x-wr-timezone.ics")
    assert {i["event"]["timezone"] for i in london.values()} == {"Europe/London"}
    assert london["twinning-christmas-fair@sampletown.example"]["event"]["start"] == "2026-11-14T11:00:00+00:00"

    cancelled = {k for k, i in items_of("abgesagt.ics").items() if i["event"]["cancelled"]}
    assert cancelled == {"herbstkonzert-2026@liederkranz-musterstadt.example",
                         "chorprobe@liederkranz-musterstadt.example#20261111T183000Z"}


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "html-seite.ics"], ids=lambda p: p.name)
def test_an_occurrence_is_published_when_it_came_into_the_window(case):
    """Its start less the horizon: never in the future, in the order of the starts."""
    at = datetime.fromisoformat(icalcases.settings(case)["retrieved_at"])
    horizon = icalcases.options(case).horizon
    for item in items_of(case.name).values():
        published = datetime.fromisoformat(item["published"])
        assert published == datetime.fromisoformat(item["event"]["start"]) - horizon and published <= at


# --- retrieval -------------------------------------------------------------------------------

async def test_webcal_is_read_as_https_and_else_as_http(server, fetcher):
    assert addresses_of("webcal://a.example/k.ics") == ["https://a.example/k.ics", "http://a.example/k.ics"]
    assert addresses_of("WEBCALS://a.example/k.ics") == ["https://a.example/k.ics"]
    assert addresses_of("https://a.example/k.ics") == ["https://a.example/k.ics"]
    url = server.url("/files/sommerzeit.ics").replace("http://", "webcal://")
    opts = ICalOptions(url=url)
    got = await ICalConnector().retrieve(opts, FetchState(), fetcher)  # the test server speaks no TLS
    assert got.url.startswith("http://") and got.payload.startswith(b"BEGIN:VCALENDAR")
    parsed = ICalConnector().parse(opts, icalcases.SOURCE, got)
    assert "plain http://" in parsed.warnings[0]


async def test_an_http_error_is_not_retried_over_http(server, fetcher):
    from hub.errors import FetchError

    with pytest.raises(FetchError) as info:
        await ICalConnector().retrieve(ICalOptions(url=server.url("/status/404").replace("http:", "webcal:")),
                                       FetchState(), fetcher)
    assert info.value.status == 404


async def test_conditional_get_while_the_window_is_fresh_a_full_get_once_it_moved(server, fetcher):
    opts = ICalOptions(url=server.url("/files/wochenmarkt.ics"))
    connector = ICalConnector()
    got = await connector.retrieve(opts, FetchState(), fetcher)
    at = retrieved_at(got.state)
    assert at is not None and abs(at - datetime.now(UTC)) < timedelta(minutes=1)
    assert got.state.etag

    with pytest.raises(NotModified):
        await connector.retrieve(opts, got.state, fetcher)
    assert server.requests[-1].headers.get("if-none-match") == got.state.etag

    older = got.state._replace(cursor=cursor(at - REEXPAND_AFTER - timedelta(minutes=1), opts))
    again = await connector.retrieve(opts, older, fetcher)  # the window moved: read it again
    assert "if-none-match" not in server.requests[-1].headers and again.payload == got.payload

    wider = ICalOptions(url=opts.url, horizon="120d")
    assert (await connector.retrieve(wider, got.state, fetcher)).payload == got.payload  # another window


async def test_a_calendar_over_the_fetchers_limit_is_a_clear_error(tmp_path):
    big = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + b"X-FILLER:" + b"x" * 2_000_000 + b"\r\nEND:VCALENDAR\r\n"
    with FeedServer(files={"gross.ics": big}) as srv:
        async with Fetcher(FetcherConfig(allow_private_networks=True, retries=0, max_body_bytes=1_000_000),
                           base_dir=tmp_path) as f:
            with pytest.raises(TooLarge) as info:
                await ICalConnector().retrieve(ICalOptions(url=srv.url("/files/gross.ics")), FetchState(), f)
    assert "larger than" in str(info.value)


# --- options ---------------------------------------------------------------------------------

def test_options_in_the_configs_style():
    opts = ICalOptions(url="https://a.example/k.ics")
    assert (opts.horizon, opts.past) == (timedelta(days=90), timedelta(days=1))
    opts = ICalOptions(url="webcal://a.example/k.ics", horizon="30d", past="12h")
    assert (opts.horizon, opts.past) == (timedelta(days=30), timedelta(hours=12))
    for bad in ({"url": "ftp://a.example/k.ics"}, {"url": "https://a", "horizon": "0d"},
                {"url": "https://a", "horizon": "soon"}, {"url": "https://a", "past": "-1d"},
                {"url": "https://a", "horizon": "5000d"}, {"url": "https://a", "hoirzon": "9d"}):
        with pytest.raises(ValidationError):
            ICalOptions(**bad)


def test_the_connector_is_registered_under_its_names():
    from hub import plugins

    for name in ("ical", "ics", "calendar"):
        assert plugins.connector(name) is ICalConnector


# --- broken and odd input --------------------------------------------------------------------

AT = datetime(2026, 10, 20, 10, 0, tzinfo=UTC)


def parse(payload: bytes, **options) -> object:
    opts = ICalOptions(url="https://kalender.example/k.ics", **options)
    got = Retrieved(payload=payload, state=FetchState(cursor=cursor(AT, opts)), url=opts.url)
    return ICalConnector().parse(opts, icalcases.SOURCE, got)


def calendar(*events: str, head: str = "") -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\n{e.strip()}\r\nEND:VEVENT\r\n" for e in events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//DE\r\n{head}{body}END:VCALENDAR\r\n".encode()


@pytest.mark.parametrize("payload, message", [
    (b"", "empty"),
    (b"   \r\n", "empty"),
    (b"<?xml version='1.0'?><rss version='2.0'><channel/></rss>", "XML"),
    (b"BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20261101T100000\r\nEND:VEVENT\r\n", "without a VCALENDAR"),
    (b"%PDF-1.7 binary", "not an iCalendar file"),
    (b"BEGIN:VCALENDAR\r\n\x00\x01garbage line without colon\r\nEND:VCALENDAR\r\n", "cannot be read"),
])
def test_not_a_calendar_is_a_clear_error(payload, message):
    with pytest.raises(ParseError) as info:
        parse(payload)
    assert message in info.value.message and info.value.hint


def test_line_endings_folding_and_encodings_read_alike():
    event = ("UID:a@x\r\nDTSTART;TZID=Europe/Berlin:20261101T100000\r\nSUMMARY:Flohmarkt für \r\n "
             "Groß und Klein\r\nLOCATION:Schulhof")
    crlf = calendar(event)
    variants = {"crlf": crlf, "lf": crlf.replace(b"\r\n", b"\n"), "cr": crlf.replace(b"\r\n", b"\r"),
                "bom": b"\xef\xbb\xbf" + crlf, "utf16": crlf.decode().encode("utf-16"),
                # an old Mozilla export: every value on a continuation line after a blank one
                "mozilla": crlf.replace(b":", b"\r\n\r\n :").replace(b"SUMMARY\r\n\r\n :", b"SUMMARY:")}
    for name, payload in variants.items():
        parsed = parse(payload)
        assert [(i.title, i.event.location) for i in parsed.items] == [("Flohmarkt für Groß und Klein", "Schulhof")], name
        assert parsed.warnings == (), name
    latin = parse(crlf.decode().encode("cp1252"))
    assert latin.items[0].title == "Flohmarkt für Groß und Klein"
    assert "Windows-1252" in latin.warnings[0]


def test_each_bad_event_costs_itself_only():
    good = "UID:gut@x\r\nDTSTART:20261101T100000\r\nSUMMARY:Gut"
    parsed = parse(calendar(
        "UID:kein-start@x\r\nSUMMARY:Ohne Beginn", good,
        "UID:regel@x\r\nDTSTART:20261102T100000\r\nRRULE:FREQ=WEEKLY;BYDAY=XX\r\nSUMMARY:Regel",
        "UID:exdate@x\r\nDTSTART:20261103T100000\r\nRRULE:FREQ=WEEKLY;COUNT=2\r\nEXDATE:nie\r\nSUMMARY:Ausnahme"))
    titles = sorted(i.title for i in parsed.items)
    assert titles == ["Ausnahme", "Ausnahme", "Gut", "Regel"]
    text = "\n".join(parsed.warnings)
    assert "Ohne Beginn" in text and "no DTSTART" in text
    assert "RRULE cannot be read" in text and "EXDATE cannot be read" in text


def test_a_rule_that_runs_wild_is_cut_and_deletes_nothing():
    parsed = parse(calendar("UID:minute@x\r\nDTSTART:20261020T000000Z\r\nRRULE:FREQ=MINUTELY\r\nSUMMARY:Ticker"))
    assert len(parsed.items) == MAX_PER_SERIES
    assert not parsed.complete and "repeats more than" in parsed.warnings[0]


def test_private_events_stay_private_and_method_cancel_cancels():
    parsed = parse(calendar("UID:p@x\r\nDTSTART:20261101T100000\r\nSUMMARY:Vorstand\r\nCLASS:PRIVATE",
                            "UID:o@x\r\nDTSTART:20261101T120000\r\nSUMMARY:Offen", head="METHOD:CANCEL\r\n"))
    assert [(i.title, i.event.cancelled) for i in parsed.items] == [("Offen", True)]


def test_a_single_event_keeps_its_key_when_moved_and_an_override_keeps_the_series_key():
    before = parse(calendar("UID:konzert@x\r\nDTSTART:20261101T180000\r\nSUMMARY:Konzert"))
    after = parse(calendar("UID:konzert@x\r\nDTSTART:20261108T180000\r\nSUMMARY:Konzert"))
    assert [i.external_id for i in before.items] == [i.external_id for i in after.items] == ["konzert@x"]
    series = parse(calendar("UID:s@x\r\nDTSTART;VALUE=DATE:20261101\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\nSUMMARY:Tag",
                            "UID:s@x\r\nRECURRENCE-ID;VALUE=DATE:20261108\r\nDTSTART;VALUE=DATE:20261110\r\nSUMMARY:Tag"))
    assert [(i.external_id, i.event.start.date().isoformat()) for i in series.items] == [
        ("s@x#20261101", "2026-11-01"), ("s@x#20261108", "2026-11-10"), ("s@x#20261115", "2026-11-15")]


def test_windows_zone_names_and_custom_vtimezones_get_iana_names():
    vtimezone = ("BEGIN:VTIMEZONE\r\nTZID:Mitteleuropaeische Zeit\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
                 "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n"
                 "BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n"
                 "TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n")
    parsed = parse(calendar('UID:a@x\r\nDTSTART;TZID="Mitteleuropaeische Zeit":20261101T100000\r\nSUMMARY:Eigen',
                            'UID:b@x\r\nDTSTART;TZID=Romance Standard Time:20261101T100000\r\nSUMMARY:Paris',
                            head=vtimezone))
    times = {i.title: (i.event.start.isoformat(), i.event.timezone) for i in parsed.items}
    assert times == {"Eigen": ("2026-11-01T10:00:00+01:00", "Europe/Berlin"),
                     "Paris": ("2026-11-01T10:00:00+01:00", "Europe/Paris")}


def test_descriptions_images_and_categories():
    parsed = parse(calendar(
        "UID:a@x\r\nDTSTART:20261101T100000\r\nSUMMARY:Lesung\r\n"
        "DESCRIPTION:Mit Petra Ahlers.\\n\\nKarten: https://buch.example/karten?utm_source=cal <3\r\n"
        "CATEGORIES:Kultur,Lesung\r\nCATEGORIES:kultur\r\n"
        "ATTACH:https://buch.example/bild.webp\r\nATTACH;FMTTYPE=image/png:https://buch.example/plakat\r\n"
        "ATTACH;FMTTYPE=application/pdf:https://buch.example/flyer.pdf\r\n"
        "ATTACH;ENCODING=BASE64;VALUE=BINARY;FMTTYPE=image/png:iVBORw0KGgo=\r\n"
        "IMAGE;VALUE=URI;DISPLAY=BADGE:https://buch.example/logo.svg\r\n"
        "GEO:50.5;8.25\r\nURL:https://buch.example/lesung?fbclid=x"))
    item = parsed.items[0]
    assert item.content_html == ('<p>Mit Petra Ahlers.</p><p>Karten: <a href="https://buch.example/karten">'
                                 "https://buch.example/karten</a> &lt;3</p>")
    assert item.summary == "Mit Petra Ahlers. Karten: https://buch.example/karten <3"
    assert item.tags == ("Kultur", "Lesung")
    assert [m.url for m in item.media] == ["https://buch.example/logo.svg", "https://buch.example/bild.webp",
                                           "https://buch.example/plakat"]
    assert (item.event.latitude, item.event.longitude) == (50.5, 8.25)
    assert item.url == "https://buch.example/lesung"


# --- large calendars -------------------------------------------------------------------------

def history(events: int, first: datetime) -> list[str]:
    """`events` single evening events, one a day from `first` on."""
    return [f"UID:alt{n}@x\r\nDTSTART;TZID=Europe/Berlin:{first + timedelta(days=n):%Y%m%d}T190000\r\n"
            f"DTEND;TZID=Europe/Berlin:{first + timedelta(days=n):%Y%m%d}T210000\r\nSUMMARY:Abend {n}\r\n"
            f"DESCRIPTION:{'Text zum Abend. ' * 20}" for n in range(events)]


def test_single_events_long_past_are_skipped_unread_unless_the_window_reaches_back():
    from connectors.ical import _expand_all

    old = history(400, datetime(2025, 9, 1))  # up to 5 October 2026, so before the window
    exhibition = "UID:ausstellung@x\r\nDTSTART;VALUE=DATE:20261001\r\nDTEND;VALUE=DATE:20261031\r\nSUMMARY:Ausstellung"
    start, end = AT - timedelta(days=1), AT + timedelta(days=90)
    for extra, expected in (([], []), ([exhibition], ["Abend 395", "Abend 396", "Abend 397", "Abend 398", "Abend 399",
                                                       "Ausstellung"])):
        payload = calendar(*old, *extra)
        pruned, _, _ = _expand_all(payload, "Europe/Berlin", start, end, (start.date() - timedelta(days=2), end.date()))
        full, _, _ = _expand_all(payload, "Europe/Berlin", start, end, None)
        titles = sorted(str(o.component["SUMMARY"]) for _, e in full for o in e.occurrences)
        assert titles == expected
        assert sorted(i.title for i in parse(payload).items) == expected
        if not extra:  # nothing reaches back: the history was never parsed
            assert len(pruned[0][0].subcomponents) == 0


async def test_a_ten_megabyte_calendar_within_the_fetchers_limit_is_read(tmp_path):
    events = history(20_500, datetime(2022, 1, 1))  # years of history, decades ahead
    events[12_000] = "UID:kaputt@x\r\nDTSTART:gestern\r\nSUMMARY:Kaputt"
    payload = calendar(*events)
    assert 9_500_000 < len(payload) < 10 * 1024 * 1024
    with FeedServer(files={"gross.ics": payload}) as srv:
        async with Fetcher(FetcherConfig(allow_private_networks=True, retries=0), base_dir=tmp_path) as f:
            opts = ICalOptions(url=srv.url("/files/gross.ics"), horizon="30d")
            got = await ICalConnector().retrieve(opts, FetchState(), f)
    got = got._replace(state=got.state._replace(cursor=cursor(AT, opts)))
    parsed = ICalConnector().parse(opts, icalcases.SOURCE, got)
    assert len(parsed.items) == 31  # 19 October to 19 November, one an evening
    assert len(parsed.warnings) == 1 and "Kaputt" in parsed.warnings[0]


def test_rdate_adds_occurrences_and_exdate_takes_them_away():
    parsed = parse(calendar(
        "UID:kurs@x\r\nDTSTART;TZID=Europe/Berlin:20261102T180000\r\nDTEND;TZID=Europe/Berlin:20261102T193000\r\n"
        "RRULE:FREQ=WEEKLY;COUNT=3\r\nRDATE;TZID=Europe/Berlin:20261104T100000,20261120T180000\r\n"
        "EXDATE;TZID=Europe/Berlin:20261109T180000\r\nSUMMARY:Erste-Hilfe-Kurs"))
    starts = [(i.external_id, f"{i.event.start:%d.%m. %H:%M}-{i.event.end:%H:%M}") for i in parsed.items]
    assert starts == [("kurs@x#20261102T170000Z", "02.11. 18:00-19:30"), ("kurs@x#20261104T090000Z", "04.11. 10:00-11:30"),
                      ("kurs@x#20261116T170000Z", "16.11. 18:00-19:30"), ("kurs@x#20261120T170000Z", "20.11. 18:00-19:30")]
    assert parsed.gone == ("kurs@x#20261109T170000Z",)
