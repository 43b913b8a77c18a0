"""The events agenda's days (issue 14): which events still count, and under which heading
each one stands: "Heute", "Morgen", "Dieses Wochenende", then each later day by its date.

Pure: the caller brings the records, the moment and the town's time zone. An event counts
until it ends: its end when the source gives one, the end of its day for an all-day event,
else the end of the local day it starts on (a concert without an end stays on today's
agenda all evening). A multi-day event that began before today and still runs stands under
"Heute".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Iterable
from zoneinfo import ZoneInfo

from hub.models import Event
from hub.records import Record

TODAY, TOMORROW, WEEKEND, DAY = "today", "tomorrow", "weekend", "day"


@dataclass
class Day:
    """One heading of the agenda and its events, in order of their start."""

    kind: str  # today | tomorrow | weekend | day
    first: date  # the (first) local day it stands for
    entries: list[Record] = field(default_factory=list)


def ends_at(event: Event, zone: ZoneInfo) -> datetime:
    """When an event stops counting (exclusive)."""
    if event.end is not None and event.end > event.start:
        return event.end
    start_day = event.start.astimezone(zone).date()
    return datetime.combine(start_day + timedelta(days=1), time(0), zone)


def still_on(record: Record, now: datetime, zone: ZoneInfo) -> bool:
    event = record.item.event
    return event is not None and ends_at(event, zone) > now


def heading(day: date, today: date) -> str:
    """The kind of heading `day` stands under, seen from `today` (the week ends on Sunday)."""
    if day <= today:
        return TODAY
    if day == today + timedelta(days=1):
        return TOMORROW
    sunday = today + timedelta(days=6 - today.weekday())
    if day <= sunday and day.weekday() >= 5:
        return WEEKEND
    return DAY


def days(records: Iterable[Record], now: datetime, zone: ZoneInfo) -> list[Day]:
    """The agenda of `records` (in order of their start): those that have not ended, under
    their headings; consecutive days with one heading ("Dieses Wochenende") share it."""
    today = now.astimezone(zone).date()
    found: list[Day] = []
    for record in records:
        if not still_on(record, now, zone):
            continue
        day = max(record.item.event.start.astimezone(zone).date(), today)  # type: ignore[union-attr]
        kind = heading(day, today)
        if found and found[-1].kind == kind and (kind in (TODAY, TOMORROW, WEEKEND) or found[-1].first == day):
            found[-1].entries.append(record)
        else:
            found.append(Day(kind, day, [record]))
    return found
