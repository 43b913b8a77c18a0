"""The calendar connector (`connector: ical`): an iCalendar feed (RFC 5545), such as a club's
Google, Nextcloud or Outlook calendar or a town's event export, as one event item per
occurrence.

    - {connector: ical, url: "https://tsv-musterstadt.example/termine.ics", horizon: 90d, past: 1d}

`url` takes https://, http://, webcal:// (read as https://, or http:// when the server speaks
no TLS) and file:. Occurrences are read over the window [now - past, now + horizon]
(`connectors/ical_occurrences.py`), each its own item:

- the key is the event's UID, and for a repeating event the UID plus the occurrence's
  original start (an override's RECURRENCE-ID): a moved occurrence is an edit of its item,
  never a new one beside a ghost;
- SUMMARY is the title, DESCRIPTION the text (HTML, as Google writes it, sanitized; or
  plain text with its links made clickable; Outlook's X-ALT-DESC HTML preferred), URL the
  link, CATEGORIES the tags, ATTACH and IMAGE images the media;
- the Event carries start and end in the event's own zone, all-day (dates as local dates,
  the end exclusive), LOCATION, GEO as coordinates, and STATUS:CANCELLED (of the event or of
  one occurrence) as `cancelled`: shown as called off, not removed.

`published` is when the occurrence came into the window: its start less the horizon. A
calendar says when things happen, not when they were announced (DTSTAMP is the time of the
export in most of them, and CREATED is one for a whole series), and the start itself
would put the furthest rehearsal on top of every "newest" listing. So an occurrence is
"new" when it became visible, never dated in the future, and stable from fetch to fetch
(changing the horizon updates every occurrence once).

Deletions. The payload is the whole window (`Parsed.complete`): an occurrence that vanished
from inside it was deleted (and EXDATE names some occurrences outright, `Parsed.gone`).
The store judges an item missing from the payload as deleted when its `published` is at
or after the earliest one in the payload; `published` follows the start, so occurrences
that merely slid into the past are kept. The expansion reaches back to the start of an
occurrence still running at the window's beginning (a festival on its third day), so that
nothing starting after it goes missing from the payload. What this cannot see: an
occurrence deleted before every remaining one in the window (the calendar's next event
deleted outright, not cancelled or excluded) stays until it has passed.

The window moves with time even when the calendar does not change. The retrieval time is
carried in the caching state's cursor (`parse` is pure: it takes `now` from there), and
once a day's expansion is older than `REEXPAND_AFTER` (or horizon or past changed) the
calendar is fetched without validators, so it is expanded again over the new window.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from pydantic import field_validator

from connectors.base import ConnectorOptions
from connectors.ical_occurrences import Expansion, Occurrence, expand, read_calendars
from connectors.social import summarize, text_html
from hub.config import Duration
from hub.errors import BlockedAddress, FetchError, TooLarge
from hub.models import Event, FetchState, Item, Kind, Media, Parsed, Retrieved, SourceRef
from hub.sanitize import absolute_url, clean_html, plain_text, strip_tracking

if TYPE_CHECKING:
    from hub.http import Fetcher

ACCEPT = "text/calendar, text/plain;q=0.8, application/octet-stream;q=0.5, */*;q=0.1"
REEXPAND_AFTER = timedelta(hours=12)  # a calendar that never changes is still expanded twice a day
PARSE_MARGIN = timedelta(days=2)  # single events this far outside the window are not parsed
MAX_HORIZON = timedelta(days=3 * 366)
MAX_PAST = timedelta(days=366)
_IMAGE_EXT = re.compile(r"\.(jpe?g|png|gif|webp|avif)(\?|$)", re.IGNORECASE)
_LOOKS_HTML = re.compile(r"<(?:p|br|div|span|a|b|i|u|em|strong|ul|ol|li|h[1-6]|table|img)\b[^>]*>", re.IGNORECASE)
_CURSOR = re.compile(r"^ical (\S+) horizon=(\d+) past=(\d+)$")


class ICalOptions(ConnectorOptions):
    url: str
    horizon: Duration = timedelta(days=90)  # how far ahead occurrences are read
    past: Duration = timedelta(days=1)  # how far back (an event of yesterday evening stays)

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not re.match(r"^(https?|webcals?|file):", url.strip(), re.IGNORECASE):
            raise ValueError("a calendar url starts with https://, http://, webcal:// or file:")
        return url.strip()

    @field_validator("horizon")
    @classmethod
    def _horizon(cls, horizon: timedelta) -> timedelta:
        if not timedelta(0) < horizon <= MAX_HORIZON:
            raise ValueError(f"horizon is a duration up to {MAX_HORIZON.days}d, like 90d")
        return horizon

    @field_validator("past")
    @classmethod
    def _past(cls, past: timedelta) -> timedelta:
        if not timedelta(0) <= past <= MAX_PAST:
            raise ValueError(f"past is a duration between 0d and {MAX_PAST.days}d, like 1d")
        return past


class ICalConnector:
    kind: ClassVar[str] = "ical"
    Options: ClassVar[type[ConnectorOptions]] = ICalOptions

    async def retrieve(self, opts: ICalOptions, state: FetchState, fetcher: Fetcher) -> Retrieved:
        now = datetime.now(UTC)
        asked = state if window_is_fresh(state, opts, now) else FetchState(cursor=state.cursor)
        addresses = addresses_of(opts.url)
        for i, url in enumerate(addresses):
            try:
                resp = await fetcher.get(url, state=asked, accept=ACCEPT)
                break
            except (BlockedAddress, TooLarge):
                raise
            except FetchError as exc:
                if exc.status is not None or i == len(addresses) - 1:
                    raise  # the server answered (or there is no other way to ask)
        return Retrieved(payload=resp.body, state=resp.state._replace(cursor=cursor(now, opts)), url=resp.url,
                         content_type=resp.content_type, fresh_until=resp.fresh_until)

    def parse(self, opts: ICalOptions, source: SourceRef, got: Retrieved) -> Parsed:
        now = retrieved_at(got.state) or datetime.now(UTC)  # a payload made by hand has no cursor
        start, end = now - opts.past, now + opts.horizon
        # Single events days outside the window are not even parsed; should the window
        # reach back that far (an occurrence running since then), all is read again.
        days = (start.date() - PARSE_MARGIN, end.date() + PARSE_MARGIN)
        found = _expand_all(got.payload, source.timezone, start, end, days)
        if min((f.reached for _, f in found[0] if f.reached), default=start).date() < start.date():
            found = _expand_all(got.payload, source.timezone, start, end, None)
        expansions, warnings, whole = found
        if opts.url.lower().startswith("webcal") and got.url.startswith("http:"):
            warnings.append("the server speaks no TLS: the calendar was read over plain http://")
        items: dict[str, Item] = {}
        excluded: list[str] = []
        complete = whole
        for calendar, expansion in expansions:
            warnings += expansion.warnings
            complete = complete and expansion.complete
            excluded += expansion.excluded
            mapper = _Mapper(source, got.url, opts.horizon,
                             cancelled=str(calendar.get("METHOD", "")).upper() == "CANCEL")
            for occurrence in expansion.occurrences:
                if occurrence.key not in items:
                    items[occurrence.key] = mapper.item(occurrence)
        return Parsed(items=tuple(items.values()), warnings=tuple(warnings), complete=complete,
                      gone=tuple(k for k in dict.fromkeys(excluded) if k not in items))


def _expand_all(payload: bytes, zone: str, start: datetime, end: datetime, days: tuple[date, date] | None
                ) -> tuple[list[tuple[Any, Expansion]], list[str], bool]:
    calendars, warnings, whole = read_calendars(payload, days)
    return [(calendar, expand(calendar, zone, start, end)) for calendar in calendars], warnings, whole


# --- the window ------------------------------------------------------------------------------

def cursor(at: datetime, opts: ICalOptions) -> str:
    """The caching state's cursor: when the calendar was retrieved, and the window's size."""
    return f"ical {at.astimezone(UTC).isoformat()} horizon={_seconds(opts.horizon)} past={_seconds(opts.past)}"


def retrieved_at(state: FetchState) -> datetime | None:
    match = _CURSOR.match(state.cursor or "")
    if not match:
        return None
    try:
        return datetime.fromisoformat(match.group(1))
    except ValueError:
        return None


def window_is_fresh(state: FetchState, opts: ICalOptions, now: datetime) -> bool:
    """Whether the last expansion still serves (so a 304 may keep it): recent enough, and of
    the same horizon and past."""
    at = retrieved_at(state)
    if at is None or not now - REEXPAND_AFTER < at <= now:
        return False
    return state.cursor == cursor(at, opts)


def addresses_of(url: str) -> list[str]:
    """Where to ask: webcal:// is https://, or http:// when no TLS server answers (the
    scheme began as Apple's name for plain HTTP); webcals:// is https:// only."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() == "webcal":
        return [f"https://{rest}", f"http://{rest}"]
    if scheme.lower() == "webcals":
        return [f"https://{rest}"]
    return [url]


def _seconds(span: timedelta) -> int:
    return int(span.total_seconds())


# --- occurrences to items --------------------------------------------------------------------

class _Details(NamedTuple):
    """What all occurrences of one event share."""

    title: str
    summary: str
    content_html: str
    content_text: str
    url: str | None
    media: tuple[Media, ...]
    tags: tuple[str, ...]
    updated: datetime | None
    location: str | None
    cancelled: bool
    latitude: float | None
    longitude: float | None


class _Mapper:
    """Occurrences to event items; an event's shared details are worked out once (a weekly
    event has a dozen occurrences in the window, and sanitizing is the costly part)."""

    def __init__(self, source: SourceRef, origin: str, horizon: timedelta, *, cancelled: bool = False) -> None:
        self.source, self.origin, self.horizon = source, origin, horizon
        self.cancelled = cancelled  # the whole calendar says so (METHOD:CANCEL)
        self._details: dict[int, _Details] = {}

    def item(self, occurrence: Occurrence) -> Item:
        d = self._details.get(id(occurrence.component))
        if d is None:
            d = self._details[id(occurrence.component)] = details(occurrence.component, self.origin, self.cancelled)
        return Item(
            source_id=self.source.id, external_id=occurrence.key, merchant_id=self.source.merchant_id,
            title=d.title, summary=d.summary, content_html=d.content_html, content_text=d.content_text,
            url=d.url, kind=Kind.EVENT, media=d.media, tags=d.tags, language=self.source.language,
            published=occurrence.start.astimezone(UTC) - self.horizon, updated=d.updated,
            event=Event(start=occurrence.start, end=occurrence.end, timezone=occurrence.timezone,
                        all_day=occurrence.all_day, location=d.location, cancelled=d.cancelled,
                        latitude=d.latitude, longitude=d.longitude),
            origin_url=strip_tracking(self.origin))


def details(event: Any, origin: str, cancelled: bool = False) -> _Details:
    """The properties of one VEVENT (an override has its own) as an item shows them."""
    body = _body(event, origin)
    text = plain_text(body)
    latitude, longitude = _geo(event.get("GEO"))
    return _Details(
        title=_line(event.get("SUMMARY")), summary=summarize(text), content_html=body, content_text=text,
        url=absolute_url(_line(event.get("URL")) or None, origin), media=tuple(_media(event, origin)),
        tags=tuple(_categories(event)), updated=_utc(event.get("LAST-MODIFIED")),
        location=_line(event.get("LOCATION")) or None,
        cancelled=cancelled or str(event.get("STATUS", "")).upper() == "CANCELLED",
        latitude=latitude, longitude=longitude)


def _line(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _body(event: Any, origin: str) -> str:
    """The description as the hub's HTML: Outlook's HTML twin if there is one, HTML as
    Google writes it, else plain text with paragraphs and clickable links."""
    for alt in _as_list(event.get("X-ALT-DESC")):
        if str(getattr(alt, "params", {}).get("FMTTYPE", "")).lower() == "text/html" and str(alt).strip():
            return clean_html(str(alt), origin).strip()
    description = str(event.get("DESCRIPTION") or "").strip()
    if not _LOOKS_HTML.search(description):
        return text_html(description)
    if not re.search(r"<(?:br|p)\b", description, re.IGNORECASE):
        description = description.replace("\n", "<br>")  # Google mixes tags and bare line breaks
    return clean_html(description, origin).strip()


def _geo(value: Any) -> tuple[float | None, float | None]:
    """GEO (checked to lie on earth by the reader) as latitude and longitude."""
    if value is None:
        return None, None
    return float(value.latitude), float(value.longitude)


def _media(event: Any, origin: str) -> list[Media]:
    """ATTACH and IMAGE (RFC 7986) links to images; inline (binary) attachments and other
    files are left out."""
    found: dict[str, Media] = {}
    for name in ("IMAGE", "ATTACH"):
        for prop in _as_list(event.get(name)):
            params = getattr(prop, "params", {})
            if str(params.get("VALUE", "")).upper() == "BINARY" or params.get("ENCODING"):
                continue
            mime = str(params.get("FMTTYPE", "")).lower() or None
            url = absolute_url(str(prop), origin)
            if not url or url in found:
                continue
            if name == "IMAGE" or (mime or "").startswith("image/") or (mime is None and _IMAGE_EXT.search(url)):
                found[url] = Media(url=url, type="image", mime_type=mime)
    return list(found.values())


def _categories(event: Any) -> list[str]:
    tags: dict[str, str] = {}
    for prop in _as_list(event.get("CATEGORIES")):
        for tag in getattr(prop, "cats", None) or [prop]:
            tag = " ".join(str(tag).split())
            if tag:
                tags.setdefault(tag.casefold(), tag)
    return list(tags.values())


def _utc(value: Any) -> datetime | None:
    moment = getattr(value, "dt", None)
    if not isinstance(moment, datetime):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]
