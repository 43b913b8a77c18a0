"""The public JSON API, version 1 (issue 14): the town's records for other sites and apps.

`/api/v1/items`, `/events`, `/offers`, `/search?q=` and `/merchants` (+ `/items/{id}`,
`/merchants/{id}`) show what the resident pages show (published, not removed, not expired,
within the platform's quotas) in the stable schemas of `hub.web.apischema`.

- Filters are the pages' own (hub.web.filters: merchant, category, district, kind, tag;
  repeat a key for "or"); `/events` also takes `von`/`bis` (dates, inclusive) and shows
  upcoming events (from today) by their start; `/offers` shows current offers.
- Pages follow a cursor: `limit` (default 20, at most 100) and the `next` URL (or
  `next_cursor`) of the answer. A cursor is the last record's sort key and id, checksummed
  and tied to its query: a walk meets every record once even while new ones arrive, page
  1000 costs what page 1 costs, and a cursor that was altered (or belongs to other filters)
  is an error (400), never a wrong page.
- Read from anywhere: GET, HEAD and OPTIONS from any origin (CORS), without credentials;
  this router only, so the admin API and the webhooks stay closed to other sites.
- Weak ETag (filters, cursor, config and each shown record's id and last change) answered
  by 304; `Cache-Control: public, max-age=60`.
- Errors are `{"detail": "..."}` saying what is wrong and what to do, with the status.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from html import escape, unescape
from typing import Annotated, Any, Callable, Sequence
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from hub.config import MerchantConfig, Settings
from hub.media import MediaStore
from hub.records import Record, tag_key
from hub.store import Store
from hub.store.public import Position, PublicReader, Slice
from hub.web.apidocs import docs_router
from hub.web.apischema import (EventOut, FeedsOut, ItemDetailOut, ItemOut, ItemPage, MerchantOut, MerchantPage,
                               MerchantRef, OfferOut, OriginOut, Problem)
from hub.web.filters import FilterError, Filters

API = "/api/v1"
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
MAX_QUERY = 200  # characters of a search
SUMMARY_LENGTH = 300  # characters of text standing in for a missing summary
FORMAT_VERSION = "1"  # part of every ETag and cursor: raise it when the output changes
CACHE_CONTROL = "public, max-age=60"
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "ETag, Link"}
PREFLIGHT = {**CORS, "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
             "Access-Control-Allow-Headers": "Accept, Accept-Language, Content-Language, If-None-Match, "
                                             "If-Modified-Since",
             "Access-Control-Max-Age": "86400"}
ERRORS = {400: {"model": Problem, "description": "Ungültige Anfrage (Filter, limit, cursor)"}}
_IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]+)(")')


class CursorError(ValueError):
    """A cursor that is not one of ours for this query; the message says what to do."""


# --- the answers' headers and errors ---------------------------------------------------------

class PublicRoute(APIRoute):
    """A route anyone may read from any site: CORS headers on every answer (errors too,
    so a browser script sees why), and every error as `{"detail": "..."}`; a wrong query
    parameter is a 400 that names it (not FastAPI's 422 list)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def public(request: Request) -> Response:
            try:
                response = await handler(request)
            except RequestValidationError as exc:
                response = problem(400, _invalid(exc))
            except HTTPException as exc:
                response = problem(exc.status_code, str(exc.detail), exc.headers)
            response.headers.update(CORS)
            return response

        return public


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers={**(headers or {}), **CORS})


def _invalid(exc: RequestValidationError) -> str:
    said = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error.get("loc", ())[1:]) or "Anfrage"
        given = error.get("input")
        said.append(f"{name}" + (f" „{given}“" if isinstance(given, (str, int)) else "") + f": {error.get('msg')}")
    return "Ungültiger Parameter: " + "; ".join(said)


# --- cursors ---------------------------------------------------------------------------------

class Cursors:
    """Opaque, URL-safe cursors: the position after which the next page starts, with the
    query it belongs to and a checksum. Not a secret: a forged position shows no more than
    the filters do; the checksum makes any altered or cut cursor an error, not a wrong page."""

    _KEY = b"hub api v1 cursor"

    def encode(self, query: str, values: Sequence[Any]) -> str:
        payload = json.dumps([FORMAT_VERSION, _digest(query), *values], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(payload + self._sum(payload)).decode().rstrip("=")

    def decode(self, token: str, query: str) -> list[Any]:
        """The position in `token`; raises CursorError if it is not ours for `query`."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        payload, checksum = raw[:-8], raw[-8:]
        if len(raw) <= 8 or checksum != self._sum(payload):
            raise CursorError("cursor ist beschädigt oder wurde verändert: den Wert von next_cursor (oder die URL "
                              "in next) der vorigen Antwort unverändert übernehmen, oder ohne cursor von vorn "
                              "beginnen.")
        version, belongs, *values = json.loads(payload)
        if version != FORMAT_VERSION or belongs != _digest(query):
            raise CursorError("cursor gehört zu einer anderen Abfrage (anderer Endpunkt, andere Filter oder eine "
                              "ältere Version der API): mit denselben Filtern weiterblättern, oder ohne cursor "
                              "von vorn beginnen.")
        return values

    def _sum(self, payload: bytes) -> bytes:
        return hashlib.blake2b(payload, key=self._KEY, digest_size=8).digest()


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def _position(values: list[Any]) -> Position:
    try:
        key, record_id = values
        return Position(datetime.fromisoformat(key), int(record_id))
    except (TypeError, ValueError):
        raise CursorError("cursor ist beschädigt: ohne cursor von vorn beginnen.") from None


# --- what a request asks for -----------------------------------------------------------------

@dataclass(frozen=True)
class Ask:
    """A listing request: its path, canonical query (filters and the like, in a fixed
    order, without paging), page size and cursor."""

    path: str
    pairs: tuple[tuple[str, str], ...]
    limit: int
    cursor: str | None

    @property
    def key(self) -> str:
        """The query a cursor belongs to: the same filters in any order are the same query."""
        return f"{self.path}?{urlencode(self.pairs)}"

    def url(self, base: str, cursor: str) -> str:
        return f"{base}{self.path}?" + urlencode([*self.pairs, ("limit", str(self.limit)), ("cursor", cursor)])


def api_filters(
    request: Request,
    merchant: Annotated[list[str], Query(description="Teilnehmer-Kennung(en); wiederholt: einer davon")] = [],
    category: Annotated[list[str], Query(description="Kategorie(n) der Teilnehmer, z. B. gastronomie")] = [],
    district: Annotated[list[str], Query(description="Ortsteil(e) der Teilnehmer")] = [],
    kind: Annotated[list[str], Query(description="Art: post, event oder offer")] = [],
    tag: Annotated[list[str], Query(description='Schlagwort (ohne Rücksicht auf Groß-/Kleinschreibung und "#")')] = [],
) -> Filters:
    """The pages' filters (declared here for the API's description, read as the pages read
    them): a key repeated is "one of these", different keys must all hold."""
    try:
        return Filters.parse(request.query_params)
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None


def paging(
    limit: Annotated[int, Query(ge=1, description=f"Einträge je Seite (Standard {DEFAULT_LIMIT}, höchstens "
                                                  f"{MAX_LIMIT}; mehr wird auf {MAX_LIMIT} gekürzt)")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="`next_cursor` der vorigen Seite")] = None,
) -> tuple[int, str | None]:
    return min(limit, MAX_LIMIT), (cursor or None)


FiltersDep = Annotated[Filters, Depends(api_filters)]
PagingDep = Annotated[tuple[int, str | None], Depends(paging)]


# --- the town as the API shows it -----------------------------------------------------------

class Town:
    def __init__(self, settings: Settings, store: Store, media: MediaStore) -> None:
        self.settings = settings
        self.media = media
        self.reader = PublicReader(store.records)
        self.base = settings.platform.base_url.rstrip("/")
        self.zone = ZoneInfo(settings.platform.timezone)
        self.merchants = {m.id: m for m in settings.merchants}
        self.configured = {s.id: s.connector for _, s in settings.sources() if s.id}
        platform = next((c for c in settings.channel_list() if c.renderer == "platform"), None)
        self.channel = platform.id if platform else None  # whose quotas the pages honour
        shown = [self.base, [[m.id, m.name, m.category, m.district, m.website, m.label, _channels(m)]
                             for m in settings.merchants]]
        self.digest = _digest(json.dumps(shown))

    def scope(self, filters: Filters) -> dict[str, Any]:
        return {"channel": self.channel, **filters.store_filters(self.settings.merchants)}

    def name(self, merchant_id: str) -> str:
        merchant = self.merchants.get(merchant_id)
        return merchant.name if merchant else merchant_id

    def image(self, url: str) -> str:
        return self.base + self.media.path_for(url)

    def connectors(self, records: Sequence[Record]) -> dict[str, str]:
        ids = {o.item.source_id for r in records for o in r.origins}
        unknown = ids - self.configured.keys()  # a source since taken out of the config
        return {**self.reader.connectors(unknown), **self.configured}

    def item(self, record: Record, connectors: dict[str, str], detail: bool = False) -> ItemOut:
        item = record.item
        images = [m for m in item.media if m.type == "image"]
        published = item.published or record.created_at or record.sort_at
        updated = max(filter(None, (record.changed_at, published)), default=None)
        origins = {(connectors.get(o.item.source_id), o.item.url): None for o in record.origins if o.live}
        fields = dict(
            id=record.id, kind=item.kind.value, title=item.title, summary=_summary(item.summary, item.content_text),
            url=f"{self.base}/items/{record.id}", original_url=item.url,
            merchant=MerchantRef(id=item.merchant_id, name=self.name(item.merchant_id),
                                 url=f"{self.base}/m/{item.merchant_id}"),
            label=record.label, published=published, updated=updated, tags=_tags(item.tags),
            image=self.image(images[0].url) if images else None, image_alt=images[0].alt or None if images else None,
            event=_event(record), offer=_offer(record), origins=[OriginOut(connector=c, url=u) for c, u in origins])
        if detail:
            return ItemDetailOut(**fields, content_html=self.local_images(item.content_html))
        return ItemOut(**fields)

    def local_images(self, html: str) -> str:
        """Stored HTML (sanitized at ingest) with every image on the hub's media route."""
        return _IMG_SRC.sub(lambda m: m.group(1) + escape(self.image(unescape(m.group(2)))) + m.group(3), html)

    def merchant(self, m: MerchantConfig) -> MerchantOut:
        query = f"?{urlencode({'merchant': m.id})}"
        return MerchantOut(id=m.id, name=m.name, url=f"{self.base}/m/{m.id}", category=m.category,
                           district=m.district, website=m.website, label=m.label, channels=_channels(m),
                           feeds=FeedsOut(atom=f"{self.base}/feed.atom{query}", rss=f"{self.base}/feed.rss{query}",
                                          json_feed=f"{self.base}/feed.json{query}",
                                          ical=f"{self.base}/events.ics{query}"))


def _channels(m: MerchantConfig) -> list[str]:
    return sorted({s.connector for s in m.sources})  # type: ignore[attr-defined]


def _summary(summary: str, text: str) -> str:
    """The source's summary, else the start of the text cut at a word (never empty when
    there is text: a club's site lists summaries)."""
    if summary or len(text) <= SUMMARY_LENGTH:
        return summary or " ".join(text.split())
    cut = " ".join(text[:SUMMARY_LENGTH].split()[:-1]).rstrip(" ,;:.-–")
    return f"{cut} …"


def _tags(tags: Sequence[str]) -> list[str]:
    """Each tag once (as the filter compares them), without "#", as first written."""
    found: dict[str, str] = {}
    for tag in tags:
        if tag_key(tag):
            found.setdefault(tag_key(tag), " ".join(tag.strip().lstrip("#").split()))
    return list(found.values())


def _event(record: Record) -> EventOut | None:
    e = record.item.event
    if e is None:
        return None
    return EventOut(start=e.start, end=e.end, all_day=e.all_day, timezone=e.timezone, location=e.location,
                    latitude=e.latitude, longitude=e.longitude, cancelled=e.cancelled)


def _offer(record: Record) -> OfferOut | None:
    o = record.item.offer
    if o is None:
        return None
    return OfferOut(price=o.price, currency=o.currency, valid_from=o.valid_from, valid_until=o.valid_until)


# --- the routes ------------------------------------------------------------------------------

def api_router(settings: Settings, store: Store, media: MediaStore) -> APIRouter:
    """The API, its OpenAPI document (built from the API's routes alone) and /docs."""
    api = _endpoints(settings, store, media)
    router = APIRouter()
    router.include_router(api)
    router.include_router(docs_router(settings, api))
    return router


def _endpoints(settings: Settings, store: Store, media: MediaStore) -> APIRouter:
    router = APIRouter(prefix=API, route_class=PublicRoute, tags=["Öffentliche API"], responses=ERRORS)
    town = Town(settings, store, media)
    cursors = Cursors()

    def listing(request: Request, ask: Ask, scope: dict[str, Any], order: str = "newest") -> Response:
        try:
            after = _position(cursors.decode(ask.cursor, ask.key)) if ask.cursor else None
        except CursorError as exc:
            return problem(400, str(exc))
        found = town.reader.slice(order=order, after=after, limit=ask.limit, **scope)  # type: ignore[arg-type]
        etag = _etag(ask.key, ask.cursor, ask.limit, town.digest, found.marks)
        if not_modified(request, etag):
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
        records = town.reader.load(found)
        connectors = town.connectors(records)
        following = _next(cursors, ask, found, town.base)
        page = ItemPage(items=[town.item(r, connectors) for r in records], limit=ask.limit,
                        next=following[1] if following else None, next_cursor=following[0] if following else None)
        return _answer(page, etag, following[1] if following else None)

    def scoped(filters: Filters, now: datetime, **more: Any) -> dict[str, Any]:
        return {**town.scope(filters), "now": now, **more}

    @router.get("/items", response_model=ItemPage, summary="Alle Einträge, neueste zuerst")
    def items(request: Request, filters: FiltersDep, page: PagingDep) -> Response:
        """Beiträge, Veranstaltungen und Angebote, wie die Startseite sie zeigt."""
        now = datetime.now(timezone.utc)
        return listing(request, Ask(request.url.path, tuple(filters.pairs()), *page), scoped(filters, now))

    @router.get("/events", response_model=ItemPage, summary="Veranstaltungen nach Beginn")
    def events(request: Request, filters: FiltersDep, page: PagingDep,
               von: Annotated[date | None, Query(description="ab diesem Tag (Standard: heute), "
                                                              "z. B. 2026-12-24")] = None,
               bis: Annotated[date | None, Query(description="bis zu diesem Tag, einschließlich")] = None) -> Response:
        """Kommende Veranstaltungen (ab heute), nach Beginn geordnet; mit `von`/`bis` ein
        Zeitraum, auch in der Vergangenheit. Abgesagte bleiben mit `cancelled: true` stehen."""
        now = datetime.now(timezone.utc)
        if von and bis and bis < von:
            return problem(400, f"bis ({bis.isoformat()}) liegt vor von ({von.isoformat()}): den Zeitraum tauschen.")
        first = von or now.astimezone(town.zone).date()
        scope = scoped(filters, now, kinds=_only(filters, "event"), expired=von is not None,
                       starts_from=datetime.combine(first, time(0), town.zone))
        if bis:
            scope["starts_until"] = datetime.combine(bis + timedelta(days=1), time(0), town.zone)
        days = tuple((k, v.isoformat()) for k, v in (("von", von), ("bis", bis)) if v)
        return listing(request, Ask(request.url.path, (*filters.pairs(), *days), *page), scope, "event_start")

    @router.get("/offers", response_model=ItemPage, summary="Aktuelle Angebote, neueste zuerst")
    def offers(request: Request, filters: FiltersDep, page: PagingDep) -> Response:
        """Angebote, die noch gelten (abgelaufene fallen heraus)."""
        now = datetime.now(timezone.utc)
        scope = scoped(filters, now, kinds=_only(filters, "offer"))
        return listing(request, Ask(request.url.path, tuple(filters.pairs()), *page), scope)

    @router.get("/search", response_model=ItemPage, summary="Volltextsuche")
    def search(request: Request, filters: FiltersDep, page: PagingDep,
               q: Annotated[str, Query(description="Suchwörter; jedes muss vorkommen", max_length=MAX_QUERY)] = ""
               ) -> Response:
        """Einträge, die alle Suchwörter enthalten, kombinierbar mit den Filtern."""
        words = " ".join(q.split())
        if not words:
            return problem(400, "q fehlt: Suchwörter angeben, z. B. /api/v1/search?q=Weihnachtsmarkt")
        now = datetime.now(timezone.utc)
        # order="relevance" once the store's full-text search lands (it keeps the same cursor shape)
        scope = scoped(filters, now, q=words)
        return listing(request, Ask(request.url.path, (("q", words), *filters.pairs()), *page), scope)

    @router.get("/items/{record_id}", response_model=ItemDetailOut, summary="Ein Eintrag, mit Text",
                responses={404: {"model": Problem, "description": "Gibt es nicht (mehr)"}})
    def item(request: Request, record_id: Annotated[int, Path(description="`id` aus einer Liste")]) -> Response:
        record = store.records.get(record_id)
        if record is None or record.removed_at is not None or record.status != "published":
            return problem(404, f"Einen Eintrag {record_id} gibt es nicht (mehr).")
        etag = _etag(f"item {record_id}", None, 0, town.digest, [(record.id, record.changed_at)])
        if not_modified(request, etag):
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
        return _answer(town.item(record, town.connectors([record]), detail=True), etag)

    @router.get("/merchants", response_model=MerchantPage, summary="Teilnehmer, nach Namen")
    def merchants(request: Request, filters: FiltersDep, page: PagingDep) -> Response:
        """Die Teilnehmer (Händler, Vereine, Stadt), gefiltert nach merchant, category und
        district (kind und tag gelten für Einträge und werden hier nicht angewandt)."""
        ask = Ask(request.url.path, tuple(filters.without("kind", "tag").pairs()), *page)
        try:
            after = cursors.decode(ask.cursor, ask.key) if ask.cursor else None
        except CursorError as exc:
            return problem(400, str(exc))
        ids = filters.merchant_ids(settings.merchants)
        chosen = sorted((m for m in settings.merchants if ids is None or m.id in ids), key=_by_name)
        rest = [m for m in chosen if after is None or list(_by_name(m)) > after]
        shown = rest[:ask.limit]
        cursor = cursors.encode(ask.key, list(_by_name(shown[-1]))) if len(rest) > ask.limit else None
        following = ask.url(town.base, cursor) if cursor else None
        body = MerchantPage(items=[town.merchant(m) for m in shown], limit=ask.limit, next=following,
                            next_cursor=cursor)
        etag = _etag(ask.key, ask.cursor, ask.limit, town.digest, [])
        if not_modified(request, etag):
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
        return _answer(body, etag, following)

    @router.get("/merchants/{merchant_id}", response_model=MerchantOut, summary="Ein Teilnehmer",
                responses={404: {"model": Problem, "description": "Gibt es nicht"}})
    def merchant(request: Request, merchant_id: str) -> Response:
        found = settings.merchant(merchant_id)
        if found is None:
            return problem(404, f"Einen Teilnehmer „{merchant_id}“ gibt es nicht: /api/v1/merchants listet alle.")
        etag = _etag(f"merchant {merchant_id}", None, 0, town.digest, [])
        if not_modified(request, etag):
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
        return _answer(town.merchant(found), etag)

    _allow_head_and_preflight(router)
    return router


def _allow_head_and_preflight(router: APIRouter) -> None:
    """HEAD like GET (FastAPI routes only what they declare) and the CORS preflight, on
    every path of this router and no other; neither is described in the OpenAPI document."""
    for route in [r for r in router.routes if isinstance(r, APIRoute) and "GET" in r.methods]:
        router.add_api_route(route.path.removeprefix(API), route.endpoint, methods=["HEAD"], include_in_schema=False)
        router.add_api_route(route.path.removeprefix(API), _preflight, methods=["OPTIONS"], include_in_schema=False)


def _preflight() -> Response:
    return Response(status_code=204, headers=PREFLIGHT)


def _only(filters: Filters, kind: str) -> tuple[str, ...]:
    """The kinds an endpoint for `kind` shows: it, unless the filters ask for other kinds."""
    return (kind,) if not filters.kind or kind in filters.kind else ()


def _by_name(m: MerchantConfig) -> tuple[str, str]:
    return (m.name.casefold(), m.id)


def _next(cursors: Cursors, ask: Ask, found: Slice, base: str) -> tuple[str, str] | None:
    """(cursor, URL) of the page after this one, or None on the last page."""
    if found.next is None:
        return None
    cursor = cursors.encode(ask.key, [found.next.key.isoformat(), found.next.id])
    return cursor, ask.url(base, cursor)


def _answer(body: Any, etag: str, following: str | None = None) -> JSONResponse:
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if following:
        headers["Link"] = f'<{following}>; rel="next"'
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


def _etag(key: str, cursor: str | None, limit: int, digest: str, marks: list[tuple[int, datetime]]) -> str:
    shown = json.dumps([FORMAT_VERSION, key, cursor, limit, digest, [[i, c.isoformat()] for i, c in marks]])
    return f'W/"{hashlib.blake2b(shown.encode(), digest_size=12).hexdigest()}"'


def not_modified(request: Request, etag: str) -> bool:
    """RFC 9110 13.1.2: If-None-Match, weak comparison."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is None:
        return False
    wanted = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in wanted or etag.removeprefix("W/") in wanted
