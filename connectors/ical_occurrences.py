"""An iCalendar document (RFC 5545) as the occurrences of its events inside a window: the
reading half of the calendar connector (`connectors/ical.py` maps occurrences to items).

icalendar parses the document; recurring-ical-events expands RRULE, RDATE, EXDATE and
RECURRENCE-ID overrides (moved or cancelled occurrences). Nothing here computes a
repetition by hand. What this module adds is what calendars found in the wild need first:

- Bytes in any shape a server sends: a UTF-8 BOM, CRLF, LF or CR line endings, folded lines,
  a calendar that is not UTF-8 (read as Windows-1252, with a warning), several VCALENDARs in
  one file, a file cut off before its end (read up to the last complete event).
- Times without a zone. A floating time (no TZID, no Z), and a time whose TZID is unknown
  and has no VTIMEZONE, is read in the calendar's zone: its X-WR-TIMEZONE (Google's, Apple's
  and Outlook's exports name their zone so, Windows names included), else the platform's.
  Never as UTC. A calendar with X-WR-TIMEZONE follows the x-wr-timezone convention: its UTC
  times are local times of that zone, so a weekly 19:00 stays at 19:00 across a change of
  daylight-saving time.
- Broken events cost themselves only: an event without DTSTART, an unreadable repetition
  rule or value, an unknown time zone each give one warning and the rest is read.
- Bounds: a repetition rule that would make thousands of occurrences (FREQ=MINUTELY) is cut
  at `MAX_PER_SERIES`, a whole calendar at `MAX_OCCURRENCES`; the expansion is then not
  `complete` (the connector must not read the missing rest as deletions).

Everything here is pure: the window is an argument.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import islice
from typing import Any, Iterable, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import x_wr_timezone
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON
from recurring_ical_events import CalendarQuery

from hub.errors import ParseError

__all__ = ["Expansion", "Occurrence", "expand", "read_calendars", "zone_name_of"]

MAX_PER_SERIES = 1000  # occurrences of one event in the window: a daily event over 90 days has 91
MAX_OCCURRENCES = 20_000  # occurrences of one calendar in the window
MAX_WARNINGS = 20  # warnings of one calendar; the rest are counted
WIDEN_STEPS = 8  # see `_widen`
_TIME_PROPERTIES = ("DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE", "RDATE")
# What an event has at most once (RFC 5545, 3.6.1); icalendar hands a repeated one over as a
# list, on which everything that reads it would trip ("['Probe', 'Konzert']" as a title).
_ONCE = ("CLASS", "CREATED", "DESCRIPTION", "DTSTART", "GEO", "LAST-MODIFIED", "LOCATION", "ORGANIZER",
         "PRIORITY", "DTSTAMP", "SEQUENCE", "STATUS", "SUMMARY", "TRANSP", "UID", "URL", "RECURRENCE-ID",
         "DTEND", "DURATION")
_HINT = ("open the url in a browser: it must download an .ics file (in Google Calendar the "
         "'secret address in iCal format', in Nextcloud 'copy subscription link')")


class Occurrence(NamedTuple):
    """One occurrence of an event: the event's properties as they are for this occurrence
    (an override's own, if it has one), and its times."""

    component: icalendar.Event
    start: datetime  # aware; an all-day occurrence starts at midnight in `timezone`
    end: datetime | None  # exclusive; None when the event gives no end
    all_day: bool
    timezone: str  # IANA name the times are given in
    key: str  # stable: the UID, plus the occurrence's original start for repeating events


@dataclass
class Expansion:
    occurrences: list[Occurrence] = field(default_factory=list)
    # Keys of occurrences the calendar excludes (EXDATE) inside the window: deleted for sure.
    excluded: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    complete: bool = True  # False: something was cut, so missing occurrences prove nothing
    reached: datetime | None = None  # the window's start once widened (see `_widen`)


# --- reading -------------------------------------------------------------------------------

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_BEGIN = re.compile(r"\A\s*BEGIN:VCALENDAR\s*$", re.IGNORECASE | re.MULTILINE)
_END_CALENDAR = re.compile(r"^END:VCALENDAR[ \t]*$", re.IGNORECASE | re.MULTILINE)
_END_EVENT = re.compile(r"^END:VEVENT[ \t]*$", re.IGNORECASE | re.MULTILINE)


def read_calendars(payload: bytes, days: tuple[date, date] | None = None
                   ) -> tuple[list[icalendar.Calendar], list[str], bool]:
    """The VCALENDARs in `payload`, the warnings, and whether the document was whole.

    `days` (first, last): leave out the single events (no RRULE, RDATE or RECURRENCE-ID)
    that, as their DTSTART and DTEND write them, end before the first day or begin after the
    last, without parsing them. A calendar kept for years is mostly history; icalendar would
    spend most of its time on events no window reaches (a 10 MB calendar takes it 10 s and
    more).

    Raises:
        ParseError: the payload is no iCalendar document at all.
    """
    text, warnings = _decode(_unfolded(payload))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not _BEGIN.match(text[:200]):
        raise ParseError(_not_a_calendar(text), hint=_HINT)
    whole = True
    if not _END_CALENDAR.search(text):
        text, whole = _cut_to_last_event(text), False
        warnings.append("the calendar is cut off (no END:VCALENDAR); read the events up to the last complete one")
    if days is not None:
        text = _without_events_outside(_TEXT_FOLD.sub("", text), *days)
    try:
        found = icalendar.Calendar.from_ical(text, multiple=True)
    except ValueError as exc:
        found = _read_repaired(text, exc, warnings)
    calendars = [c for c in found if c.name == "VCALENDAR"]
    if not calendars:
        raise ParseError("the document holds no VCALENDAR", hint=_HINT)
    return calendars, warnings, whole


_CONTENT_LINE = re.compile(r"[A-Za-z0-9-]+[;:]")
_VTIMEZONE = re.compile(r"^BEGIN:VTIMEZONE[ \t]*\n.*?^END:VTIMEZONE[ \t]*\n", re.IGNORECASE | re.MULTILINE | re.DOTALL)


def _read_repaired(text: str, problem: ValueError, warnings: list[str]) -> list[icalendar.Component]:
    """A calendar icalendar refused as a whole, read again without what it tripped over: lines
    that are no content line (a stray "X" between two events) and time zone definitions it
    cannot read (an offset of "+5744"); their TZIDs are then read by name, as IANA zones or
    as unknown. What is taken out is a warning; what still cannot be read, or a calendar with
    no event left, is the calendar's error."""
    lines = _TEXT_FOLD.sub("", text).split("\n")
    junk = [line for line in lines if line.strip() and not _CONTENT_LINE.match(line)]
    text = "\n".join(line for line in lines if not line.strip() or _CONTENT_LINE.match(line))
    if junk:
        shown = ", ".join(repr(line[:40]) for line in junk[:3])
        warnings.append(f"ignored {len(junk)} line(s) that are no iCalendar content lines: {shown}")
    for block in _VTIMEZONE.findall(text):
        if (why := _unreadable(block)) is not None:
            text = text.replace(block, "", 1)
            tzid = next((line[5:] for line in block.split("\n") if line.upper().startswith("TZID:")), "?")
            warnings.append(f"the time zone definition {tzid!r} cannot be read ({why}); "
                            "read its times by the zone's name")
    try:
        found = icalendar.Calendar.from_ical(text, multiple=True)
    except ValueError as exc:
        raise ParseError(f"the calendar cannot be read: {problem}", hint=_HINT) from exc
    if not any(c.walk("VEVENT") for c in found):  # nothing left worth the repair: the error says more
        raise ParseError(f"the calendar cannot be read: {problem}", hint=_HINT) from problem
    return found


def _unreadable(vtimezone: str) -> str | None:
    """Why icalendar cannot read this VTIMEZONE block, or None if it can."""
    try:
        icalendar.Calendar.from_ical(f"BEGIN:VCALENDAR\n{vtimezone}END:VCALENDAR\n")
    except ValueError as exc:
        return str(exc)
    return None


_FOLD = re.compile(rb"(?:\r?\n|\r)+[ \t]")  # (blank lines before a continuation: old Mozilla exports)
_TEXT_FOLD = re.compile(r"\n+[ \t]")
_VEVENT = re.compile(r"^BEGIN:VEVENT[ \t]*\n.*?^END:VEVENT[ \t]*\n", re.IGNORECASE | re.MULTILINE | re.DOTALL)
_REPEATS = re.compile(r"^(?:RRULE|RDATE|EXRULE|RECURRENCE-ID|DURATION)[;:]", re.IGNORECASE | re.MULTILINE)
_DAY_OF = {name: re.compile(rf"^{name}(?:;[^\n]*)?:(\d{{4}})(\d{{2}})(\d{{2}})", re.IGNORECASE | re.MULTILINE)
           for name in ("DTSTART", "DTEND")}


def _without_events_outside(text: str, first: date, last: date) -> str:
    """`text` without the VEVENTs that surely end before `first` or begin after `last` (see
    `read_calendars`). Anything in doubt stays: a repeating event, a DURATION, a date the
    pattern does not find."""
    def keep(block: re.Match) -> str:
        event = block.group()
        if _REPEATS.search(event):
            return event
        days = [m for m in (_DAY_OF["DTSTART"].search(event), _DAY_OF["DTEND"].search(event)) if m]
        if not days or days[0].re is not _DAY_OF["DTSTART"]:
            return event
        try:
            begins, ends = (date(int(m.group(1)), int(m.group(2)), int(m.group(3))) for m in (days[0], days[-1]))
        except ValueError:
            return event
        return "" if max(begins, ends) < first or begins > last else event

    return _VEVENT.sub(keep, text)


def _unfolded(payload: bytes) -> bytes:
    """Folded lines joined before decoding: some generators fold in the middle of a UTF-8
    character, which only reads right once the halves are together again. (UTF-16 and
    UTF-32 documents are unfolded by icalendar after decoding.)"""
    if payload[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) or payload[:4] == codecs.BOM_UTF32_BE:
        return payload
    return _FOLD.sub(b"", payload) if b"\n " in payload or b"\n\t" in payload or b"\r " in payload else payload


def _decode(payload: bytes) -> tuple[str, list[str]]:
    for bom, codec in _BOMS:
        if payload.startswith(bom):
            return payload[len(bom):].decode(codec, "replace"), []
    try:
        return payload.decode("utf-8"), []
    except UnicodeDecodeError:
        # RFC 5545 says UTF-8; old Outlook and CMS exports write their Windows code page.
        return payload.decode("cp1252", "replace"), ["the calendar is not UTF-8; read it as Windows-1252"]


def _not_a_calendar(text: str) -> str:
    head = text.lstrip()[:200].lower()
    if not head:
        return "the response is empty, not a calendar"
    if head.startswith(("<!doctype html", "<html")) or "<html" in head:
        return "the response is an HTML page, not a calendar"
    if head.startswith("<"):
        return "the response is XML (a feed?), not a calendar"
    if head.startswith("begin:vevent"):
        return "the response holds events without a VCALENDAR around them"
    return "the response is not an iCalendar file (it does not begin with BEGIN:VCALENDAR)"


def _cut_to_last_event(text: str) -> str:
    """A calendar cut off in the middle (a download that broke off), closed after its last
    complete VEVENT, so that what arrived whole can be read."""
    ends = list(_END_EVENT.finditer(text))
    body = text[:ends[-1].end()] if ends else text.split("BEGIN:VEVENT", 1)[0].rstrip()
    return body + "\nEND:VCALENDAR\n"


# --- time zones ----------------------------------------------------------------------------

def zone_name_of(calendar: icalendar.Calendar, platform_zone: str) -> tuple[str, bool, list[str]]:
    """The zone times without one are read in: (IANA name, whether the calendar named it in
    X-WR-TIMEZONE, warnings)."""
    declared = calendar.get("X-WR-TIMEZONE")
    if declared is None:
        return platform_zone, False, []
    name = _iana(str(declared).strip())
    if name is None:
        return platform_zone, False, [f"X-WR-TIMEZONE {str(declared)!r} is no time zone the hub knows; "
                                      f"times without a zone are read in {platform_zone}"]
    return name, True, []


def _iana(name: str) -> str | None:
    """An IANA zone name for a TZID or X-WR-TIMEZONE value (Windows names mapped), or None."""
    name = WINDOWS_TO_OLSON.get(name, name).strip('"')
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


class _FloatingIn(x_wr_timezone.CalendarWalker):
    """Floating times (and times with an unknown TZID, which icalendar leaves floating)
    placed in a zone; times with a zone stay as they are."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone

    def walk_value_datetime(self, dt: datetime) -> datetime:
        return dt.replace(tzinfo=self.zone) if dt.tzinfo is None else dt


# --- expansion -----------------------------------------------------------------------------

def expand(calendar: icalendar.Calendar, platform_zone: str, start: datetime, end: datetime) -> Expansion:
    """The occurrences of `calendar`'s events that overlap [start, end], sorted by start.

    The window is widened back to the start of an occurrence that is still running at its
    beginning (a festival in its third day, an exhibition): see `_widen`."""
    zone_name, declared, warnings = zone_name_of(calendar, platform_zone)
    result = Expansion(warnings=warnings)
    zone = ZoneInfo(zone_name)
    start, end = start.astimezone(zone), end.astimezone(zone)
    events = _Events(calendar, result, zone_name)
    walker = x_wr_timezone.UTCChangingWalker(zone) if declared else _FloatingIn(zone)
    calendar = walker.walk(events.calendar)
    try:
        query = CalendarQuery(calendar, skip_bad_series=True)
    except Exception as exc:  # CALSCALE other than GREGORIAN, and whatever else refuses the whole
        raise ParseError(f"the calendar cannot be expanded: {exc}", hint=_HINT) from exc
    events.report_dropped_series(query, calendar)
    window = _Window(query, zone, zone_name, events.repeating, result)
    window.add(start, end)
    result.reached = _widen(window, start)
    result.occurrences = sorted(window.found.values(), key=lambda o: (o.start, o.key))
    result.excluded = _excluded(calendar, start, end, zone, {o.key for o in result.occurrences})
    if len(result.warnings) > MAX_WARNINGS:
        more = len(result.warnings) - MAX_WARNINGS
        result.warnings[MAX_WARNINGS:] = [f"... and {more} more warnings"]
    return result


def _widen(window: _Window, start: datetime) -> datetime:
    """Also take the occurrences that overlap [s, start), where s is the start of the
    earliest occurrence found. The store judges deletions by the start (an item missing from
    the payload that starts at or after the earliest start in it was deleted; the connector's
    `published` follows the start), so everything that starts after a running occurrence
    began must be in the payload: a rehearsal on the first evening of a three-day festival,
    read on its third day, merely lies in the past.
    Runs again while that brings in an earlier start (rarely more than once). Returns
    where the window begins now."""
    for _ in range(WIDEN_STEPS):
        earliest = min((o.start for o in window.found.values()), default=start)
        if earliest >= start:
            break
        window.add(earliest, start)
        start = earliest
    return start


class _Events:
    """The calendar's VEVENTs checked before expansion: an event that cannot be read is
    taken out with a warning, an event without UID gets a stable one."""

    def __init__(self, calendar: icalendar.Calendar, result: Expansion, zone_name: str) -> None:
        self.result = result
        self.repeating: set[str] = set()
        self.summaries: dict[str, str] = {}
        self.unknown_zones: set[str] = set()
        kept = []
        for component in calendar.subcomponents:
            if component.name != "VEVENT" or self._keep(component):
                kept.append(component)
        self.calendar = calendar.copy()
        self.calendar.subcomponents = kept
        if self.unknown_zones:
            names = ", ".join(sorted(self.unknown_zones))
            result.warnings.append(f"unknown time zone {names} (no VTIMEZONE, no IANA name): "
                                   f"those times are read as local times in {zone_name}")

    def _keep(self, event: icalendar.Event) -> bool:
        problems = _drop_broken(event) + _first_of_repeated(event)
        if str(event.get("CLASS", "")).upper() in ("PRIVATE", "CONFIDENTIAL"):
            return False  # the organiser keeps it to themselves: not for the town's listings
        if "DTSTART" not in event:
            why = next((f"its {p.split('; ')[0]}" for p in problems if p.startswith("DTSTART")), "it has no DTSTART")
            self.result.warnings.append(f"skipped {_describe(event)}: {why}")
            return False
        if _ends_before_start(event):
            problems.append("its DTEND lies before its DTSTART; read the two the other way round")
        if not _on_earth(event.get("GEO")):
            geo = event.pop("GEO")
            problems.append(f"GEO {geo.latitude};{geo.longitude} is no place on earth; ignored it")
        for problem in problems:
            self.result.warnings.append(f"{_describe(event)}: {problem}")
        if "UID" not in event:
            event["UID"] = _made_up_uid(event)
        uid = str(event["UID"])
        self.summaries.setdefault(uid, _describe(event))
        if any(name in event for name in ("RRULE", "RDATE", "RECURRENCE-ID")):
            self.repeating.add(uid)
        self._note_unknown_zones(event)
        return True

    def _note_unknown_zones(self, event: icalendar.Event) -> None:
        for name in _TIME_PROPERTIES:
            for prop in _as_list(event.get(name)):
                tzid = getattr(prop, "params", {}).get("TZID")
                if tzid and any(isinstance(v, datetime) and v.tzinfo is None for v in _values(prop)):
                    self.unknown_zones.add(str(tzid))

    def report_dropped_series(self, query: CalendarQuery, calendar: icalendar.Calendar) -> None:
        """An event recurring-ical-events refused (a broken RRULE, an end before the start)
        is left out; say which one and why."""
        kept = {str(series.uid) for series in query.series}
        for uid in self.summaries.keys() - kept:
            alone = calendar.copy()
            alone.subcomponents = [c for c in calendar.subcomponents if str(c.get("UID")) == uid]
            try:
                CalendarQuery(alone)
                reason = "it cannot be expanded"
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
            self.result.warnings.append(f"skipped {self.summaries[uid]}: {reason}")


class _Window:
    """The occurrences found so far, by key."""

    def __init__(self, query: CalendarQuery, zone: ZoneInfo, zone_name: str, repeating: set[str],
                 result: Expansion) -> None:
        self.query, self.zone, self.zone_name = query, zone, zone_name
        self.repeating, self.result = repeating, result
        self.found: dict[str, Occurrence] = {}

    def add(self, start: datetime, end: datetime) -> None:
        for series in self.query.series:
            try:
                taken = list(islice(series.between(start, end), MAX_PER_SERIES + 1))
            except Exception as exc:  # a value recurring-ical-events trips over (date and time mixed)
                self.result.warnings.append(f"skipped the repetitions of event {str(series.uid)!r}: {exc}")
                continue
            if len(taken) > MAX_PER_SERIES:
                self.result.warnings.append(f"event {str(series.uid)!r} repeats more than {MAX_PER_SERIES} times "
                                            "in the window; read the first ones only")
                self.result.complete = False
                taken = taken[:MAX_PER_SERIES]
            # The occurrences the rule makes share their event's properties: one copy of
            # them serves all (a copy per occurrence cost more than the rest of the parse).
            components: dict[Any, icalendar.Event] = {}
            for occurrence in taken:
                if len(self.found) >= MAX_OCCURRENCES:
                    self.result.warnings.append(f"the calendar has more than {MAX_OCCURRENCES} occurrences "
                                                "in the window; read that many only")
                    self.result.complete = False
                    return
                override = occurrence.id.recurrence_id  # None: made by the rule, not an override
                component = components.get(override)
                if component is None:
                    component = components[override] = occurrence.as_component(False)
                self._take(component, occurrence.start, occurrence.end, override is None)

    def _take(self, component: icalendar.Event, start: date, end: date | None, by_rule: bool) -> None:
        uid = str(component["UID"])
        recurrence_id = component["RECURRENCE-ID"]
        # An override's RECURRENCE-ID is the original start; an occurrence the rule made (or
        # a RANGE=THISANDFUTURE override moved) is keyed by its own start.
        by_rule = by_rule or recurrence_id.params.get("RANGE", "").upper() == "THISANDFUTURE"
        key = occurrence_key(uid, start if by_rule else recurrence_id.dt, repeating=uid in self.repeating)
        if key in self.found:
            return  # the same occurrence again: a widened window overlaps the first one
        all_day = not isinstance(start, datetime)
        begins, ends, zone = _times(start, end, all_day, self.zone, self.zone_name)
        self.found[key] = Occurrence(component, begins, ends, all_day, zone, key)


def _excluded(calendar: icalendar.Calendar, start: datetime, end: datetime, zone: ZoneInfo,
              present: set[str]) -> list[str]:
    """Keys of the occurrences EXDATE takes out of a repeating event inside the window."""
    keys = []
    for event in calendar.subcomponents:
        if event.name != "VEVENT" or "EXDATE" not in event or "RECURRENCE-ID" in event:
            continue
        uid = str(event["UID"])
        for prop in _as_list(event["EXDATE"]):
            for value in _values(prop):
                key = occurrence_key(uid, value, repeating=True)
                if start <= _local(value, zone) <= end and key not in present:
                    keys.append(key)
    return keys


def occurrence_key(uid: str, original: date, *, repeating: bool) -> str:
    """`uid` for a single event; `uid#20261126T183000Z` (the original start in UTC) or
    `uid#20261126` (all-day) for an occurrence of a repeating one. The original start is
    the RECURRENCE-ID of an override, so a moved occurrence keeps its key."""
    if not repeating:
        return uid
    if not isinstance(original, datetime):
        return f"{uid}#{original:%Y%m%d}"
    if original.tzinfo is not None:
        original = original.astimezone(UTC)
        return f"{uid}#{original:%Y%m%dT%H%M%SZ}"
    return f"{uid}#{original:%Y%m%dT%H%M%S}"


def _times(start: date, end: date | None, all_day: bool, zone: ZoneInfo, zone_name: str
           ) -> tuple[datetime, datetime | None, str]:
    """Start, end (None if the event has none) and the IANA zone of an occurrence. An
    all-day occurrence runs from midnight of its first day to midnight after its last one,
    in the calendar's zone; a timed one keeps its own zone where that has an IANA name."""
    if all_day:
        first = _local(start, zone)
        last = _local(end, zone) if end is not None else first
        return first, (last if last > first else first + timedelta(days=1)), zone_name
    name = _zone_name(start, zone_name)
    here = ZoneInfo(name)
    begins = start.astimezone(here)
    ends = end.astimezone(here) if isinstance(end, datetime) else None
    return begins, (ends if ends is not None and ends > begins else None), name


def _zone_name(moment: datetime, fallback: str) -> str:
    """The IANA name of a time's zone: zoneinfo's key, a Windows name's IANA twin, or (for
    a VTIMEZONE of its own name, or UTC) the calendar's zone."""
    key = getattr(moment.tzinfo, "key", None)
    if key and key != "UTC":
        return key
    own = moment.tzinfo.tzname(moment) if moment.tzinfo else None
    return (_iana(own) if own and own not in ("UTC", "GMT") else None) or fallback


def _local(value: date, zone: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    return datetime.combine(value, time(0), zone)


def _drop_broken(event: icalendar.Event) -> list[str]:
    """What icalendar could not read in the event, in words; the unreadable values are
    taken out (icalendar keeps them as `vBroken`, which fail on use)."""
    for name in {name for name, _ in event.errors if name}:
        kept = [v for v in _as_list(event.get(name)) if not isinstance(v, icalendar.vBroken)]
        event.pop(name, None)
        if kept:
            event[name] = kept if len(kept) > 1 else kept[0]
    return [f"{name or 'a line'} cannot be read ({message}); ignored it" for name, message in event.errors]


def _first_of_repeated(event: icalendar.Event) -> list[str]:
    """A property that may occur once but occurs more often is read as its first value."""
    problems = []
    for name in _ONCE:
        values = event.get(name)
        if isinstance(values, list) and values:
            event[name] = values[0]
            problems.append(f"{name} appears {len(values)} times; read the first")
    return problems


def _describe(event: icalendar.Event) -> str:
    summary = " ".join(str(event.get("SUMMARY", "")).split())[:60]
    uid = event.get("UID")
    return f"event {summary!r}" + (f" (UID {uid})" if uid else "") if summary else f"event UID {uid or '?'}"


def _made_up_uid(event: icalendar.Event) -> str:
    """A UID for an event without one (RFC 5545 requires it; some generators forget it):
    from its title and original start, never its text, so an edit keeps the key."""
    start = event["DTSTART"].to_ical().decode()
    when = event.get("RECURRENCE-ID")
    raw = f"{event.get('SUMMARY', '')}|{start}|{when.to_ical().decode() if when else ''}"
    return "sha1:" + hashlib.sha1(raw.encode()).hexdigest()


def _ends_before_start(event: icalendar.Event) -> bool:
    start, end = event["DTSTART"].dt, getattr(event.get("DTEND"), "dt", None)
    if end is None or type(start) is not type(end) or (isinstance(start, datetime) and
                                                        (start.tzinfo is None) != (end.tzinfo is None)):
        return False
    return end < start


def _on_earth(geo: Any) -> bool:
    """GEO is missing, or latitude and longitude in range."""
    if geo is None:
        return True
    return -90 <= geo.latitude <= 90 and -180 <= geo.longitude <= 180


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _values(prop: Any) -> Iterable[date]:
    """The dates or times of one property (EXDATE and RDATE hold lists)."""
    if hasattr(prop, "dts"):
        return [d.dt for d in prop.dts if isinstance(d.dt, date)]
    value = getattr(prop, "dt", None)
    return [value] if isinstance(value, date) else []
