"""The hub's web app: resident pages and health, from one `create_app` factory.

Resident pages are server-rendered, German by default, set no cookies and load nothing
from a third party: styles are ours, images go through `hub.media`. A strict
Content-Security-Policy makes the browser enforce that.
"""

from __future__ import annotations

import logging
import re
from contextlib import asynccontextmanager
from html import unescape
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from hub.config import Settings
from hub.errors import HubError
from hub.http import Fetcher, redact
from hub.media import MediaStore, Picture
from hub.store import SourceStatus, Store
from hub.store.version import data_version
from hub.web import formatting
from hub.web.cache import PageCache
from hub.web.facebook import facebook_router
from hub.web.feeds import feed_links, feeds_router, page_filters
from hub.web.filters import Filters
from hub.web.websub import websub_router

HERE = Path(__file__).parent
DEFAULT_PAGE_SIZE = 30
CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; font-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
_IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]+)(")')
_IMAGE_TYPES = {".jpg": "image/jpeg", ".webp": "image/webp"}


def create_app(settings: Settings, store: Store) -> FastAPI:
    """The web app for `settings`, reading from `store`."""
    _redact_access_log()
    media = MediaStore(settings.data_dir, settings.base_dir, store.records.media)
    platform = next((c for c in settings.channel_list() if c.renderer == "platform"), None)
    channel = platform.id if platform else None  # whose per-merchant quotas the pages honour
    page_size = platform.options.page_size if platform else DEFAULT_PAGE_SIZE

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
            media.fetcher = fetcher
            yield

    app = FastAPI(title=settings.platform.name, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    # Innermost, so the headers added further out (security, counting) go on cached answers too.
    app.add_middleware(PageCache, version=lambda: data_version(store.engine))
    templates = _templates(settings, store, media)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(websub_router(settings, store))
    app.include_router(facebook_router(settings, store))  # issue 12: Meta's page webhook
    app.include_router(feeds_router(settings, store, media))  # issue 14: feeds out, with the pages' filters

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, filters: Annotated[Filters, Depends(page_filters)],
             seite: Annotated[int, Query(ge=1)] = 1):
        return _listing(request, templates, store, media, page=seite, page_size=page_size, channel=channel,
                        filters=filters, settings=settings)

    @app.get("/m/{merchant_id}", response_class=HTMLResponse)
    def merchant_page(request: Request, merchant_id: str, filters: Annotated[Filters, Depends(page_filters)],
                      seite: Annotated[int, Query(ge=1)] = 1):
        merchant = settings.merchant(merchant_id)
        if merchant is None:
            raise HTTPException(404, "Diesen Teilnehmer gibt es nicht.")
        return _listing(request, templates, store, media, page=seite, page_size=page_size, channel=channel,
                        filters=filters, settings=settings, merchant=merchant)

    @app.get("/items/{record_id}", response_class=HTMLResponse)
    def item_page(request: Request, record_id: int):
        record = store.records.get(record_id)
        if record is None or record.removed_at is not None or record.status != "published":
            raise HTTPException(404, "Diesen Beitrag gibt es nicht (mehr).")
        pictures = media.pictures(m.url for m in record.item.media if m.type == "image")
        return templates.TemplateResponse(request, "item.html", {"entry": record, "pictures": pictures})

    @app.get("/healthz")
    def healthz():
        statuses = store.source_statuses()
        configured = {s.id for _, s in settings.sources()}
        mine = [s for s in statuses if s.id in configured]
        failing = [s for s in mine if s.status == "failing"]
        warned = [s for s in mine if s.token_warnings]  # worth a look, not failing (issue 12)
        body = {"status": "degraded" if failing else "ok", "items": store.count_items(),
                "sources": {"total": len(configured), "healthy": sum(s.status == "ok" for s in mine),
                            "failing": len(failing), "never_fetched": sum(s.status == "new" for s in mine),
                            "waiting_for_a_person": sum(s.held is not None for s in failing),
                            "with_warnings": len(warned)},
                "failing_sources": [_failing(s) for s in failing],
                "warnings": [_warned(s) for s in warned]}
        return JSONResponse(body)

    @app.get("/media/{shard}/{sha}/{name}")
    def media_file(shard: str, sha: str, name: str):
        path = media.file(shard, sha, name)
        if path is None:
            raise HTTPException(404)
        return FileResponse(path, media_type=_IMAGE_TYPES[path.suffix],
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})

    @app.get("/media/{signature}/{encoded}")
    async def media_on_demand(signature: str, encoded: str):
        url = media.url_from(signature, encoded)
        if url is None:
            raise HTTPException(404)
        try:
            path = await media.variant_for(url)
        except HubError:
            raise HTTPException(404, "Bild nicht verfügbar") from None
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"})

    @app.exception_handler(HTTPException)
    async def friendly_errors(request: Request, exc: HTTPException):
        if request.url.path.startswith(("/healthz", "/media", "/api")):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return templates.TemplateResponse(request, "error.html", {"status": exc.status_code, "detail": exc.detail},
                                          status_code=exc.status_code)

    return app


class _RedactedQuery(logging.Filter):
    """Blanks secret query parameters in uvicorn's access log: Meta's webhook handshake
    carries the verify token in its URL (`hub.verify_token=`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) > 2 and isinstance(record.args[2], str):
            record.args = (*record.args[:2], redact(record.args[2]), *record.args[3:])
        return True


def _redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactedQuery) for f in access.filters):
        access.addFilter(_RedactedQuery())


def _failing(s: SourceStatus) -> dict:
    """A failing source for /healthz: what is wrong and what to do (the error's own words,
    which never hold a token), and whether the hub waits for a person before trying again."""
    return {"id": s.id, "merchant": s.merchant_id, "connector": s.connector, "error": s.last_error,
            "failures": s.error_count, "last_success": s.last_ok_at.isoformat() if s.last_ok_at else None,
            "waiting_for_a_person": s.held is not None}


def _warned(s: SourceStatus) -> dict:
    """A source whose token needs attention soon (it still works): what and what to do."""
    return {"id": s.id, "merchant": s.merchant_id, "connector": s.connector, "warnings": s.token_warnings,
            "checked_at": s.token_checked_at.isoformat() if s.token_checked_at else None}


def _listing(request: Request, templates: Jinja2Templates, store: Store, media: MediaStore, *, page: int,
             page_size: int, channel: str | None, filters: Filters, settings: Settings, merchant=None):
    """Canonical records residents see: published, not removed or expired, within quotas,
    narrowed by the page's filters (hub.web.filters; a merchant's page is its merchant's)."""
    own = filters.only_merchant(merchant.id) if merchant else filters
    scope = {"channel": channel, **own.store_filters(settings.merchants)}
    total = store.records.count(**scope)
    entries = store.records.list(limit=page_size, offset=(page - 1) * page_size, **scope)
    pictures = media.pictures(r.item.media[0].url for r in entries if r.item.media and r.item.media[0].type == "image")
    pages = max(1, -(-total // page_size))
    paging = filters.without("merchant") if merchant else filters  # on /m/{id} the path says the merchant
    return templates.TemplateResponse(request, "index.html", {
        "entries": entries, "merchant": merchant, "page": page, "pages": pages, "total": total, "pictures": pictures,
        "filters": paging, "feeds": feed_links(own)})


def _templates(settings: Settings, store: Store, media: MediaStore) -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    env = templates.env
    merchants = {m.id: m for m in settings.merchants}

    def proxied_html(html: str, pictures: dict[str, Picture]) -> Markup:
        # `html` was sanitized before it was stored; only image sources are rewritten here.
        def local(m: re.Match) -> str:
            url = unescape(m.group(2))
            return m.group(1) + (pictures[url].src if url in pictures else media.path_for(url)) + m.group(3)

        return Markup(_IMG_SRC.sub(local, html))

    env.globals.update(platform=settings.platform, merchants=merchants)
    def datum(dt, with_time: bool = True) -> str:
        return formatting.datum(dt, settings.platform.timezone, with_time)

    env.filters.update(proxied_html=proxied_html, datum=datum, relativ=formatting.relativ,
                       merchant_name=lambda mid: merchants[mid].name if mid in merchants else mid)
    return templates
