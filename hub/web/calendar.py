"""The platform's events as an iCalendar feed (RFC 5545, RFC 7986), for subscriptions (issue
14). Pure: the web app (hub.web.feeds) hands in the events; `icalendar` lives only here and
writes the lines (CRLF, folding at 75 octets, escaping) and the VTIMEZONEs.

What subscribed calendars need to follow edits and cancellations: a UID that never changes
for a record, a SEQUENCE that grows with every revision, STATUS:CANCELLED for an event
called off (it stays in the calendar, marked), and DTSTAMP/LAST-MODIFIED from the record's
last change. The output depends only on its input, so equal input gives equal bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Sequence
from zoneinfo import ZoneInfo

import icalendar

CALENDAR_TYPE = "text/calendar; charset=utf-8"
REFRESH = timedelta(hours=1)  # how often subscribers are asked to look again
DESCRIPTION_CHARS = 4000  # a calendar entry is no place for a whole article: the link has it


@dataclass(frozen=True)
class CalendarEvent:
    uid: str  # record-<id>@<host>: stable for the record's life
    sequence: int  # the record's revisions: grows with each edit
    summary: str
    description: str  # plain text
    url: str  # the record page
    start: datetime  # aware
    timezone: str  # IANA name the start and end are given in
    end: datetime | None = None
    all_day: bool = False
    location: str | None = None
    cancelled: bool = False
    categories: tuple[str, ...] = ()
    created: datetime | None = None
    last_modified: datetime | None = None
    image: str | None = None  # on the hub's media route


@dataclass(frozen=True)
class CalendarMeta:
    name: str
    description: str
    timezone: str  # the platform's: X-WR-TIMEZONE and always a VTIMEZONE
    url: str  # this calendar feed with its filters
    product: str  # PRODID


def calendar(meta: CalendarMeta, events: Sequence[CalendarEvent], window: tuple[date, date]) -> bytes:
    """VCALENDAR with PRODID, VERSION, names, refresh hints, a VTIMEZONE for every zone used
    (generated from zoneinfo for `window`: the first and last day anything happens) and one
    VEVENT per event."""
    cal = icalendar.Calendar()
    cal.add("prodid", meta.product)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("name", meta.name)
    cal.add("x-wr-calname", meta.name)
    cal.add("x-wr-caldesc", meta.description)
    cal.add("x-wr-timezone", meta.timezone)
    cal.add("source", meta.url, parameters={"VALUE": "URI"})
    cal.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", icalendar.vDuration(REFRESH))  # the same, for older clients
    first, last = window
    cal.add_component(icalendar.Timezone.from_tzid(meta.timezone, first_date=first, last_date=last))
    for e in events:
        cal.add_component(_vevent(e))
    cal.add_missing_timezones(first_date=first, last_date=last)  # organisers' other zones, if any
    return cal.to_ical()


def window(events: Sequence[CalendarEvent], start: date) -> tuple[date, date]:
    """From the earlier of `start` and the first event to a day after the last one ends:
    the span the VTIMEZONEs must cover (at least a year, so both transitions are in it)."""
    days = [start] + [d for e in events for d in (e.start.date(), (e.end or e.start).date())]
    first, last = min(days), max(days) + timedelta(days=1)
    return first, max(last, first + timedelta(days=366))


def _vevent(e: CalendarEvent) -> icalendar.Event:
    event = icalendar.Event()
    event.add("uid", e.uid)
    stamp = (e.last_modified or e.created or e.start).astimezone(timezone.utc)
    event.add("dtstamp", stamp)  # without METHOD: when the information was last revised
    zone = ZoneInfo(e.timezone)
    if e.all_day:
        first = e.start.astimezone(zone).date()
        event.add("dtstart", first)
        event.add("dtend", _day_after(e.end.astimezone(zone), first) if e.end else first + timedelta(days=1))
    else:
        event.add("dtstart", e.start.astimezone(zone))
        if e.end is not None and e.end > e.start:
            event.add("dtend", e.end.astimezone(zone))
    event.add("summary", e.summary)
    if e.description:
        event.add("description", e.description[:DESCRIPTION_CHARS])
    if e.location:
        event.add("location", e.location)
    event.add("url", e.url, parameters={"VALUE": "URI"})
    event.add("status", "CANCELLED" if e.cancelled else "CONFIRMED")
    event.add("sequence", e.sequence)
    event.add("transp", "TRANSPARENT")  # a town's event does not make a subscriber busy
    if e.categories:
        event.add("categories", list(e.categories))
    if e.created:
        event.add("created", e.created.astimezone(timezone.utc))
    if e.last_modified:
        event.add("last-modified", e.last_modified.astimezone(timezone.utc))
    if e.image:
        event.add("image", e.image, parameters={"VALUE": "URI", "DISPLAY": "BADGE"})
    return event


def _day_after(end: datetime, first: date) -> date:
    """DTEND of an all-day event is exclusive: the day after its last day (an end given as
    midnight already is that day)."""
    last = end.date()
    if end.time() == time(0) and last > first:
        return last
    return max(last, first) + timedelta(days=1)
