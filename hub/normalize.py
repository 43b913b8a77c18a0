"""Normalization of items before identity and display: language, dates, events in prose.

Everything here is pure and offline. Connectors already sanitize HTML once with nh3 and
derive the plain text (`hub.sanitize`); this module adds what needs the text itself:

- `detect_language`: de or en by counting stop words (enough for a German town's feeds;
  anything unclear keeps the language the source or config gave).
- `find_dates`: German and English date mentions ("Samstag, 5. Dezember 2026, 16 Uhr",
  "5.12.2026 19:30", "Dec 5, 2026 7pm"), with times and time ranges.
- `detect_event`: turns a post that clearly announces something on a date into an Event.
- `says_cancelled`: an event whose title says it is called off ("Abgesagt: …", "… fällt
  aus") is cancelled (`Event.cancelled`); `status_cancelled` reads schema.org's eventStatus.
- `normalize`: all of it applied to one Item.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import filterfalse
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from hub.models import Event, Item, Kind, Parsed
from hub.sanitize import plain_text, strip_tracking

# --- language ------------------------------------------------------------------------------

_STOP = {
    "de": frozenset("""der die das und ist nicht mit für auf den dem des ein eine einen einem zu von im
        sich wir es am bei auch noch nach uns unser unsere ihr sie ab bis wird werden sind wie oder aber
        so schon heute wieder gibt mehr alle über vom zum zur dass hier kann können euch eure""".split()),
    "en": frozenset("""the and is are of to in for with on at this that we our you your from by will be
        it an as was were has have not or but all more about can there their they what which when new
        just get its""".split()),
}
_ALL_STOP = frozenset().union(*_STOP.values())
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
LANGUAGE_SAMPLE = 400  # characters; the start of a text says enough


def detect_language(text: str) -> str | None:
    """'de' or 'en' when the stop words clearly say so, else None."""
    stop_words = list(filter(_ALL_STOP.__contains__, _words(text[:LANGUAGE_SAMPLE].lower())))
    if len(stop_words) < 3:  # too few for either language (see below)
        return None
    hits = {lang: sum(map(stop.__contains__, stop_words)) for lang, stop in _STOP.items()}
    (best, n), (_, runner_up) = sorted(hits.items(), key=lambda kv: kv[1], reverse=True)
    # Three stop words are a sentence; twice the other language's count is a clear lead.
    return best if n >= 3 and n >= 2 * runner_up else None


def _words(text: str) -> list[str]:
    """The words (runs of letters) of `text` as far as stop words are concerned: what
    `_WORD.findall(text)` finds, plus tokens that are no stop word. Tokens of letters only
    are words as they are; only the rest (punctuation, digits) go through the regex,
    which costs much more per character than `split`."""
    tokens = text.split()
    return tokens + _WORD.findall(" ".join(filterfalse(str.isalpha, tokens)))


# --- dates ---------------------------------------------------------------------------------

MONTHS = {  # German and English month names and abbreviations, lower-cased
    "jan": 1, "januar": 1, "january": 1, "jänner": 1, "feb": 2, "februar": 2, "february": 2,
    "mär": 3, "märz": 3, "maerz": 3, "mrz": 3, "mar": 3, "march": 3, "apr": 4, "april": 4, "mai": 5, "may": 5,
    "jun": 6, "juni": 6, "june": 6, "jul": 7, "juli": 7, "july": 7, "aug": 8, "august": 8,
    "sep": 9, "sept": 9, "september": 9, "okt": 10, "oktober": 10, "oct": 10, "october": 10,
    "nov": 11, "november": 11, "dez": 12, "dezember": 12, "dec": 12, "december": 12,
}
# One pass per kind of thing: the regex engine pays per position scanned, so all date
# shapes that start with a digit share one pattern (led by `\b(?=[0-9])`, which lets the
# engine skip ahead to digits: ~4x faster), and month names are matched as any word
# and looked up in MONTHS (a 40-way alternation tried at every position is several times
# slower). English month-first dates ("Dec 5") get their own pass, for English texts only.
_DATE = re.compile(r"""\b(?=[0-9])(?<![\d.])(?:
      (?P<iy>\d{4})-(?P<im>\d{2})-(?P<id>\d{2})\b                     # 2026-12-05
    | (?P<nd>\d{1,2})\.(?P<nm>\d{1,2})\.(?:(?P<ny>\d{4}|\d{2})(?!\d)|(?!\d))  # 5.12.2026, 05.12.
    | (?P<wd>\d{1,2})(?:\.|st|nd|rd|th)?\s*(?P<wm>[^\W\d_]{3,9})\.?     # 5. Dezember, 5th Dec
      (?:\s*,?\s*(?P<wy>\d{4}))?
    )""", re.X)
_ENGLISH_DATE = re.compile(r"\b(?P<wm>[A-Za-z]{3,9})\.?\s+(?P<wd>\d{1,2})(?:st|nd|rd|th)?\b(?:,?\s*(?P<wy>\d{4}))?")
_SUFFIX = r"(?:Uhr|h\b|am\b|pm\b|a\.m\.|p\.m\.)"
_TIME = re.compile(rf"""\b(?=[0-9])(?<![\d.:])(?:
      (?P<h>\d{{1,2}})(?:[:.](?P<m>\d{{2}}))?\s*(?:
          (?:Uhr\s*)?(?:bis|-|–|to|until)\s*(?P<h2>\d{{1,2}})(?:[:.](?P<m2>\d{{2}}))?\s*(?P<s2>{_SUFFIX})  # 10 bis 12 Uhr
        | (?P<s>{_SUFFIX}))                                                  # 16 Uhr, 7pm
    | (?P<hc>\d{{1,2}}):(?P<mc>\d{{2}})\b                                   # 19:30
    )""", re.X | re.I)
PAIR_DISTANCE = 40  # characters between a date and its time ("5. Dezember 2026, ab 16:00 Uhr")
# A date that starts or ends a period: "ab (Samstag,) 14. November", "vom 2. bis 7. November".
_PERIOD_BEFORE = re.compile(r"\b(?:ab|bis|seit|vom|von|from|until|till|since)\s+(?:dem\s+|den\s+|the\s+)?"
                            r"(?:[^\W\d_]+\.?,?\s+)?$", re.I)
_PERIOD_AFTER = re.compile(r"\s*(?:bis|–|-|to|until)\s*\d", re.I)
# The first day of a range that names its month once: the "14." of "14.–16. März", "vom 2. bis 7. November"
# (what precedes the range's last day; also read by `hub.identity.dates`)
RANGE_START = re.compile(r"(?<![\d.,:])(\d{1,2})\.?\s*(?:-|–|—|bis(?:\s+zum)?)\s*$", re.I)


@dataclass(frozen=True)
class DateMention:
    """A date found in text; `start`/`end` carry the time when one was given."""

    day: date
    start: time | None
    end: time | None
    position: int
    bounded: bool = False  # "ab 4. November", "vom 2. bis 7. November": a period, not a day


def find_dates(text: str, reference: date, english: bool = False) -> list[DateMention]:
    """Every date mentioned in `text`, in order. A date without a year is the next one on or
    after two months before `reference` (a post in December about "6. Januar" means next year).
    `english` also looks for month-first dates ("Dec 5, 2026")."""
    dates = _dates(text, reference, english)
    if not dates:
        return []
    times = _times(text)
    mentions = []
    for pos, end_pos, day in dates:
        start, end = _time_near(times, pos, end_pos)
        bounded = bool(_PERIOD_BEFORE.search(text, max(0, pos - 24), pos) or _PERIOD_AFTER.match(text, end_pos))
        opener = RANGE_START.search(text, max(0, pos - 16), pos)
        if opener is not None and 1 <= int(opener.group(1)) < day.day:
            mentions.append(DateMention(day.replace(day=int(opener.group(1))), start, end, opener.start(), True))
            bounded = True
        mentions.append(DateMention(day, start, end, pos, bounded))
    return mentions


def _dates(text: str, reference: date, english: bool) -> list[tuple[int, int, date]]:
    found = [(m.start(), m.end(), _to_date(m, reference)) for m in _date_matches(text)]
    if english:
        found += [(m.start(), m.end(), _to_date(m, reference)) for m in _ENGLISH_DATE.finditer(text)]
        found.sort()
    return [(s, e, d) for s, e, d in found if d is not None]


# Where _DATE can match: an ASCII digit after neither a word character nor a dot. The regex
# engine skips to candidates of a pattern that starts with a character set several times
# faster than it tries _DATE at every position.
_DATE_START = re.compile(r"[0-9](?<![\w.][0-9])")


def _date_matches(text: str) -> Iterator[re.Match]:
    """What `_DATE.finditer(text)` finds, trying _DATE only where it can match."""
    if not any(map(text.__contains__, "0123456789")):  # most texts: no need to scan at all
        return
    end = 0
    for candidate in _DATE_START.finditer(text):
        if candidate.start() >= end and (match := _DATE.match(text, candidate.start())):
            end = match.end()
            yield match


def _to_date(m: re.Match, reference: date) -> date | None:
    g = m.groupdict()
    if g.get("iy"):
        return _valid_date(int(g["iy"]), int(g["im"]), int(g["id"]), reference)
    if g.get("nd"):
        return _valid_date(_year(g["ny"]), int(g["nm"]), int(g["nd"]), reference)
    month = MONTHS.get(g["wm"].lower(), 0)
    return _valid_date(_year(g["wy"]), month, int(g["wd"]), reference) if month else None


def _year(raw: str | None) -> int | None:
    if not raw:
        return None
    return int(raw) + 2000 if len(raw) == 2 else int(raw)


def _valid_date(year: int | None, month: int, day: int, reference: date) -> date | None:
    try:
        if year is not None:
            return date(year, month, day)
        guess = date(reference.year, month, day)
    except ValueError:
        return None
    return guess if guess >= reference - timedelta(days=60) else _next_year(guess)


def _next_year(day: date) -> date | None:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return None


def _times(text: str) -> list[tuple[int, int, time, time | None]]:
    """(start position, end position, start, end) of every time of day in `text`."""
    found = []
    for m in _TIME.finditer(text):
        if m.group("hc"):
            start, end = _clock(m.group("hc"), m.group("mc"), None), None
        elif m.group("h2"):
            suffix = m.group("s2")
            start, end = _clock(m.group("h"), m.group("m"), suffix), _clock(m.group("h2"), m.group("m2"), suffix)
        else:
            start, end = _clock(m.group("h"), m.group("m"), m.group("s")), None
        if start is not None:
            found.append((m.start(), m.end(), start, end))
    return found


def _clock(hour: str, minute: str | None, suffix: str | None) -> time | None:
    h, mi = int(hour), int(minute or 0)
    marker = (suffix or "").lower().replace(".", "")
    if marker == "pm" and h < 12:
        h += 12
    elif marker == "am" and h == 12:
        h = 0
    return time(h, mi) if h < 24 and mi < 60 else None


def _time_near(times: list, pos: int, end_pos: int) -> tuple[time | None, time | None]:
    """The time right after the date ("5. Dez., 19 Uhr"), else right before ("19 Uhr am 5. Dez.")."""
    after = [t for t in times if 0 <= t[0] - end_pos <= PAIR_DISTANCE]
    before = [t for t in times if 0 <= pos - t[1] <= PAIR_DISTANCE // 2]
    chosen = after[0] if after else (before[-1] if before else None)
    return (chosen[2], chosen[3]) if chosen else (None, None)


# --- events in prose -----------------------------------------------------------------------

# Words that say "something happens then", for announcements that give a date but no time;
# compounds count by their last part ("Weihnachtsmarkt" yes, "Marktplatz" no).
EVENT_WORDS = re.compile(
    r"(konzert|lesung|markt|fest|feier|turnier|spiel|vortrag|führung|treffen|workshop|premiere|"
    r"vorstellung|eröffnung|ausstellung|aufführung|gottesdienst|sitzung|umzug|basar|kino|"
    r"concert|reading|festival|market|meeting|opening|exhibition|tour)(?:e|en|s|es)?\b", re.I)
RECURRING = re.compile(r"\b(?:jeden|jede|jeder|wöchentlich|täglich|every|weekly|daily)\b", re.I)
MAX_DAYS = 2  # more distinct days in one announcement make it a programme or a list
_PLACE = re.compile(r"\b(?:Ort|Treffpunkt|Wo|Location|Venue|Place)\s*:\s*([^\n.;!?]{3,80})", re.I)
BODY_CHARS = 600  # an announcement names its date early
MAX_AHEAD = timedelta(days=400)


def detect_event(item: Item, zone: str) -> Event | None:
    """An Event when a post clearly announces one: a single day named in the title, the
    summary or the start of the text, still to come when the post was published, with a
    time of day or an event word ("Konzert", "Flohmarkt"). Periods ("ab 4. November", "vom 2.
    bis 7. November"), recurring dates ("jeden Mittwoch") and lists of dates are not events.
    None when unsure: a false event expires and leaves the listings early."""
    tz = ZoneInfo(zone)
    published = (item.published or datetime.now(timezone.utc)).astimezone(tz)
    zones = _zones(item)
    head = f"{item.title} {item.summary}"
    mentions = [m for text in zones for m in find_dates(text, published.date(), item.language == "en")]
    upcoming = [m for m in mentions if published.date() <= m.day <= published.date() + MAX_AHEAD]
    if not upcoming or RECURRING.search(head) or len({m.day for m in upcoming}) > MAX_DAYS:
        return None
    primary = upcoming[0]
    if primary.bounded:
        return None
    start, end = primary.start, primary.end
    if start is None:  # the title says the day, the summary the time
        start, end = next(((m.start, m.end) for m in upcoming if m.day == primary.day and m.start), (None, None))
    if start is None and not (EVENT_WORDS.search(head) and primary.day > published.date()):
        return None
    event = _event(primary.day, start, end, tz, zone, _place(zones))
    return event if event.start > published else None  # a report of today's match is no announcement


def _zones(item: Item) -> tuple[str, ...]:
    """Title, summary and the start of the text; a summary that merely repeats the start of
    the text (feeds without a description) is read once."""
    body = item.content_text[:BODY_CHARS]
    summary = item.summary.removesuffix(" …")
    if summary and body.replace("\n", " ").startswith(summary[:80]):
        return (item.title, body)
    return (item.title, item.summary, body)


def _event(day: date, start: time | None, end: time | None, tz: ZoneInfo, zone: str,
           place: str | None) -> Event:
    begins = datetime.combine(day, start or time(0), tz)
    ends = datetime.combine(day, end, tz) if end else None
    if ends is not None and ends <= begins:
        ends += timedelta(days=1)  # 20 bis 2 Uhr
    return Event(start=begins, end=ends, timezone=zone, all_day=start is None, location=place, detected=True)


def _place(zones: tuple[str, ...]) -> str | None:
    for text in zones:
        m = _PLACE.search(text)
        if m:
            return m.group(1).strip()
    return None


# --- cancellations -------------------------------------------------------------------------

# Said of an event, in its title. Conservative: a wrong "cancelled" would keep residents at
# home, so only plain statements count, not questions ("Fällt das Konzert aus?"), negations
# ("nicht abgesagt"), plurals and adjectives ("abgesagte Termine werden nachgeholt"), a fee
# that is dropped ("Eintritt entfällt") or idioms ("fällt aus allen Wolken": "fällt … aus"
# must end a clause). "Verschoben" is no cancellation: the event moves.
_CANCELLED = re.compile(
    r"\b(?P<word>abgesagt|entf(?:ä|ae)llt|entfallen"
    r"|f(?:ä|ae)llt(?:\s+(?!nicht\b)[\w-]+){0,3}?\s+aus(?=\s*(?:$|[.,;:!–—(]))"  # the end of a clause
    r"|findet(?:\s+(?:heute|morgen|leider|diesmal|dieses\s+jahr))*\s+nicht\s+statt"
    r"|cancell?ed|called\s+off)\b(?!\s*\?|-)", re.I)
_NEGATED = re.compile(r"\b(?:nicht|kein|keine|not|no)\s*$", re.I)
_DROPPED_FEES = re.compile(r"\b(?:eintritt|gebühr(?:en)?|kosten|anmeldung|pfand|zuschlag|versand\w*|\w*pflicht)\s*$",
                           re.I)
SCHEMA_CANCELLED = "eventcancelled"


def says_cancelled(title: str) -> bool:
    """The title says the event is called off: "Abgesagt: Lesung mit Petra Ahlers",
    "Kinderturnen fällt heute aus", "Wochenmarkt entfällt", "Concert cancelled"."""
    for m in _CANCELLED.finditer(title):
        before = title[:m.start()]
        if _NEGATED.search(before):
            continue
        if m.group("word").lower().startswith("entf") and _DROPPED_FEES.search(before):
            continue
        return True
    return False


def status_cancelled(event_status: object) -> bool:
    """schema.org `eventStatus` (JSON-LD, microdata, as text or `{"@id": ...}`) says
    EventCancelled: for connectors that read structured event data."""
    if isinstance(event_status, dict):
        event_status = event_status.get("@id") or event_status.get("name")
    if not isinstance(event_status, str):
        return False
    return event_status.strip().rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower() == SCHEMA_CANCELLED


# --- one item ------------------------------------------------------------------------------

def normalize(item: Item, zone: str = "Europe/Berlin") -> Item:
    """`item` with plain text derived, its link free of tracking parameters, its language
    detected (a clear detection beats the configured default), for a post that announces
    an event, kind=event with that Event (`Event.detected` set), and an event whose title
    says it is called off cancelled."""
    text = item.content_text or plain_text(item.content_html)
    language = detect_language(f"{item.title}\n{text[:LANGUAGE_SAMPLE]}") or _short_language(item.language)
    url = strip_tracking(item.url) if item.url else None
    if (text, language, url) != (item.content_text, item.language, item.url):  # evolve costs ~15 µs
        item = item.evolve(content_text=text, language=language, url=url)
    if item.kind == Kind.POST and item.event is None:
        event = detect_event(item, zone)
        if event is not None:
            item = item.evolve(kind=Kind.EVENT, event=event)
    if item.event is not None and not item.event.cancelled and says_cancelled(item.title):
        item = item.evolve(event=replace(item.event, cancelled=True))
    return item


def normalize_parsed(parsed: Parsed, zone: str) -> Parsed:
    """Every item of a connector's parse result, normalized (runs in the parse workers)."""
    return replace(parsed, items=tuple(normalize(item, zone) for item in parsed.items))


def _short_language(tag: str | None) -> str | None:
    """'de-DE' -> 'de'."""
    return tag.split("-")[0].split("_")[0].lower() if tag else None
