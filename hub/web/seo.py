"""Found by search engines (issue 14): `/robots.txt` and `/sitemap.xml`.

The sitemap lists the start page, `/events`, `/offers`, every merchant's page and every
record page that exists (published and not removed; an expired event's page still answers,
so it stays), with absolute URLs from `platform.base_url` and each record's last change as
`<lastmod>`. Per the sitemaps protocol a file holds at most 50,000 URLs: beyond that
`/sitemap.xml` is a sitemap index of `/sitemap-pages.xml` and `/sitemap-records-N.xml`, the
records in ranges of 50,000 ids (a range holds fewer when records were removed; an empty
range is left out). Every file is streamed, a few thousand records at a time
(hub.store.public), so a million records never sit in memory at once.
"""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import chain
from typing import Iterable, Iterator
from xml.sax.saxutils import escape

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse, StreamingResponse

from hub.config import Settings
from hub.store import Store
from hub.store.public import PublicReader

URLS_PER_FILE = 50_000  # the protocol's limit; 50 MB per file is far off at ~150 bytes a URL
SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
XML_TYPE = "application/xml; charset=utf-8"
CACHE_CONTROL = "public, max-age=3600"
BATCH = 5000  # URLs per write to the client

ROBOTS = """\
# robots.txt of {name}: the pages residents read are open to search engines; the
# sitemap lists every merchant and every record page.
User-agent: *
Allow: /

# The project manager's area, behind a login: nothing there for a search.
Disallow: /admin

# Interfaces for programs (the JSON API and its docs, inbound webhooks, health, metrics):
# no search results; the pages show the same records.
Disallow: /api/
Disallow: /docs
Disallow: /openapi.json
Disallow: /hooks/
Disallow: /healthz
Disallow: /metrics

# The widget is a copy of the listings for other sites' iframes: the platform's own
# pages are the originals a search should lead to (no duplicate content).
Disallow: /embed

# Search results are endless combinations of words: the records themselves are found
# through the sitemap.
Disallow: /search

# The newsletter's personal links (confirm, unsubscribe, preview); its sign-up page stays open.
Disallow: /newsletter/

# /media/ stays open on purpose: the records' images appear in search results and in the
# previews of shared links, and search engines fetch an event's image for its rich result.

Sitemap: {base}/sitemap.xml
"""


def seo_router(settings: Settings, store: Store, urls_per_file: int | None = None) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    urls_per_file = urls_per_file or URLS_PER_FILE
    reader = PublicReader(store.records)
    base = settings.platform.base_url.rstrip("/")

    def pages() -> list[tuple[str, datetime | None]]:
        """The start page, the agenda, the offers and each merchant's page, with when
        their records last changed."""
        changed = reader.last_changes()
        found = [(f"{base}/", changed.get(None)), (f"{base}/events", changed.get("event")),
                 (f"{base}/offers", changed.get("offer"))]
        return found + [(f"{base}/m/{m.id}", changed.get(f"m:{m.id}")) for m in settings.merchants]

    def records(first_id: int = 1, last_id: int | None = None) -> Iterator[tuple[str, datetime | None]]:
        return ((f"{base}/items/{i}", at) for i, at in reader.pages(first_id=first_id, last_id=last_id, batch=BATCH))

    @router.get("/robots.txt")
    def robots() -> PlainTextResponse:
        return PlainTextResponse(ROBOTS.format(name=settings.platform.name, base=base),
                                 headers={"Cache-Control": CACHE_CONTROL})

    @router.get("/sitemap.xml")
    def sitemap() -> StreamingResponse:
        chunks = reader.chunks(urls_per_file)
        static = pages()
        if len(static) + sum(c.count for c in chunks) <= urls_per_file:
            return _xml(_urlset(chain(static, records())))
        files = [(f"{base}/sitemap-pages.xml", max(filter(None, (at for _, at in static)), default=None))]
        files += [(f"{base}/sitemap-records-{c.number}.xml", c.lastmod) for c in chunks]
        return _xml(_index(files))

    @router.get("/sitemap-pages.xml")
    def sitemap_pages() -> StreamingResponse:
        return _xml(_urlset(pages()))

    @router.get("/sitemap-records-{number:int}.xml")
    def sitemap_records(number: int) -> StreamingResponse:
        if number < 1:
            raise HTTPException(404, "Diese Sitemap gibt es nicht.")
        found = records(first_id=(number - 1) * urls_per_file + 1, last_id=number * urls_per_file)
        first = next(found, None)
        if first is None:  # a urlset needs at least one URL: an empty range is no file
            raise HTTPException(404, "Diese Sitemap gibt es nicht.")
        return _xml(_urlset(chain([first], found)))

    return router


def _xml(body: Iterable[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type=XML_TYPE, headers={"Cache-Control": CACHE_CONTROL})


def _urlset(urls: Iterable[tuple[str, datetime | None]]) -> Iterator[str]:
    yield f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{SITEMAP_NS}">\n'
    yield from _batched(_entry("url", loc, at) for loc, at in urls)
    yield "</urlset>\n"


def _index(files: Iterable[tuple[str, datetime | None]]) -> Iterator[str]:
    yield f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns="{SITEMAP_NS}">\n'
    yield from _batched(_entry("sitemap", loc, at) for loc, at in files)
    yield "</sitemapindex>\n"


def _entry(tag: str, loc: str, at: datetime | None) -> str:
    lastmod = f"<lastmod>{_w3c(at)}</lastmod>" if at else ""
    return f"<{tag}><loc>{escape(loc)}</loc>{lastmod}</{tag}>\n"


def _w3c(moment: datetime) -> str:
    """W3C Datetime, as the protocol asks: 2026-11-21T09:00:00+00:00."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _batched(lines: Iterable[str]) -> Iterator[str]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= BATCH:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)
