"""The demo town's club calendar (hub/demo/musterstadt/musikverein-harmonie.ics) read from its
file: URL on any day: its dates move with the day (hub.demo_dates), so the weekly rehearsals,
their exception, the moved and the cancelled one and the three-day Weihnachtsmarkt always lie
ahead the way they were written around the anchor (Sunday 22 November 2026, 08:00)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from connectors.ical import ICalConnector
from hub import config
from hub.config import FetcherConfig
from hub.demo_dates import find_anchor
from hub.http import Fetcher
from hub.models import FetchState, SourceRef

ROOT = Path(__file__).resolve().parents[1]
CALENDAR = ROOT / "hub" / "demo" / "musterstadt" / "musikverein-harmonie.ics"
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime.now(UTC).replace(microsecond=0)
DAYS = {
    "today": NOW,
    "a year ahead": NOW + timedelta(days=365),
    "a summer morning before 08:00": datetime(2029, 7, 4, 6, 15, tzinfo=BERLIN),
    "the anchor day itself": datetime(2026, 11, 22, 8, 30, tzinfo=BERLIN),
}


def demo_source():
    settings = config.load(ROOT / "config.example.yaml")
    [(merchant, source)] = [(m, s) for m, s in settings.sources() if s.connector == "ical"]
    return merchant, source


async def read(now: datetime):
    merchant, source = demo_source()
    connector = ICalConnector()
    with time_machine.travel(now, tick=False):
        async with Fetcher(FetcherConfig(), base_dir=ROOT, clock=lambda: now) as fetcher:
            got = await connector.retrieve(source.options, FetchState(), fetcher)
        return connector.parse(source.options, SourceRef(id=source.id, merchant_id=merchant.id), got)


def test_the_demo_calendar_names_the_towns_anchor_and_is_configured():
    assert find_anchor(CALENDAR.read_bytes()[:2048]) == find_anchor(
        (CALENDAR.parent / "musikverein-harmonie.rdf").read_bytes()[:2048])
    merchant, source = demo_source()
    assert merchant.id == "musikverein-harmonie" and source.options.url.endswith("musikverein-harmonie.ics")


@pytest.mark.parametrize("now", DAYS.values(), ids=DAYS.keys())
async def test_the_club_calendar_lies_ahead_on_any_day(now):
    parsed = await read(now)
    assert parsed.warnings == () and parsed.complete
    items = parsed.items
    local = {i.external_id: i.event.start.astimezone(BERLIN) for i in items}
    assert all(now - timedelta(days=1) <= i.event.start or (i.event.end and i.event.end > now - timedelta(days=1))
               for i in items)
    assert max(local.values()) <= now + timedelta(days=60)

    rehearsals = [i for i in items if i.external_id.startswith("gesamtprobe@")]
    weekly = [i for i in rehearsals if i.title == "Gesamtprobe Blasorchester"]
    assert len({local[i.external_id].weekday() for i in weekly}) == 1  # one weekday, whichever it is now
    assert {local[i.external_id].strftime("%H:%M") for i in weekly} == {"19:30"}  # in summer and in winter
    [cancelled] = [i for i in items if i.event.cancelled]
    assert cancelled in weekly and timedelta(days=3) < cancelled.event.start - now < timedelta(days=5)
    [moved] = [i for i in rehearsals if i.title == "Generalprobe Adventskonzert"]
    assert local[moved.external_id].weekday() == (local[weekly[0].external_id].weekday() + 1) % 7
    assert len(parsed.gone) == 2  # two rehearsals off (EXDATE), 32 and 39 days ahead

    [market] = [i for i in items if i.event.all_day]
    assert market.event.end - market.event.start == timedelta(days=3)
    assert timedelta(days=10) < market.event.start - now < timedelta(days=12)  # 11 days 16 h after the anchor
    assert market.media and market.media[0].url.startswith("file:") and market.media[0].url.endswith("adventskranz.jpg")
    assert Counter(i.kind.value for i in items) == {"event": len(items)}


async def test_the_demo_calendar_keeps_its_keys_from_day_to_day():
    today, next_year = await read(DAYS["today"]), await read(DAYS["a year ahead"])
    singles = lambda parsed: sorted(i.external_id for i in parsed.items if "#" not in i.external_id)  # noqa: E731
    assert singles(today) == singles(next_year) == [
        "adventskonzert-2026@harmonie-musterstadt.example", "turmblasen-2026@harmonie-musterstadt.example",
        "weihnachtsmarkt-2026@harmonie-musterstadt.example"]
