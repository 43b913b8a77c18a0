"""The hub's web app: resident pages and health, from one `create_app` factory.

Resident pages (hub.web.pages) are server-rendered, German by default with English on
request (hub.web.i18n), set no cookies and load nothing from a third party: styles are
ours, images go through `hub.media`. A strict Content-Security-Policy makes the browser
enforce that. Every unknown path and every error answers a page in the site's look, in
the reader's language; only the machine addresses (`/api`, `/healthz`, `/media`, `/hooks`)
answer JSON.
"""

from __future__ import annotations

import logging
import re
import time
from contextlib import asynccontextmanager
from html import escape, unescape
from http import HTTPStatus
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.config import Settings
from hub.errors import HubError
from hub.http import Fetcher, redact
from hub.media import MediaStore, Picture
from hub.store import SourceStatus, Store
from hub.store.version import data_version
from hub.web import i18n
from hub.web.admin import CountingMiddleware, admin_router
from hub.web.api import api_router
from hub.web.cache import PageCache
from hub.web.embed import embed_router
from hub.web.facebook import facebook_router
from hub.web.feeds import feeds_router
from hub.web.newsletter import newsletter_router
from hub.web.i18n import gettext as _
from hub.web.pages import Site, category_name, pages_router
from hub.web.seo import seo_router
from hub.web.templating import CompiledTemplates
from hub.web.websub import websub_router

HERE = Path(__file__).parent
DEFAULT_PAGE_SIZE = 30
CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; font-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
JSON_PATHS = ("/api", "/healthz", "/media", "/hooks")  # machine addresses: their errors stay JSON
_IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]+)(")')
_IMG_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\balt=)")
_IMAGE_TYPES = {".jpg": "image/jpeg", ".webp": "image/webp"}
log = logging.getLogger(__name__)
_COMPILED = CompiledTemplates()


def create_app(settings: Settings, store: Store, *, town: str = "default") -> FastAPI:
    """The web app for `settings`, reading from `store`; `town`: its id in a deployment of many
    (the `town` label of its dispatch figures in /metrics)."""
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

    # /openapi.json and /docs come from hub.web.api: the public API alone, Swagger UI self-hosted
    app = FastAPI(title=settings.platform.name, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    # Innermost, so the headers added further out (security, counting) go on cached answers too.
    # The version: the records' (any process) and this process's stored images (hub.media).
    app.add_middleware(PageCache, version=lambda: (data_version(store.engine), media.saves),
                       in_thread=store.dialect != "sqlite")
    app.add_middleware(CountingMiddleware, settings=settings, store=store)  # issue 17: views, searches, feeds (hub.stats)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(i18n.LocaleMiddleware, default=settings.platform.language)  # outermost: errors too
    templates = _templates(settings, media)
    site = Site(settings, store, media, templates, channel, page_size)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(websub_router(settings, store))
    app.include_router(facebook_router(settings, store))  # issue 12: Meta's page webhook
    app.include_router(feeds_router(settings, store, media))  # issue 14: feeds out, with the pages' filters
    app.include_router(api_router(settings, store, media))  # issue 14: JSON API, /openapi.json, /docs
    app.include_router(embed_router(settings, store))  # issue 14: the widget other sites frame
    app.include_router(seo_router(settings, store))  # issue 14: /robots.txt, /sitemap.xml
    app.include_router(newsletter_router(settings, store, media=media, site_templates=templates))  # issue 15
    app.include_router(pages_router(site))  # issue 14: the resident pages
    app.include_router(admin_router(settings, store, create_app, town=town))  # issue 17: /admin, /metrics, /go/{record}

    @app.get("/healthz")
    def healthz():
        statuses = store.source_statuses(item_counts=False)  # asked often: no count of every source's items
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

    _error_pages(app, site)
    return app


def _error_pages(app: FastAPI, site: Site) -> None:
    """Errors in the site's look: every unknown path (Starlette's own 404 included), bad
    parameters and crashes; JSON for the machine addresses."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_json(request.url.path):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return error_page(site, request, exc.status_code, _own_words(exc), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if _wants_json(request.url.path):
            return await request_validation_exception_handler(request, exc)
        return error_page(site, request, 400, _("Die Adresse enthält eine Angabe, mit der diese Seite nichts "
                                                "anfangen kann."))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        # Runs outside every middleware (Starlette re-raises afterwards, so the server logs the
        # traceback): the reader's language and the security headers are set here again.
        if _wants_json(request.url.path):
            response: Response = JSONResponse({"detail": "Internal Server Error"}, status_code=500)
        else:
            i18n.use(*i18n.locale_of(request.scope, site.default_locale))
            try:
                response = error_page(site, request, 500, None)
            except Exception:  # the page itself failed: a plain one, still without a traceback
                log.exception("the error page failed")
                response = HTMLResponse("<!doctype html><title>500</title><p>Interner Fehler.</p>", status_code=500)
        response.headers.update({"Content-Security-Policy": CSP, **SECURITY_HEADERS})
        return response


def error_page(site: Site, request: Request, status: int, detail: str | None,
               headers: dict[str, str] | None = None) -> Response:
    head = site.head(request.url.path, [], title=_title_of(status), noindex=True)
    head.canonical, head.alternates = None, []
    response = site.render(request, "error.html", {"status": status, "detail": detail or _default_words(status),
                                                  "heading": _title_of(status), "head": head}, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(headers or {})
    return response


def _wants_json(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in JSON_PATHS)


def _own_words(exc: StarletteHTTPException) -> str | None:
    """The exception's message if the hub wrote one; None for a framework's stock phrase."""
    try:
        stock = HTTPStatus(exc.status_code).phrase
    except ValueError:
        stock = None
    return None if exc.detail in (stock, None, "") else str(exc.detail)


def _title_of(status: int) -> str:
    if status == 404:
        return _("Nicht gefunden")
    if status >= 500:
        return _("Da ist etwas schiefgegangen")
    return _("Das hat nicht geklappt")


def _default_words(status: int) -> str:
    if status == 404:
        return _("Diese Seite gibt es nicht. Vielleicht hat sich die Adresse geändert oder der Beitrag wurde "
                 "entfernt.")
    if status == 405:
        return _("Diese Adresse lässt sich so nicht aufrufen.")
    if status >= 500:
        return _("Beim Zusammenstellen dieser Seite ist ein Fehler passiert. Bitte versuchen Sie es gleich noch "
                 "einmal.")
    return _("Mit dieser Anfrage kann die Seite nichts anfangen.")


class SecurityHeaders:
    """The Content-Security-Policy (unless a route set its own, such as an embeddable one)
    and the other security headers on every answer (pure ASGI: cheap, and it keeps the
    request's context)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"x-content-type-options", b"referrer-policy")]
                if not any(k.lower() == b"content-security-policy" for k, _ in headers):
                    headers.append((b"content-security-policy", CSP.encode()))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, with_headers)


class _RedactedQuery(logging.Filter):
    """Blanks what uvicorn's access log must not keep: secret query parameters (Meta's
    webhook handshake carries the verify token in its URL, `hub.verify_token=`) and the
    client's address (residents are not tracked, not even in a log file)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) > 2 and isinstance(record.args[2], str):
            record.args = ("-", record.args[1], redact(record.args[2]), *record.args[3:])
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


def _templates(settings: Settings, media: MediaStore) -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.bytecode_cache = _COMPILED
    env = i18n.install(templates.env, settings.platform.timezone)
    merchants = {m.id: m for m in settings.merchants}

    def proxied_html(html: str, pictures: dict[str, Picture], title: str = "") -> Markup:
        # `html` was sanitized before it was stored; image sources are rewritten to the hub,
        # and an image without alt text gets one from the title.
        def local(m: re.Match) -> str:
            url = unescape(m.group(2))
            return m.group(1) + (pictures[url].src if url in pictures else media.path_for(url)) + m.group(3)

        alt = escape(_("Bild zu „%(title)s“", title=title) if title else _("Bild"))
        return Markup(_IMG_WITHOUT_ALT.sub(f'<img alt="{alt}"', _IMG_SRC.sub(local, html)))

    env.globals.update(platform=settings.platform, merchants=merchants, now_ts=time.time)
    env.filters.update(proxied_html=proxied_html, category_name=category_name,
                       merchant_name=lambda mid: merchants[mid].name if mid in merchants else mid)
    return templates
