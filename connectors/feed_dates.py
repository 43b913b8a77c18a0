"""Feed dates in the forms the parsers misread, rewritten into forms they read right.

Both parsers of the feed connector read RFC 822 and ISO 8601 dates. What they misread is
what German feeds write now and then (checked against feedparser's own date tests):

- a zone by its name: "MEZ", "MESZ", "MET", "MEST" (and feedparser also "CET", "CEST")
  are read as UTC, one or two hours off; so are RFC 822's US names "ET", "PT", ...;
- an offset with a colon in RFC 822 form ("Mon, 30 Nov 2026 10:00:00 +01:00"), read as
  UTC by fastfeedparser;
- a German weekday ("Mo, 30 Nov 2026 10:00:00 +0100"): not read at all by feedparser;
- a German month ("30 Okt 2026", "3. Dez 2026"), and a year or a month alone ("2026-11"),
  which fastfeedparser completes with today's day (and digits that are no date, "013",
  with today's year and month: no date at all now).

`normalized` rewrites these into RFC 822 with a numeric offset (or a whole ISO date); other
dates are left as they are. `parse` is fastfeedparser's parser on the rewritten date, the
one both paths use for such dates (see `connectors.feed`).

A date without a zone ("2026-11-30 10:00:00", as a script writes its server's clock) is a
local time: `parse` gives it without an offset, and the connector places it in the
source's zone (the platform's), as the calendar connector does; the parsers would read it
as UTC, an hour or two off for a German town.
"""

from __future__ import annotations

import re

import fastfeedparser.main

from hub.normalize import MONTHS

_ZONES = {  # zone names and their offsets; the US ones as RFC 822 (and feedparser) read them
    "MEZ": "+0100", "MET": "+0100", "CET": "+0100", "MESZ": "+0200", "MEST": "+0200", "CEST": "+0200",
    "WEZ": "+0000", "WET": "+0000", "WESZ": "+0100", "WEST": "+0100", "BST": "+0100",
    "OEZ": "+0200", "EET": "+0200", "OESZ": "+0300", "EEST": "+0300",
    "EST": "-0500", "EDT": "-0400", "CST": "-0600", "CDT": "-0500", "MST": "-0700", "MDT": "-0600",
    "PST": "-0800", "PDT": "-0700", "AST": "-0400", "ADT": "-0300",
    "AT": "-0400", "ET": "-0500", "CT": "-0600", "MT": "-0700", "PT": "-0800",
}
_ENGLISH_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# An RFC 822 date as written by hand: an optional weekday in any language, the day, a month
# name (German or English, abbreviated or not), the year, the time, and a zone name or offset.
_RFC822ISH = re.compile(
    r"(?:([^\W\d_]{2,10})\.?,?\s+)?(\d{1,2})\.?\s+([^\W\d_]{3,9})\.?\s+(\d{4}),?\s+(\d{1,2}:\d{2}(?::\d{2})?)"
    r"\s*(?:(?:GMT|UTC|UT)?\s*([+-]\d{2}:?\d{2})|([A-Za-z]{1,5}))?")
_ENGLISH_DAYS = frozenset("mon tue wed thu fri sat sun".split())
_PARTIAL_ISO = re.compile(r"(\d{4})(?:-(\d{2}))?")
_DIGITS = re.compile(r"[\d-]+")  # "013", "03-12-31": dateutil completes them with today's year, month or day
_WHOLE_DATE = re.compile(r"\d{4}-?\d{2}-?\d{2}")
_ISO_FLOATING = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?")
_original = fastfeedparser.main._parse_date


def normalized(raw: str) -> str:
    """`raw` in a form the parsers read right; `raw` itself where they already do."""
    text = raw.strip()
    if (partial := _PARTIAL_ISO.fullmatch(text)) is not None:
        return f"{partial.group(1)}-{partial.group(2) or '01'}-01"
    if _DIGITS.fullmatch(text) and not _WHOLE_DATE.fullmatch(text):
        return ""  # no date: what it would be completed with depends on the day it is read
    match = _RFC822ISH.fullmatch(text)
    if match is None:
        return raw
    weekday, day, month, year, clock, offset, name = match.groups()
    english = _ENGLISH_MONTHS[MONTHS.get(month.lower(), 0)] or None
    zone = offset.replace(":", "") if offset else _ZONES.get(name.upper(), name) if name else ""
    if english is None or (month[:3] == english and (weekday is None or weekday.lower() in _ENGLISH_DAYS)
                           and zone == (offset or name or "")):
        return raw  # not a date, or one the parsers read as it is
    clock = clock if clock.count(":") == 2 else clock + ":00"
    return f"{int(day):02d} {english} {year} {clock.zfill(8)} {zone}".rstrip()


def floating(raw: str) -> bool:
    """Whether the date names no zone (a local time)."""
    text = raw.strip()
    if _ISO_FLOATING.fullmatch(text):
        return True
    match = _RFC822ISH.fullmatch(text)
    return match is not None and match.group(6) is None and match.group(7) is None


def parse(raw: str | None) -> str | None:
    """fastfeedparser's reading of the date, rewritten first: an ISO 8601 string in UTC, or
    without an offset for a date that names no zone (`floating`)."""
    if not raw:
        return _original(raw)
    iso = _original(normalized(raw))
    if iso and iso.endswith("+00:00") and floating(raw):
        return iso[:-6]  # its wall clock, as the parser read it (as UTC)
    return iso


def install() -> None:
    """Make fastfeedparser read dates through `parse`. Its parser is a module global that its
    native core is handed at each call, so replacing the global is enough
    (tests/test_feed_dates.py checks it still is)."""
    fastfeedparser.main._parse_date = parse
