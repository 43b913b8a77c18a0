"""A club's calendar through the whole path, calendar server -> fetch -> store -> records, with
the clock set (time-machine), so the expansion window is the same on any day the suite runs:
re-reading changes nothing, an edited occurrence is an update of the same record, a deleted
one is gone, occurrences that slide into the past stay, and past events leave the listings
when they have ended (a three-day festival on its third day is still there)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from hub import config
from hub.http import Fetcher
from hub.pipeline import Pipeline, source_specs
from hub.store import Store
from tests.feedserver import FeedServer

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 10, 20, 8, 0, tzinfo=UTC)  # a Tuesday morning
UID = "training@tsv-musterstadt.example"


def club_calendar(*, moved: bool = False, exdate: bool = False, bazaar: bool = True,
                  training_title: str = "Training der Jugend") -> bytes:
    """The TSV's calendar: training every Tuesday at 18:00, a bazaar, a concert and a
    three-day festival (all-day), in Europe/Berlin. `moved`: the training of 27 October
    is on Wednesday 28 October at 19:00 (an override); `exdate`: the one of 3 November is
    off; `bazaar`: False deletes the bazaar."""
    events = [f"""UID:{UID}
DTSTART;TZID=Europe/Berlin:20261006T180000
DTEND;TZID=Europe/Berlin:20261006T193000
RRULE:FREQ=WEEKLY;BYDAY=TU
SUMMARY:{training_title}
LOCATION:Sportplatz an der Au""" + ("\nEXDATE;TZID=Europe/Berlin:20261103T180000" if exdate else ""),
              """UID:konzert@tsv-musterstadt.example
DTSTART;TZID=Europe/Berlin:20261107T180000
DTEND;TZID=Europe/Berlin:20261107T200000
SUMMARY:Herbstkonzert mit dem Spielmannszug""",
              """UID:kirmes@tsv-musterstadt.example
DTSTART;VALUE=DATE:20261030
DTEND;VALUE=DATE:20261102
SUMMARY:Sportplatzkirmes
GEO:50.1;8.7"""]
    if moved:
        events.append(f"""UID:{UID}
RECURRENCE-ID;TZID=Europe/Berlin:20261027T180000
DTSTART;TZID=Europe/Berlin:20261028T190000
DTEND;TZID=Europe/Berlin:20261028T203000
SUMMARY:{training_title} (verlegt)""")
    if bazaar:
        events.append("""UID:basar@tsv-musterstadt.example
DTSTART;TZID=Europe/Berlin:20261024T140000
DTEND;TZID=Europe/Berlin:20261024T170000
SUMMARY:Basar im Vereinsheim""")
    body = "".join(f"BEGIN:VEVENT\nDTSTAMP:20261001T000000Z\n{e}\nEND:VEVENT\n" for e in events)
    return f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//TSV//Termine//DE\n{body}END:VCALENDAR\n".replace(
        "\n", "\r\n").encode()


def write_config(tmp_path: Path, url: str, horizon: str = "30d") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("\n".join([
        "platform: {name: Teststadt, timezone: Europe/Berlin}",
        f"store: {{url: 'sqlite:///{tmp_path}/hub.db'}}",
        "fetcher: {allow_private_networks: true, total_timeout: 10, retries: 0, host_spacing: 0}",
        "merchants:",
        "  - {id: tsv, name: TSV Musterstadt, sources: [{connector: ical, id: tsv-termine, url: '" + url
        + f"', horizon: {horizon}, past: 1d}}]}}",
    ]) + "\n")
    return path


async def fetch(path: Path, at: datetime):
    with time_machine.travel(at, tick=True):
        settings = config.load(path)
        store = Store(settings.store.url, base_dir=settings.base_dir)
        store.sync_sources(source_specs(settings))
        async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
            [report] = await Pipeline(settings, store, fetcher, parse_workers=0).run(settings.sources())
    assert report.status in ("ok", "not_modified"), report.error
    return report, store


def events(store: Store, at: datetime) -> dict[str, object]:
    """What residents see at `at`: title and start of each listed record."""
    with time_machine.travel(at, tick=False):
        records = store.records.list(limit=200, kinds=("event",), order="event_start")
    return {f"{r.item.title} {r.item.event.start.astimezone(BERLIN):%d.%m. %H:%M}": r for r in records}


@pytest.fixture
def server():
    with FeedServer(files={"termine.ics": club_calendar()}) as srv:
        yield srv


async def test_a_club_calendar_through_fetch_store_and_listings(server, tmp_path):
    path = write_config(tmp_path, server.url("/files/termine.ics"))
    report, store = await fetch(path, T0)
    # trainings 20, 27 Oct, 3, 10, 17 Nov; the bazaar, the festival, the concert
    assert (report.new, report.gone, report.warnings) == (8, 0, [])
    listed = events(store, T0)
    assert list(listed) == ["Training der Jugend 20.10. 18:00", "Basar im Vereinsheim 24.10. 14:00",
                            "Training der Jugend 27.10. 18:00", "Sportplatzkirmes 30.10. 00:00",
                            "Training der Jugend 03.11. 18:00", "Herbstkonzert mit dem Spielmannszug 07.11. 18:00",
                            "Training der Jugend 10.11. 18:00", "Training der Jugend 17.11. 18:00"]
    festival = listed["Sportplatzkirmes 30.10. 00:00"]
    assert festival.item.event.all_day and festival.item.event.end == datetime(2026, 11, 2, tzinfo=BERLIN)
    assert festival.expires_at == datetime(2026, 11, 2, tzinfo=BERLIN) + timedelta(days=1)  # the merchant's 1d
    assert (festival.item.event.latitude, festival.item.event.longitude) == (50.1, 8.7)
    ids = {k: r.id for k, r in listed.items()}

    report, _ = await fetch(path, T0 + timedelta(minutes=5))
    assert report.status == "not_modified"  # conditional GET while the window is fresh

    report, store = await fetch(path, T0 + timedelta(hours=13))  # the window moved: read again
    assert (report.status, report.new, report.changed, report.unchanged, report.gone) == ("ok", 0, 0, 8, 0)
    assert store.count_items() == 8  # no duplicates

    server.files["termine.ics"] = club_calendar(moved=True)
    report, store = await fetch(path, T0 + timedelta(hours=14))
    assert (report.new, report.changed, report.gone) == (0, 1, 0)
    listed = events(store, T0 + timedelta(hours=14))
    moved = listed["Training der Jugend (verlegt) 28.10. 19:00"]
    assert moved.id == ids["Training der Jugend 27.10. 18:00"]  # the same record, moved: no ghost
    assert "Training der Jugend 27.10. 18:00" not in listed

    server.files["termine.ics"] = club_calendar(moved=True, exdate=True, bazaar=False)
    report, store = await fetch(path, T0 + timedelta(hours=15))
    assert (report.new, report.changed, report.gone) == (0, 0, 2)
    listed = events(store, T0 + timedelta(hours=15))
    assert "Basar im Vereinsheim 24.10. 14:00" not in listed and "Training der Jugend 03.11. 18:00" not in listed

    # The festival's third day: what lies in the past slid out of the window, and stays.
    third_day = datetime(2026, 11, 1, 15, 0, tzinfo=BERLIN)
    report, store = await fetch(path, third_day)
    assert (report.gone, report.changed) == (0, 0)
    assert (report.new, report.unchanged) == (1, 4)  # 24 Nov came into the horizon
    assert store.count_items() == 7 and store.count_items(include_deleted=True) == 9
    listed = events(store, third_day)
    assert "Sportplatzkirmes 30.10. 00:00" in listed  # still on: its last day has not ended
    assert "Training der Jugend 20.10. 18:00" not in listed  # ended (and a day's grace passed)
    assert "Sportplatzkirmes 30.10. 00:00" not in events(store, datetime(2026, 11, 3, 0, 1, tzinfo=BERLIN))


async def test_a_calendar_that_breaks_keeps_what_was_stored(server, tmp_path):
    path = write_config(tmp_path, server.url("/files/termine.ics"))
    report, store = await fetch(path, T0)
    assert report.new == 8
    server.files["termine.ics"] = b"<!DOCTYPE html><html><body>Wartungsarbeiten</body></html>"
    with time_machine.travel(T0 + timedelta(hours=13), tick=True):
        settings = config.load(path)
        async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
            [report] = await Pipeline(settings, store, fetcher, parse_workers=0).run(settings.sources())
    assert report.status == "failed" and "HTML page, not a calendar" in report.error
    assert store.count_items() == 8
    [status] = store.source_statuses()
    assert status.status == "failing" and "not a calendar" in status.last_error


def hub(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def calendar_around_now() -> bytes:
    """A weekly event that began two weeks ago and an all-day event tomorrow, in dates
    around the real today (the `hub` process reads the real clock, or the suite's shifted one)."""
    today = datetime.now(BERLIN).date()
    first = today - timedelta(days=14)
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//DE\r\nBEGIN:VEVENT\r\nUID:woche@x\r\n"
            f"DTSTAMP:20260101T000000Z\r\nDTSTART;TZID=Europe/Berlin:{first:%Y%m%d}T190000\r\nRRULE:FREQ=WEEKLY\r\n"
            f"SUMMARY:Wochentreff\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:fest@x\r\nDTSTAMP:20260101T000000Z\r\n"
            f"DTSTART;VALUE=DATE:{today + timedelta(days=1):%Y%m%d}\r\nSUMMARY:Fest\r\nEND:VEVENT\r\n"
            f"END:VCALENDAR\r\n").encode()


def test_hub_fetch_stores_the_occurrences_once(tmp_path):
    with FeedServer(files={"k.ics": calendar_around_now()}) as srv:
        path = write_config(tmp_path, srv.url("/files/k.ics"), horizon="28d")
        first = hub("fetch", "-c", str(path), "--no-images", cwd=tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        again = hub("fetch", "-c", str(path), "--no-images", cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        listed = hub("items", "-c", str(path), "--format", "json", "--limit", "100", cwd=tmp_path)
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    titles = sorted(r["title"] for r in records)
    assert titles.count("Fest") == 1 and 4 <= titles.count("Wochentreff") <= 5  # 28 days ahead, 1 day back
    assert all(r["kind"] == "event" for r in records)
