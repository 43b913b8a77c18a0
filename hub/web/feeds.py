"""Feeds out (issue 14): `/feed.atom`, `/feed.rss`, `/feed.json` and `/events.ics`, so
schools, clubs and the town's own website can take the slices they want.

Each takes the pages' filters (hub.web.filters) and shows what the page with the same
filters shows (published, not removed, not expired, within quotas), newest first; the
calendar shows events by their start, from 30 days back (`?von=`, `?bis=` choose the span),
so subscribers see an event that was called off. A removed record leaves every feed, the
calendar included: a subscribed calendar deletes an event that is no longer in the feed,
which is right for a post its merchant deleted (perhaps a duplicate or a mistake), where
"cancelled" would claim more than anyone said.

Links are absolute (`platform.base_url`); images go through the hub's media route, never
to a third party. Every answer carries a weak ETag (the filters, the config and what the
feed shows: each record's id and last change) and, from the second on, a Last-Modified;
an unchanged feed answers 304.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from html import escape, unescape
from typing import Any, Callable
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response

from hub.config import Settings
from hub.media import MediaStore
from hub.normalize import says_cancelled
from hub.records import Record, tag_key
from hub.store import Store
from hub.web import calendar as ical
from hub.web import feedformats as formats
from hub.web.filters import FilterError, Filters
from hub.web.formatting import datum

FORMAT_VERSION = "1"  # part of every ETag: raise it when the output changes, and caches let go
FEED_LIMIT, FEED_MAX = 50, 200
CALENDAR_LIMIT, CALENDAR_MAX = 500, 1000
CALENDAR_PAST = timedelta(days=30)
CACHE_CONTROL = "public, max-age=300"
_IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]+)(")')


@dataclass(frozen=True)
class FeedLink:
    """A feed advertised by a page (`<link rel="alternate">`)."""

    type: str
    title: str
    href: str


def feed_links(filters: Filters) -> list[FeedLink]:
    """The feeds of a page with these filters, as relative URLs."""
    query = f"?{filters.query()}" if filters else ""
    return [FeedLink(formats.ATOM_TYPE, "Atom-Feed", f"/feed.atom{query}"),
            FeedLink(formats.RSS_TYPE, "RSS-Feed", f"/feed.rss{query}"),
            FeedLink(formats.JSON_FEED_TYPE, "JSON Feed", f"/feed.json{query}"),
            FeedLink("text/calendar", "Termine als Kalender (iCal)", f"/events.ics{query}")]


def page_filters(request: Request) -> Filters:
    """The filters of a resident page's request (a FastAPI dependency): 400 for an unknown kind."""
    try:
        return Filters.parse(request.query_params)
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None


def feeds_router(settings: Settings, store: Store, media: MediaStore) -> APIRouter:
    router = APIRouter()
    site = _Site(settings, media)
    versions = _Versions()

    def serve(request: Request, kind: str) -> Response:
        now = datetime.now(timezone.utc)
        try:
            view = _View.of(request, kind, settings, now)
        except FilterError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        scope = {**view.scope(site), "now": now}  # marks and records judged at one moment
        marks = store.records.marks(limit=view.limit, order=view.order, **scope)  # before loading: safe
        etag = _etag(view, site.digest, marks)
        stamp = versions.stamp(view.key, etag, now)
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Access-Control-Allow-Origin": "*"}
        if stamp <= now:  # a version first served in this very second gets no date yet
            headers["Last-Modified"] = format_datetime(stamp, usegmt=True)
        if _not_modified(request, etag, stamp if stamp <= now else None):
            return Response(status_code=304, headers=headers)
        records = store.records.list(limit=view.limit, order=view.order, **scope)
        since = min(stamp - timedelta(seconds=1), now)  # when this process first saw this version
        body, media_type = RENDER[kind](site, view, records, max((c for _, c in marks), default=since),
                                        store.records.edits)
        return Response(body, media_type=media_type, headers=headers)

    @router.get("/feed.atom", include_in_schema=False)
    def feed_atom(request: Request) -> Response:
        return serve(request, "atom")

    @router.get("/feed.rss", include_in_schema=False)
    def feed_rss(request: Request) -> Response:
        return serve(request, "rss")

    @router.get("/feed.json", include_in_schema=False)
    def feed_json(request: Request) -> Response:
        return serve(request, "json")

    @router.get("/events.ics", include_in_schema=False)
    def events_ics(request: Request) -> Response:
        return serve(request, "ics")

    return router


# --- what a request asks for ----------------------------------------------------------------

@dataclass(frozen=True)
class _View:
    kind: str  # atom | rss | json | ics
    filters: Filters
    limit: int
    explicit_limit: bool
    zone: str
    first_day: date | None = None  # ics: events starting from this local day ...
    last_day: date | None = None  # ... up to this one (inclusive)
    explicit_days: tuple[str, ...] = ()

    @classmethod
    def of(cls, request: Request, kind: str, settings: Settings, now: datetime) -> _View:
        filters = Filters.parse(request.query_params)
        default, most = (CALENDAR_LIMIT, CALENDAR_MAX) if kind == "ics" else (FEED_LIMIT, FEED_MAX)
        raw = request.query_params.get("limit")
        limit = _number(raw, default, most)
        zone = settings.platform.timezone
        if kind != "ics":
            return cls(kind, filters, limit, raw is not None, zone)
        von, bis = _day(request, "von"), _day(request, "bis")
        first = von or (now.astimezone(ZoneInfo(zone)).date() - CALENDAR_PAST)
        days = tuple(f"{k}={v.isoformat()}" for k, v in (("von", von), ("bis", bis)) if v)
        return cls(kind, filters, limit, raw is not None, zone, first, bis, days)

    @property
    def order(self) -> str:
        return "event_start" if self.kind == "ics" else "newest"

    @property
    def key(self) -> str:
        """This feed as one string: its versions are told apart by ETag (`_Versions`)."""
        return f"{self.kind}?{self.filters.query(limit=self.limit)}&{self.first_day}&{self.last_day}"

    def query(self) -> str:
        """The canonical query of this feed, for its self link."""
        parts = [self.filters.query()] + list(self.explicit_days)
        if self.explicit_limit:
            parts.append(f"limit={self.limit}")
        return "&".join(p for p in parts if p)

    def scope(self, site: _Site) -> dict[str, Any]:
        """Keyword arguments for the store's `list`/`marks`."""
        scope = {"channel": site.channel, **self.filters.store_filters(site.settings.merchants)}
        if self.kind != "ics":
            return scope
        tz = ZoneInfo(self.zone)
        wanted = self.filters.kind
        scope.update(kinds=("event",) if not wanted or "event" in wanted else (), expired=True,
                     starts_from=datetime.combine(self.first_day, time(0), tz))
        if self.last_day:
            scope["starts_until"] = datetime.combine(self.last_day + timedelta(days=1), time(0), tz)
        return scope


def _number(raw: str | None, default: int, most: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FilterError(f"limit muss eine Zahl sein (1 bis {most}), nicht „{raw}“.") from None
    return min(max(value, 1), most)


def _day(request: Request, name: str) -> date | None:
    raw = (request.query_params.get(name) or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise FilterError(f"{name} ist ein Datum wie 2026-12-24, nicht „{raw}“.") from None


# --- the town and its links -------------------------------------------------------------------

class _Site:
    def __init__(self, settings: Settings, media: MediaStore) -> None:
        self.settings = settings
        self.media = media
        self.base = settings.platform.base_url.rstrip("/")
        self.host = urlsplit(self.base).hostname or "localhost"
        self.names = {m.id: m.name for m in settings.merchants}
        platform = next((c for c in settings.channel_list() if c.renderer == "platform"), None)
        self.channel = platform.id if platform else None  # whose quotas the pages honour
        shown = {"platform": settings.platform.model_dump(mode="json"),
                 "merchants": [[m.id, m.name, m.category, m.district, m.label] for m in settings.merchants]}
        self.digest = hashlib.blake2b(json.dumps(shown, sort_keys=True).encode(), digest_size=8).hexdigest()

    def name(self, merchant_id: str) -> str:
        return self.names.get(merchant_id, merchant_id)

    def image(self, url: str) -> str:
        """An image on the hub's signed media route (stable: the same URL whether or not
        the image is stored yet), never the merchant's or a CDN's address."""
        return self.base + self.media.path_for(url)

    def local_images(self, html: str) -> str:
        return _IMG_SRC.sub(lambda m: m.group(1) + escape(self.image(unescape(m.group(2)))) + m.group(3), html)


# --- rendering --------------------------------------------------------------------------------

Edits = Callable[[list[int]], dict[int, int]]


def _feed_meta(site: _Site, view: _View, updated: datetime, path: str) -> formats.FeedMeta:
    platform = site.settings.platform
    narrowed = view.filters.describe(site.settings.merchants)
    query = view.query()
    return formats.FeedMeta(
        title=f"{platform.name} – {narrowed}" if narrowed else platform.name,
        description=f"Neuigkeiten, Angebote und Termine aus {platform.name}" + (f": {narrowed}" if narrowed else ""),
        language=platform.language, self_url=f"{site.base}{path}" + (f"?{query}" if query else ""),
        page_url=f"{site.base}/" + (f"?{view.filters.query()}" if view.filters else ""),
        updated=updated,
        author=platform.name, author_url=f"{site.base}/")


def _feed_entry(site: _Site, record: Record) -> formats.FeedEntry:
    item = record.item
    url = f"{site.base}/items/{record.id}"
    images = [m.url for m in item.media if m.type == "image"]
    published = item.published or record.created_at or record.sort_at or record.changed_at
    assert published is not None
    updated = max(filter(None, (record.changed_at, published)))
    extensions = {}
    if item.event:
        e = item.event
        extensions["_event"] = {"start": e.start.isoformat(), "end": e.end.isoformat() if e.end else None,
                                "all_day": e.all_day, "location": e.location, "cancelled": e.cancelled}
    return formats.FeedEntry(
        id=url, guid=_uid(site, record), url=url, title=_title(record), content_html=_content(site, record),
        summary=item.summary, published=published, updated=updated, author=site.name(item.merchant_id),
        author_url=f"{site.base}/m/{item.merchant_id}", original_url=item.url, tags=_tags(item.tags),
        image=site.image(images[0]) if images else None, extensions=extensions)


def _title(record: Record) -> str:
    title = record.item.title or "Ohne Titel"
    return f"{record.label}: {title}" if record.label else title  # "Anzeige" marks ads everywhere


def _content(site: _Site, record: Record) -> str:
    """The record's HTML (sanitized at ingest), images on the hub, headed by when and where
    an event is and followed by the link to the original."""
    item = record.item
    parts = []
    if item.event:
        e, zone = item.event, site.settings.platform.timezone
        when = escape(datum(e.start, zone, not e.all_day)) + (f", {escape(e.location)}" if e.location else "")
        parts.append(f"<p><strong>{'Abgesagt' if e.cancelled else 'Termin'}:</strong> {when}</p>")
    parts.append(site.local_images(item.content_html) if item.content_html else f"<p>{escape(item.summary)}</p>")
    if item.url:
        parts.append(f'<p><a href="{escape(item.url)}">Zum Originalbeitrag bei {escape(site.name(item.merchant_id))}'
                     "</a></p>")
    return "\n".join(parts)


def _tags(tags: tuple[str, ...]) -> tuple[str, ...]:
    """Each tag once (as the filter compares them), without "#", as first written."""
    found: dict[str, str] = {}
    for tag in tags:
        found.setdefault(tag_key(tag), " ".join(tag.strip().lstrip("#").split()))
    found.pop("", None)
    return tuple(found.values())


def _uid(site: _Site, record: Record) -> str:
    return f"record-{record.id}@{site.host}"


def _render_feed(writer: Callable[[formats.FeedMeta, list[formats.FeedEntry]], bytes], path: str, media_type: str):
    def render(site: _Site, view: _View, records: list[Record], updated: datetime, edits: Edits) -> tuple[bytes, str]:
        return writer(_feed_meta(site, view, updated, path), [_feed_entry(site, r) for r in records]), media_type
    return render


def _render_calendar(site: _Site, view: _View, records: list[Record], updated: datetime,
                     edits: Edits) -> tuple[bytes, str]:
    platform = site.settings.platform
    sequences = edits([r.id for r in records])
    events = [e for e in (_calendar_event(site, r, sequences.get(r.id, 0)) for r in records) if e]
    narrowed = view.filters.describe(site.settings.merchants)
    query = view.query()
    meta = ical.CalendarMeta(
        name=f"{platform.name} – Termine" + (f" – {narrowed}" if narrowed else ""),
        description=f"Veranstaltungen in {platform.name}" + (f": {narrowed}" if narrowed else ""),
        timezone=platform.timezone, url=f"{site.base}/events.ics" + (f"?{query}" if query else ""),
        product=f"-//Musterhub//{platform.name}//DE")
    assert view.first_day is not None
    return ical.calendar(meta, events, ical.window(events, view.first_day)), ical.CALENDAR_TYPE


def _calendar_event(site: _Site, record: Record, sequence: int) -> ical.CalendarEvent | None:
    item, e = record.item, record.item.event
    if e is None:
        return None
    summary = _title(record)
    if e.cancelled and not says_cancelled(summary):
        summary = f"Abgesagt: {summary}"
    text = item.content_text or item.summary
    description = "\n\n".join(p for p in (text, f"{site.name(item.merchant_id)}: {site.base}/items/{record.id}") if p)
    images = [m.url for m in item.media if m.type == "image"]
    return ical.CalendarEvent(
        uid=_uid(site, record), sequence=sequence, summary=summary, description=description,
        url=f"{site.base}/items/{record.id}", start=e.start,
        timezone=_zone(e.timezone, site.settings.platform.timezone), end=e.end, all_day=e.all_day,
        location=e.location, cancelled=e.cancelled, categories=_tags(item.tags),
        created=record.created_at, last_modified=record.changed_at, image=site.image(images[0]) if images else None)


def _zone(name: str | None, default: str) -> str:
    if name:
        try:
            ZoneInfo(name)
            return name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return default


RENDER = {"atom": _render_feed(formats.atom, "/feed.atom", f"{formats.ATOM_TYPE}; charset=utf-8"),
          "rss": _render_feed(formats.rss, "/feed.rss", f"{formats.RSS_TYPE}; charset=utf-8"),
          "json": _render_feed(formats.json_feed, "/feed.json", formats.JSON_FEED_TYPE),
          "ics": _render_calendar}


# --- conditional requests -------------------------------------------------------------------

def _etag(view: _View, digest: str, marks: list[tuple[int, datetime]]) -> str:
    shown = json.dumps([FORMAT_VERSION, view.key, digest, [[i, c.isoformat()] for i, c in marks]])
    return f'W/"{hashlib.blake2b(shown.encode(), digest_size=12).hexdigest()}"'


class _Versions:
    """When this process first served each version (ETag) of each feed: its Last-Modified.

    Records' own times cannot date a feed: they are stamped when a source was fetched and
    committed later, by several workers in any order, and a record that leaves a feed
    leaves no time behind in it. So a version's date is the whole second after this process
    first saw it, announced only once that second is over; a newer version of the same feed
    is always dated later. An If-Modified-Since before it, or from another process or an
    earlier run, gets the feed again, never a wrong 304. Bounded: least recently used first out."""

    def __init__(self, size: int = 2048) -> None:
        self._seen: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def stamp(self, key: str, etag: str, now: datetime) -> datetime:
        with self._lock:
            known = self._seen.get(key)
            if known is not None and known[0] == etag:
                self._seen.move_to_end(key)
                return known[1]
            stamp = now.replace(microsecond=0) + timedelta(seconds=1)
            if known is not None:
                stamp = max(stamp, known[1] + timedelta(seconds=1))
            self._seen[key] = (etag, stamp)
            self._seen.move_to_end(key)
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return stamp


def _not_modified(request: Request, etag: str, last_modified: datetime | None) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when present (weak comparison); else
    If-Modified-Since against Last-Modified."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        wanted = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in wanted or etag.removeprefix("W/") in wanted
    since = request.headers.get("if-modified-since")
    if since is None or last_modified is None:
        return False
    try:
        moment = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return last_modified <= moment
