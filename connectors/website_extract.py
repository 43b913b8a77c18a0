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

Each syntax's extractor runs only when its marker occurs in the page (`itemscope`,
`typeof=`, `class="h-...`), and the page is parsed once with lxml and handed to them:
mf2py (BeautifulSoup) and pyRdfa (rdflib) cost far more than everything else together.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import lxml.etree
import lxml.html
from extruct.jsonld import JsonLdExtractor
from extruct.microformat import MicroformatExtractor
from extruct.uniform import _umicrodata_microformat  # extruct's own microdata -> JSON-LD shape
from extruct.w3cmicrodata import MicrodataExtractor

from connectors.website_dates import When, day_end, exclusive_end, machine_date, read_when
from connectors.website_page import (MAX_IMAGES, Business, Found, Page, address_line, as_html, first,
                                     first_all, first_words, geo, hours_line, keywords, listed, one_line,
                                     place_line, plain, price_text, currency, short_error, text_of, to_int)
from hub.models import Kind, Media
from hub.normalize import status_cancelled
from hub.sanitize import clean_html

log = logging.getLogger("connectors.website")

MAX_NODES = 2000  # structured nodes looked at per page: a page is not a data dump
MAX_DEPTH = 12
_SCHEMA = re.compile(r"^(?:https?://schema\.org/|schema:)", re.IGNORECASE)
# Markers of a syntax, looked for in the lower-cased page: a substring test costs next to
# nothing, a regex over 100 KB costs more than reading the JSON-LD. A false alarm ("h-card"
# in a text) only runs an extractor that finds nothing.
_MICRODATA_MARKS = ("itemscope",)
_RDFA_MARKS = ("typeof=", "typeof =", "vocab=", "vocab =")
_MF2_MARKS = ("h-entry", "h-event", "h-feed", "h-product", "h-card")


@dataclass
class Structured:
    """What a page's structured data holds."""

    items: list[Found] = field(default_factory=list)
    business: Business | None = None
    warnings: list[str] = field(default_factory=list)


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
                            f"({short_error(exc)}); der Rest der Seite wurde gelesen")
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
    return sorted(roots, key=lambda n: (str(n.get("@id", "")).startswith("_:"), text_of(n.get("name")),
                                        str(n.get("@id", ""))))


def _extract(run: Any, syntax: str, warnings: list[str]) -> list:
    try:
        return list(run())
    except Exception as exc:  # an extractor's bug or a page it chokes on costs this syntax only
        log.debug("%s extraction failed", syntax, exc_info=True)
        warnings.append(f"{syntax} der Seite nicht lesbar ({short_error(exc)}); der Rest der Seite wurde gelesen")
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
              "itemOffered", "about", "hasCourseInstance")


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

    def _walk(self, value: Any, syntax: str, depth: int, top: bool = False, course: dict | None = None) -> None:
        """`course`: the Course whose `hasCourseInstance` `value` is (its dates are events)."""
        if depth > MAX_DEPTH or self.seen > MAX_NODES:
            return
        if isinstance(value, list):
            for v in value:
                self._walk(v, syntax, depth + 1, top, course)
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
                if (found := self._item(node, kind, types, syntax, course)) is not None:
                    self.out.items.append(found)
            if kind is not Kind.EVENT or not node.get("subEvent"):
                return  # an item's offers, location and author are its own, not more items
        elif _is_business(types) and top and self.out.business is None:
            self.out.business = self._business(node, syntax)
        for key in _CONTAINED:
            if key in node:
                self._walk(node[key], syntax, depth + 1, top=key == "@graph" and top,
                           course=node if key == "hasCourseInstance" else None)

    # --- items

    def _item(self, node: dict, kind: Kind, types: list[str], syntax: str, course: dict | None = None) -> Found | None:
        found = Found(self.page.url, kind)
        if course:  # a course's dates (a Volkshochschule's) have its name, text and price, not their own
            node = {**course, **node}
        if "offer" in types or "aggregateoffer" in types:
            self._offer_fields(found, node, self.resolve(first(node, "itemOffered")), syntax)
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
        found.title = one_line(first(node, "headline", "name", "alternativeHeadline"))
        found.note("title", syntax, found.title)
        found.url = self.page.link(first(node, "url", "mainEntityOfPage"))
        found.note("link", syntax, found.url)
        description = text_of(first(node, "description", "abstract"))
        found.summary = plain(description)
        found.note("summary", syntax, found.summary)
        body = text_of(first(node, "articleBody", "text")) or description
        found.body_html = as_html(body, self.page.base)
        found.note("content", syntax, found.body_html)
        found.images = self._images(first_all(node, "image", "photo", "thumbnailUrl"))
        found.note("image", syntax, found.images)
        found.tags = keywords(node.get("keywords"))

    def _event(self, found: Found, node: dict, syntax: str) -> None:
        start = self._when(first(node, "startDate"))
        if start is not None:
            end = self._when(first(node, "endDate"))
            end_at = None
            if end is not None:
                end_at = exclusive_end(end.start) if end.all_day else end.start
                if end_at <= start.start:
                    end_at = None
            found.when = When(start.start, end_at, start.all_day)
            found.note("date", syntax, found.when)
            found.note("end", syntax, end_at)
        self._location(found, node.get("location"), syntax)
        found.cancelled = status_cancelled(self.resolve(first(node, "eventStatus")))
        self._price(found, node.get("offers"), syntax)

    def _article(self, found: Found, node: dict, syntax: str) -> None:
        published = self._when(first(node, "datePublished", "dateCreated"))
        modified = self._when(first(node, "dateModified"))
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
            spec = self.resolve(first(offer, "priceSpecification"))
            spec = spec if isinstance(spec, dict) else {}
            price = price_text(first(offer, "price") or spec.get("price"),
                               first(offer, "lowPrice"), first(offer, "highPrice"))
            if price is None:
                continue
            found.price = price
            found.currency = currency(text_of(first(offer, "priceCurrency") or spec.get("priceCurrency")))
            starts = self._when(first(offer, "validFrom", "availabilityStarts"))
            ends = self._when(first(offer, "validThrough", "priceValidUntil", "availabilityEnds"))
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
                found.location = one_line(place)
            elif isinstance(place, dict):
                types = _local_types(place)
                if "virtuallocation" in types:
                    found.location = "Online"
                else:
                    found.location = place_line(text_of(place.get("name")), self.resolve(first(place, "address")))
                    found.latitude, found.longitude = geo(self.resolve(first(place, "geo")))
            if found.location:
                found.note("location", syntax, found.location)
                return

    def _when(self, value: Any) -> When | None:
        text = text_of(value)
        if not text:
            return None
        return machine_date(text, self.page.zone) or read_when(text, self.page.zone, self.page.fetched)

    def _images(self, values: Iterable[Any]) -> list[Media]:
        found: dict[str, Media] = {}
        for value in values:
            value = self.resolve(value)
            if isinstance(value, dict):
                url = self.page.link(first(value, "contentUrl", "url", "value"))
                media = Media(url, "image", width=to_int(value.get("width")), height=to_int(value.get("height")),
                              alt=plain(text_of(first(value, "caption", "alt", "name"))) or None) if url else None
            else:
                url = self.page.link(value)
                media = Media(url, "image") if url else None
            if media is not None and media.url not in found and len(found) < MAX_IMAGES:
                found[media.url] = media
        return list(found.values())

    # --- the merchant

    def _business(self, node: dict, syntax: str) -> Business:
        lat, lon = geo(self.resolve(first(node, "geo")))
        hours = [one_line(h) for h in listed(node.get("openingHours")) if isinstance(h, str) and h.strip()]
        hours += [line for spec in listed(node.get("openingHoursSpecification"))
                  if (line := hours_line(self.resolve(spec)))]
        return Business(name=one_line(text_of(node.get("name"))),
                        address=address_line(self.resolve(first(node, "address"))),
                        latitude=lat, longitude=lon, telephone=text_of(node.get("telephone")) or None,
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
        content = first(item, "content")
        content_html = content.get("html") if isinstance(content, dict) else text_of(content)
        found.title = one_line(_mf2_text(first(item, "name")))
        if kind is Kind.POST and content_html and found.title and found.title == plain(_mf2_text(content))[:len(found.title)]:
            found.title = ""  # mf2's implied name is the whole text: no title of its own
        found.summary = plain(_mf2_text(first(item, "summary", "description"))) or plain(_mf2_text(content))
        found.body_html = clean_html(content_html, self.page.base) if content_html else as_html(found.summary, self.page.base)
        found.url = self.page.link(_mf2_text(first(item, "url", "uid")))
        found.images = self._images(listed(item.get("photo")) + listed(item.get("featured")))
        found.tags = [one_line(_mf2_text(c)) for c in listed(item.get("category")) if _mf2_text(c)]
        if kind is Kind.EVENT:
            start = self._when(_mf2_text(first(item, "start")))
            if start is not None:
                end = self._when(_mf2_text(first(item, "end")))
                end_at = (exclusive_end(end.start) if end.all_day else end.start) if end else None
                found.when = When(start.start, end_at if end_at and end_at > start.start else None, start.all_day)
            self._mf2_location(found, first(item, "location"))
        elif kind is Kind.OFFER:
            found.price = price_text(_mf2_text(first(item, "price")))
            found.currency = currency(_mf2_text(first(item, "price")))
        else:
            published = self._when(_mf2_text(first(item, "published")))
            updated = self._when(_mf2_text(first(item, "updated")))
            found.published = published.start if published else None
            found.updated = updated.start if updated else None
        for name, value in (("title", found.title), ("summary", found.summary), ("content", found.body_html),
                            ("link", found.url), ("image", found.images), ("location", found.location),
                            ("date", found.when or found.published), ("end", found.when and found.when.end),
                            ("price", found.price)):
            found.note(name, rule, value)
        if not found.title:
            found.title = first_words(found.summary)
            found.note("title", "microformats2 (text)", found.title)
        return found

    def _mf2_location(self, found: Found, value: Any) -> None:
        if isinstance(value, dict):
            found.location = place_line(_mf2_text(first(value, "name")) or _mf2_text(value), {
                "streetAddress": _mf2_text(first(value, "street-address")),
                "postalCode": _mf2_text(first(value, "postal-code")),
                "addressLocality": _mf2_text(first(value, "locality"))})
            found.latitude, found.longitude = geo({"latitude": _mf2_text(first(value, "latitude")),
                                                    "longitude": _mf2_text(first(value, "longitude"))})
        elif _mf2_text(value):
            found.location = one_line(_mf2_text(value))

    def _mf2_card(self, card: dict) -> Business:
        address = {"streetAddress": _mf2_text(first(card, "street-address")),
                   "postalCode": _mf2_text(first(card, "postal-code")),
                   "addressLocality": _mf2_text(first(card, "locality"))}
        lat, lon = geo({"latitude": _mf2_text(first(card, "latitude")),
                         "longitude": _mf2_text(first(card, "longitude"))})
        return Business(name=one_line(_mf2_text(first(card, "org", "name"))), address=address_line(address),
                        latitude=lat, longitude=lon, telephone=_mf2_text(first(card, "tel")) or None,
                        url=self.page.link(_mf2_text(first(card, "url"))), rule="microformats2")


def _mf2_text(value: Any) -> str:
    if isinstance(value, dict):
        return text_of(value.get("value") or first(value, "name") or "")
    return text_of(value)
