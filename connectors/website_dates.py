"""Dates on web pages: machine dates (schema.org, `<time datetime>`, microformats) and
dates written for people, in German or English ("Sa., 14. März, 19 Uhr", "14.03.2027
19:00", "14. März 2027", "March 14, 2027 7 pm").

Prose is read by `hub.normalize.find_dates`, the same reader that finds events in posts.
Two rules are the website's own:

- A date without a zone is wall time in the town's zone (`platform.timezone`); a date
  without a time is a whole day (all-day, starting at local midnight).
- A date without a year is the next such day on or after the day the page was fetched
  (in the town's zone): a programme page read in December that says "14. März" means
  next March. The fetch time comes with the payload, so parsing stays pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hub.normalize import find_dates

# find_dates reads a year-less date in its reference day's year (or the next); read once more
# with a reference a year later, a date whose year was written stays what it was.
_A_YEAR_LATER = timedelta(days=400)
_A_YEAR = re.compile(r"\d{4}|\d\.\d{2}\b")  # "2027", or the "27" of "14.03.27"
_ISO = re.compile(r"\d{4}-?\d{2}-?\d{2}(?:[T ]\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?)?")
_ONLY_TIME = re.compile(r"(?:bis\s+|until\s+|to\s+|[-–]\s*)?(\d{1,2})(?:[:.](\d{2}))?\s*(uhr|h|am|pm|a\.m\.|p\.m\.)?",
                        re.IGNORECASE)


@dataclass(frozen=True)
class When:
    """A start (aware), maybe an end, and whether only the day counts."""

    start: datetime
    end: datetime | None = None
    all_day: bool = False


def machine_date(value: object, zone: ZoneInfo) -> When | None:
    """An ISO 8601 date or date-time ("2027-03-14", "2027-03-14T19:00+01:00", "...Z") as
    an aware moment; wall time in `zone` when it has no offset. None if it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not _ISO.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    all_day = len(text) <= 10  # "2027-03-14" or "20270314": no time of day
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return When(moment, all_day=all_day)


def read_when(text: str, zone: ZoneInfo, fetched: datetime) -> When | None:
    """The first date in `text` (with its time, or its time range, if written next to it);
    a machine date is taken as it is. "vom 2. bis 7. November" is a period: all-day from
    the first to the last day. None when `text` names no date."""
    machine = machine_date(text, zone)
    if machine is not None:
        return machine
    mentions = _mentions(text, fetched.astimezone(zone).date())
    if not mentions:
        return None
    first = mentions[0]
    if first.start is None:
        start = datetime.combine(first.day, time(0), zone)
        later = [m.day for m in mentions[1:] if m.day > first.day]
        end = datetime.combine(later[0] + timedelta(days=1), time(0), zone) if later and first.bounded else None
        return When(start, end, all_day=True)
    start = datetime.combine(first.day, first.start, zone)
    end = datetime.combine(first.day, first.end, zone) if first.end else None
    if end is not None and end <= start:
        end += timedelta(days=1)  # "20 bis 2 Uhr"
    return When(start, end)


def _mentions(text: str, today: date) -> list:
    """find_dates' mentions, a year-less one moved to the next such day on or after `today`."""
    mentions = find_dates(text, today, english=True)
    if not mentions:
        return mentions
    if not _A_YEAR.search(text):  # no date in it can have a year: all of them are year-less
        return [replace(m, day=_next_on_or_after(m.day, today)) for m in mentions]
    later = find_dates(text, today + _A_YEAR_LATER, english=True)
    if len(later) != len(mentions):
        return mentions
    return [replace(m, day=_next_on_or_after(m.day, today)) if m.day != other.day else m
            for m, other in zip(mentions, later)]


def _next_on_or_after(day: date, today: date) -> date:
    for year in range(today.year, today.year + 9):  # 29 February comes back within eight years
        try:
            candidate = day.replace(year=year)
        except ValueError:
            continue
        if candidate >= today:
            return candidate
    return day


def read_end(text: str, start: When, zone: ZoneInfo, fetched: datetime) -> datetime | None:
    """An end field: a full date ("15. März, 22 Uhr"), or a time alone ("22 Uhr", "bis
    22:30"), which is on the start's day (or the next one, if it is earlier)."""
    when = read_when(text, zone, fetched)
    if when is not None:
        if when.all_day and not start.all_day:
            return None  # a day without a time says nothing about when a timed event ends
        return exclusive_end(when.start) if when.all_day else when.start
    match = _ONLY_TIME.fullmatch(text.strip())
    if match is None:
        return None
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    suffix = (match.group(3) or "").lower().replace(".", "")
    hour += 12 if suffix == "pm" and hour < 12 else 0
    if hour > 23 or minute > 59 or (match.group(2) is None and not suffix):
        return None  # a bare number is no time
    end = datetime.combine(start.start.astimezone(zone).date(), time(hour, minute), zone)
    return end if end > start.start else end + timedelta(days=1)


def exclusive_end(day_start: datetime) -> datetime:
    """The end of an all-day period whose last day starts at `day_start`: the next local
    midnight (as iCalendar's DTEND of a date is the day after the last one)."""
    return datetime.combine(day_start.date() + timedelta(days=1), time(0), day_start.tzinfo)


def day_end(moment: datetime) -> datetime:
    """23:59:59 of `moment`'s local day: an offer valid "until 24 December" ends there."""
    return datetime.combine(moment.date(), time(23, 59, 59), moment.tzinfo)
