"""Structured data on a web page, as the website connector's `Found` records.

In the order of trust the connector uses them:

- schema.org in JSON-LD (one `<script type="application/ld+json">` block at a time, so a
  broken block costs only itself and a warning), microdata and RDFa, read by extruct:
  Event and its subtypes, Product/Offer/AggregateOffer, Article/NewsArticle/BlogPosting,
  found at the top, in `@graph`, in lists (`ItemList`, `itemListElement`), pages
  (`mainEntity`, `hasPart`) and a business's own `event`/`makesOffer`; `{"@id": ...}`
  references are followed. LocalBusiness/Organization gives the merchant's profile.
- microformats2 (h-event, h-entry, h-feed, h-product; h-card for the profile), via
  extruct's mf2py.
- OpenGraph (`og:`, `article:`, `product:`, also written as `name=`, which extruct does
  not read) for a page that is one thing: `opengraph`.

Each syntax's extractor runs only when its marker occurs in the page (`itemscope`,
`typeof=`, `class="h-...`), and the page is parsed once with lxml and handed to them:
mf2py (BeautifulSoup) and pyRdfa (rdflib) cost far more than everything else together.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import lxml.etree
import lxml.html
from extruct.jsonld import JsonLdExtractor
from extruct.microformat import MicroformatExtractor
from extruct.uniform import _umicrodata_microformat  # extruct's own microdata -> JSON-LD shape
from extruct.w3cmicrodata import MicrodataExtractor
from w3lib.encoding import html_to_unicode
from w3lib.html import get_base_url

from connectors.website_dates import When, day_end, exclusive_end, machine_date, read_when
from hub.errors import ParseError
from hub.models import Kind, Media
from hub.normalize import status_cancelled
from hub.sanitize import absolute_url, clean_html, plain_text, text_only

log = logging.getLogger("connectors.website")

MAX_IMAGES = 8
MAX_NODES = 2000  # structured nodes looked at per page: a page is not a data dump
MAX_DEPTH = 12
BODY_CHARS = 200_000  # HTML of a page's main text kept at most
_SCHEMA = re.compile(r"^(?:https?://schema\.org/|schema:)", re.IGNORECASE)
# Markers of a syntax, looked for in the lower-cased page: a substring test costs next to
# nothing, a regex over 100 KB costs more than reading the JSON-LD. A false alarm ("h-card"
# in a text) only runs an extractor that finds nothing.
_MICRODATA_MARKS = ("itemscope",)
_RDFA_MARKS = ("typeof=", "typeof =", "vocab=", "vocab =")
_MF2_MARKS = ("h-entry", "h-event", "h-feed", "h-product", "h-card")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)


# --- what is found --------------------------------------------------------------------------

@dataclass
class Found:
    """One thing a page announces, before it becomes an Item. `rules` says, per field,
    which rule found it ("json-ld", "microdata", "selector .datum", ...)."""

    page: str  # the URL of the page it was found on
    kind: Kind | None = None  # None: the data does not say
    title: str = ""
    url: str | None = None
    when: When | None = None  # an event's start, end and all-day flag
    published: datetime | None = None
    updated: datetime | None = None
    location: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    cancelled: bool = False
    summary: str = ""  # plain text
    body_html: str = ""  # sanitized
    images: list[Media] = field(default_factory=list)
    price: str | None = None
    currency: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    tags: list[str] = field(default_factory=list)
    rules: dict[str, str] = field(default_factory=dict)
    whole_page: bool = False  # the page itself is this thing (OpenGraph, an item's own page)

    def note(self, name: str, rule: str, value: Any) -> None:
        """Remember which rule found `name`, if it found anything."""
        if value not in (None, "", [], ()) and name not in self.rules:
            self.rules[name] = rule

    def fill_from(self, other: Found, suffix: str) -> None:
        """Take what `other` (the item's own page) knows and this one does not."""
        for name in ("title", "url", "when", "published", "updated", "location", "latitude", "longitude",
                     "summary", "price", "currency", "valid_from", "valid_until"):
            if getattr(self, name) in (None, "") and getattr(other, name) not in (None, ""):
                setattr(self, name, getattr(other, name))
                if (rule := other.rules.get(_RULE_NAME.get(name, name))) is not None:
                    self.rules.setdefault(_RULE_NAME.get(name, name), f"{rule} {suffix}")
        if len(other.body_html) > len(self.body_html):  # the item's page has the full text
            self.body_html = other.body_html
            self.rules["content"] = f"{other.rules.get('content', 'page')} {suffix}"
        self.cancelled = self.cancelled or other.cancelled
        self.kind = self.kind or other.kind
        known = {m.url for m in self.images}
        self.images += [m for m in other.images if m.url not in known][:MAX_IMAGES - len(self.images)]
        self.tags += [t for t in other.tags if t not in self.tags]


_RULE_NAME = {"url": "link", "when": "date", "published": "date", "updated": "date", "latitude": "location",
              "longitude": "location", "currency": "price", "valid_from": "date", "valid_until": "end"}


@dataclass
class Business:
    """The merchant as its page describes itself (schema.org LocalBusiness/Organization,
    or an h-card): the location of its events when they name none, and its profile."""

    name: str = ""
    address: str = ""
    latitude: float | None = None
    longitude: float | None = None
    telephone: str | None = None
    url: str | None = None
    opening_hours: list[str] = field(default_factory=list)
    rule: str = ""

    @property
    def location(self) -> str | None:
        return ", ".join(p for p in (self.name, self.address) if p) or None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "latitude": self.latitude,
                "longitude": self.longitude, "telephone": self.telephone, "url": self.url,
                "opening_hours": self.opening_hours, "rule": self.rule}


@dataclass
class Structured:
    """What a page's structured data holds."""

    items: list[Found] = field(default_factory=list)
    business: Business | None = None
    warnings: list[str] = field(default_factory=list)


# --- the page -------------------------------------------------------------------------------

@dataclass
class Page:
    """A fetched page, decoded and parsed once."""

    url: str  # where it was read from (after redirects)
    text: str
    tree: Any  # lxml.html root element
    base: str  # for relative links: <base href>, else `url`
    zone: ZoneInfo
    fetched: datetime
    _lower: bytes | None = field(default=None, repr=False)

    def has(self, marks: tuple[str, ...]) -> bool:
        """Whether one of `marks` occurs in the page, in any case (bytes: searched several
        times faster than text; lower-cased once, on first use)."""
        if self._lower is None:
            self._lower = self.text.encode("utf-8", "replace").lower()
        return any(mark.encode() in self._lower for mark in marks)

    @classmethod
    def load(cls, body: bytes, url: str, content_type: str, zone: ZoneInfo, fetched: datetime) -> Page:
        """Decode (HTTP charset, BOM, <meta charset>, else UTF-8 or windows-1252) and parse.

        Raises:
            ParseError: the body is empty or not HTML at all.
        """
        _, text = html_to_unicode(content_type or None, body)
        text = _XML_DECLARATION.sub("", text, count=1)  # lxml refuses a declaration in a str
        if not text.strip():
            raise ParseError(f"{url}: the page is empty")
        try:
            tree = lxml.html.document_fromstring(text)
        except (lxml.etree.ParserError, ValueError) as exc:
            raise ParseError(f"{url}: not an HTML page ({exc})") from exc
        return cls(url, text, tree, get_base_url(text[:20_000], url), zone, fetched)

    def link(self, value: Any) -> str | None:
        return absolute_url(_text(value), self.base) if _text(value) else None


def structured(page: Page) -> Structured:
    """Items and the merchant's profile from the page's JSON-LD, microdata, RDFa and
    microformats2, in that order; the same thing in two syntaxes is merged later by its
    identity."""
    found = Structured()
    reader = _Reader(page, found)
    for syntax, nodes, roots in _schema_nodes(page, found.warnings):
        reader.read(syntax, nodes, roots)
    if page.has(_MF2_MARKS) and (mf2_html := _mf2_document(page)):
        raw = _extract(lambda: MicroformatExtractor().extract_items(mf2_html, base_url=page.base),
                       "microformats2", found.warnings)
        reader.read_mf2(_umicrodata_microformat(raw, "http://microformats.org/wiki/"))
    return found


# Roots of microformats2 and of the classic microformats mf2py reads too (hentry, vevent, ...).
_CLASSIC_ROOTS = frozenset({"hentry", "hfeed", "vevent", "vcard", "hproduct"})
_MF2_CANDIDATES = lxml.etree.XPath('//*[contains(@class, "h-") or contains(@class, "hentry") or '
                                   'contains(@class, "hfeed") or contains(@class, "vevent") or '
                                   'contains(@class, "vcard") or contains(@class, "hproduct")]')


def _is_mf2_root(el: Any) -> bool:
    return any(c.startswith("h-") or c in _CLASSIC_ROOTS for c in el.get("class", "").split())


def _mf2_document(page: Page) -> str:
    """Only the page's microformats, as a small document for mf2py: it builds a
    BeautifulSoup tree of what it is given, which for a whole 100 KB page costs ~30 ms.
    Empty when the page has none (a "h-card" in a text)."""
    roots = [el for el in _MF2_CANDIDATES(page.tree) if _is_mf2_root(el)]
    if not roots:
        return ""
    inside = set(roots)
    outermost = [r for r in roots if not any(a in inside for a in r.iterancestors())]
    parts = (lxml.html.tostring(r, encoding="unicode", with_tail=False) for r in outermost)
    return "<!DOCTYPE html><html><body>" + "\n".join(parts) + "</body></html>"


def _schema_nodes(page: Page, warnings: list[str]) -> Iterator[tuple[str, list, list | None]]:
    """(syntax, nodes, the nodes to start from: None for all)."""
    yield "json-ld", _json_ld(page, warnings), None
    if page.has(_MICRODATA_MARKS):
        raw = _extract(lambda: MicrodataExtractor().extract_items(page.tree, base_url=page.base), "microdata", warnings)
        yield "microdata", _umicrodata_microformat(raw, "https://schema.org"), None
    if page.has(_RDFA_MARKS):
        nodes = _rdfa(page, warnings)
        yield "rdfa", nodes, _roots(nodes)


def _json_ld(page: Page, warnings: list[str]) -> list:
    """Every JSON-LD block on its own: one that is not JSON (a trailing comma, a comment,
    a truncated block) is reported and skipped, the others are read."""
    extractor = JsonLdExtractor()
    nodes: list = []
    for n, script in enumerate(page.tree.xpath('//script[@type="application/ld+json"]'), start=1):
        try:
            nodes += [node for node in extractor.extract_items(script, base_url=page.base) if node]
        except Exception as exc:  # ValueError from json, anything else from jstyleson
            warnings.append(f"JSON-LD-Block {n} auf {page.url} ist kein gültiges JSON und wurde übersprungen "
                            f"({_short(exc)}); der Rest der Seite wurde gelesen")
    return nodes


def _rdfa(page: Page, warnings: list[str]) -> list:
    """RDFa through extruct (pyRdfa wants its own DOM flavour, so the page is parsed again),
    as plain JSON-LD-like nodes."""
    from extruct.rdfa import RDFaExtractor  # rdflib and pyRdfa: imported only for pages that need them
    from extruct.utils import parse_xmldom_html

    def extract() -> list:
        tree = parse_xmldom_html(page.text.encode("utf-8"), encoding="utf-8")
        return RDFaExtractor().extract_items(tree, base_url=page.base)

    return _compact_rdfa(_extract(extract, "RDFa", warnings))


def _roots(nodes: list[dict]) -> list[dict]:
    """RDFa's nodes come flat, each nested one on its own: the ones no other node refers to,
    in a fixed order (rdflib's is arbitrary): named nodes by their id, then blank ones by name."""
    referred = {v["@id"] for node in nodes for values in node.values() if isinstance(values, list)
                for v in values if isinstance(v, dict) and "@id" in v}
    roots = [n for n in nodes if n.get("@id") not in referred]
    return sorted(roots, key=lambda n: (str(n.get("@id", "")).startswith("_:"), _text(n.get("name")),
                                        str(n.get("@id", ""))))


def _extract(run: Any, syntax: str, warnings: list[str]) -> list:
    try:
        return list(run())
    except Exception as exc:  # an extractor's bug or a page it chokes on costs this syntax only
        log.debug("%s extraction failed", syntax, exc_info=True)
        warnings.append(f"{syntax} der Seite nicht lesbar ({_short(exc)}); der Rest der Seite wurde gelesen")
        return []


def _compact_rdfa(nodes: list) -> list:
    """Expanded JSON-LD (full IRIs, value objects) as compact nodes with schema.org's short
    names; references between nodes stay `{"@id": ...}` and are followed when read."""
    compact = []
    for node in nodes:
        if not isinstance(node, dict):
            continue
        out: dict[str, Any] = {"@id": node.get("@id")}
        types = [_SCHEMA.sub("", t) for t in node.get("@type", []) if isinstance(t, str)]
        if types:
            out["@type"] = types
        for key, values in node.items():
            if key.startswith("@") or not _SCHEMA.match(key):
                continue
            out[_SCHEMA.sub("", key)] = [v.get("@value", v) if isinstance(v, dict) and "@value" in v else v
                                         for v in values]
        compact.append(out)
    return compact


# --- schema.org ------------------------------------------------------------------------------

_EVENT_TYPES = {"festival", "hackathon", "courseinstance", "eventseries"}
_ARTICLE_TYPES = {"report", "article", "newsarticle", "blogposting", "socialmediaposting", "liveblogposting"}
_OFFER_TYPES = {"product", "productgroup", "individualproduct", "productmodel", "someproducts", "offer",
                "aggregateoffer", "menuitem", "vehicle", "car"}
_BUSINESS_HINTS = ("business", "organization", "store", "shop", "restaurant", "club", "theater", "bakery",
                   "establishment", "office", "center", "library", "museum", "cafeorcoffeeshop", "winery",
                   "brewery", "barorpub", "hotel", "lodgingbusiness", "corporation", "ngo", "school", "church",
                   "cityhall", "governmentoffice", "governmentorganization")
# Where items sit inside containers (lists, pages, feeds, a business's own programme).
_CONTAINED = ("@graph", "itemListElement", "item", "mainEntity", "hasPart", "blogPost", "dataFeedElement",
              "event", "events", "subEvent", "subEvents", "makesOffer", "hasOfferCatalog", "offers",
              "itemOffered", "about")


def _local_types(node: dict) -> list[str]:
    raw = node.get("@type") or node.get("type") or []
    raw = raw if isinstance(raw, list) else [raw]
    return [_SCHEMA.sub("", t).rsplit("/", 1)[-1].rsplit("#", 1)[-1].lower() for t in raw if isinstance(t, str)]


def _kind_of(types: list[str]) -> Kind | None:
    for t in types:
        if t.endswith("event") or t in _EVENT_TYPES:
            return Kind.EVENT
        if t in _OFFER_TYPES:
            return Kind.OFFER
        if t.endswith("article") or t.endswith("posting") or t in _ARTICLE_TYPES:
            return Kind.POST
    return None


def _is_business(types: list[str]) -> bool:
    return any(t.endswith(_BUSINESS_HINTS) for t in types) and "postaladdress" not in types


class _Reader:
    """Walks one syntax's nodes, turning item nodes into Found records."""

    def __init__(self, page: Page, out: Structured) -> None:
        self.page = page
        self.out = out
        self.ids: dict[str, dict] = {}
        self.seen = 0
        self.taken: set[int] = set()  # id() of nodes already turned into items

    def read(self, syntax: str, nodes: list, roots: list | None = None) -> None:
        """Items in `nodes`; `roots`: where to start, if not every node (RDFa's are flat)."""
        self.ids = {}
        self._index(nodes, 0)
        for node in nodes if roots is None else roots:
            self._walk(node, syntax, 0, top=True)

    def _index(self, value: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        if isinstance(value, list):
            for v in value:
                self._index(v, depth + 1)
        elif isinstance(value, dict):
            if isinstance(value.get("@id"), str) and len(value) > 1:
                self.ids.setdefault(value["@id"], value)
            for v in value.values():
                if isinstance(v, (list, dict)):
                    self._index(v, depth + 1)

    def resolve(self, value: Any) -> Any:
        """A `{"@id": ...}` reference as the node it names (if the page has it)."""
        if isinstance(value, dict) and set(value) == {"@id"}:
            return self.ids.get(value["@id"], value)
        return value

    def _walk(self, value: Any, syntax: str, depth: int, top: bool = False) -> None:
        if depth > MAX_DEPTH or self.seen > MAX_NODES:
            return
        if isinstance(value, list):
            for v in value:
                self._walk(v, syntax, depth + 1, top)
            return
        node = self.resolve(value)
        if not isinstance(node, dict):
            return
        self.seen += 1
        types = _local_types(node)
        kind = _kind_of(types)
        if kind is not None:
            if id(node) not in self.taken:
                self.taken.add(id(node))
                if (found := self._item(node, kind, types, syntax)) is not None:
                    self.out.items.append(found)
            if kind is not Kind.EVENT or not node.get("subEvent"):
                return  # an item's offers, location and author are its own, not more items
        elif _is_business(types) and top and self.out.business is None:
            self.out.business = self._business(node, syntax)
        for key in _CONTAINED:
            if key in node:
                self._walk(node[key], syntax, depth + 1, top=key == "@graph" and top)

    # --- items

    def _item(self, node: dict, kind: Kind, types: list[str], syntax: str) -> Found | None:
        found = Found(self.page.url, kind)
        if "offer" in types or "aggregateoffer" in types:
            self._offer_fields(found, node, self.resolve(_first(node, "itemOffered")), syntax)
        else:
            self._common(found, node, syntax)
            if kind is Kind.EVENT:
                self._event(found, node, syntax)
            elif kind is Kind.OFFER:
                self._price(found, node.get("offers"), syntax)
            else:
                self._article(found, node, syntax)
        return found if found.title else None

    def _common(self, found: Found, node: dict, syntax: str) -> None:
        found.title = _title(_first(node, "headline", "name", "alternativeHeadline"))
        found.note("title", syntax, found.title)
        found.url = self.page.link(_first(node, "url", "mainEntityOfPage"))
        found.note("link", syntax, found.url)
        description = _text(_first(node, "description", "abstract"))
        found.summary = _plain(description)
        found.note("summary", syntax, found.summary)
        body = _text(_first(node, "articleBody", "text")) or description
        found.body_html = _as_html(body, self.page.base)
        found.note("content", syntax, found.body_html)
        found.images = self._images(_first_all(node, "image", "photo", "thumbnailUrl"))
        found.note("image", syntax, found.images)
        found.tags = _keywords(node.get("keywords"))

    def _event(self, found: Found, node: dict, syntax: str) -> None:
        start = self._when(_first(node, "startDate"))
        if start is not None:
            end = self._when(_first(node, "endDate"))
            end_at = None
            if end is not None:
                end_at = exclusive_end(end.start) if end.all_day else end.start
                if end_at <= start.start:
                    end_at = None
            found.when = When(start.start, end_at, start.all_day)
            found.note("date", syntax, found.when)
            found.note("end", syntax, end_at)
        self._location(found, node.get("location"), syntax)
        found.cancelled = status_cancelled(self.resolve(_first(node, "eventStatus")))
        self._price(found, node.get("offers"), syntax)

    def _article(self, found: Found, node: dict, syntax: str) -> None:
        published = self._when(_first(node, "datePublished", "dateCreated"))
        modified = self._when(_first(node, "dateModified"))
        found.published = published.start if published else None
        found.updated = modified.start if modified else None
        found.note("date", syntax, found.published)

    def _offer_fields(self, found: Found, offer: dict, product: Any, syntax: str) -> None:
        """A standalone Offer: what it offers (`itemOffered`) names and describes it."""
        offered = {k: v for k, v in product.items() if v not in (None, "", [])} if isinstance(product, dict) else {}
        self._common(found, {**offer, **offered}, syntax)
        self._price(found, offer, syntax)

    def _price(self, found: Found, offers: Any, syntax: str) -> None:
        for offer in map(self.resolve, offers if isinstance(offers, list) else [offers]):
            if not isinstance(offer, dict):
                continue
            spec = self.resolve(_first(offer, "priceSpecification"))
            spec = spec if isinstance(spec, dict) else {}
            price = price_text(_first(offer, "price") or spec.get("price"),
                               _first(offer, "lowPrice"), _first(offer, "highPrice"))
            if price is None:
                continue
            found.price = price
            found.currency = _currency(_text(_first(offer, "priceCurrency") or spec.get("priceCurrency")))
            starts = self._when(_first(offer, "validFrom", "availabilityStarts"))
            ends = self._when(_first(offer, "validThrough", "priceValidUntil", "availabilityEnds"))
            found.valid_from = starts.start if starts else None
            found.valid_until = (day_end(ends.start) if ends.all_day else ends.start) if ends else None
            found.note("price", syntax, price)
            if found.kind is Kind.OFFER:
                found.note("date", syntax, found.valid_from)
                found.note("end", syntax, found.valid_until)
            return  # (an offer's url is where tickets are sold, not the item's own page)

    def _location(self, found: Found, value: Any, syntax: str) -> None:
        for place in map(self.resolve, value if isinstance(value, list) else [value]):
            if isinstance(place, str) and place.strip():
                found.location = _clean_line(place)
            elif isinstance(place, dict):
                types = _local_types(place)
                if "virtuallocation" in types:
                    found.location = "Online"
                else:
                    found.location = _place_line(_text(place.get("name")), self.resolve(_first(place, "address")))
                    found.latitude, found.longitude = _geo(self.resolve(_first(place, "geo")))
            if found.location:
                found.note("location", syntax, found.location)
                return

    def _when(self, value: Any) -> When | None:
        text = _text(value)
        if not text:
            return None
        return machine_date(text, self.page.zone) or read_when(text, self.page.zone, self.page.fetched)

    def _images(self, values: Iterable[Any]) -> list[Media]:
        found: dict[str, Media] = {}
        for value in values:
            value = self.resolve(value)
            if isinstance(value, dict):
                url = self.page.link(_first(value, "contentUrl", "url", "value"))
                media = Media(url, "image", width=_int(value.get("width")), height=_int(value.get("height")),
                              alt=_plain(_text(_first(value, "caption", "alt", "name"))) or None) if url else None
            else:
                url = self.page.link(value)
                media = Media(url, "image") if url else None
            if media is not None and media.url not in found and len(found) < MAX_IMAGES:
                found[media.url] = media
        return list(found.values())

    # --- the merchant

    def _business(self, node: dict, syntax: str) -> Business:
        lat, lon = _geo(self.resolve(_first(node, "geo")))
        hours = [_clean_line(h) for h in _list(node.get("openingHours")) if isinstance(h, str) and h.strip()]
        hours += [line for spec in _list(node.get("openingHoursSpecification"))
                  if (line := _hours_line(self.resolve(spec)))]
        return Business(name=_title(_text(node.get("name"))),
                        address=_address(self.resolve(_first(node, "address"))),
                        latitude=lat, longitude=lon, telephone=_text(node.get("telephone")) or None,
                        url=self.page.link(node.get("url")), opening_hours=hours, rule=syntax)

    # --- microformats2

    def read_mf2(self, items: list) -> None:
        for item in items:
            self._mf2(item, 0)

    def _mf2(self, item: Any, depth: int) -> None:
        if not isinstance(item, dict) or depth > MAX_DEPTH:
            return
        types = _local_types(item)
        kind = (Kind.EVENT if "h-event" in types else Kind.POST if "h-entry" in types
                else Kind.OFFER if "h-product" in types else None)
        if kind is not None:
            found = self._mf2_item(item, kind)
            if found.title:
                self.out.items.append(found)
        elif "h-card" in types and self.out.business is None and depth == 0:
            self.out.business = self._mf2_card(item)
        for child in item.get("children") or ():
            self._mf2(child, depth + 1)

    def _mf2_item(self, item: dict, kind: Kind) -> Found:
        rule = "microformats2"
        found = Found(self.page.url, kind)
        content = _first(item, "content")
        content_html = content.get("html") if isinstance(content, dict) else _text(content)
        found.title = _title(_mf2_text(_first(item, "name")))
        if kind is Kind.POST and content_html and found.title and found.title == _plain(_mf2_text(content))[:len(found.title)]:
            found.title = ""  # mf2's implied name is the whole text: no title of its own
        found.summary = _plain(_mf2_text(_first(item, "summary", "description"))) or _plain(_mf2_text(content))
        found.body_html = clean_html(content_html, self.page.base) if content_html else _as_html(found.summary, self.page.base)
        found.url = self.page.link(_mf2_text(_first(item, "url", "uid")))
        found.images = self._images(_list(item.get("photo")) + _list(item.get("featured")))
        found.tags = [_clean_line(_mf2_text(c)) for c in _list(item.get("category")) if _mf2_text(c)]
        if kind is Kind.EVENT:
            start = self._when(_mf2_text(_first(item, "start")))
            if start is not None:
                end = self._when(_mf2_text(_first(item, "end")))
                end_at = (exclusive_end(end.start) if end.all_day else end.start) if end else None
                found.when = When(start.start, end_at if end_at and end_at > start.start else None, start.all_day)
            self._mf2_location(found, _first(item, "location"))
        elif kind is Kind.OFFER:
            found.price = price_text(_mf2_text(_first(item, "price")))
            found.currency = _currency(_mf2_text(_first(item, "price")))
        else:
            published = self._when(_mf2_text(_first(item, "published")))
            updated = self._when(_mf2_text(_first(item, "updated")))
            found.published = published.start if published else None
            found.updated = updated.start if updated else None
        for name, value in (("title", found.title), ("summary", found.summary), ("content", found.body_html),
                            ("link", found.url), ("image", found.images), ("location", found.location),
                            ("date", found.when or found.published), ("end", found.when and found.when.end),
                            ("price", found.price)):
            found.note(name, rule, value)
        if not found.title:
            found.title = _first_words(found.summary)
            found.note("title", "microformats2 (text)", found.title)
        return found

    def _mf2_location(self, found: Found, value: Any) -> None:
        if isinstance(value, dict):
            found.location = _place_line(_mf2_text(_first(value, "name")) or _mf2_text(value), {
                "streetAddress": _mf2_text(_first(value, "street-address")),
                "postalCode": _mf2_text(_first(value, "postal-code")),
                "addressLocality": _mf2_text(_first(value, "locality"))})
            found.latitude, found.longitude = _geo({"latitude": _mf2_text(_first(value, "latitude")),
                                                    "longitude": _mf2_text(_first(value, "longitude"))})
        elif _mf2_text(value):
            found.location = _clean_line(_mf2_text(value))

    def _mf2_card(self, card: dict) -> Business:
        address = {"streetAddress": _mf2_text(_first(card, "street-address")),
                   "postalCode": _mf2_text(_first(card, "postal-code")),
                   "addressLocality": _mf2_text(_first(card, "locality"))}
        lat, lon = _geo({"latitude": _mf2_text(_first(card, "latitude")),
                         "longitude": _mf2_text(_first(card, "longitude"))})
        return Business(name=_title(_mf2_text(_first(card, "org", "name"))), address=_address(address),
                        latitude=lat, longitude=lon, telephone=_mf2_text(_first(card, "tel")) or None,
                        url=self.page.link(_mf2_text(_first(card, "url"))), rule="microformats2")


# --- OpenGraph and the page's own text ---------------------------------------------------------

_OG_PREFIXES = ("og:", "article:", "product:", "twitter:")


def opengraph(page: Page, *, own_page: bool = False) -> Found | None:
    """The page as one thing, from its OpenGraph (and Twitter card) tags, `property=` or
    `name=`; None when it has no title there. `own_page`: an item's own page, whose
    `<h1>` or `<title>` will do as its title."""
    meta: dict[str, list[str]] = {}
    for el in page.tree.xpath("//meta[@content][@property or @name]"):
        key = (el.get("property") or el.get("name") or "").strip().lower()
        if key.startswith(_OG_PREFIXES) or key == "description":
            meta.setdefault(key, []).append(el.get("content").strip())
    title = _title(_one(meta, "og:title", "twitter:title"))
    if not title and own_page:
        title = _title(next(iter(page.tree.xpath("string(//h1)").split("\n")), "") or page.tree.findtext(".//title"))
    if not title:
        return None
    og_type = (_one(meta, "og:type") or "").lower()
    found = Found(page.url, Kind.OFFER if og_type.startswith("product") else
                  Kind.POST if og_type == "article" else None, whole_page=True)
    found.title = title
    found.url = page.link(_one(meta, "og:url")) or page.url
    found.summary = _plain(_one(meta, "og:description", "twitter:description", "description") or "")
    found.images = [Media(url, "image", alt=_one(meta, "og:image:alt") or None)
                    for url in dict.fromkeys(filter(None, (page.link(u) for u in meta.get("og:image:secure_url", [])
                                                           + meta.get("og:image", []) + meta.get("twitter:image", []))))
                    ][:MAX_IMAGES]
    published = machine_date(_one(meta, "article:published_time"), page.zone)
    modified = machine_date(_one(meta, "article:modified_time", "og:updated_time"), page.zone)
    found.published = published.start if published else None
    found.updated = modified.start if modified else None
    found.tags = [_clean_line(t) for t in meta.get("article:tag", []) if t.strip()]
    found.price = price_text(_one(meta, "product:price:amount", "og:price:amount"))
    found.currency = _currency(_one(meta, "product:price:currency", "og:price:currency") or "")
    for name, value in (("title", title), ("link", found.url), ("summary", found.summary), ("image", found.images),
                        ("date", found.published), ("price", found.price)):
        found.note(name, "opengraph", value)
    return found


_MAIN = ('//*[@itemprop="articleBody"]', "//article", "//main", '//*[@role="main"]',
         '//*[contains(concat(" ", normalize-space(@class), " "), " entry-content ")]', '//*[@id="content"]')
_BETWEEN_BLOCKS = re.compile(r">\s*\n\s*<")
_NOT_TEXT = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg",
             "iframe", "button", "h1")  # h1: the title, which the item has already


def main_text(page: Page) -> str:
    """The page's main text as sanitized HTML (its article, its main element, ...), for an
    item whose own page is read (`follow`); '' when the page has no recognizable one."""
    for path in _MAIN:
        found = page.tree.xpath(path)
        if not found:
            continue
        region = lxml.html.fromstring(lxml.html.tostring(found[0]))  # a copy: the page stays whole
        for el in region.xpath("|".join(f".//{tag}" for tag in _NOT_TEXT)):
            el.drop_tree()
        html = _BETWEEN_BLOCKS.sub(">\n<", clean_html(lxml.html.tostring(region, encoding="unicode")[:BODY_CHARS],
                                                       page.base)).strip()
        if len(plain_text(html)) >= 40:
            return html
    return ""


# --- values -------------------------------------------------------------------------------------

def _first(node: dict, *keys: str) -> Any:
    for key in keys:
        value = node.get(key)
        if isinstance(value, list):
            value = next((v for v in value if v not in (None, "", [], {})), None)
        if value not in (None, "", [], {}):
            return value
    return None


def _first_all(node: dict, *keys: str) -> list:
    out: list = []
    for key in keys:
        out += _list(node.get(key))
    return out


def _list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    """A property's text, whatever shape it came in (a string, a number, a value object,
    a node with a name, a list)."""
    if isinstance(value, list):
        value = next((v for v in value if v not in (None, "")), None)
    if isinstance(value, dict):
        value = value.get("@value", value.get("name", value.get("value", value.get("url", value.get("@id")))))
        if isinstance(value, (list, dict)):
            return _text(value)
    if value is None or isinstance(value, bool):
        return ""
    return str(value).strip()


def _mf2_text(value: Any) -> str:
    if isinstance(value, dict):
        return _text(value.get("value") or _first(value, "name") or "")
    return _text(value)


def _one(meta: dict[str, list[str]], *keys: str) -> str | None:
    for key in keys:
        for value in meta.get(key, ()):
            if value:
                return value
    return None


def _title(raw: Any) -> str:
    text = _text(raw)
    return text_only(text) if ("<" in text or "&" in text) else " ".join(text.split())


def _clean_line(raw: str) -> str:
    return _title(raw)


def _plain(raw: str) -> str:
    """Plain text of a description that may be HTML (script and style bodies dropped)."""
    if not raw:
        return ""
    text = plain_text(clean_html(raw)) if ("<" in raw or "&" in raw) else raw
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


_BLOCK = re.compile(r"<(?:p|div|ul|ol|li|h[1-6]|blockquote|table|figure|pre|br)\b", re.IGNORECASE)


def _as_html(text: str, base: str) -> str:
    """A body that may be plain text or HTML, as sanitized HTML (in a paragraph when it
    has no blocks of its own)."""
    if not text:
        return ""
    if "<" in text:
        cleaned = clean_html(text, base)
        return cleaned if _BLOCK.search(cleaned) or not cleaned else f"<p>{cleaned}</p>"
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join("<p>" + clean_html(p).replace("\n", "<br>") + "</p>" for p in paragraphs)


def _first_words(text: str, n: int = 10) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" …" if len(words) > n else "")


def _keywords(value: Any) -> list[str]:
    words: list[str] = []
    for v in _list(value):
        for part in (_text(v).split(",") if not isinstance(v, dict) else [_text(v)]):
            part = _clean_line(part)
            if part and part not in words:
                words.append(part)
    return words


def _address(value: Any) -> str:
    if isinstance(value, str):
        return _clean_line(value)
    if not isinstance(value, dict):
        return ""
    town = " ".join(filter(None, (_text(value.get("postalCode")), _text(value.get("addressLocality")))))
    return ", ".join(filter(None, (_clean_line(_text(value.get("streetAddress"))), _clean_line(town))))


def _place_line(name: str, address: Any) -> str | None:
    parts = [_clean_line(name), _address(address)]
    return ", ".join(dict.fromkeys(p for p in parts if p)) or None


def _geo(value: Any) -> tuple[float | None, float | None]:
    if not isinstance(value, dict):
        return None, None
    try:
        lat, lon = float(_text(value.get("latitude")).replace(",", ".")), float(_text(value.get("longitude")).replace(",", "."))
    except ValueError:
        return None, None
    return (lat, lon) if -90 <= lat <= 90 and -180 <= lon <= 180 else (None, None)


_DAYS = {"monday": "Mo", "tuesday": "Di", "wednesday": "Mi", "thursday": "Do", "friday": "Fr", "saturday": "Sa",
         "sunday": "So", "publicholidays": "Feiertage"}


def _hours_line(spec: Any) -> str | None:
    """An OpeningHoursSpecification as "Mo, Di, Mi 09:00–18:00"."""
    if not isinstance(spec, dict):
        return None
    days = [_DAYS.get(_text(d).rstrip("/").rsplit("/", 1)[-1].lower(), _text(d)) for d in _list(spec.get("dayOfWeek"))]
    opens, closes = _text(spec.get("opens"))[:5], _text(spec.get("closes"))[:5]
    if not days or not opens:
        return None
    return f"{', '.join(days)} {opens}–{closes}" if closes else f"{', '.join(days)} ab {opens}"


# What may stand around a plain price without saying more than it ("Eintritt: 3 €", "Preis 12,- EUR").
_PRICE_WORDS = re.compile(r"(?i)€|\beur(?:o)?\b|\bchf\b|\busd\b|\bgbp\b|\$|£|,-|-|\b(?:eintritt|preis|kosten|"
                          r"ticket|karten?|nur|je|price|admission)\b|:")
_NUMBER = re.compile(r"(?<![\d.,])(\d{1,3}(?:[.\s\u00a0\u202f]\d{3})+|\d+)(?:[.,](\d{1,2}))?(?![\d])")
_CURRENCIES = (("€", "EUR"), ("eur", "EUR"), ("euro", "EUR"), ("chf", "CHF"), ("$", "USD"), ("usd", "USD"),
               ("£", "GBP"), ("gbp", "GBP"))


def price_text(price: Any, low: Any = None, high: Any = None) -> str | None:
    """A price as decimal text ("12.50"; "1234.00" from "1.234,-"); "9.90–19.90" for a range
    (AggregateOffer); text that says more than a number ("ab 9,90 €") stays as written;
    "0.00" for "free"/"frei"/"kostenlos". None when there is no price."""
    if price in (None, "") and low not in (None, ""):
        lo, hi = price_text(low), price_text(high) if high not in (None, "") else None
        return f"{lo}–{hi}" if lo and hi and hi != lo else lo
    if isinstance(price, (int, float)) and not isinstance(price, bool):
        return _decimal(Decimal(str(price)))
    text = _text(price)
    if not text:
        return None
    if re.fullmatch(r"(?i)\s*(?:frei|kostenlos|gratis|free|eintritt frei)\s*", text):
        return "0.00"
    match = _NUMBER.search(text)
    if match is None:
        return None
    whole = re.sub(r"[.\s\u00a0\u202f]", "", match.group(1))
    value = _decimal(Decimal(f"{whole}.{match.group(2) or '0'}"))
    rest = _PRICE_WORDS.sub("", text[:match.start()] + text[match.end():]).strip(" .,:")
    return value if not rest else " ".join(text.split())


def _decimal(value: Decimal) -> str:
    try:
        return str(value.quantize(Decimal("0.01")))
    except InvalidOperation:
        return str(value)


def _currency(text: str | None) -> str | None:
    if not text:
        return None
    lowered = text.strip().lower()
    if re.fullmatch(r"[a-z]{3}", lowered):
        return lowered.upper()
    return next((code for mark, code in _CURRENCIES if mark in lowered), None)


def currency_in(text: str) -> str | None:
    """The currency a price text names ("12,50 €" -> "EUR")."""
    return _currency(text) if text else None


def _int(value: Any) -> int | None:
    try:
        return int(float(_text(value))) if _text(value) else None
    except ValueError:
        return None


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__


def same_site(url: str, page: str) -> bool:
    """`url` is on the same host as `page` (followed links stay on the merchant's site)."""
    a, b = urlsplit(url), urlsplit(page)
    return a.scheme in ("http", "https", "file") and a.scheme == b.scheme and a.netloc.lower() == b.netloc.lower()


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
