"""The resident pages (issue 14): `/` the feed, `/events` the agenda, `/offers`, `/search`,
`/m/{merchant}` and `/items/{id}`; server-rendered, working without JavaScript.

Every page takes the filters of `hub.web.filters` as plain GET parameters, pages with
`?seite=` (links `rel="prev"/"next"`), speaks German or English (`hub.web.i18n`), names its
canonical URL (`platform.base_url`, with only the query that changes what it shows), and
answers a repeated request with 304: its weak ETag is made of what it shows (the store's
`marks`, as the feeds out), the locale, the query and the minute (cards say "vor 5 Minuten").
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from hub.config import MerchantConfig, Settings
from hub.media import MediaStore
from hub.records import Record
from hub.search import highlight
from hub.store import Store
from hub.web import agenda, formatting, i18n, structured
from hub.web.feeds import feed_links
from hub.web.filters import KINDS, FilterError, Filters
from hub.web.i18n import N_, gettext as _


HERE = Path(__file__).parent
PAGES_VERSION = "1"  # part of every page's ETag, with a digest of the templates and catalogs
CACHE_CONTROL = "no-cache"  # a browser asks again every time, and mostly gets a 304
ONGOING_SINCE = timedelta(days=62)  # how far back the agenda looks for multi-day events still running
ONGOING_MAX = 50
QUERY_MAX = 200  # characters of a search
READ = ["GET", "HEAD"]  # link checkers and crawlers ask with HEAD

KIND_NAMES = {"post": N_("Beiträge"), "event": N_("Veranstaltungen"), "offer": N_("Angebote")}
# The usual categories in words, in both languages; any other is shown as written in the config.
CATEGORY_NAMES = {"gastronomie": N_("Gastronomie"), "einzelhandel": N_("Einzelhandel"), "handel": N_("Handel"),
                  "verein": N_("Vereine"), "vereine": N_("Vereine"), "verwaltung": N_("Verwaltung"),
                  "kultur": N_("Kultur"), "dienstleistung": N_("Dienstleistungen"), "sport": N_("Sport"),
                  "bildung": N_("Bildung"), "kirche": N_("Kirche")}
# How residents name where a record also appears, by the connector of its source.
CHANNELS = {"facebook": (N_("Facebook"), N_("Auf Facebook")), "instagram": (N_("Instagram"), N_("Auf Instagram")),
            "rss": (N_("Website"), N_("Auf der Website")), "atom": (N_("Website"), N_("Auf der Website")),
            "feed": (N_("Website"), N_("Auf der Website")), "jsonfeed": (N_("Website"), N_("Auf der Website")),
            "website": (N_("Website"), N_("Auf der Website")), "ical": (N_("Kalender"), N_("Im Kalender"))}
FEED_TITLES = (N_("Atom-Feed"), N_("RSS-Feed"), N_("JSON Feed"), N_("Termine als Kalender (iCal)"))
LANGUAGE_NAMES = {"de": "Deutsch", "en": "English"}  # each in its own language: never translated


# --- the site every page shares --------------------------------------------------------------

@dataclass
class Site:
    settings: Settings
    store: Store
    media: MediaStore
    templates: Jinja2Templates
    channel: str | None  # whose per-merchant quotas the pages honour
    page_size: int
    version: str = ""

    def __post_init__(self) -> None:
        self.base = self.settings.platform.base_url.rstrip("/")
        self.zone = ZoneInfo(self.settings.platform.timezone)
        self.default_locale = self.settings.platform.language if self.settings.platform.language in i18n.LOCALES \
            else i18n.DEFAULT
        self.merchants = {m.id: m for m in self.settings.merchants}
        self.connectors = {s.id: s.connector for _, s in self.settings.sources()}
        self.version = self.version or _version(self.settings)

    def render(self, request: Request, template: str, context: dict[str, Any], *, etag: str | None = None,
               status_code: int = 200) -> Response:
        headers = {"Vary": "Accept-Language", "Cache-Control": CACHE_CONTROL}
        if etag:
            headers["ETag"] = etag
        if "head" not in context:
            context["head"] = self.head(request.url.path, [], title=None)
        return self.templates.TemplateResponse(request, template, context, status_code=status_code, headers=headers)

    # --- the page's <head>: canonical URL, languages, link previews --------------------------

    def absolute(self, path: str, pairs: Sequence[tuple[str, Any]] = (), locale: str | None = None) -> str:
        """The public URL of `path` with `pairs`, in `locale` (the town's language needs no `lang`)."""
        query = [(k, str(v)) for k, v in pairs]
        if locale and locale != self.default_locale:
            query.append(("lang", locale))
        return f"{self.base}{path}" + (f"?{urlencode(query)}" if query else "")

    def head(self, path: str, pairs: Sequence[tuple[str, Any]], *, title: str | None, description: str = "",
             **more: Any) -> Head:
        """What a page tells search engines and link previews; `pairs`: the query that
        changes what the page shows (filters, page, search), without the language."""
        locale = i18n.current()
        other = next(lang for lang in i18n.LOCALES if lang != locale)
        return Head(
            title=f"{title} – {self.settings.platform.name}" if title else self.settings.platform.name,
            og_title=title or self.settings.platform.name,
            description=description or _("Neuigkeiten, Angebote und Termine aus %(town)s, direkt von Geschäften, "
                                         "Vereinen und der Stadtverwaltung.", town=self.settings.platform.name),
            canonical=self.absolute(path, pairs, locale),
            alternates=[(lang, self.absolute(path, pairs, lang)) for lang in i18n.LOCALES]
            + [("x-default", self.absolute(path, pairs))],
            switch=(other, LANGUAGE_NAMES[other], _link(path, [*pairs, ("lang", other)])),
            og_locale=i18n.OG_LOCALES[locale], **more)

    def image_url(self, url: str, pictures: dict) -> str:
        """An image's absolute address on the hub (its stored variant, else the signed route)."""
        return self.base + (pictures[url].src if url in pictures else self.media.path_for(url))

    def merchant_name(self, merchant_id: str) -> str:
        merchant = self.merchants.get(merchant_id)
        return merchant.name if merchant else merchant_id


@dataclass
class Head:
    title: str  # the document's: "Veranstaltungen – Musterstadt erleben"
    description: str
    og_title: str = ""  # the page's own: "Veranstaltungen"
    canonical: str | None = None
    alternates: list[tuple[str, str]] = field(default_factory=list)  # (hreflang, href)
    switch: tuple[str, str, str] | None = None  # (locale, its name, link): the other language
    og_locale: str = "de_DE"
    og_type: str = "website"
    image: str | None = None
    image_alt: str | None = None
    noindex: bool = False
    prev: str | None = None
    next: str | None = None
    json_ld: Markup | None = None


def _link(path: str, pairs: Sequence[tuple[str, Any]]) -> str:
    query = [(k, str(v)) for k, v in pairs if v is not None and v != ""]
    return f"{path}?{urlencode(query)}" if query else path


def _version(settings: Settings) -> str:
    """A digest of what pages show besides the records: the config's platform and merchants,
    the templates, styles and catalogs (a deployment with new ones changes every ETag)."""
    digest = hashlib.blake2b(PAGES_VERSION.encode(), digest_size=8)
    shown = {"platform": settings.platform.model_dump(mode="json"),
             "merchants": [m.model_dump(mode="json", exclude={"sources"}) for m in settings.merchants],
             "sources": [[m.id, s.id, s.connector, _source_url(s)] for m, s in settings.sources()]}
    digest.update(json.dumps(shown, sort_keys=True, default=str).encode())
    for path in sorted([*(HERE / "templates").glob("*.html"), *(HERE / "locale").rglob("*.po"),
                        *(HERE / "static").glob("*.css")]):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


# --- what a request asks for -----------------------------------------------------------------

def page_filters(request: Request) -> Filters:
    """The request's filters; an unknown kind is a 400 in the reader's language."""
    try:
        return Filters.parse(request.query_params)
    except FilterError:
        wrong = next(k for k in (v.strip().casefold() for v in request.query_params.getlist("kind")) if k and k not in KINDS)
        raise HTTPException(400, _("Unbekannte Art „%(kind)s“: kind kann post (Beiträge), event (Veranstaltungen) "
                                   "oder offer (Angebote) sein.", kind=wrong)) from None


def page_number(request: Request) -> int:
    raw = (request.query_params.get("seite") or "1").strip()
    if not raw.isdigit() or int(raw) < 1:
        raise HTTPException(400, _("„seite“ ist eine Seitenzahl wie 2, nicht „%(value)s“.", value=raw[:40]))
    return int(raw)


def local_day(request: Request, name: str) -> date | None:
    raw = (request.query_params.get(name) or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise HTTPException(400, _("„%(name)s“ ist ein Datum wie 2026-12-24, nicht „%(value)s“.",
                                   name=name, value=raw[:40])) from None


def etag_of(site: Site, request: Request, now: datetime, *parts: Any) -> str:
    """A weak ETag for a page: what it shows (`parts`: counts and the store's marks), the
    locale, the query and the minute."""
    query = sorted(request.query_params.multi_items())
    shown = json.dumps([site.version, i18n.current(), i18n.chosen(), request.url.path, query,
                        now.strftime("%Y-%m-%dT%H:%M"), parts], default=str)
    return f'W/"{hashlib.blake2b(shown.encode(), digest_size=12).hexdigest()}"'


def not_modified(request: Request, etag: str) -> bool:
    """RFC 9110 13.1.2: If-None-Match with a weak comparison."""
    wanted = request.headers.get("if-none-match")
    if wanted is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


def unchanged(etag: str) -> Response:
    return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Language"})


# --- pieces of pages ---------------------------------------------------------------------------

@dataclass
class Pager:
    page: int
    pages: int
    prev: str | None
    next: str | None
    prev_label: str
    next_label: str


def pager(path: str, pairs: Sequence[tuple[str, Any]], page: int, total: int, size: int,
          labels: tuple[str, str] = (N_("Neuere"), N_("Ältere"))) -> Pager:
    """The pager of a listing; a page past the last is a 404 (an empty first page is not)."""
    pages = max(1, -(-total // size))
    if page > pages:
        raise HTTPException(404, _("Seite %(page)s gibt es hier nicht (mehr): es sind %(pages)s.",
                                   page=page, pages=pages))

    def at(n: int) -> str:
        return i18n.url(path, [*pairs, ("seite", n if n > 1 else None)])

    return Pager(page, pages, at(page - 1) if page > 1 else None, at(page + 1) if page < pages else None,
                 _(labels[0]), _(labels[1]))


@dataclass
class Choice:
    value: str
    label: str
    selected: bool


@dataclass
class FilterBar:
    """The filters a page offers: kinds as links, the rest as one GET form, and the active
    ones each with a link that drops it."""

    action: str
    kinds: list[tuple[str, str, bool]]  # (label, href, current)
    selects: list[tuple[str, str, list[Choice]]]  # (name, label, choices)
    hidden: list[tuple[str, str]]
    active: list[tuple[str, str]]  # (label, href without it)
    reset: str | None


def _by_label(choice: tuple[str, str]) -> str:
    """Alphabetical as a German reader expects it: "Bäckerei" before "Buchhandlung"."""
    return unicodedata.normalize("NFKD", choice[1]).encode("ascii", "ignore").decode().casefold()


def category_name(slug: str) -> str:
    known = CATEGORY_NAMES.get(slug.casefold())
    return _(known) if known else slug.replace("-", " ").replace("_", " ").capitalize()


# A town with more merchants than this gets no merchant list in its filter form: it is no way
# to pick one (a select of thousands), and it weighed ~50 bytes a merchant on every page (1 MB
# for 20,000). Residents reach a merchant through its cards and its page (/m/{id}).
MAX_MERCHANT_CHOICES = 300


def filter_bar(site: Site, action: str, filters: Filters, *, kinds: bool = True, merchants: bool = True,
               keep: Sequence[tuple[str, str]] = ()) -> FilterBar:
    """`kinds`: offer the kinds; `merchants`: offer merchants, categories and districts (not
    on a merchant's own page); `keep`: other query parameters the page's links keep (a
    search, a date range)."""
    configured = list(site.merchants.values())

    def link(f: Filters) -> str:
        return i18n.url(action, [*keep, *f.pairs()])

    def choices(values: Iterable[tuple[str, str]], chosen: tuple[str, ...]) -> list[Choice]:
        folded = {c.casefold() for c in chosen}
        return [Choice("", _("Alle"), not chosen)] + [Choice(v, label, v.casefold() in folded) for v, label in values]

    listable = len(configured) <= MAX_MERCHANT_CHOICES
    selects = []
    if merchants:
        categories = {(m.category, category_name(m.category)) for m in configured if m.category}
        selects.append(("category", _("Kategorie"), choices(sorted(categories, key=_by_label), filters.category)))
        districts = {(m.district, m.district) for m in configured if m.district}
        if districts:
            selects.append(("district", _("Ortsteil"), choices(sorted(districts, key=_by_label), filters.district)))
        if listable:
            selects.append(("merchant", _("Teilnehmer"), choices(sorted(((m.id, m.name) for m in configured),
                                                                        key=_by_label), filters.merchant)))
    kind_links = []
    if kinds:
        kind_links = [(_("Alles"), link(filters.without("kind")), not filters.kind)]
        kind_links += [(_(KIND_NAMES[k]), link(replace(filters, kind=(k,))), filters.kind == (k,)) for k in KINDS]
    # Filters the form has no field for ride along: kinds and tags (links), a merchant chosen
    # on a card when the town has too many for a list.
    listed = ("kind", "tag") if listable else ("kind", "tag", "merchant")
    hidden = [(k, v) for k, v in [*keep, *filters.pairs()] if k in listed or (k, v) in keep]
    hidden = [(k, v) for k, v in hidden if k not in ("von", "bis", "q")]  # those have their own fields
    if i18n.chosen():
        hidden.append(("lang", i18n.chosen()))
    active = []
    for key, label in (("merchant", site.merchant_name), ("category", category_name), ("district", str),
                       ("kind", lambda k: _(KIND_NAMES.get(k, k))), ("tag", lambda t: f"#{t.lstrip('#')}")):
        if key == "merchant" and not merchants:
            continue
        for value in getattr(filters, key):
            rest = replace(filters, **{key: tuple(v for v in getattr(filters, key) if v != value)})
            active.append((label(value), link(rest)))
    return FilterBar(action, kind_links, selects, hidden, active, link(Filters()) if active else None)


def describe(site: Site, filters: Filters) -> str | None:
    """A filtered view in words, for its title: "Bäckerei Schmitz · Veranstaltungen · #advent"."""
    parts = [" / ".join(site.merchant_name(m) for m in filters.merchant),
             " / ".join(category_name(c) for c in filters.category),
             " / ".join(_("Ortsteil %(name)s", name=d) for d in filters.district),
             " / ".join(_(KIND_NAMES[k]) for k in filters.kind if k in KIND_NAMES),
             " / ".join(f"#{t.lstrip('#')}" for t in filters.tag)]
    return " · ".join(p for p in parts if p) or None


def channels_of(site: Site, merchant: MerchantConfig) -> list[tuple[str, str | None]]:
    """Where a merchant also posts, from its sources: (name, link to its own page or None),
    each name once ("Facebook", "Instagram", "Website", "Kalender")."""
    found: dict[str, str | None] = {}
    for source in merchant.sources:
        name = _(CHANNELS[source.connector][0]) if source.connector in CHANNELS else source.connector.capitalize()
        found.setdefault(name, None)
        found[name] = found[name] or _channel_link(source, merchant)
    if merchant.website:
        found[_("Website")] = web_link(merchant.website)
    return list(found.items())


def _channel_link(source: Any, merchant: MerchantConfig) -> str | None:
    options = source.options
    if source.connector == "facebook" and getattr(options, "page_id", None):
        return f"https://www.facebook.com/{options.page_id}"
    url = _source_url(source)
    if source.connector in ("rss", "atom", "feed", "jsonfeed"):  # a feed: the site it belongs to
        return web_link(merchant.website) if merchant.website else _site_of(url)
    return web_link(url)


def _source_url(source: Any) -> str | None:
    return getattr(source.options, "url", None)


def _site_of(url: str | None) -> str | None:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}/" if parts.scheme in ("http", "https") and parts.netloc else None


def web_link(url: str | None) -> str | None:
    """`url` if it is a web address a resident can open (never `javascript:` or `file:`)."""
    if not url:
        return None
    url = url.strip()
    if re.match(r"^[\w.-]+\.[a-z]{2,}(/|$)", url, re.IGNORECASE):  # "www.example.de"
        url = "https://" + url
    return url if urlsplit(url).scheme in ("http", "https") else None


def origins_of(site: Site, record: Record) -> list[tuple[str, str | None, str | None]]:
    """Where a record appeared: (where, link, whose if another merchant's), live origins first."""
    found, seen = [], set()
    for origin in sorted(record.origins, key=lambda o: not o.live):
        item = origin.item
        connector = site.connectors.get(item.source_id, "")
        where = _(CHANNELS[connector][1]) if connector in CHANNELS else _("Bei %(source)s", source=connector or "?")
        url = web_link(item.url)
        key = (where, url)
        if key in seen or not origin.live:
            continue
        seen.add(key)
        other = site.merchant_name(item.merchant_id) if item.merchant_id != record.item.merchant_id else None
        found.append((where, url, other))
    return found


def first_images(records: Iterable[Record]) -> list[str]:
    return [r.item.media[0].url for r in records if r.item.media and r.item.media[0].type == "image"]


def marked(text: str, q: str, limit: int | None = None) -> Markup:
    """`text` with the words `q` finds (by their stems) in <mark>; `limit`: a snippet."""
    return highlight(text, q, limit=limit)


# --- the pages ------------------------------------------------------------------------------

def pages_router(site: Site) -> APIRouter:
    router = APIRouter()

    @router.api_route("/", methods=READ, include_in_schema=False)
    def home_page(request: Request) -> Response:
        return home(site, request)

    @router.api_route("/events", methods=READ, include_in_schema=False)
    def events_page(request: Request) -> Response:
        return events(site, request)

    @router.api_route("/offers", methods=READ, include_in_schema=False)
    def offers_page(request: Request) -> Response:
        return offers(site, request)

    @router.api_route("/search", methods=READ, include_in_schema=False)
    def search_page(request: Request) -> Response:
        return search(site, request)

    @router.api_route("/m/{merchant_id}", methods=READ, include_in_schema=False)
    def merchant_page(request: Request, merchant_id: str) -> Response:
        return merchant(site, request, merchant_id)

    @router.api_route("/items/{record_id}", methods=READ, include_in_schema=False)
    def item_page(request: Request, record_id: str) -> Response:
        return record_page(site, request, record_id)

    return router


def listing(site: Site, request: Request, *, path: str, template: str, scope: dict[str, Any],
            pairs: list[tuple[str, Any]], context: dict[str, Any], order: str = "newest",
            labels: tuple[str, str] = (N_("Neuere"), N_("Ältere")), at_most: int | None = None) -> Response:
    """A paged list of records: 304 when unchanged, else the template with `entries`,
    `pictures`, `total` and `pager` added to `context`. `at_most`: count no further (a
    common word matches half the town; "more than 1,000" is all a reader needs)."""
    page = page_number(request)
    now = datetime.now(timezone.utc)
    scope = {**scope, "now": now}
    offset = (page - 1) * site.page_size
    total = site.store.records.count(at_most=at_most, **scope)
    marks = site.store.records.marks(limit=offset + site.page_size, order=order, **scope)[offset:]
    etag = etag_of(site, request, now, total, marks)
    if not_modified(request, etag):
        return unchanged(etag)
    paging = pager(path, pairs, page, total, site.page_size, labels)
    entries = site.store.records.list(limit=site.page_size, offset=offset, order=order, **scope)
    head: Head = context["head"]
    head.prev, head.next = (site.base + paging.prev if paging.prev else None), \
        (site.base + paging.next if paging.next else None)
    pictures = site.media.pictures(first_images(entries))
    return site.render(request, template, {**context, "entries": entries, "pictures": pictures, "total": total,
                                           "pager": paging}, etag=etag)


def _scope(site: Site, filters: Filters, **more: Any) -> dict[str, Any]:
    return {"channel": site.channel, **filters.store_filters(site.settings.merchants), **more}


def _only_kind(filters: Filters, kind: str) -> tuple[str, ...]:
    """The kinds a page of `kind`s shows: none when the filters ask for others only."""
    return (kind,) if not filters.kind or kind in filters.kind else ()


def home(site: Site, request: Request) -> Response:
    filters = page_filters(request)
    pairs = list(filters.pairs())
    page = page_number(request)
    head = site.head("/", pairs + _seite(page), title=_page_title(describe(site, filters), page))
    return listing(site, request, path="/", template="index.html", scope=_scope(site, filters), pairs=pairs,
                   context={"head": head, "filters": filters, "bar": filter_bar(site, "/", filters),
                            "feeds": feed_links(filters), "nav": "home"})


def offers(site: Site, request: Request) -> Response:
    filters = page_filters(request)
    pairs = list(filters.without("kind").pairs())
    page = page_number(request)
    head = site.head("/offers", pairs + _seite(page), title=_page_title(_("Angebote"), page),
                     description=_("Aktuelle Angebote der Geschäfte in %(town)s, mit Preis und wie lange sie gelten.",
                                   town=site.settings.platform.name))
    scope = _scope(site, filters, kinds=_only_kind(filters, "offer"))
    return listing(site, request, path="/offers", template="offers.html", scope=scope, pairs=pairs,
                   context={"head": head, "filters": filters, "nav": "offers",
                            "bar": filter_bar(site, "/offers", filters.without("kind"), kinds=False),
                            "feeds": feed_links(replace(filters, kind=("offer",)))})


SEARCH_COUNT_MAX = 1000


def search(site: Site, request: Request) -> Response:
    filters = page_filters(request)
    q = " ".join((request.query_params.get("q") or "").split())[:QUERY_MAX]
    pairs = [("q", q), *filters.pairs()] if q else list(filters.pairs())
    page = page_number(request)
    head = site.head("/search", pairs + _seite(page),
                     title=_page_title(_("Suche nach „%(q)s“", q=q) if q else _("Suche"), page), noindex=True)
    context = {"head": head, "filters": filters, "q": q, "nav": "search",
               "bar": filter_bar(site, "/search", filters, keep=[("q", q)] if q else [])}
    if not q:
        return site.render(request, "search.html", {**context, "entries": [], "total": 0, "pager": None,
                                                    "pictures": {}})
    return listing(site, request, path="/search", template="search.html", scope=_scope(site, filters, q=q),
                   pairs=pairs, context={**context, "mark": lambda text, limit=None: marked(text or "", q, limit)},
                   order="relevance", labels=(N_("Vorherige"), N_("Nächste")), at_most=SEARCH_COUNT_MAX + 1)


def merchant(site: Site, request: Request, merchant_id: str) -> Response:
    found = site.settings.merchant(merchant_id)
    if found is None:
        raise HTTPException(404, _("Diesen Teilnehmer gibt es nicht."))
    filters = page_filters(request).without("merchant")  # the path says whose
    own = filters.only_merchant(found.id)
    pairs = list(filters.pairs())
    page = page_number(request)
    path = f"/m/{found.id}"
    channels = channels_of(site, found)
    description = (found.about or "").strip().split("\n")[0][:300] or \
        _("Neuigkeiten, Angebote und Termine von %(name)s in %(town)s.", name=found.name,
          town=site.settings.platform.name)
    data = structured.organization(found.name, web_link(found.website), description=found.about or None,
                                   address=found.address or None,
                                   sameAs=[link for _name, link in channels if link] or None)
    head = site.head(path, pairs + _seite(page), title=_page_title(found.name, page), description=description,
                     json_ld=structured.script_json({"@context": structured.SCHEMA, **data}))
    hours = found.opening_hours
    return listing(site, request, path=path, template="merchant.html", scope=_scope(site, own), pairs=pairs,
                   context={"head": head, "merchant": found, "filters": filters, "channels": channels,
                            "website": web_link(found.website), "about": _paragraphs(found.about),
                            "address": _lines(found.address),
                            "hours": hours if isinstance(hours, list) else _lines(hours),
                            "category": category_name(found.category) if found.category else None,
                            "bar": filter_bar(site, path, filters, merchants=False), "feeds": feed_links(own)})


def events(site: Site, request: Request) -> Response:
    """The agenda: events from now on by their start (paged), and on the first page of a
    range that includes today, those that began earlier and still run."""
    filters = page_filters(request)
    page = page_number(request)
    von, bis = local_day(request, "von"), local_day(request, "bis")
    if von and bis and bis < von:
        raise HTTPException(400, _("„bis“ (%(bis)s) liegt vor „von“ (%(von)s): bitte die Daten tauschen.",
                                   bis=bis.isoformat(), von=von.isoformat()))
    now = datetime.now(timezone.utc)
    today = now.astimezone(site.zone).date()
    days = [(k, v.isoformat()) for k, v in (("von", von), ("bis", bis)) if v]
    pairs = [*days, *filters.without("kind").pairs()]
    upcoming, begun = _agenda_scopes(site, filters, von, bis, now, page)
    offset = (page - 1) * site.page_size
    total = site.store.records.count(**upcoming) if upcoming else 0
    marks = site.store.records.marks(limit=offset + site.page_size, order="event_start", **upcoming)[offset:] \
        if upcoming else []
    begun_marks = site.store.records.marks(limit=ONGOING_MAX, order="event_start", **begun) if begun else []
    etag = etag_of(site, request, now, total, marks, begun_marks)
    if not_modified(request, etag):
        return unchanged(etag)
    paging = pager("/events", pairs, page, total, site.page_size, (N_("Frühere"), N_("Spätere")))
    entries = site.store.records.list(limit=ONGOING_MAX, order="event_start", **begun) if begun else []
    if upcoming:
        entries += site.store.records.list(limit=site.page_size, offset=offset, order="event_start", **upcoming)
    head = site.head("/events", pairs + _seite(page), title=_page_title(_("Veranstaltungen"), page),
                     description=_("Veranstaltungen in %(town)s: heute, morgen, am Wochenende und danach.",
                                   town=site.settings.platform.name))
    head.prev, head.next = (site.base + paging.prev if paging.prev else None), \
        (site.base + paging.next if paging.next else None)
    groups = agenda.days(entries, now, site.zone)
    return site.render(request, "events.html", {
        "head": head, "filters": filters, "nav": "events", "groups": groups, "total": total, "pager": paging,
        "pictures": site.media.pictures(first_images(entries)), "von": von, "bis": bis,
        "past_range": bis is not None and bis < today, "quick": _quick_ranges(today, filters),
        "when": lambda record, group: _when(site, record, group, now),
        "bar": filter_bar(site, "/events", filters.without("kind"), kinds=False, keep=days),
        "feeds": feed_links(replace(filters, kind=("event",)))}, etag=etag)


def _agenda_scopes(site: Site, filters: Filters, von: date | None, bis: date | None, now: datetime,
                   page: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Store filters for the agenda: events still to start within the range (None: the range
    is over), and (first page only) those that began before now and may still run.

    Whole local days: `von` from its midnight, `bis` up to the next one. What has ended is
    never shown, whatever the range says."""
    today = now.astimezone(site.zone).date()
    if bis is not None and bis < today:
        return None, None
    scope = _scope(site, filters, kinds=_only_kind(filters, "event"), now=now)
    if bis is not None:
        scope["starts_until"] = datetime.combine(bis + timedelta(days=1), time(0), site.zone)
    split = now.replace(second=0, microsecond=0)  # started before this minute: "begun"
    if von is not None and von > today:
        return {**scope, "starts_from": datetime.combine(von, time(0), site.zone)}, None
    begun = {**scope, "starts_from": datetime.combine(today, time(0), site.zone) - ONGOING_SINCE,
             "starts_until": min(split, scope.get("starts_until", split))}
    return {**scope, "starts_from": split}, begun if page == 1 else None


def _quick_ranges(today: date, filters: Filters) -> list[tuple[str, str]]:
    """Links for the usual ranges: today, this weekend, the next seven days."""
    sunday = today + timedelta(days=6 - today.weekday())
    kept = filters.without("kind").pairs()
    return [(_("Heute"), i18n.url("/events", [("von", today), ("bis", today), *kept])),
            (_("Dieses Wochenende"), i18n.url("/events", [("von", max(sunday - timedelta(days=1), today)),
                                                         ("bis", sunday), *kept])),
            (_("Nächste 7 Tage"), i18n.url("/events", [("von", today), ("bis", today + timedelta(days=6)), *kept]))]


def record_page(site: Site, request: Request, raw_id: str) -> Response:
    record = site.store.records.get(int(raw_id)) if raw_id.isdigit() and len(raw_id) < 19 else None
    if record is None or record.removed_at is not None or record.status != "published":
        raise HTTPException(404, _("Diesen Beitrag gibt es nicht (mehr)."))
    now = datetime.now(timezone.utc)
    etag = etag_of(site, request, now, record.id, record.changed_at)
    if not_modified(request, etag):
        return unchanged(etag)
    item = record.item
    images = [m for m in item.media if m.type == "image"]
    pictures = site.media.pictures(m.url for m in images)
    path = f"/items/{record.id}"
    title = item.title or _("Ohne Titel")
    absolute_images = [site.image_url(m.url, pictures) for m in images]
    organiser = site.merchants.get(item.merchant_id)
    data = structured.for_record(
        record, url=site.absolute(path), images=absolute_images,
        organiser=structured.organization(site.merchant_name(item.merchant_id), f"{site.base}/m/{item.merchant_id}"),
        publisher=structured.organization(site.settings.platform.name, f"{site.base}/"),
        fallback_place={"@type": "Place", "name": organiser.name, "address": organiser.address}
        if organiser is not None and organiser.address else None)
    head = site.head(path, [], title=title, description=(item.summary or item.content_text or "")[:300],
                     og_type="article", image=absolute_images[0] if absolute_images else None,
                     image_alt=_alt(images[0].alt if images else None, title),
                     json_ld=structured.script_json(data))
    event = item.event
    return site.render(request, "item.html", {
        "head": head, "entry": record, "pictures": pictures, "origins": origins_of(site, record), "title": title,
        "past": event is not None and agenda.ends_at(event, site.zone) <= now,
        "one_day": event is not None and not event.all_day and event.end is not None and event.end > event.start
        and event.end.astimezone(site.zone).date() == event.start.astimezone(site.zone).date(),
        "nav": {"event": "events", "offer": "offers"}.get(item.kind.value, "home")}, etag=etag)


def _when(site: Site, record: Record, group: agenda.Day, now: datetime) -> str:
    """An event's time on the agenda, as its heading leaves it to say: "19:30 Uhr",
    "Sa., 19:30 Uhr" on the weekend, "ganztägig", "seit Mo., 1. Dez., bis So., 28. Dez."."""
    event = record.item.event
    assert event is not None
    locale = i18n.BABEL_LOCALES[i18n.current()]
    zone = site.settings.platform.timezone
    fmt = dict(zone=zone, locale=locale)
    start_day = event.start.astimezone(site.zone).date()
    if start_day < group.first:  # began before today
        return _("läuft bis %(end)s", end=_end_text(event, site, locale))
    ends = agenda.ends_at(event, site.zone)
    several_days = (ends - timedelta(seconds=1)).astimezone(site.zone).date() > start_day
    if event.all_day:
        text = _("ganztägig")
    elif event.end and event.end > event.start and not several_days:
        text = formatting.time_range(event.start, event.end, **fmt)
    else:
        text = formatting.time_of_day(event.start, **fmt)
    if group.kind == agenda.WEEKEND:
        text = f"{formatting.weekday(event.start, **fmt)}, {text}"
    if several_days:
        text += " " + _("bis %(end)s", end=_end_text(event, site, locale))
    return text


def _end_text(event: Any, site: Site, locale: str) -> str:
    last = agenda.ends_at(event, site.zone) - (timedelta(days=1) if event.all_day or event.end is None
                                                else timedelta(0))
    return formatting.day_heading(last, zone=site.settings.platform.timezone, locale=locale)


def _alt(alt: str | None, title: str) -> str:
    return alt or _("Bild zu „%(title)s“", title=title)


def _page_title(title: str | None, page: int) -> str | None:
    if page <= 1:
        return title
    numbered = _("Seite %(page)s", page=page)
    return f"{title} – {numbered}" if title else numbered


def _seite(page: int) -> list[tuple[str, Any]]:
    return [("seite", page)] if page > 1 else []


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _paragraphs(text: str | None) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text or "") if p.strip()]
