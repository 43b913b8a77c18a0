"""The embeddable widget (issue 14): `/embed?...` is a compact list of the town's records
that any website (the town's own, a school's, a club's) shows in an iframe:

    <iframe src="https://musterstadt.example/embed?category=gastronomie&limit=5"
            title="Aktuelles aus Musterstadt" width="100%" height="400" loading="lazy"></iframe>

It takes the pages' filters (hub.web.filters); with `kind=event` alone it is an agenda of
upcoming events by their start. `heading` sets the heading (empty: none shown), `limit` the
number of entries (default 10, at most 50), `color`/`farbe` the accent and
`background`/`hintergrund` the background: hex colours (`#rrggbb` or `#rgb`) only, anything
else is ignored. Text and link colours follow from them so that contrast stays readable
(WCAG AA).

No inline style is allowed (CSP), so colours reach the page as a stylesheet of our own,
`/embed.css?color=...&background=...`, written from the validated values only: nothing a
visitor typed is ever echoed into CSS. The widget loads nothing from anyone else, sets no
cookie, and is the one page other sites may frame (`frame-ancestors *`); its links open
the record on the platform in a new tab. It speaks the town's language whatever the
visitor's browser asks for (the embedding site has one language): `lang=en` for English.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, time, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from hub.config import Settings
from hub.records import Record
from hub.store import Store
from hub.web import formatting, i18n
from hub.web.api import not_modified
from hub.web.filters import FilterError, Filters
from hub.web.templating import CompiledTemplates

HERE = Path(__file__).parent
_COMPILED = CompiledTemplates()
DEFAULT_LIMIT, MAX_LIMIT = 10, 50
MAX_HEADING = 120
FORMAT_VERSION = "1"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors *")
CACHE_CONTROL = "public, max-age=300"
HEX = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")
DEFAULTS = {"accent": "#0b6e4f", "background": "#ffffff"}
DARK, LIGHT = "#1f2933", "#ffffff"
AA = 4.5  # WCAG AA contrast for normal text


def embed_router(settings: Settings, store: Store) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    templates = _templates(settings)
    base = settings.platform.base_url.rstrip("/")
    zone = ZoneInfo(settings.platform.timezone)
    platform = next((c for c in settings.channel_list() if c.renderer == "platform"), None)
    channel = platform.id if platform else None  # whose quotas the pages honour
    shown = json.dumps([FORMAT_VERSION, base, settings.platform.name,
                        [[m.id, m.name, m.label] for m in settings.merchants]])
    digest = hashlib.blake2b(shown.encode(), digest_size=8).hexdigest()

    @router.get("/embed")
    def embed(request: Request) -> Response:
        params = request.query_params
        _language(params.get("lang"), settings.platform.language)
        try:
            filters = Filters.parse(params)
            limit = _limit(params.get("limit"))
        except FilterError as exc:
            return _page(templates, request, {"error": str(exc)}, status=400)
        agenda = filters.kind == ("event",)
        now = datetime.now(timezone.utc)
        scope: dict[str, Any] = {"channel": channel, "now": now, **filters.store_filters(settings.merchants)}
        if agenda:  # upcoming events, from today on, by their start
            scope["starts_from"] = datetime.combine(now.astimezone(zone).date(), time(0), zone)
        order = "event_start" if agenda else "newest"
        colours = colours_of(params)
        heading = _heading(params.get("heading"), settings, filters)
        marks = store.records.marks(limit=limit, order=order, **scope)
        etag = _etag(digest, str(request.url.query), i18n.current(), marks)
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
        if not_modified(request, etag):
            return Response(status_code=304, headers={**headers, "Content-Security-Policy": CSP})
        records = store.records.list(limit=limit, order=order, **scope)
        more = i18n.url("/events", filters.without("kind").pairs()) if agenda else i18n.url("/", filters.pairs())
        context = {"entries": [_entry(r, base) for r in records], "heading": heading, "more": base + more,
                   "colours": f"/embed.css?{urlencode(colours)}" if colours else None}
        return _page(templates, request, context, headers=headers)

    @router.get("/embed.css")
    def embed_css(request: Request) -> Response:
        colours = colours_of(request.query_params)
        return Response(stylesheet(colours.get("color"), colours.get("background")), media_type="text/css",
                        headers={"Cache-Control": "public, max-age=86400"})

    return router


def _language(asked: str | None, town: str) -> None:
    """The widget speaks the language of the site that embeds it, not of each visitor's
    browser: the town's language, or `?lang=en` in the iframe's URL (then kept in its links)."""
    wanted = (asked or "").strip().lower()
    chosen = wanted if wanted in i18n.LOCALES else None
    i18n.use(chosen or (town if town in i18n.LOCALES else i18n.DEFAULT), chosen)


# --- colours ---------------------------------------------------------------------------------

def colour(raw: str | None) -> str | None:
    """`#rrggbb` (lower case) for a hex colour `#rrggbb` or `#rgb`, else None: the only
    values that ever reach a stylesheet."""
    value = (raw or "").strip()
    if not HEX.fullmatch(value):
        return None
    digits = value[1:].lower()
    return "#" + ("".join(c * 2 for c in digits) if len(digits) == 3 else digits)


def colours_of(params: Any) -> dict[str, str]:
    """The valid colours of a query: `color` (or `farbe`) and `background` (or
    `hintergrund`); an invalid value counts as not given."""
    found = {}
    for name, aliases in (("color", ("color", "farbe")), ("background", ("background", "hintergrund"))):
        value = next((c for c in (colour(params.get(a)) for a in aliases) if c), None)
        if value:
            found[name] = value
    return found


def stylesheet(accent: str | None, background: str | None) -> str:
    """The widget's colours as CSS custom properties (hub/web/static/embed.css uses them):
    text dark or light, whichever reads better on the background; links in the accent
    where it reads well enough, else in the text colour."""
    accent, background = colour(accent) or DEFAULTS["accent"], colour(background) or DEFAULTS["background"]
    ink = next((c for c in (DARK, LIGHT) if contrast(c, background) >= AA), None)
    ink = ink or max(("#000000", LIGHT), key=lambda c: contrast(c, background))  # mid greys: black or white
    muted = next((c for c in (_mix(ink, background, 0.25), ink) if contrast(c, background) >= AA), ink)
    link = accent if contrast(accent, background) >= AA else ink
    return ("/* Farben des Widgets, aus geprüften Werten (hub.web.embed) */\n"
            f":root {{ --accent: {accent}; --bg: {background}; --ink: {ink}; --muted: {muted}; --link: {link}; }}\n")


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two `#rrggbb` colours (1 to 21)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _luminance(hex_colour: str) -> float:
    def channel(v: int) -> float:
        s = v / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def _mix(a: str, b: str, share_of_b: float) -> str:
    parts = (round(int(a[i:i + 2], 16) * (1 - share_of_b) + int(b[i:i + 2], 16) * share_of_b) for i in (1, 3, 5))
    return "#" + "".join(f"{p:02x}" for p in parts)


# --- the page --------------------------------------------------------------------------------

def _limit(raw: str | None) -> int:
    if raw is None or not raw.strip():
        return DEFAULT_LIMIT
    try:
        return min(max(int(raw), 1), MAX_LIMIT)
    except ValueError:
        raise FilterError(f"limit muss eine Zahl sein (1 bis {MAX_LIMIT}), nicht „{raw}“.") from None


def _heading(raw: str | None, settings: Settings, filters: Filters) -> str:
    """`heading` as given (shortened); without one the town's name and what the list shows;
    an empty `heading=` shows none."""
    if raw is not None:
        return " ".join(raw.split())[:MAX_HEADING]
    narrowed = filters.describe(settings.merchants)
    return f"{settings.platform.name} – {narrowed}" if narrowed else settings.platform.name


def _entry(record: Record, base: str) -> dict[str, Any]:
    item, event = record.item, record.item.event
    return {"url": base + i18n.url(f"/items/{record.id}"), "title": item.title or "…", "label": record.label,
            "merchant": item.merchant_id, "event": event,
            "when": event.start if event else (item.published or record.sort_at),
            "with_time": bool(event and not event.all_day)}


def _page(templates: Jinja2Templates, request: Request, context: dict[str, Any], *, status: int = 200,
          headers: dict[str, str] | None = None) -> Response:
    response = templates.TemplateResponse(request, "embed.html", context, status_code=status,
                                          headers={**(headers or {}), "Content-Security-Policy": CSP})
    if "x-frame-options" in response.headers:  # framing by other sites is this page's purpose
        del response.headers["x-frame-options"]
    return response


def _templates(settings: Settings) -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.bytecode_cache = _COMPILED
    env = i18n.install(templates.env, settings.platform.timezone)
    names = {m.id: m.name for m in settings.merchants}
    zone = settings.platform.timezone

    def wann(moment: datetime | None, with_time: bool = True) -> str:
        return formatting.date_time(moment, with_time, zone=zone, locale=i18n.BABEL_LOCALES[i18n.current()])

    env.globals.update(platform=settings.platform)
    env.filters.update(wann=wann, merchant_name=lambda mid: names.get(mid, mid))
    return templates


def _etag(digest: str, query: str, locale: str, marks: list[tuple[int, datetime]]) -> str:
    shown = json.dumps([digest, query, locale, [[i, c.isoformat()] for i, c in marks]])
    return f'W/"{hashlib.blake2b(shown.encode(), digest_size=12).hexdigest()}"'
