"""Demo feeds that never go stale: their dates move with the day they are read.

The demo town's feeds (`hub/demo/musterstadt/`) are ordinary RSS, Atom and JSON Feed files
with real dates around one fixed moment, which each of them names near its top:

    <!-- hub: demo dates relative to 2026-11-22T08:00 Europe/Berlin -->             (XML)
    "_hub_demo": {"dates_relative_to": "2026-11-22T08:00", "timezone": "Europe/Berlin"}
                                                                    (JSON Feed; "_" keys are extensions)
    X-HUB-DEMO-DATES-RELATIVE-TO:2026-11-22T08:00                   (iCalendar; X- properties are
                                                                     extensions; the zone is the
                                                                     calendar's X-WR-TIMEZONE, or
                                                                     ;TZID=Europe/Berlin on the marker)

When the fetcher reads such a document from a `file:` URL (never from the network), it
moves every date in it by the same whole number of days: the days since the anchor
moment, counted in the document's time zone, so the anchor moment becomes its latest
occurrence at or before now. Posts then keep their age ("vor 3 Stunden", "vor 2 Tagen")
whatever the day, nothing is dated after now that was not after the anchor, and events
announced for "Freitag, 4. Dezember" stay as many days ahead. The time of day stays (in
the document's zone, so a 09:15 post in winter is a 09:15 post in summer, with the UTC
offset recomputed), and weekday names go with their dates.

What moves:
- RFC 822 dates (RSS `pubDate`, `lastBuildDate`): `Sat, 21 Nov 2026 09:15:00 +0100`;
- ISO 8601 dates and times (Atom, RSS 1.0 `dc:date`, JSON Feed): `2026-11-21T10:42:00+01:00`;
- German dates in text: `Samstag, 5. Dezember 2026`, `5. Dezember`, `5.12.2026`, and runs
  such as `vom 19. bis 25. November`, `1., 8., 15. und 22. Dezember` or `Samstag, 19., und
  Sonntag, 20. Dezember` (a day without a month takes the next one's; after the move it
  gets its own month when the two differ). A date without a year is taken in the year
  that puts it nearest the anchor.

What never moves: anything inside a URL or an id (`guid`, Atom `id`, `rdf:about`, JSON
Feed `id` and `url`), so items keep their identity and links from day to day; month
names alone ("im Dezember"), bare years and holidays. The demo texts write such things
as full dates or leave them out.

In an iCalendar document the dates of its date properties move (DTSTART, DTEND,
RECURRENCE-ID, EXDATE, RDATE, DTSTAMP, CREATED, LAST-MODIFIED and RRULE's UNTIL), in
all three forms: `20261122T080000` (floating) and `;TZID=...:20261122T080000` keep
their wall-clock time, `20261122T070000Z` keeps its time in the document's zone (a
19:00 rehearsal stays at 19:00 across a change of daylight-saving time), `VALUE=DATE:20261122`
moves by the days. RRULE's BYDAY weekdays move with them, so a weekly rule still meets its
DTSTART, EXDATE and overrides (rules by month day or position in the month do not: the
demo writes weekly rules). Text properties (SUMMARY, DESCRIPTION, LOCATION, ...) move
their prose dates as above, with iCalendar's escaped commas; UID, URL, ATTACH, IMAGE and
every VTIMEZONE (the zone's own rules) stay as they are.

Everything here is pure: `now` is an argument.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["HEAD_BYTES", "Anchor", "find_anchor", "redate", "redate_at"]

HEAD_BYTES = 2048  # the marker must be in the first this many bytes of the document
DEFAULT_ZONE = "Europe/Berlin"

_AT = rb"(?P<at>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?)"
_XML_MARKER = re.compile(rb"<!--\s*hub:\s*demo dates relative to\s+" + _AT +
                         rb"(?:\s+(?P<zone>UTC|[A-Za-z]+(?:/[\w+-]+)+))?(?![\w/-])(?:(?!-->).)*-->", re.DOTALL)
_JSON_MARKER = re.compile(rb'"_hub_demo"\s*:\s*\{\s*"dates_relative_to"\s*:\s*"(?P<at>[^"]*)"'
                          rb'(?:\s*,\s*"timezone"\s*:\s*"(?P<zone>[^"]*)")?')
_ICAL_MARKER = re.compile(rb"^X-HUB-DEMO-DATES-RELATIVE-TO(?:;TZID=\"?(?P<zone>[^\":;\r\n]+)\"?)?:(?P<at>[^\r\n]*?)\r?$",
                          re.MULTILINE | re.IGNORECASE)
_ICAL_ZONE = re.compile(rb"^X-WR-TIMEZONE:(?P<zone>[^\r\n]+?)\r?$", re.MULTILINE | re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*["']([\w.:-]+)["']""")


@dataclass(frozen=True)
class Anchor:
    """The moment a demo document's dates were written around, in its time zone."""

    moment: datetime  # naive wall time in `zone`
    zone: ZoneInfo

    def days_until(self, now: datetime) -> int:
        """Whole days from the anchor moment to its latest occurrence at or before `now`
        (wall clock in `zone`; negative if `now` lies before the anchor)."""
        local = now.astimezone(self.zone).replace(tzinfo=None)
        days = (local.date() - self.moment.date()).days
        return days - 1 if local.time() < self.moment.time() else days

    def moved(self, days: int) -> datetime:
        """When a shift by `days` begins to apply (aware): the anchor moment `days` later."""
        return _wall(self.moment + timedelta(days=days), self.zone)


def find_anchor(head: bytes) -> Anchor | None:
    """The anchor a document declares in its first `HEAD_BYTES` bytes, or None for an
    ordinary document.

    Raises:
        ValueError: the marker is there but its date or time zone cannot be read.
    """
    head = head[:HEAD_BYTES]
    found = _XML_MARKER.search(head) or _JSON_MARKER.search(head) or _ICAL_MARKER.search(head)
    if found is None:
        return None
    at = found.group("at").decode("ascii", "replace").strip()
    zone_found = found.group("zone")
    if zone_found is None and found.re is _ICAL_MARKER:
        calendar_zone = _ICAL_ZONE.search(head)
        zone_found = calendar_zone.group("zone") if calendar_zone else None
    zone = (zone_found or DEFAULT_ZONE.encode()).decode("ascii", "replace").strip()
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise ValueError(f"demo dates marker: {at!r} is not a date like 2026-11-22 or 2026-11-22T08:00") from None
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"demo dates marker: unknown time zone {zone!r}") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(tz).replace(tzinfo=None)
    return Anchor(moment, tz)


def redate_at(document: bytes, now: datetime) -> bytes:
    """`document` as read at `now`: moved by its anchor's `days_until(now)`; an ordinary
    document (no marker) comes back as it is."""
    anchor = find_anchor(document[:HEAD_BYTES])
    return document if anchor is None else redate(document, anchor, anchor.days_until(now))


def redate(document: bytes, anchor: Anchor, days: int) -> bytes:
    """Every date in `document` (outside URLs and ids) moved by `days` days. The marker's
    own date moves too, so a redated document names the anchor its dates now fit."""
    if days == 0:
        return document
    if document.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].upper() == b"BEGIN:VCALENDAR":
        bom = b"\xef\xbb\xbf" if document.startswith(b"\xef\xbb\xbf") else b""
        return bom + _CalendarMover(anchor, days).text(document.decode("utf-8-sig")).encode("utf-8")
    if document.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
        text = document.decode("utf-8-sig")
        bom = b"\xef\xbb\xbf" if document.startswith(b"\xef\xbb\xbf") else b""
        return bom + _Mover(anchor, days).text(text).encode("utf-8")
    declared = _XML_ENCODING.match(document)
    encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        text = document.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        return document  # the feed reader will report it; nothing to move in an unreadable file
    # Outside CDATA a character reference stands for a character the encoding lacks; the
    # names written here (weekdays and months) are in Latin-1, so CDATA never needs one.
    return _Mover(anchor, days).text(text).encode(encoding, "xmlcharrefreplace")


# --- what is matched -----------------------------------------------------------------------

_WEEKDAYS = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
_WEEKDAYS_SHORT = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")
_MONTHS = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
           "Oktober", "November", "Dezember")
_MONTHS_SHORT = ("Jan", "Feb", "Mär", "Apr", "Mai", "Jun", "Jul", "Aug", "Sep", "Okt", "Nov", "Dez")
_MONTH_NUMBER = {name.lower(): i + 1 for names in (_MONTHS, _MONTHS_SHORT) for i, name in enumerate(names)}
_MONTH_NUMBER["sept"] = 9
_RFC_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_RFC_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Never touched: URLs (with tag: and urn: ids) and the elements and keys that carry ids and links.
_PROTECTED = re.compile(r"""
      \b(?:https?|ftp|file|mailto|tag|urn):(?:(?!&lt;|&gt;|&quot;)[^\s"'<>\\])+
    | <(?P<el>guid|id)\b[^>]*>[^<]*</(?P=el)>
    | \brdf:(?:about|resource)\s*=\s*(?:"[^"]*"|'[^']*')
    | "(?:id|url|external_url)"\s*:\s*"(?:[^"\\]|\\.)*"
    """, re.VERBOSE)

_SPACE = r"(?:[ \t\r\n\xa0]|&nbsp;|&amp;nbsp;|&\#160;|&\#xa0;)+"  # also as HTML, or HTML escaped in XML
_WD = "|".join(_WEEKDAYS + _WEEKDAYS_SHORT)
_MON = "|".join(sorted((*_MONTHS, *_MONTHS_SHORT, "Sept"), key=len, reverse=True))  # Juni before Jun
_RFC_WD = "|".join(_RFC_WEEKDAYS)
_RFC_MON = "|".join(_RFC_MONTHS)
_JOIN = rf"(?:,?{_SPACE}(?:und|bis(?:{_SPACE}zum)?|sowie|oder|&amp;|&){_SPACE}|,{_SPACE}?|{_SPACE}?[–—-]{_SPACE}?)"
# A day whose month comes later ("19." in "19. bis 25. November"), with its weekday if any.
_BARE = rf"(?:(?<![^\W\d_])(?:{_WD})\.?,?{_SPACE}(?:den{_SPACE})?)?(?<![\d.])\d{{1,2}}\.(?![\d])"
_BARE_ONE = re.compile(rf"(?:(?<![^\W\d_])(?P<wd>{_WD})(?P<wdrest>\.?,?{_SPACE}(?:den{_SPACE})?))?"
                       rf"(?<![\d.])(?P<d>\d{{1,2}})\.(?!\d)(?P<join>{_JOIN})")

_DATES = re.compile(rf"""
      (?P<rfc>(?:(?P<rwd>{_RFC_WD}),\s*)?(?<!\d)(?P<rd>\d{{1,2}})\s+(?P<rm>{_RFC_MON})\s+
          (?P<ry>\d{{4}})\s+(?P<rtime>\d{{2}}:\d{{2}}(?::\d{{2}})?)\s+(?P<rz>[+-]\d{{4}}|GMT|UTC?|Z)\b)
    | (?P<iso>(?<![\w/.:-])(?P<iy>\d{{4}})-(?P<im>\d{{2}})-(?P<id>\d{{2}})
          (?:T(?P<itime>\d{{2}}:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?)(?P<iz>Z|[+-]\d{{2}}:?\d{{2}})?)?(?![\w/-]))
    | (?P<prose>(?P<chain>(?:{_BARE}{_JOIN})*)
          (?:(?<![^\W\d_])(?P<wd>{_WD})(?P<wdrest>\.?,?{_SPACE}(?:den{_SPACE})?))?(?<![\d.])
          (?: (?P<nd>\d{{1,2}})\.(?P<nm>\d{{1,2}})\.(?P<ny>\d{{4}})(?!\d)
            | (?P<d>\d{{1,2}})\.(?P<msep>{_SPACE})?(?P<m>{_MON})(?![^\W\d_])
              (?:(?P<ysep>{_SPACE})(?P<y>\d{{4}})(?!\d))?))
    """, re.VERBOSE)


# --- moving --------------------------------------------------------------------------------

class _Mover:
    def __init__(self, anchor: Anchor, days: int) -> None:
        self.zone = anchor.zone
        self.anchor_day = anchor.moment.date()
        self.delta = timedelta(days=days)

    def text(self, text: str) -> str:
        out, pos = [], 0
        for kept in _PROTECTED.finditer(text):
            out += [_DATES.sub(self._one, text[pos:kept.start()]), kept.group()]
            pos = kept.end()
        out.append(_DATES.sub(self._one, text[pos:]))
        return "".join(out)

    def _one(self, m: re.Match) -> str:
        try:
            if m.group("rfc"):
                return self._rfc822(m)
            if m.group("iso"):
                return self._iso(m)
            return self._prose(m)
        except ValueError:  # 31 November and the like: not a date, leave it
            return m.group()

    # machine dates

    def _rfc822(self, m: re.Match) -> str:
        clock = time.fromisoformat(m.group("rtime"))
        zone = m.group("rz")
        written_in = UTC if zone in ("GMT", "UT", "UTC", "Z") else _offset(zone)
        when = datetime.combine(date(int(m.group("ry")), _RFC_MONTHS.index(m.group("rm")) + 1,
                                     int(m.group("rd"))), clock, written_in)
        moved = self._moved(when)
        if zone[0] in "+-":
            zone = _offset_text(moved.utcoffset(), colon=False)
        weekday = f"{_RFC_WEEKDAYS[moved.weekday()]}, " if m.group("rwd") else ""
        day = f"{moved.day:02d}" if len(m.group("rd")) == 2 else str(moved.day)
        seconds = ":%S" if m.group("rtime").count(":") == 2 else ""
        return f"{weekday}{day} {_RFC_MONTHS[moved.month - 1]} {moved.year} {moved.strftime('%H:%M' + seconds)} {zone}"

    def _iso(self, m: re.Match) -> str:
        day = date(int(m.group("iy")), int(m.group("im")), int(m.group("id")))
        if m.group("itime") is None:
            return (day + self.delta).isoformat()
        raw_time = m.group("itime")
        clock = time.fromisoformat(raw_time)
        zone = m.group("iz")
        if zone is None:  # local time without an offset: the wall clock moves as it is
            moved = datetime.combine(day, clock) + self.delta
            return f"{moved.date().isoformat()}T{raw_time}"
        written_in = UTC if zone == "Z" else _offset(zone)
        moved = self._moved(datetime.combine(day, clock, written_in))
        fraction = raw_time[8:] if len(raw_time) > 8 else ""
        shown = moved.strftime("%H:%M:%S" if raw_time.count(":") == 2 else "%H:%M") + fraction
        suffix = "Z" if zone == "Z" else _offset_text(moved.utcoffset(), colon=":" in zone)
        return f"{moved.date().isoformat()}T{shown}{suffix}"

    def _moved(self, when: datetime) -> datetime:
        """`when` moved by whole days on the document zone's wall clock, then written in
        the offset it was written in; one written in the zone's local time gets the offset
        of its new date (CET in winter, CEST in summer)."""
        local = when.astimezone(self.zone)
        moved = _wall(local.replace(tzinfo=None) + self.delta, self.zone)
        if when.utcoffset() == local.utcoffset() and not _is_utc(when.tzinfo):
            return moved
        return moved.astimezone(when.tzinfo)

    # dates in text

    def _prose(self, m: re.Match) -> str:
        if m.group("nd"):
            year = int(m.group("ny"))
            last = date(year, int(m.group("nm")), int(m.group("nd")))
        else:
            month = _MONTH_NUMBER[m.group("m").lower()]
            year = int(m.group("y")) if m.group("y") else None
            last = self._in_year(year, month, int(m.group("d")))
        chain = self._chain(m.group("chain"), last)
        if chain is None:  # a run that does not read as days of one period: its last date only
            return m.group("chain") + self._last(m, last + self.delta)
        out = []
        for i, (bare, day) in enumerate(chain):
            following = chain[i + 1][1] if i + 1 < len(chain) else last
            out.append(self._bare(m, bare, day + self.delta, following + self.delta))
        return "".join(out) + self._last(m, last + self.delta)

    def _in_year(self, year: int | None, month: int, day: int) -> date:
        if year is not None:
            return date(year, month, day)
        candidates = []
        for y in (self.anchor_day.year - 1, self.anchor_day.year, self.anchor_day.year + 1):
            try:
                candidates.append(date(y, month, day))
            except ValueError:  # 29 February
                pass
        if not candidates:
            raise ValueError("no such day")
        return min(candidates, key=lambda d: abs(d - self.anchor_day))

    def _chain(self, chain: str, last: date) -> list[tuple[re.Match, date]] | None:
        """The days before the last date of a run, each with its date (it takes the month
        of the day after it, or the month before if its number is larger)."""
        found, pos = [], 0
        while pos < len(chain):
            bare = _BARE_ONE.match(chain, pos)
            if bare is None:
                return None
            found.append(bare)
            pos = bare.end()
        dated: list[tuple[re.Match, date]] = []
        following = last
        for bare in reversed(found):
            number = int(bare.group("d"))
            year, month = following.year, following.month
            if number > following.day:
                year, month = (year, month - 1) if month > 1 else (year - 1, 12)
            try:
                day = date(year, month, number)
            except ValueError:
                return None
            dated.append((bare, day))
            following = day
        return dated[::-1]

    def _bare(self, m: re.Match, bare: re.Match, day: date, following: date) -> str:
        text = _weekday(bare.group("wd"), day) + (bare.group("wdrest") or "") + f"{day.day}."
        if (day.year, day.month) != (following.year, following.month):  # the run now spans two months
            if m.group("nd"):
                text += f"{day.month}." + (str(day.year) if day.year != following.year else "")
            else:
                text += " " + _month(m.group("m"), day)
                if day.year != following.year and m.group("y"):
                    text += f" {day.year}"
        return text + bare.group("join")

    def _last(self, m: re.Match, day: date) -> str:
        text = _weekday(m.group("wd"), day) + (m.group("wdrest") or "")
        if m.group("nd"):
            dd = f"{day.day:02d}" if len(m.group("nd")) == 2 else str(day.day)
            mm = f"{day.month:02d}" if len(m.group("nm")) == 2 else str(day.month)
            return text + f"{dd}.{mm}.{day.year}"
        text += f"{day.day}.{m.group('msep') or ''}{_month(m.group('m'), day)}"
        if m.group("y"):
            text += f"{m.group('ysep')}{day.year}"
        return text


class _CalendarMover:
    """An iCalendar document moved content line by content line. A folded line is moved
    as one and folded again (a date may straddle the fold)."""

    def __init__(self, anchor: Anchor, days: int) -> None:
        self.days = days
        self.delta = timedelta(days=days)
        self.prose = _Mover(anchor, days)

    def text(self, text: str) -> str:
        out, in_zone = [], 0
        for line, folded, ending in _content_lines(text):
            head, colon, value = _split_property(line)
            name = head.split(";", 1)[0].upper()
            if name in ("BEGIN", "END") and value.strip().upper() == "VTIMEZONE":
                in_zone += 1 if name == "BEGIN" else -1
            elif colon and not in_zone:  # a zone's own rules never move
                line = head + colon + self._value(name, value)
            out.append((_fold(line, ending) if folded else line) + ending)
        return "".join(out)

    def _value(self, name: str, value: str) -> str:
        if name in _ICAL_DATE_PROPERTIES:
            return _ICAL_DATE.sub(self._date, value)
        if name in ("RRULE", "EXRULE"):
            value = re.sub(r"(?<=UNTIL=)[0-9TZ]+", lambda m: _ICAL_DATE.sub(self._date, m.group()), value)
            return _BYDAY.sub(lambda m: m.group(1) + ",".join(self._weekday(d) for d in m.group(2).split(",")),
                              value)
        if name in _ICAL_KEPT or not name:
            return value
        if name in _ICAL_TEXT:  # escaped commas, as "Samstag\, 5. Dezember": unescaped to be read
            return self.prose.text(value.replace("\\,", ",")).replace(",", "\\,")
        return self.prose.text(value)

    def _date(self, m: re.Match) -> str:
        try:
            day = date(int(m.group("y")), int(m.group("mo")), int(m.group("d")))
            if m.group("t") is None:
                return f"{day + self.delta:%Y%m%d}"
            clock = time(int(m.group("h")), int(m.group("mi")), int(m.group("s")))
        except ValueError:  # not a date after all: left as it is
            return m.group()
        if m.group("z"):  # UTC: the same time of day in the document's zone
            moved = self.prose._moved(datetime.combine(day, clock, UTC))
            return f"{moved:%Y%m%dT%H%M%S}Z"
        return f"{datetime.combine(day, clock) + self.delta:%Y%m%dT%H%M%S}"  # floating or TZID: wall clock

    def _weekday(self, entry: str) -> str:
        found = re.fullmatch(r"([+-]?\d{0,2})(MO|TU|WE|TH|FR|SA|SU)", entry.strip(), re.IGNORECASE)
        if not found:
            return entry
        day = (_ICAL_WEEKDAYS.index(found.group(2).upper()) + self.days) % 7
        return found.group(1) + _ICAL_WEEKDAYS[day]


_ICAL_DATE_PROPERTIES = frozenset({"DTSTART", "DTEND", "DUE", "RECURRENCE-ID", "EXDATE", "RDATE", "DTSTAMP",
                                   "CREATED", "LAST-MODIFIED", "COMPLETED"})
_ICAL_KEPT = frozenset({"UID", "URL", "ATTACH", "IMAGE", "TZID", "TZURL", "GEO", "SEQUENCE", "PRODID", "VERSION",
                        "BEGIN", "END", "STATUS", "CLASS", "METHOD", "CALSCALE", "X-WR-TIMEZONE"})
_ICAL_TEXT = frozenset({"SUMMARY", "DESCRIPTION", "LOCATION", "COMMENT", "X-WR-CALNAME", "X-WR-CALDESC"})
_ICAL_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_ICAL_DATE = re.compile(r"(?<![\w])(?P<y>\d{4})(?P<mo>\d{2})(?P<d>\d{2})"
                        r"(?:T(?P<t>(?P<h>\d{2})(?P<mi>\d{2})(?P<s>\d{2}))(?P<z>Z)?)?(?![\w])")
_BYDAY = re.compile(r"(BYDAY=)([^;]*)", re.IGNORECASE)
_PHYSICAL_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def _content_lines(text: str) -> list[tuple[str, bool, str]]:
    """(unfolded line, whether it was folded, its line ending) for each content line."""
    lines: list[tuple[str, bool, str]] = []
    for physical in _PHYSICAL_LINE.findall(text):  # not splitlines: U+2028 and the like are text here
        body = physical.rstrip("\r\n")
        if body[:1] in (" ", "\t") and lines:
            first, _, ending = lines[-1]
            lines[-1] = (first + body[1:], True, ending)
        else:
            lines.append((body, False, physical[len(body):]))
    return lines


def _fold(line: str, ending: str) -> str:
    """`line` folded at 75 octets, never inside a character (RFC 5545, 3.1)."""
    parts, current, size = [], "", 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > 75:
            parts.append(current)
            current, size = " ", 1
        current += char
        size += width
    return (ending or "\r\n").join(parts + [current])


def _split_property(line: str) -> tuple[str, str, str]:
    """(name and parameters, ":", value) of a content line; a ":" inside a quoted parameter
    value (TZID="...") is not the separator."""
    quoted = False
    for i, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            return line[:i], ":", line[i + 1:]
    return line, "", ""


def _weekday(written: str | None, day: date) -> str:
    """The weekday of `day` written like `written` (full or two letters); '' if none was."""
    if not written:
        return ""
    names = _WEEKDAYS if len(written) > 2 else _WEEKDAYS_SHORT
    return names[day.weekday()]


def _month(written: str, day: date) -> str:
    """The month of `day` written like `written` (full name or abbreviation)."""
    full = written.lower() in {name.lower() for name in _MONTHS}
    return (_MONTHS if full else _MONTHS_SHORT)[day.month - 1]


def _wall(naive: datetime, zone: ZoneInfo) -> datetime:
    """The wall-clock time `naive` in `zone` (a time skipped by a DST change moves forward)."""
    aware = naive.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone)


def _offset(text: str) -> tzinfo:
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _offset_text(offset: timedelta | None, *, colon: bool) -> str:
    minutes = int((offset or timedelta()).total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"


def _is_utc(tz: tzinfo | None) -> bool:
    return tz is UTC  # timezone(timedelta(0)) is this one too
